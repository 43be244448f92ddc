"""Mini-batches of a graph for ``train.batching: subgraph``: seed nodes, their sampled subgraph, the loss rows.

One epoch is one pass over the nodes: a permutation drawn from the sampler's own
``torch.Generator`` (seeded by ``seed`` + :data:`SAMPLER_SEED`, saved in every checkpoint) is cut
into ``ceil(N / train.batch_size)`` batches of seed nodes whose sizes differ by at most one (no tiny
last batch: a batch of one node would break BatchNorm and every standardising loss). Each batch
is a :class:`Subgraph`: the seeds' neighbourhood as an ordinary graph (features ``x``, local
``edge_index``), which the run's backend turns into views like any graph, and ``loss_nodes``, the
seeds' rows in it, on which the method computes its loss.

Samplers (``train.sampler``):

* ``khop`` (default; needs nothing beyond PyTorch) — :class:`KHopSampler`: the induced subgraph
  of every node within ``train.num_hops`` hops of a seed (default: one hop per encoder layer, the
  seeds' whole receptive field), loss on the seeds. Chosen over a random node partition (the
  induced subgraph of a random node subset, loss on all of it) because that keeps only about
  1/(batches) of each node's edges, an edge-dropping augmentation whose strength depends on the
  batch size; here every seed keeps all of its neighbourhood, and a batch that covers the graph
  is the graph itself, edges in their order, so its views are the full-batch views draw for draw.
  ``num_hops: 0`` gives the partition (each batch's induced subgraph, loss on all its nodes). The
  result is PyG's ``torch_geometric.utils.k_hop_subgraph(seeds, k, edge_index,
  relabel_nodes=True)`` exactly (tests/test_batching.py holds it to that), but computed from an
  in-edge CSR built once, at O(edges of the neighbourhood) per batch: ``k_hop_subgraph`` masks
  all E edges once per hop and ``subgraph`` once more, O(k·E) per batch, O(k·E·N/b) per epoch.
  Seeds near hubs can reach much of the graph in two hops; ``neighbor`` bounds that.
* ``neighbor`` — PyG's ``NeighborLoader`` (its node sampler and filter), at most
  ``train.num_neighbors[h]`` sampled in-neighbours per node at hop h (-1: all; default 10 per
  encoder layer). It needs ``pyg-lib`` or ``torch-sparse``; without them choosing it is a one-line
  error saying what to install. Its random draws are made inside ``torch.random.fork_rng`` seeded
  from the sampler's generator, so they neither depend on nor disturb torch's global stream.

Resume is exact at epoch boundaries, which is where checkpoints are written (a signal finishes the
current epoch first): the sampler generator's state is in the checkpoint, and an epoch's batches
are a function of that state alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from .config import ConfigError

# Seed offset of the sampler's generator: a stream of its own, so that choosing the batches never
# shifts the augmentation stream (a batch covering the graph then gets the full-batch views).
SAMPLER_SEED = 104_729


def torch_wheel_url() -> str:
    return f"https://data.pyg.org/whl/torch-{torch.__version__}.html"


def require_neighbor_sampling() -> None:
    """Raise a one-line ConfigError when neither pyg-lib nor torch-sparse is importable."""
    import torch_geometric.typing as pyg_typing

    if not (pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE):
        raise ConfigError(
            "train.sampler=neighbor uses PyG's NeighborLoader, which needs pyg-lib or torch-sparse and neither is "
            f"installed: pip install pyg-lib -f {torch_wheel_url()} (or use train.sampler=khop, which needs neither)")


def csr_rows(x: Tensor, rows: Tensor) -> Tensor:
    """Rows ``rows`` of ``x`` (dense, or sparse CSR, which has no ``index_select``), in that order; O(their non-zeros)."""
    if x.layout != torch.sparse_csr:
        return x.index_select(0, rows)
    crow, col, val = x.crow_indices(), x.col_indices(), x.values()
    start = crow.index_select(0, rows).to(torch.int64)
    count = crow.index_select(0, rows + 1).to(torch.int64) - start
    new_crow = torch.zeros(rows.numel() + 1, dtype=torch.int64)
    torch.cumsum(count, 0, out=new_crow[1:])
    pos = _ranges(start, count, new_crow)
    return torch.sparse_csr_tensor(new_crow.to(crow.dtype), col.index_select(0, pos), val.index_select(0, pos),
                                   size=(rows.numel(), x.size(1)))


def in_edge_csr(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """The edges grouped by target: ``(rowptr, order)`` with ``order`` the edge ids sorted stably by
    target (each target's in-edges keep their order in ``edge_index``) and target t's in-edges at
    ``order[rowptr[t]:rowptr[t + 1]]``."""
    dst = edge_index[1]
    order = torch.sort(dst, stable=True).indices
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=edge_index.device)
    torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0, out=rowptr[1:])
    return rowptr, order


def _ranges(start: Tensor, count: Tensor, offsets: Tensor | None = None) -> Tensor:
    """The concatenation of ``range(start[i], start[i] + count[i])`` over i (int64)."""
    if offsets is None:
        offsets = torch.zeros(count.numel() + 1, dtype=torch.int64)
        torch.cumsum(count, 0, out=offsets[1:])
    total = int(offsets[-1])
    shift = torch.repeat_interleave(start - offsets[:-1], count, output_size=total)
    return torch.arange(total, dtype=torch.int64) + shift


@dataclass
class Subgraph:
    """One batch: a graph the backends make views of (``x``, ``edge_index`` in local ids), the global
    ids of its nodes (``nodes``), and the rows the loss is computed on (``loss_nodes``; None: all)."""

    x: Tensor
    edge_index: Tensor
    nodes: Tensor
    loss_nodes: Tensor | None

    @property
    def num_nodes(self) -> int:
        return self.nodes.numel()


class KHopSampler:
    """Induced subgraphs of k-hop neighbourhoods, from an in-edge CSR built once (see the module docstring).

    Args:
        edge_index: (2, E) edges, source → target (messages flow that way, so a node's receptive
            field is reached over in-edges).
        num_nodes: N.
        num_hops: k ≥ 0.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, num_hops: int) -> None:
        self.rowptr, order = in_edge_csr(edge_index, num_nodes)  # in-edges grouped by target, in their original order
        self.in_src = edge_index[0].index_select(0, order)
        self.in_eid = order
        self.edge_index = edge_index
        self.num_nodes = num_nodes
        self.num_hops = num_hops
        self._mark = torch.full((num_nodes,), -1, dtype=torch.int64)  # scratch, all -1 between calls

    def _in_positions(self, nodes: Tensor) -> Tensor:
        start = self.rowptr.index_select(0, nodes)
        return _ranges(start, self.rowptr.index_select(0, nodes + 1) - start)

    def sample(self, seeds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(nodes, edge_index, seed_rows)`` for sorted, distinct ``seeds``: the sorted global ids of every
        node within k hops, the induced edges among them in local ids (in their order in ``edge_index``),
        and the seeds' positions in ``nodes``."""
        mark = self._mark
        parts, frontier = [seeds], seeds
        mark[seeds] = 0
        try:
            for _ in range(self.num_hops):
                cand = self.in_src.index_select(0, self._in_positions(frontier))
                cand = _distinct_sorted(cand[mark.index_select(0, cand) < 0], self.num_nodes)
                if cand.numel() == 0:
                    break
                mark[cand] = 0
                parts.append(cand)
                frontier = cand
            nodes = torch.cat(parts).sort().values if len(parts) > 1 else seeds
            mark[nodes] = torch.arange(nodes.numel())
            pos = self._in_positions(nodes)
            inside = mark.index_select(0, self.in_src.index_select(0, pos)) >= 0
            eids = _distinct_sorted(self.in_eid.index_select(0, pos[inside]), self.edge_index.size(1))
            edge_index = mark[self.edge_index.index_select(1, eids)]
            seed_rows = mark.index_select(0, seeds)
        finally:
            mark[torch.cat(parts)] = -1
        return nodes, edge_index, seed_rows


def _distinct_sorted(ids: Tensor, size: int) -> Tensor:
    """The distinct values of ``ids`` (all in [0, size)) in increasing order: a sort (O(m log m)) for
    few, a mask over [0, size) (O(size)) when they are many (a neighbourhood covering much of the graph)."""
    if ids.numel() * 16 < size:
        return torch.unique(ids)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[ids] = True
    return mask.nonzero().squeeze(1)


class NeighborSampler:
    """PyG's ``NeighborLoader`` sampling around given seeds (needs pyg-lib or torch-sparse).

    The loader is built once over the whole graph (its sampler converts the graph to CSC once);
    each batch is its ``collate_fn`` on the seeds, then its ``filter_fn``: the sampled nodes
    (``n_id``, seeds first), the sampled edges in local ids, ``batch_size`` seeds."""

    def __init__(self, edge_index: Tensor, num_nodes: int, num_neighbors: list[int]) -> None:
        require_neighbor_sampling()
        from torch_geometric.data import Data
        from torch_geometric.loader import NeighborLoader

        self.loader = NeighborLoader(Data(edge_index=edge_index, num_nodes=num_nodes), num_neighbors=list(num_neighbors),
                                     batch_size=1, shuffle=False)

    def sample(self, seeds: Tensor, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.loader.collate_fn(seeds)
            batch = out if hasattr(out, "n_id") else self.loader.filter_fn(out)
        return batch.n_id, batch.edge_index, torch.arange(int(batch.batch_size))


class SubgraphBatches:
    """The batches of one graph under ``cfg.train`` (``batching: subgraph``).

    Args:
        x: (N, F) features, dense or sparse CSR (the trainer's :class:`~bgrl_werank.train.trainer.Graph`'s).
        edge_index: (2, E) edges.
        train: ``cfg.train`` (``batch_size``, ``sampler``, ``num_hops``, ``num_neighbors``).
        num_layers: the encoder's number of layers (the default hops).
        seed: the run's seed (the generator is seeded with ``seed + SAMPLER_SEED``).
        replicas: data-parallel processes (or emulated replicas, :mod:`bgrl_werank.distributed`): the
            batch count is rounded up to a multiple of it, so every step has one batch for each.
    """

    def __init__(self, x: Tensor, edge_index: Tensor, train: Any, num_layers: int, seed: int, replicas: int = 1) -> None:
        self.x = x
        self.num_nodes = x.size(0)
        self.batch_size = min(int(train.batch_size), self.num_nodes)
        self.num_batches = math.ceil(math.ceil(self.num_nodes / self.batch_size) / replicas) * replicas
        if self.num_batches * 2 > self.num_nodes:
            raise ConfigError(
                f"{replicas} data-parallel replicas need at least {self.num_batches} batches of 2 or more seed nodes, but "
                f"the graph has {self.num_nodes} nodes; use fewer processes (or train.replicas)")
        self.generator = torch.Generator().manual_seed(seed + SAMPLER_SEED)
        if train.sampler == "khop":
            hops = num_layers if train.num_hops is None else int(train.num_hops)
            self.sampler: KHopSampler | NeighborSampler = KHopSampler(edge_index, self.num_nodes, hops)
        elif train.sampler == "neighbor":
            fanout = [10] * num_layers if train.num_neighbors is None else list(train.num_neighbors)
            self.sampler = NeighborSampler(edge_index, self.num_nodes, fanout)
        else:
            raise ConfigError(f"train.sampler must be khop or neighbor, got {train.sampler!r}")

    def seeds(self) -> list[Tensor]:
        """This epoch's seed batches (sorted within each), drawn from :attr:`generator`."""
        perm = torch.randperm(self.num_nodes, generator=self.generator)
        return [part.sort().values for part in torch.tensor_split(perm, self.num_batches)]

    def epoch(self, part: tuple[int, int] | None = None) -> Iterator[Subgraph]:
        """This epoch's batches; the seeds (and, for ``neighbor``, a seed per batch) are drawn now, the
        subgraphs built one at a time as they are taken. ``part=(r, n)`` keeps only batches r, r + n,
        r + 2n, … (process r of n data-parallel ones); the draws are the same whatever ``part`` is."""
        seed_batches = self.seeds()
        draws = (torch.randint(0, 2**62, (len(seed_batches),), generator=self.generator).tolist()
                 if isinstance(self.sampler, NeighborSampler) else None)
        return self._batches(seed_batches, draws, part)

    def _batches(self, seed_batches: list[Tensor], draws: list[int] | None,
                 part: tuple[int, int] | None = None) -> Iterator[Subgraph]:
        for i, seeds in enumerate(seed_batches):
            if part is not None and i % part[1] != part[0]:
                continue
            if draws is None:
                nodes, edge_index, rows = self.sampler.sample(seeds)
            else:
                nodes, edge_index, rows = self.sampler.sample(seeds, draws[i])
            whole = nodes.numel() == self.num_nodes and (draws is None or bool((nodes == torch.arange(self.num_nodes)).all()))
            x = self.x if whole else csr_rows(self.x, nodes)
            loss_nodes = None if rows.numel() == nodes.numel() and bool((rows == torch.arange(rows.numel())).all()) else rows
            yield Subgraph(x, edge_index, nodes, loss_nodes)
