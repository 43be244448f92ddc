"""Contextual stochastic block model (CSBM): a synthetic graph whose structure and features both
carry the class.

Nodes get balanced class labels. Edges follow a planted-partition model controlled by the *edge
homophily* h (the expected fraction of edges joining two nodes of the same class). Features follow
the class: Gaussian around a class mean (dense), or bag-of-words-like binary rows that favour a
block of features owned by the node's class (sparse).

Why a hand-written edge sampler: PyG's ``stochastic_blockmodel_graph`` draws a Bernoulli variable
for every node pair, so it costs O(N²) time and memory (10¹² pairs at N = 10⁶). Here we draw the
E/2 edges directly: a uniform source node, then a target from the source's class with probability
h, otherwise from the other classes. That is O(E) memory and O(E log E) time (in-place sorts to merge
duplicates and order the edges), drawn in chunks of :data:`EDGE_CHUNK` so that the temporaries stay
small: 10⁷ nodes with average degree 10 (10⁸ directed edges, 1.5 GiB of edge_index, 2.4 GiB of 64
dense features) take about a minute and 4.6 GB at peak on one core (measured 2026-12-03).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["make_csbm"]


def _check_int(name: str, value: object, low: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise ValueError(f"{name} must be an integer {what}, got {value!r}")
    return int(value)


def _check_real(name: str, value: object, low: float, high: float, what: str, *, open_low: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > low if open_low else v >= low) and v <= high
    if not ok:
        raise ValueError(f"{name} must be a number {what}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _balanced_labels(num_nodes: int, num_classes: int, gen: torch.Generator) -> Tensor:
    """Class sizes differ by at most one; the assignment to nodes is a random permutation."""
    labels = torch.arange(num_nodes) % num_classes
    return labels[torch.randperm(num_nodes, generator=gen)]


#: Edge draws per chunk of :func:`_sample_edges`: the temporaries of one chunk (a few int64 and
#: float64 arrays of this length) stay near 100 MB whatever the graph's size. Changing it never
#: changes the graph (tests/test_data.py forces small chunks and compares).
EDGE_CHUNK = 1 << 22


def _chunks(total: int):
    step = max(1, int(EDGE_CHUNK))
    for start in range(0, total, step):
        yield start, min(total, start + step)


def _sample_edges(y: Tensor, num_classes: int, avg_degree: float, homophily: float, gen: torch.Generator) -> Tensor:
    """Undirected, coalesced edge_index (2, E) without self-loops, E ≈ avg_degree · N.

    The m = round(avg_degree · N / 2) draws are: m uniform sources, then m same-class coins, then m
    float64 uniforms choosing each target. Each of torch's CPU draws consumes the generator
    sequentially, so drawing them chunk by chunk, in that order, gives the numbers of one-shot draws:
    the graph depends on the seed only, not on :data:`EDGE_CHUNK`. Memory: the sources (int32 when
    N < 2³¹) and coins for all m draws, one int64 key per undirected pair, chunk temporaries; then
    the 2E directed keys, sorted in place, and the (2, E) result they are split into. About 2.4 GB
    at N = 10⁷ with degree 10, of which the result is 1.6 GB.
    """
    n = y.numel()
    m = int(round(avg_degree * n / 2))
    if m == 0:
        return torch.empty(2, 0, dtype=torch.long)
    # Nodes sorted by class: class c occupies positions offsets[c] .. offsets[c] + counts[c] - 1.
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=num_classes)
    offsets = torch.cumsum(counts, 0) - counts

    src = torch.empty(m, dtype=torch.int32 if n < 2**31 else torch.long)
    for a, b in _chunks(m):
        src[a:b] = torch.randint(n, (b - a,), generator=gen)
    same = torch.empty(m, dtype=torch.bool)
    for a, b in _chunks(m):
        same[a:b] = torch.rand(b - a, generator=gen) < homophily
    # One key lo·N + hi per drawn pair (N² < 2⁶³ for N < 3·10⁹); self-loops are dropped.
    keys = np.empty(m, dtype=np.int64)
    kept = 0
    for a, b in _chunks(m):
        s, same_c = src[a:b].long(), same[a:b]
        c = y[s]
        size_c, off_c = counts[c], offsets[c]
        choices = torch.where(same_c, size_c, n - size_c)  # >= 1: every class is non-empty and C >= 2
        r = (torch.rand(b - a, generator=gen, dtype=torch.float64) * choices).long().clamp_max_(choices - 1)
        # Same class: the r-th node of class c. Other class: the r-th node in sorted order after
        # skipping class c's block.
        d = order[torch.where(same_c, off_c + r, torch.where(r < off_c, r, r + size_c))]
        keep = s != d
        s, d = s[keep], d[keep]
        pair = torch.minimum(s, d) * n + torch.maximum(s, d)
        keys[kept:kept + pair.numel()] = pair.numpy()
        kept += pair.numel()
    del src, same
    # NumPy's single-threaded in-place sort: torch's parallel CPU sort was 5-10x slower on the
    # shared 2-core machine (0.3 s against 0.03 s for 5·10⁵ keys), and it would copy.
    keys = keys[:kept]
    keys.sort()
    if kept > 1:  # merge duplicates
        keys = keys[np.concatenate([np.ones(1, dtype=bool), keys[1:] != keys[:-1]])]
    u = keys.size
    # Both directions, sorted by (row, col): hi·N + lo after the lo·N + hi keys, one in-place sort.
    both = np.empty(2 * u, dtype=np.int64)
    both[:u] = keys
    for a, b in _chunks(u):
        k = keys[a:b]
        both[u + a:u + b] = (k % n) * n + k // n
    del keys
    both.sort()
    out = torch.empty(2, 2 * u, dtype=torch.long)
    rows, cols = out[0].numpy(), out[1].numpy()
    for a, b in _chunks(2 * u):
        np.floor_divide(both[a:b], n, out=rows[a:b])
        np.remainder(both[a:b], n, out=cols[a:b])
    return out


def _class_means(num_classes: int, num_features: int, signal: float, gen: torch.Generator) -> Tensor:
    """(C, F) class means with pairwise distance ``signal`` (exact when C <= F)."""
    g = torch.randn(num_features, num_classes, generator=gen, dtype=torch.float64)
    if num_classes <= num_features:
        directions = torch.linalg.qr(g).Q.T  # orthonormal rows
    else:  # not enough dimensions for orthogonal means: random unit vectors (distance ≈ signal)
        directions = (g / g.norm(dim=0, keepdim=True)).T
    # ||a u - a v|| = a·sqrt(2) for orthonormal u, v, so a = signal / sqrt(2).
    return (directions * (signal / math.sqrt(2.0))).to(torch.float32)


def _distinct(rows: int, n: int, m: int, gen: torch.Generator) -> Tensor:
    """(rows, m) long tensor; each row is a uniformly random m-subset of range(n), sorted.

    Draws with replacement and redraws the repeated entries until every row is distinct. The
    procedure treats all n values alike, so the resulting subset is uniform. For m > n/2 it picks
    the n - m values to leave out instead (keeping collisions rare), at O(rows · n) ≤ O(2 rows · m).
    """
    if m == 0:
        return torch.empty(rows, 0, dtype=torch.long)
    if 2 * m > n:
        excluded = _distinct(rows, n, n - m, gen)
        keep = torch.ones(rows, n, dtype=torch.bool)
        keep.scatter_(1, excluded, False)
        return keep.nonzero()[:, 1].view(rows, m)  # row-major, so each row is sorted
    s = torch.randint(n, (rows, m), generator=gen).sort(dim=1).values
    active = torch.arange(rows)
    sub = s
    while True:
        dup = torch.zeros_like(sub, dtype=torch.bool)
        dup[:, 1:] = sub[:, 1:] == sub[:, :-1]
        bad = dup.any(dim=1)
        if not bool(bad.any()):
            return s
        active, sub, dup = active[bad], sub[bad], dup[bad]
        sub[dup] = torch.randint(n, (int(dup.sum()),), generator=gen)
        sub = sub.sort(dim=1).values
        s[active] = sub


def _sparse_features(
    y: Tensor, num_classes: int, num_features: int, signal: float, density: float, gen: torch.Generator
) -> Tensor:
    """Binary CSR features: every row has exactly k = max(1, round(density · F)) non-zeros."""
    n, f, c_count = y.numel(), num_features, num_classes
    k = max(1, int(round(density * f)))
    # Feature j belongs to class j mod C. A fraction q of a node's non-zeros lies in its own
    # class's block; signal = 0 gives q = 1/C (the share of a uniform draw: no information),
    # signal -> inf gives q -> 1.
    q = (1.0 / c_count + signal) / (1.0 + signal)
    cols = torch.empty(n, k, dtype=torch.long)
    all_features = torch.arange(f)
    for c in range(c_count):
        nodes = (y == c).nonzero().view(-1)
        own = all_features[c::c_count]
        other = all_features[all_features % c_count != c]
        k_in = min(max(int(round(q * k)), k - other.numel()), own.numel(), k)
        k_out = k - k_in
        picked = torch.cat(
            [own[_distinct(nodes.numel(), own.numel(), k_in, gen)],
             other[_distinct(nodes.numel(), other.numel(), k_out, gen)]],
            dim=1,
        )
        cols[nodes] = picked.sort(dim=1).values
    crow = torch.arange(n + 1, dtype=torch.long) * k
    values = torch.ones(n * k, dtype=torch.float32)
    return torch.sparse_csr_tensor(crow, cols.view(-1), values, size=(n, f), dtype=torch.float32)


def make_csbm(
    num_nodes: int = 1000,
    num_classes: int = 4,
    avg_degree: float = 10.0,
    num_features: int = 64,
    homophily: float = 0.8,
    signal: float = 1.0,
    feature_density: float = 1.0,
    seed: int = 0,
) -> Data:
    r"""Sample a contextual stochastic block model graph.

    Labels: balanced (class sizes differ by at most one), randomly assigned to nodes.

    Edges: ``round(avg_degree * N / 2)`` undirected pairs are drawn. Each has a uniformly random
    source u; with probability ``homophily`` the target is uniform over u's class, otherwise
    uniform over the nodes of the other classes. Self-loops are dropped, duplicates merged and
    both directions stored, so the expected edge homophily is ``homophily`` and the average
    degree ``E / N`` is ``avg_degree`` up to the few merged duplicates. ``homophily = 1/C`` gives
    an Erdős–Rényi-like graph; below that the graph is heterophilous.

    Features:

    * ``feature_density == 1`` (dense): :math:`x_v = \mu_{y_v} + \varepsilon_v`,
      :math:`\varepsilon_v \sim \mathcal{N}(0, I_F)`, with class means at pairwise distance
      ``signal`` (orthonormal directions scaled by ``signal / sqrt(2)``; when C > F the
      directions are random unit vectors and the distance is ``signal`` only on average).
    * ``feature_density < 1`` (sparse, binary): feature j belongs to class ``j mod C``; each node
      has exactly ``k = max(1, round(feature_density * F))`` distinct ones, of which a share
      ``q = (1/C + signal) / (1 + signal)`` (as far as the block sizes allow) lies in its class's
      block and the rest among the other features, uniformly. ``signal = 0`` gives ``q = 1/C``,
      i.e. features independent of the class.

    Everything is drawn from one ``torch.Generator`` seeded with ``seed``: identical arguments
    give identical output.

    Args:
        num_nodes: number of nodes N, an integer >= ``num_classes`` (default 1000).
        num_classes: number of classes C, an integer >= 2 (default 4).
        avg_degree: target average degree E/N, a number in [0, N - 1] (default 10.0).
        num_features: feature dimension F, an integer >= 1 (default 64).
        homophily: expected fraction of edges inside a class, in [0, 1] (default 0.8).
        signal: feature signal strength, a number >= 0; the distance between class means (dense)
            or the own-block bias (sparse) (default 1.0).
        feature_density: fraction of non-zero features per node, in (0, 1]; 1 gives dense
            Gaussian features, less gives a sparse CSR binary matrix (default 1.0).
        seed: seed of the generator, an integer (default 0).

    Returns:
        A :class:`torch_geometric.data.Data` with ``x``, ``edge_index``, ``y``, ``labelled`` (all
        True), ``num_classes`` (int) and ``name = "csbm"``; no train/val/test masks.

    Shapes:
        - **x**: (N, F) float32, dense, or a ``torch.sparse_csr`` tensor when
          ``feature_density < 1``.
        - **edge_index**: (2, E) long, coalesced (sorted by row, then column), undirected, no
          self-loops.
        - **y**: (N,) long; **labelled**: (N,) bool.

    Raises:
        ValueError: an argument is outside its accepted range (the message names it).

    Examples:
        >>> data = make_csbm(num_nodes=200, num_classes=2, avg_degree=6.0, seed=1)
        >>> data.x.shape, data.num_classes
        (torch.Size([200, 64]), 2)
    """
    num_classes = _check_int("num_classes", num_classes, 2, ">= 2")
    num_nodes = _check_int("num_nodes", num_nodes, num_classes, f">= num_classes ({num_classes})")
    avg_degree = _check_real("avg_degree", avg_degree, 0.0, num_nodes - 1, f"in [0, num_nodes - 1] = [0, {num_nodes - 1}]")
    num_features = _check_int("num_features", num_features, 1, ">= 1")
    homophily = _check_real("homophily", homophily, 0.0, 1.0, "in [0, 1]")
    signal = _check_real("signal", signal, 0.0, math.inf, "in [0, inf) (finite)")
    feature_density = _check_real("feature_density", feature_density, 0.0, 1.0, "in (0, 1]", open_low=True)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    gen = torch.Generator().manual_seed(int(seed))
    y = _balanced_labels(num_nodes, num_classes, gen)
    edge_index = _sample_edges(y, num_classes, avg_degree, homophily, gen)
    if feature_density >= 1.0:
        means = _class_means(num_classes, num_features, signal, gen)
        x = torch.randn(num_nodes, num_features, generator=gen)
        for c in range(num_classes):
            idx = (y == c).nonzero().view(-1)
            x.index_add_(0, idx, means[c].expand(idx.numel(), num_features))
    else:
        x = _sparse_features(y, num_classes, num_features, signal, feature_density, gen)

    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=num_nodes)
    data.labelled = torch.ones(num_nodes, dtype=torch.bool)
    data.num_classes = num_classes
    data.name = "csbm"
    return data
