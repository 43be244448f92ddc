"""The training loop of every method (+ WERank), with checkpoints, exact resume and clean interruption.

One epoch is one full-batch step (``train.batching: full``): two augmented views, the method's
loss on them (:meth:`bgrl_werank.methods.Method.backward`), the WERank penalty on the method's
matrices, one optimizer step, the method's end-of-step work (BGRL: the EMA update of its target).
With ``train.batching: subgraph`` an epoch is one pass over ``ceil(N / train.batch_size)`` batches
(:mod:`bgrl_werank.sampling`), and each batch is such a step on its subgraph's views, the loss on
its seed nodes; the learning rate and ``step_end`` then count steps (step = epoch × batches + batch,
total = epochs × batches; warmup = ``optim.warmup_epochs`` × batches), and the logged loss of an
epoch is the mean over its batches. Everything an epoch depends on (weights, optimizer moments,
BatchNorm statistics, the augmentation and sampler generators, torch's CPU and CUDA RNGs) is in the
checkpoint, written at epoch ends, so a resumed run continues bit for bit where it stopped. Device and backend come from :mod:`bgrl_werank.backends`; nothing here depends on them.

Data parallelism (:mod:`bgrl_werank.distributed`): with N replicas — N torchrun processes, or
``train.replicas: N`` emulating them in one — the batch count is a multiple of N and each step takes
N consecutive batches, one per replica, each with its replica's own view generator; their gradients
are averaged (by DistributedDataParallel across processes, by accumulation in one) and the optimizer
steps once. Steps per epoch = batches / N, and the schedules count those steps. Under torchrun only
rank 0 writes (run folder, logs, checkpoints); the logged losses are means over every replica's batches.
"""

from __future__ import annotations

import contextlib
import copy
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from torch.profiler import record_function
from tqdm.auto import tqdm

from ..augment import normalized_adjacency
from ..backends import Backend, resolve_backend
from ..config import Config, ConfigError, to_dict
from .. import distributed as dist_
from ..distributed import BufferSnapshot, World
from ..labels import method_title
from ..losses import werank_penalty
from ..methods import BatchView, Method
from ..methods import from_config as method_from_config
from ..rundir import JsonlAppender, claim, human_bytes, is_disk_full, take_over
from ..ops import keep_heap_if_room, rss_bytes
from ..models import reestimate_batchnorm
from ..schedules import learning_rate
from . import diagnostics
from .checkpoint import CheckpointError, DiskFullError, load_checkpoint, save_checkpoint

# Features at most this dense are stored as sparse CSR: the first layer's X·Wᵀ then costs
# O(nnz·out) instead of O(N·F·out) (Cora's features are 1.3% non-zero). Same values either way.
SPARSE_FEATURE_DENSITY = 0.10


class TrainingError(Exception):
    """Training stopped (non-finite values); the message names the epoch and the term."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the current epoch finished and a checkpoint was written."""

    def __init__(self, epoch: int, signame: str) -> None:
        super().__init__(epoch, signame)
        self.epoch = epoch
        self.signame = signame


@dataclass
class Graph:
    """A graph ready for training: features in their fast layout, edges, labels, the full adjacency."""

    x: Tensor
    edge_index: Tensor
    y: Tensor
    num_classes: int
    data: Any  # the torch_geometric Data it came from (masks, labelled, name)

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    def full_adjacency(self) -> Tensor:
        return normalized_adjacency(self.edge_index, self.num_nodes)


def fast_features(x: Tensor) -> Tensor:
    """``x`` as sparse CSR when at most :data:`SPARSE_FEATURE_DENSITY` of it is non-zero, else dense."""
    if x.layout == torch.sparse_csr:
        if x._nnz() <= SPARSE_FEATURE_DENSITY * x.size(0) * x.size(1):
            return x
        x = x.to_dense()
    if x.is_sparse:
        x = x.to_dense()
    x = x.to(torch.float32).contiguous()
    density = float((x != 0).sum()) / max(1, x.numel())
    return x.to_sparse_csr() if density <= SPARSE_FEATURE_DENSITY else x


def load_graph(cfg: Config) -> Graph:
    """Load and preprocess ``cfg.data`` (see :func:`bgrl_werank.data.load_dataset`)."""
    from ..data import DatasetError

    d = cfg.data
    try:
        data = _load(d)
    except ValueError as e:  # make_csbm's range checks
        raise DatasetError(f"data.csbm: {e}") from None
    x = fast_features(data.x)
    data.x = x  # do not keep a dense copy of sparse features alive (Coauthor CS: 500 MB)
    return Graph(x, data.edge_index, data.y, int(data.num_classes), data)


def _load(d):
    from ..data import load_dataset

    return load_dataset(
        d.name,
        d.root,
        row_normalize=d.row_normalize,
        standardize=d.standardize,
        undirected=d.undirected,
        download=d.download,
        csbm=to_dict(d.csbm) if d.name == "csbm" else None,
        sparse_x=True,
    )


def build_method(cfg: Config, in_channels: int, backend: Backend) -> Method:
    """The run's method around its encoder, in ``backend``'s implementation, on its device.

    The order of random draws is fixed (encoder, then the method's heads, then its target network),
    so a seed gives the same initial weights on every backend and device."""
    try:
        encoder = backend.build_encoder(cfg.model, in_channels)
    except (ValueError, TypeError) as e:  # the encoders' one-line messages (sizes, options, keywords)
        raise ConfigError(f"model: {e}") from None
    try:
        method = method_from_config(cfg, encoder)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"method.{cfg.method.name}: {e}") from None
    return backend.prepare(method)


def check_alpha(cfg: Config, method: Method) -> None:
    """A per-matrix ``werank.alpha`` list must have one value per regularised matrix of the built model."""
    alpha = cfg.werank.alpha
    if not cfg.werank.enabled or not isinstance(alpha, list):
        return
    names = [n for n, _ in method.named_regularised_weights(cfg.werank.include_heads)]
    if len(alpha) != len(names):
        raise ConfigError(
            f"werank.alpha has {len(alpha)} values but {method_title(cfg.method.name)} + {cfg.model.encoder} has "
            f"{len(names)} regularised matrices ({', '.join(names)}); give {len(names)} values or one float"
        )


def embed(method: Method | torch.nn.Module, data: Any, encoder: torch.nn.Module | None = None) -> Tensor:
    """Representations of ``data`` (the full graph as the backend presents it) by the frozen encoder.

    ``method`` is a :class:`~bgrl_werank.methods.Method` (its encoder is used, or ``encoder``) or
    an encoder itself."""
    if isinstance(method, Method):
        return method.embed(data, encoder)
    return Method(method).embed(data)


# Seed offset of the views that re-estimate BatchNorm statistics: a stream of its own, never the
# training generator's (evaluation must not change what a resumed run draws next).
BATCHNORM_VIEWS_SEED = 7_919


def batchnorm_views(cfg: Config, graph: Graph, count: int, backend: Backend | None = None):
    """``count`` fresh training views (as the encoder's ``(x, edge_index)`` arguments) under
    ``cfg.augment``, alternating view 1 and view 2, from a generator seeded by ``cfg.seed``
    (reproducible; independent of training's)."""
    backend = resolve_backend(cfg) if backend is None else backend
    maker = backend.view_maker(graph)
    generator = torch.Generator().manual_seed(cfg.seed + BATCHNORM_VIEWS_SEED)
    for i in range(count):
        v = cfg.augment[i % len(cfg.augment)]
        view = maker.view(v.edge_drop_p, v.feat_mask_p, generator)
        yield view.x, view.edge_index


def eval_encoder(cfg: Config, method: Method, graph: Graph, backend: Backend | None = None) -> torch.nn.Module:
    """The encoder the probe sees: the online encoder as trained (``eval.batchnorm: running``), or a
    copy of it whose BatchNorm statistics are re-estimated over ``eval.batchnorm_views`` training
    views (``views``; :func:`bgrl_werank.models.reestimate_batchnorm`). The method is never changed."""
    if cfg.eval.batchnorm == "running":
        return method.encoder
    encoder = copy.deepcopy(method.encoder)
    reestimate_batchnorm(encoder, batchnorm_views(cfg, graph, cfg.eval.batchnorm_views, backend))
    return encoder


def inference_batch_size(cfg: Config) -> int | None:
    """Nodes per batch of layer-by-layer inference (``eval.inference: layerwise``), None for one full pass."""
    return cfg.eval.inference_batch_size if cfg.eval.inference == "layerwise" else None


def probe_splits(cfg: Config, graph: Graph) -> list:
    """The probe's splits under ``cfg.eval``; raises DatasetError where the protocol does not apply.

    Cheap, so ``train.py`` calls it before training too: a protocol the dataset lacks (``preset``
    on Cora) then stops the run at once instead of after the last epoch.
    """
    from ..data import get_splits

    return get_splits(graph.data, cfg.eval.protocol, cfg.eval.num_splits, cfg.eval.split_seed)


def evaluate(cfg: Config, method: Method, graph: Graph, backend: Backend | None = None) -> dict[str, Any]:
    """Linear probe (``cfg.eval``) on the frozen encoder's representations of the full graph (one pass, or
    layer by layer with ``eval.inference: layerwise``); adds RankMe."""
    from ..eval import covariance_spectrum, linear_probe, rankme
    from ..ops import default_allocator

    backend = resolve_backend(cfg) if backend is None else backend
    with default_allocator():  # a few whole-graph blocks, given back when freed (ops.default_allocator)
        full = backend.full_graph(graph)
        z = method.embed(full, eval_encoder(cfg, method, graph, backend), inference_batch_size(cfg)).float().cpu()
        del full
        splits = probe_splits(cfg, graph)
        kwargs = {"backend": cfg.eval.backend}
        if cfg.eval.c_grid is not None:
            kwargs["c_grid"] = cfg.eval.c_grid
        result = linear_probe(z, graph.y, splits, **kwargs).to_dict()
        result["rankme"] = float(rankme(z))
        result["representation_spectrum"] = covariance_spectrum(z).tolist()
    return result


def make_optimizer(params, lr: float, weight_decay: float, name: str = "adamw") -> torch.optim.Optimizer:
    """AdamW (``adamw``, decoupled weight decay) or Adam (``adam``, weight decay added to the gradient,
    as the GRACE and CCA-SSG references use it), in PyTorch's fused single-kernel form where it has one.

    The fused CPU kernel applies the same per-element update (the same bits in our test) ~10x faster
    than the default multi-tensor one: 1.3 vs 12.8 ms per step for Coauthor CS's parameters.
    """
    params = list(params)
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[name]
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device/dtype or torch version
        return cls(params, lr=lr, weight_decay=weight_decay)


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter optimizer state tensor its parameter's memory layout (strides).

    PyTorch's fused CPU AdamW walks parameter, gradient and moments as flat memory: with a
    feature-major first weight (:func:`bgrl_werank.encoders.fast_gcn.store_feature_major`) and moments
    in row-major order, as in checkpoints written before that layout, it silently pairs the wrong
    elements (measured: updates off by up to 0.02 on a 300 × 40 weight). ``load_state_dict`` keeps
    the saved strides, so they are matched here after every load.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


# Keys under which checkpoints written before methods existed (BGRL only) kept the model's parts,
# and the prefix each has in a method's state dict now.
LEGACY_MODEL_KEYS = {"online_encoder": "encoder.", "predictor": "predictor.", "target_encoder": "target_encoder."}


def method_state(state: dict[str, Any]) -> dict[str, Tensor]:
    """The method's state dict from a checkpoint (old BGRL checkpoints: assembled from their parts)."""
    if "method" in state:
        return state["method"]
    if all(k in state for k in LEGACY_MODEL_KEYS):
        return {prefix + k: v for key, prefix in LEGACY_MODEL_KEYS.items() for k, v in state[key].items()}
    raise CheckpointError("checkpoint holds no model weights (neither 'method' nor the older BGRL keys)")


class Trainer:
    """Runs (or resumes) one pretraining run in ``run_dir``.

    Args:
        cfg: the resolved config.
        graph: the loaded graph.
        run_dir: the run folder (must exist).
        progress: show a tqdm bar (``None``: ``cfg.train.progress``, "auto" = only on a terminal).
        on_epoch_end: optional callback ``f(trainer, epoch, record)`` (tests use it to inject faults).
        backend: the :class:`~bgrl_werank.backends.Backend` (default: from ``cfg.device`` / ``cfg.backend``).
    """

    def __init__(
        self,
        cfg: Config,
        graph: Graph,
        run_dir: str | Path,
        progress: bool | None = None,
        on_epoch_end: Callable[["Trainer", int, dict], None] | None = None,
        backend: Backend | None = None,
        world: World | None = None,
    ) -> None:
        self.cfg = cfg
        # data parallelism: this process's place in a torchrun group (size 1: none), and the replicas a
        # step averages over (torchrun's processes, or train.replicas emulated here)
        self.world = World() if world is None else world
        self.replicas = self.world.size if self.world.distributed else int(cfg.train.replicas)
        self.graph = graph
        self.run_dir = Path(run_dir)
        self.backend = resolve_backend(cfg) if backend is None else backend
        self.device = self.backend.device
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(cfg.seed)
        self.method = build_method(cfg, graph.x.size(1), self.backend)
        check_alpha(cfg, self.method)
        o = cfg.optim
        self.optimizer = make_optimizer(self.method.trainable_parameters(), o.lr, o.weight_decay, o.optimizer)
        # the view generators of the replicas this process computes (one, or all when emulating);
        # replica 0's is seeded with the run's seed, as a one-process run's always was
        mine = [self.world.rank] if self.world.distributed else list(range(self.replicas))
        self.generators = [dist_.replica_generator(cfg.seed, r) for r in mine]
        self.generator = self.generators[0]
        if hasattr(self.method, "generator"):  # e.g. GRACE's sampled negatives draw from the run's stream
            self.method.generator = self.generator
        # the whole graph's view maker and encoder input, built when first used: under subgraph
        # batching training never needs them (each batch has its own), and on a large graph each
        # holds several copies of the edge list (at 10⁷ nodes and 10⁸ edges, gigabytes)
        self._whole_views: Any = None
        self._full_graph: Any = None
        # train.batching: subgraph: the batches and their own generator (bgrl_werank/sampling.py); None: full batch
        self.batches = None
        if cfg.train.batching == "subgraph":
            from ..sampling import SubgraphBatches

            self.batches = SubgraphBatches(graph.x, graph.edge_index, cfg.train, len(cfg.model.layer_sizes), cfg.seed,
                                           self.replicas)
        self.penalty: Callable[..., Tensor] = werank_penalty
        # under torchrun: DistributedDataParallel around the step's loss (its construction broadcasts
        # rank 0's parameters and buffers, so every process starts from the same weights)
        self.ddp = None
        if self.world.distributed:
            step_loss = dist_.StepLoss(self.method, (lambda w, a: self.penalty(w, a)) if cfg.werank.enabled else None,
                                       cfg.werank.include_heads, cfg.werank.alpha)
            self.ddp = dist_.wrap(step_loss, self.device)
        self._heap_decided = self.device.type != "cpu"  # keep activation memory in the heap? decided after the first step
        self.epoch = 0  # number of finished epochs
        self.saved_epoch: int | None = None  # the epoch of the checkpoint on disk, if this trainer wrote or read one
        self._taken_over: tuple[str, int] | None = None  # (run folder, epoch) of the last take_over_run_dir
        self.on_epoch_end = on_epoch_end
        mode = cfg.train.progress
        self.progress = progress if progress is not None else (mode == "bar" or (mode == "auto" and sys.stderr.isatty()))
        self._stop_signal: str | None = None  # the signal training acts on (under torchrun: agreed by all ranks)
        self._signal_seen: str | None = None  # the signal this process received

    @property
    def model(self) -> Method:
        """The method (the name ``model`` is kept for code written when it was always BGRL)."""
        return self.method

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        state = {
            "epoch": self.epoch,
            "config": to_dict(self.cfg),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator_state": self.generator.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "in_channels": self.graph.x.size(1),
        }
        if self.device.type == "cuda":
            state["cuda_rng_state"] = torch.cuda.get_rng_state(self.device)
        if self.batches is not None:
            state["sampler_state"] = self.batches.generator.get_state()
        if self.replicas > 1:  # every replica's view stream (under torchrun gathered from the processes: a collective)
            state["replicas"] = self.replicas
            if self.world.distributed:
                mine = {"generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}
                if self.device.type == "cuda":
                    mine["cuda_rng"] = torch.cuda.get_rng_state(self.device)
                ranks = dist_.all_gather_object(mine, self.world)
                state["replica_generators"] = [r["generator"] for r in ranks]
                state["rank_rng_states"] = [{k: v for k, v in r.items() if k != "generator"} for r in ranks]
            else:
                state["replica_generators"] = [g.get_state() for g in self.generators]
        return state

    def load_state_dict(self, state: dict[str, Any], training: bool = True) -> None:
        """Load a checkpoint. ``training``: it is to be trained on, so its number of data-parallel
        replicas must be this run's (eval.py loads the weights of any)."""
        saved_replicas = int(state.get("replicas", 1))
        if training and saved_replicas != self.replicas:
            now = (f"{self.replicas} torchrun processes" if self.world.distributed
                   else f"{self.replicas} replica{'s' if self.replicas > 1 else ''}")
            raise CheckpointError(
                f"checkpoint was trained by {saved_replicas} data-parallel replica(s) and this run has {now}; resume it "
                f"with torchrun --nproc-per-node {saved_replicas} ... train.py --resume (or as it was started)")
        try:
            self.method.load_state_dict(method_state(state))
            self.optimizer.load_state_dict(state["optimizer"])
            match_state_layouts(self.optimizer)
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint does not match this config's architecture: {first[:200]}") from None
        if training and saved_replicas > 1:
            streams = state["replica_generators"]
            if self.world.distributed:
                self.generator.set_state(streams[self.world.rank])
            else:
                for g, s in zip(self.generators, streams):
                    g.set_state(s)
        else:
            self.generator.set_state(state["generator_state"])
        if self.batches is not None:
            if "sampler_state" not in state:
                raise CheckpointError("checkpoint has no sampler state (it was trained with train.batching=full); "
                                      "resume it with train.batching=full")
            self.batches.generator.set_state(state["sampler_state"])
        torch.set_rng_state(state["torch_rng_state"])
        if self.device.type == "cuda" and "cuda_rng_state" in state:
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.device)
        if training and self.world.distributed and "rank_rng_states" in state:
            mine = state["rank_rng_states"][self.world.rank]
            torch.set_rng_state(mine["torch_rng"])
            if self.device.type == "cuda" and "cuda_rng" in mine:
                torch.cuda.set_rng_state(mine["cuda_rng"], self.device)
        self.epoch = int(state["epoch"])
        self.saved_epoch = self.epoch

    def save(self) -> None:
        """Write the checkpoint (under torchrun every rank calls this, rank 0 alone writes)."""
        if not _all_finite(self.method.parameters()):
            raise TrainingError(f"non-finite weights after epoch {self.epoch}; not writing them over the last good checkpoint")
        state = self.state_dict()
        if not self.world.is_main:
            self.saved_epoch = self.epoch
            return
        try:
            save_checkpoint(state, self.run_dir / "checkpoint.pt")
        except DiskFullError as e:
            raise TrainingError(self._disk_full(f"writing the checkpoint of epoch {self.epoch}", e)) from None
        self.saved_epoch = self.epoch

    def resume(self) -> None:
        self.load_state_dict(load_checkpoint(self.run_dir / "checkpoint.pt"))

    # ---------------------------------------------------------------- one epoch
    def make_views(self) -> list[Any]:
        """This epoch's two augmented views, drawn from ``self.generator``."""
        return [self.views.view(v.edge_drop_p, v.feat_mask_p, self.generator) for v in self.cfg.augment]

    @staticmethod
    def _check_finite(name: str, term: Tensor, where: str) -> None:
        if not torch.isfinite(term):
            raise TrainingError(
                f"non-finite {name} ({float(term.detach())}) at {where}; the last good checkpoint is kept — "
                f"lower optim.lr or werank.alpha"
            )

    @property
    def views(self) -> Any:
        """The backend's view maker of the whole graph (full-batch training's views)."""
        if self._whole_views is None:
            self._whole_views = self.backend.view_maker(self.graph)
        return self._whole_views

    @property
    def full_graph(self) -> Any:
        """The un-augmented whole graph as the encoder reads it (rank diagnostics, benchmarks)."""
        if self._full_graph is None:
            self._full_graph = self.backend.full_graph(self.graph)
        return self._full_graph

    def step(self, epoch: int) -> dict[str, float]:
        """One training step (epoch ``epoch``, 0-based); returns the record logged for it."""
        if self._heap_decided:
            return self._step(epoch)
        # the first step runs on the default allocator and measures its footprint; keeping freed
        # memory in the heap afterwards (faster, but fragmenting) is then decided on that (ops.py)
        before = rss_bytes()
        record = self._step(epoch)
        peak = rss_bytes(peak=True)
        keep_heap_if_room(None if before is None or peak is None else max(0, peak - before))
        self._heap_decided = True
        return record

    def _step(self, epoch: int) -> dict[str, float]:
        if self.batches is not None:
            return self._batched_epoch(epoch)
        cfg = self.cfg
        t0 = time.perf_counter()
        terms, ssl, reg, lr, logged = self._train_step(epoch, cfg.train.epochs, cfg.optim.warmup_epochs, self.views, None,
                                                       f"epoch {epoch + 1}")
        record = {"epoch": epoch + 1, "loss": float(ssl + reg), "ssl_loss": float(ssl)}
        record.update({f"ssl_{k}": float(v) for k, v in terms.items() if k != "loss"})
        record.update({"werank": float(reg), "lr": lr, **logged, "epoch_time_s": time.perf_counter() - t0})
        return record

    def _batched_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of ``train.batching: subgraph``: a step on each group of :attr:`replicas` batches
        (:mod:`bgrl_werank.sampling`); the record holds the means over the batches (under torchrun over
        every process's) of the loss and its terms, and the last step's learning rate and end-of-step values."""
        cfg = self.cfg
        t0 = time.perf_counter()
        nb = self.batches.num_batches
        steps = nb // self.replicas
        total, warmup = cfg.train.epochs * steps, cfg.optim.warmup_epochs * steps
        sums: dict[str, float] = {}
        lr, logged = 0.0, {}
        part = (self.world.rank, self.world.size) if self.world.distributed else None
        group: list[tuple[Any, Tensor | None]] = []
        per_step = len(self.generators)  # batches this process computes per step
        for i, batch in enumerate(self.batches.epoch(part)):
            sums["batch_nodes"] = sums.get("batch_nodes", 0.0) + batch.num_nodes
            sums["batch_edges"] = sums.get("batch_edges", 0.0) + batch.edge_index.size(1)
            with record_function("views"):
                group.append((self.backend.view_maker(batch), batch.loss_nodes))
            if len(group) < per_step:
                continue
            g = i // per_step
            first = g * self.replicas + (self.world.rank if self.world.distributed else 0)
            where = (f"epoch {epoch + 1} (batch {first + 1} of {nb})" if per_step == 1
                     else f"epoch {epoch + 1} (batches {first + 1}-{first + per_step} of {nb})")
            if per_step == 1:
                terms, _, reg, lr, logged = self._train_step(epoch * steps + g, total, warmup, *group[0], where)
                per = [terms]
            else:
                per, reg, lr, logged = self._replicas_step(epoch * steps + g, total, warmup, group, where)
            group = []
            for terms in per:
                ssl = terms["loss"]
                values = {"loss": float(ssl + reg), "ssl_loss": float(ssl), "werank": float(reg)}
                values.update({f"ssl_{k}": float(v) for k, v in terms.items() if k != "loss"})
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
        if self.world.distributed:  # the sums over every process's batches, and whether any process was signalled
            keys = sorted(sums)
            reduced = dist_.all_sum([sums[k] for k in keys] + [1.0 if self._signal_seen else 0.0], self.device)
            sums = dict(zip(keys, reduced[:-1]))
            if reduced[-1] > 0:
                self._stop_signal = self._signal_seen or "SIGTERM"
        record = {"epoch": epoch + 1, "loss": sums["loss"] / nb, "ssl_loss": sums["ssl_loss"] / nb}
        record.update({k: v / nb for k, v in sums.items() if k.startswith("ssl_") and k != "ssl_loss"})
        # the sampled subgraphs' mean size: what a step computes on (with 1 hop around random seeds, up
        # to (1 + degree) x batch_size nodes, so an epoch computes on more nodes than the graph has)
        record.update({"werank": sums["werank"] / nb, "lr": lr, **logged, "batches": nb,
                       "batch_nodes_mean": sums["batch_nodes"] / nb, "batch_edges_mean": sums["batch_edges"] / nb,
                       "epoch_time_s": time.perf_counter() - t0})
        if self.replicas > 1:
            record["replicas"] = self.replicas
        return record

    def _views(self, maker: Any, loss_nodes: Tensor | None, generator: torch.Generator) -> tuple[Any, Any]:
        cfg = self.cfg
        with record_function("views"):  # scopes named for benchmarks/bench_epoch.py --profile
            view1, view2 = [maker.view(v.edge_drop_p, v.feat_mask_p, generator) for v in cfg.augment]
        if loss_nodes is not None:
            view1, view2 = BatchView(view1.x, view1.edge_index, loss_nodes), BatchView(view2.x, view2.edge_index, loss_nodes)
        return view1, view2

    def _train_step(self, step: int, total: int, warmup: int, maker: Any, loss_nodes: Tensor | None, where: str):
        """One optimizer step on two views from ``maker`` (their loss on ``loss_nodes``, None: all rows):
        step ``step`` (0-based) of ``total``, for the learning rate and the method's end-of-step work
        (under torchrun: this process's batch of the step, gradients averaged over the processes).
        Returns (terms, ssl loss, WERank penalty, learning rate, end-of-step values)."""
        per, reg, lr, logged = self._replicas_step(step, total, warmup, [(maker, loss_nodes)], where)
        return per[0], per[0]["loss"], reg, lr, logged

    def _replicas_step(self, step: int, total: int, warmup: int, batches: list[tuple[Any, Tensor | None]], where: str):
        """One optimizer step: step ``step`` (0-based) of ``total``, for the learning rate and the method's
        end-of-step work. ``batches``: ``(view maker, loss rows or None for all)`` per replica this process
        computes (one, or all of them when emulating ``train.replicas``); replica j's two views come from
        its generator. Returns (per-batch detached terms, WERank penalty, learning rate, end-of-step values)."""
        cfg = self.cfg
        o = cfg.optim
        lr = learning_rate(o.schedule, step, total, warmup, o.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        method = self.method
        method.train()
        self.optimizer.zero_grad(set_to_none=True)
        name = f"{method_title(cfg.method.name)} loss"
        if self.ddp is not None:
            # one forward and one backward of loss + penalty through DDP, which averages the gradients
            view1, view2 = self._views(*batches[0], self.generator)
            terms, reg = self.ddp(view1, view2)
            self._check_finite(name, terms["loss"], where)
            self._check_finite("WERank penalty", reg, where)
            (terms["loss"] + reg).backward()
            per, reg = [{k: v.detach() for k, v in terms.items()}], reg.detach()
        else:
            per = []
            emulate = len(batches) > 1
            before = BufferSnapshot(method) if emulate else None
            after_first = None
            for j, ((maker, loss_nodes), generator) in enumerate(zip(batches, self.generators)):
                if j > 0:  # as DDP broadcasts rank 0's buffers before each process's forward
                    before.restore()
                if hasattr(method, "generator"):
                    method.generator = generator
                terms = method.backward(*self._views(maker, loss_nodes, generator))
                self._check_finite(name, terms["loss"], where)
                per.append(terms)
                if emulate and j == 0:
                    after_first = BufferSnapshot(method)
            if emulate:  # rank 0's buffers, the mean of the replicas' gradients
                after_first.restore()
                if hasattr(method, "generator"):
                    method.generator = self.generator
                for p in method.trainable_parameters():
                    if p.grad is not None:
                        p.grad.div_(len(batches))
            if cfg.werank.enabled:
                reg = self.penalty(method.regularised_weights(cfg.werank.include_heads), cfg.werank.alpha)
                self._check_finite("WERank penalty", reg, where)
                if reg.requires_grad:
                    reg.backward()
                reg = reg.detach()
            else:
                reg = per[0]["loss"].new_zeros(())
        self.optimizer.step()
        with record_function("EMA update"):  # the method's end-of-step work (BGRL: EMA; others: none)
            logged = method.step_end(step, total)
        return per, reg, lr, logged

    # ---------------------------------------------------------------- the loop
    def _handle_signal(self, signum, _frame) -> None:
        self._signal_seen = signal.Signals(signum).name
        if not self.world.distributed:  # under torchrun the ranks agree at the epoch's end (_batched_epoch)
            self._stop_signal = self._signal_seen

    def fit(self) -> None:
        """Train from ``self.epoch`` to ``cfg.train.epochs``, checkpointing and logging as configured.

        The run folder is claimed first (:func:`bgrl_werank.rundir.claim`: a second live writer is
        refused) and taken over (:meth:`take_over_run_dir`: dead writers' temporaries removed, the
        logs cut back to the state this run continues from); under torchrun only rank 0 does that and
        writes, the other ranks train and take part in the collectives. SIGINT and SIGTERM
        finish the current epoch, write a checkpoint and raise :class:`Interrupted`; a signal that
        arrives during the last epoch is left in :attr:`stop_signal` for the caller.
        """
        cfg = self.cfg
        total = cfg.train.epochs
        main = self.world.is_main
        with claim(self.run_dir) if main else contextlib.nullcontext():
            if main:
                self.take_over_run_dir()
            old_handlers = {}
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    old_handlers[sig] = signal.signal(sig, self._handle_signal)
            except ValueError:  # not the main thread: no signal handling
                old_handlers = {}
            bar = tqdm(total=total, initial=self.epoch, disable=not (self.progress and main), desc=f"{cfg.data.name}",
                       unit="ep", dynamic_ncols=True)
            metrics = spectra = None
            try:
                if main:
                    metrics = JsonlAppender(self.run_dir / "metrics.jsonl")
                    spectra = JsonlAppender(self.run_dir / "spectra.jsonl") if cfg.diagnostics.every > 0 else None
                for epoch in range(self.epoch, total):
                    record = self._epoch(epoch, total, metrics, spectra)
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", werank=f"{record['werank']:.3f}", refresh=False)
                    if self._stop_signal and self.epoch < total:
                        raise Interrupted(self.epoch, self._stop_signal)
                if self.world.distributed:  # rank 0's BatchNorm statistics everywhere (each rank's last batch changed its own)
                    dist_.broadcast_buffers(self.method)
            except OSError as e:
                if not is_disk_full(e):
                    raise
                raise TrainingError(self._disk_full(f"appending to {Path(e.filename or 'metrics.jsonl').name}", None)) from None
            finally:
                bar.close()
                for log in (metrics, spectra):
                    if log is not None:
                        log.close()
                for sig, handler in old_handlers.items():
                    signal.signal(sig, handler)

    def _epoch(self, epoch: int, total: int, metrics: JsonlAppender | None, spectra: JsonlAppender | None) -> dict[str, Any]:
        cfg = self.cfg
        record = self.step(epoch)
        self.epoch = epoch + 1
        if not self.world.is_main:  # a rank other than 0 under torchrun: it writes nothing, but checkpoints are collectives
            if self.on_epoch_end is not None:
                self.on_epoch_end(self, self.epoch, record)
            if self.epoch % cfg.checkpoint.every == 0 or self.epoch == total or self._stop_signal:
                self.save()
            return record
        every = cfg.diagnostics.every
        if every > 0 and (self.epoch % every == 0 or self.epoch == total or self.epoch == 1):
            t_diag = time.perf_counter()
            scalars, spec = diagnostics.collect(self.method, self.full_graph, cfg.diagnostics.rel_threshold,
                                                inference_batch_size(cfg))
            spectra.write({"epoch": self.epoch, **spec})
            record.update(scalars, diagnostics_time_s=time.perf_counter() - t_diag)
        if self.epoch % cfg.train.log_every == 0 or self.epoch == total or "rankme" in record:
            metrics.write(record)
        if self.on_epoch_end is not None:
            self.on_epoch_end(self, self.epoch, record)
        if self.epoch % cfg.checkpoint.every == 0 or self.epoch == total or self._stop_signal:
            self.save()
        return record

    def take_over_run_dir(self) -> list[str]:
        """:func:`bgrl_werank.rundir.take_over` of the run folder at this trainer's epoch, once (the
        CLI does it before it writes anything, then :meth:`fit` finds it done); returns what it dropped."""
        key = (str(self.run_dir.resolve()), self.epoch)
        if self._taken_over == key:
            return []
        dropped = take_over(self.run_dir, self.epoch)
        self._taken_over = key
        return dropped

    @property
    def stop_signal(self) -> str | None:
        """The name of a SIGINT/SIGTERM that arrived during :meth:`fit`, else None."""
        return self._stop_signal

    def _disk_full(self, what: str, err: DiskFullError | None) -> str:
        need = ""
        if err is not None and err.needed is not None:
            short = err.needed - (err.free or 0)
            need = f" (it needs about {human_bytes(err.needed)}, {human_bytes(err.free)} free)"
            free_hint = f"free at least {human_bytes(max(short, 0) * 1.1 + 65536)} there"
        else:
            free_hint = "free some space there"
        kept = (f"the last good checkpoint (epoch {self.saved_epoch}) is kept" if self.saved_epoch is not None
                else "no checkpoint was written yet")
        return (f"no space left on the device of run folder '{self.run_dir}' while {what}{need}; {kept}: {free_hint}, "
                f"then resume with: python train.py --resume {shlex.quote(str(self.run_dir))}")


def checkpoint_is_finished(state: dict[str, Any]) -> bool:
    return int(state["epoch"]) >= int(state["config"]["train"]["epochs"])

