"""Epoch-time benchmark of BGRL (+ WERank) pretraining, next to the arithmetic floor of each step.

Every mode trains through :class:`bgrl_werank.train.trainer.Trainer` on the backend the run config
names (``backend: auto`` — the ``fast`` CPU backend for BGRL's GCN encoder — unless a mode sets it).

Modes (each measurement runs in its own subprocess, so peak memory is per configuration):

* default — the shipped configs of Cora, Amazon Photo and Coauthor CS, WERank on and off: seconds per
  epoch (median, min, max over ``--epochs`` epochs after ``--warmup``), peak RSS, the step's
  multiply-adds and its floor, WERank's own time next to the matmul that forms its largest Gram
  matrix, and the torch linear probe's time and accuracy (20 random splits) on the model's
  embeddings after those epochs. Last, one more step records every operation it runs, and each is
  replayed alone (:func:`_parts_alone`): a floor for the step as it is built; with
  WERank on, ≥ 20 steps (about 10 s) before that switch it on and off (:func:`_werank_in_step`)
  to measure what it adds to a step.
* ``--probe`` — the linear probe on Cora's and Photo's benchmark embeddings (WERank on, after the
  same epochs): torch backend vs scikit-learn at its default tol and run to convergence.
* ``--scaling`` — synthetic CSBM graphs of 10⁴, 10⁵, 10⁶ nodes (average degree 10, 500 sparse binary
  features with 10 ones per node, layers 256-128, predictor 256, WERank on), full batch.
* ``--profile`` — where one step's time goes (shipped configs, WERank on): torch.profiler over 10
  steps after the timed ones, each operator's own time given to the product it is or the part of
  the model it runs in (:data:`PROFILE_OPERATORS`, :data:`PROFILE_SCOPES`).
* ``--compare-plain`` — BGRL on Cora trained on the ``fast`` backend and on the ``plain`` one
  (``backend=plain``: the stock PyG encoder of :func:`bgrl_werank.encoders.build` and plain views,
  the yardstick the fast backend is tested against) from the same seeds: seconds per epoch and
  public-split accuracy of both.
* ``--kernels-ab`` — the shipped configs (WERank on) with and without the compiled kernels, steps
  alternating in one process (:func:`run_kernels_ab`).
* ``--against REV`` — this working tree against another revision of the project (checked out in a
  temporary git worktree), the same configs, ``--rounds`` processes of each, interleaved
  (:func:`run_against`: both run this file's worker, the other tree's package on its own config
  files; revisions from before the methods redesign, 7035b16, included). Machines of this kind
  change speed from hour to hour; only an interleaved comparison shows what a change to the code gained.
* ``--methods [METHOD …]`` — seconds per epoch of each method's Cora config (``configs/cora.yaml``,
  ``configs/cora-grace.yaml``, ``-gbt``, ``-cca_ssg``, ``-vicreg``) as shipped, with the backend each
  ran on, ``--rounds`` rounds of one process per method, the order rotating (:func:`run_methods`).

The floor counts every multiply-add of a step (two online passes forward and backward, two target
passes forward; sparse products at their non-zeros; WERank's Gram matrices and their gradients when
on) and divides 2× that by this machine's measured float32 GEMM rate (a 2048³ matmul at the same
thread count, the faster of MKL and oneDNN, the faster of a measurement before and one after
the timed epochs), and by the 220 GFLOP/s the performance issue assumed.

Every result is one JSON line on stdout, also appended to ``--out`` (default
``benchmarks/results/<mode>.jsonl``); ``--markdown`` prints the README tables from those files and
``--update docs/performance.md`` pastes them between ``<!-- perf:begin -->`` and ``<!-- perf:end -->``.

Usage::

    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_epoch
    python -m benchmarks.bench_epoch --scaling
    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_epoch --profile
    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_epoch --compare-plain
    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_epoch --against 4b06ec7 --rounds 8
    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_epoch --methods
    python -m benchmarks.bench_epoch --markdown --update docs/performance.md
"""

from __future__ import annotations

import bgrl_werank  # noqa: F401  (first: sets THP_MEM_ALLOC_ENABLE before torch starts)

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ASSUMED_GFLOPS = 220.0  # the performance issue's figure for this machine class
DATASETS = ("cora", "amazon-photo", "coauthor-cs")
SCALING_NODES = (10_000, 100_000, 1_000_000)
# issue 5's targets (s/epoch with WERank on; reference implementation's s/epoch on the same machine class)
TARGET_S = {"cora": 0.10, "amazon-photo": 0.40, "coauthor-cs": 0.80}
REFERENCE_S = {"cora": (0.34, 0.43), "amazon-photo": (2.5, 2.5), "coauthor-cs": (7.9, 7.9)}
TARGET_CS_MB = 1.5 * 1024


# --------------------------------------------------------------------------------------------------
# measurements inside one process
# --------------------------------------------------------------------------------------------------


def _hwm_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), MB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one untimed call."""
    return _replay_seconds(lambda: fn, repeats)


def _alternating_steps(trainer, first_epoch: int, pairs: int, switch) -> tuple[float, float]:
    """Median step time with ``switch(True)`` and with ``switch(False)``, over ``pairs`` steps each.

    The steps alternate in the order on, off, off, on, … (a slow drift of the machine weighs on both
    alike); ``switch(True)`` is called at the end whatever happens. Between processes this VM's
    medians differ by more than the few per cent such a switch changes; step by step in one process
    they do not. It trains ``2 × pairs`` more steps.
    """
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for i in range(2 * pairs):
            on = (i % 4) in (0, 3)
            switch(on)
            t = time.perf_counter()
            trainer.step(first_epoch + i)
            times[on].append(time.perf_counter() - t)
    finally:
        switch(True)
    return statistics.median(times[True]), statistics.median(times[False])


def _pairs_for(step_s: float, at_least: int, seconds: float = 10.0) -> int:
    """Pairs of steps for :func:`_alternating_steps`: at least ``at_least``, about ``seconds`` in all."""
    return max(at_least, min(200, int(seconds / (2 * step_s))))


def gemm_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Float32 GEMM rates of this machine at the current thread count (median of ``repeats``).

    ``mkl``: torch's own ``a @ b``; ``onednn``: the product the fast path uses
    (:func:`bgrl_werank.ops.matmul_nt`, absent in older trees). The floor is taken at the faster.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    products = {"mkl": lambda: a @ b}
    try:
        from bgrl_werank.ops import matmul_nt, onednn_matmul_enabled

        if onednn_matmul_enabled():
            bt = b.t().contiguous()
            products["onednn"] = lambda: matmul_nt(a, bt)
    except ImportError:
        pass
    return {name: 2 * n**3 / _median_seconds(fn, repeats) / 1e9 for name, fn in products.items()}


# --------------------------------------------------------------------------------------------------
# the package's API, as this tree and older ones spell it
# --------------------------------------------------------------------------------------------------
# ``--against`` runs this file's worker code on another revision's package. Since 7035b16 a run is a
# method (``trainer.method``: ``regularised_weights(include_heads)``, ``embed(full_graph)``) and
# BGRL's settings sit under ``method.bgrl``; before it (4b06ec7 and older) the trainer module had
# ``regularised_weights(model, include_predictor)`` and ``embed(model, graph)`` and the config
# ``model.predictor_hidden``. These helpers read whichever the running package has.


def method_name(cfg) -> str:
    """The run's method (``bgrl`` in trees from before methods existed)."""
    method = getattr(cfg, "method", None)
    return getattr(method, "name", "bgrl") if method is not None else "bgrl"


def predictor_hidden(cfg) -> int | None:
    """BGRL's predictor width (``method.bgrl.predictor_hidden``, formerly ``model.predictor_hidden``);
    None for a method without that predictor."""
    if method_name(cfg) != "bgrl":
        return None
    bgrl = getattr(getattr(cfg, "method", None), "bgrl", None)
    return bgrl.predictor_hidden if bgrl is not None else cfg.model.predictor_hidden


def include_heads(cfg) -> bool:
    """Whether WERank also acts on the method's heads (``werank.include_heads``, formerly ``include_predictor``)."""
    w = cfg.werank
    return bool(w.include_heads if hasattr(w, "include_heads") else w.include_predictor)


def encoder_summary(cfg) -> str:
    """The encoder in words, e.g. ``gcn 512-256, batch norm, prelu`` (BGRL's before 7035b16)."""
    m = cfg.model
    norm = getattr(m, "norm", "batch")
    norm = "no norm" if norm == "none" else f"{norm} norm"
    text = f"{getattr(m, 'encoder', 'gcn')} {'-'.join(map(str, m.layer_sizes))}, {norm}, {getattr(m, 'activation', 'prelu')}"
    return text if getattr(m, "last_activation", True) else text + " (none after the last layer)"


def trainer_method(trainer):
    """The trained method (``trainer.method``; ``trainer.model``, always BGRL, in older trees)."""
    method = getattr(trainer, "method", None)
    return trainer.model if method is None else method


def trainer_weights(trainer) -> list[torch.Tensor]:
    """The matrices WERank acts on in this run."""
    method = trainer_method(trainer)
    if hasattr(method, "regularised_weights"):
        return method.regularised_weights(include_heads(trainer.cfg))
    from bgrl_werank.train.trainer import regularised_weights  # before 7035b16

    return regularised_weights(trainer.model, include_heads(trainer.cfg))


def trainer_embeddings(trainer) -> torch.Tensor:
    """The frozen online encoder's representations of the full graph."""
    if hasattr(trainer, "full_graph"):
        return trainer_method(trainer).embed(trainer.full_graph).float().cpu()
    from bgrl_werank.train.trainer import embed  # before 7035b16

    return embed(trainer.model, trainer.graph)


def trainer_backend(trainer) -> str:
    """The backend the run trains on (``fast`` in trees from before backends existed)."""
    backend = getattr(trainer, "backend", None)
    return getattr(backend, "name", "fast") if backend is not None else "fast"


def step_macs(graph, cfg) -> dict[str, float]:
    """Multiply-adds of one training step (see the module docstring), split by part."""
    n = graph.num_nodes
    x = graph.x
    f = x.size(1)
    x_nnz = x._nnz() if x.layout == torch.sparse_csr else None
    sizes = list(cfg.model.layer_sizes)
    hidden = predictor_hidden(cfg)
    if hidden is None:
        raise ValueError(f"step_macs counts BGRL's step only, not {method_name(cfg)}'s")
    e = graph.edge_index.size(1)
    adj_nnz = [e * (1 - v.edge_drop_p) + n for v in cfg.augment]  # expected kept edges + self-loops
    encoder_fwd, encoder_bwd = [], []
    dense = 0.0  # the part done by dense matrix products (not the sparse first layer, not Â·H)
    for nnz_a in adj_nnz:
        fwd = bwd = 0.0
        d_in = f
        for i, d in enumerate(sizes):
            lin = (x_nnz if x_nnz is not None else n * f) * d if i == 0 else n * d_in * d
            fwd += lin + nnz_a * d
            bwd += lin + nnz_a * d + (lin if i > 0 else 0)  # weight grad, propagation, input grad
            if i > 0 or x_nnz is None:
                dense += 2 * lin + lin + (lin if i > 0 else 0)  # online and target forward, online backward
            d_in = d
        encoder_fwd.append(fwd)
        encoder_bwd.append(bwd)
    pred = 2 * n * sizes[-1] * hidden
    online = sum(encoder_fwd) + sum(encoder_bwd) + 2 * (pred + 2 * pred)
    target = sum(encoder_fwd)
    dense += 2 * (pred + 2 * pred)
    werank = 0.0
    if cfg.werank.enabled:
        shapes = list(zip([f, *sizes[:-1]], sizes))
        if include_heads(cfg):
            shapes += [(sizes[-1], hidden), (hidden, sizes[-1])]
        werank = sum(2 * min(i, o) ** 2 * max(i, o) for i, o in shapes)  # Gram + closed-form gradient
    return {"online": online, "target": target, "werank": werank, "total": online + target + werank,
            "dense": dense + werank}


def _werank_times(trainer) -> dict[str, float]:
    """Median seconds of WERank's forward+backward alone, and of its largest Gram matmul alone."""
    from bgrl_werank import werank_penalty

    cfg = trainer.cfg
    weights = trainer_weights(trainer)

    def penalty():
        loss = werank_penalty(weights, cfg.werank.alpha)
        grads = torch.autograd.grad(loss, weights)
        return grads

    # its floor is one product forming that Gram from a row-major copy (the best single product:
    # oneDNN on the feature-major first weight's strided view runs ~1.5x slower)
    big = max(weights, key=lambda w: min(w.shape) ** 2 * max(w.shape)).detach().contiguous()
    try:  # the product WERank itself uses (oneDNN where enabled)
        from bgrl_werank.ops import matmul_nt
    except ImportError:  # an older tree (--against)
        def matmul_nt(a, b):
            return a @ b.T

    def gram():
        return matmul_nt(big, big) if big.shape[0] <= big.shape[1] else matmul_nt(big.T, big.T)

    return {"werank_s": _median_seconds(penalty, 10), "largest_gram_matmul_s": _median_seconds(gram, 10),
            "largest_gram_shape": list(big.shape)}


# The dispatcher's names for the dense matrix products a step can run: the oneDNN forward products and
# input gradients (bgrl_werank.ops.matmul_nt), MKL's weight gradients and WERank's blocks (mm), and the
# stock paths where oneDNN is off (addmm, mm); bmm for completeness.
DENSE_PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "mkldnn::_linear_pointwise")


def _product_macs(name: str, args) -> int:
    """Multiply-adds of one recorded dense product (``name`` from :data:`DENSE_PRODUCT_OPS`)."""
    if name == "mkldnn::_linear_pointwise":  # x (…, K) times weight (M, K)ᵀ
        x, w = args[0], args[1]
        return x.numel() * w.shape[0]
    a, b = (args[1], args[2]) if name == "aten::addmm" else (args[0], args[1])
    return a.numel() * b.shape[-1]  # (m, k)·(k, n), or batched (b, m, k)·(b, k, n)


class _StepRecorder(TorchDispatchMode):
    """Records every operator a step runs below autograd, forward and backward passes alike.

    A dispatch mode sees each operator where it is executed, whatever called it (our autograd
    functions, autograd's own formulas and gradient accumulation, WERank's Gram blocks, the
    optimizer), with the operands it ran on. Dense products go to ``calls["dense"]``, everything
    else to ``calls["other"]``; while :attr:`inside` is set (a wrapped call, recorded as a whole),
    nothing is recorded.
    """

    def __init__(self, calls: dict[str, list]) -> None:
        super().__init__()
        self.calls = calls
        self.inside = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.inside:
            self.calls["dense" if func._schema.name in DENSE_PRODUCT_OPS else "other"].append((func, args, kwargs))
        return func(*args, **kwargs)


def _written(func, args, kwargs) -> list[tuple[str | int, object]]:
    """(position or name, value) of the arguments ``func`` writes to, by its schema."""
    out = []
    for i, a in enumerate(func._schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write:
            if a.name in kwargs:
                out.append((a.name, kwargs[a.name]))
            elif i < len(args):
                out.append((i, args[i]))
    return out


def _replayable(func, args, kwargs):
    """A maker of calls of ``func`` that can run again and again: each call gets fresh copies of the tensors it writes.

    Without this, replaying an in-place operator (the optimizer's update, a gradient accumulation)
    would change the model's state a few times more; with it, only the copies change. The copies
    are made when the call is made, outside the timer (:func:`_replay_seconds`).
    """
    written = _written(func, args, kwargs)
    if not written:
        call = functools.partial(func, *args, **kwargs)
        return lambda: call

    def fresh(v):
        if isinstance(v, torch.Tensor):
            return v.clone() if v.layout == torch.strided else v
        if isinstance(v, (list, tuple)):
            return type(v)(fresh(x) for x in v)
        return v

    def make():
        a, k = list(args), dict(kwargs)
        for where, v in written:
            if isinstance(where, int):
                a[where] = fresh(v)
            else:
                k[where] = fresh(v)
        return functools.partial(func, *a, **k)

    return make


def _replay_seconds(make, repeats: int) -> float:
    """Median wall time of ``make()()`` over ``repeats`` calls after one untimed call; ``make()`` is not timed.

    The one timing loop of this module: :func:`_median_seconds` times a fixed call through it, the
    floor's replays (:func:`_replayable`) a fresh call each time.
    """
    times = []
    for i in range(repeats + 1):
        call = make()
        t = time.perf_counter()
        call()
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _parts_alone(trainer, epoch: int, repeats: int = 5) -> dict[str, object]:
    """Seconds per step that each kind of the step's own operations takes alone.

    Runs one more training step under :class:`_StepRecorder`, with :func:`bgrl_werank.ops.csr_matmul`
    and the compiled kernels wrapped to record each call (and not the operators inside it), then
    replays every recorded call by itself (median of ``repeats``) and sums per part: the dense
    products (at their own shapes and layouts, which is why their rate is below the 2048³ GEMM's),
    the sparse products, the BatchNorm+PReLU kernel, and every other operation (elementwise passes,
    reductions, copies, the views' draws and the other kernels, the optimizer). This is a floor for
    the step as it is built: what the step's operations cost, each at its own isolated speed, with
    nothing for autograd's and Python's work between them. Each replay pays one call from Python,
    as in the step. The column-blocked product's block products count as sparse, its copies as
    other. Runs last (it trains a step, and the replays draw from the trainer's generator).
    """
    from bgrl_werank import kernels, ops

    calls: dict[str, list] = {"dense": [], "sparse": [], "kernel": [], "other": []}
    recorder = _StepRecorder(calls)

    def recording(part, fn):
        def wrapper(*args, **kwargs):
            calls[part].append((fn, args, kwargs))
            recorder.inside += 1
            try:
                return fn(*args, **kwargs)
            finally:
                recorder.inside -= 1
        return wrapper

    patched = [(ops, "csr_matmul", "sparse")]
    if kernels.available():
        patched += [(kernels, "forward", "kernel"), (kernels, "backward", "kernel"),
                    (kernels, "prelu_backward", "other"), (kernels, "csr_keep", "other")]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patched]
    for mod, name, part in patched:
        setattr(mod, name, recording(part, getattr(mod, name)))
    try:
        with recorder:
            trainer.step(epoch)
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)
    out: dict[str, object] = {}
    keys = (("dense", "dense_products_alone_s"), ("sparse", "sparse_products_alone_s"),
            ("kernel", "bn_prelu_kernel_alone_s"), ("other", "other_operations_alone_s"))
    with torch.no_grad():
        for part, key in keys:
            replays = [_replayable(fn, args, kwargs) if isinstance(fn, torch._ops.OpOverload)
                       else (lambda call=functools.partial(fn, *args, **kwargs): call)  # wrapped calls write nothing
                       for fn, args, kwargs in calls[part]]
            out[key] = round(sum(_replay_seconds(call, repeats) for call in replays), 4)
            out[key.replace("_alone_s", "_calls")] = len(calls[part])
    macs = sum(_product_macs(fn._schema.name, args) for fn, args, _ in calls["dense"])
    out["dense_products_macs"] = int(macs)
    out["dense_products_gmacs"] = round(macs / 1e9, 4)
    out["dense_products_gflops_alone"] = round(2 * macs / 1e9 / out["dense_products_alone_s"], 1) if macs else None
    out["operations_alone_s"] = round(sum(out[key] for _, key in keys), 4)
    return out


def _werank_in_step(trainer, first_epoch: int, pairs: int) -> dict[str, object]:
    """What WERank adds to a training step: :func:`_alternating_steps` switching it on and off.

    Runs after the timed epochs (it trains).
    """
    werank = trainer.cfg.werank

    def switch(on: bool) -> None:
        werank.enabled = on

    on, off = _alternating_steps(trainer, first_epoch, pairs, switch)
    return {"werank_ab_pairs": pairs, "werank_ab_on_s": round(on, 5), "werank_ab_off_s": round(off, 5),
            "werank_in_step_s": round(on - off, 5)}


# --profile: each operator's self time goes to the first of these that matches, tried in order —
# the operator's own name (products are leaf operators), else the innermost enclosing scope (the
# project's autograd functions and the trainer's record_function scopes) — else to "other".
PROFILE_OPERATORS = (
    ("dense products", ("mkldnn::_linear_pointwise", "aten::mm", "aten::addmm", "aten::bmm")),
    ("sparse products", ("embedding_bag", "sparse")),
)
PROFILE_SCOPES = (
    ("BatchNorm+PReLU kernel", ("_BatchNormPReLU",)),  # the compiled kernel (bgrl_werank.kernels)
    ("BatchNorm", ("_BatchNormAfterBias",)),
    ("PReLU", ("_PReLU",)),
    ("losses", ("_CosineLoss", "_DistanceToIdentity")),
    ("optimizer", ("Optimizer.step",)),
    ("views", ("views",)),
    ("EMA update", ("EMA update",)),
)
PROFILE_CATEGORIES = tuple(c for c, _ in PROFILE_OPERATORS + PROFILE_SCOPES) + ("other", "outside operators")


def profile_category(name: str, scopes: tuple[str, ...] = ()) -> str:
    """Category of an operator called ``name`` inside ``scopes`` (innermost first).

    A scope's own self time (the compiled kernel runs inside its autograd function's scope, not in
    an operator) counts as that scope's.
    """
    for category, keys in PROFILE_OPERATORS:
        if any(k in name for k in keys):
            return category
    for scope in (name, *scopes):
        for category, keys in PROFILE_SCOPES:
            if any(scope.startswith(k) for k in keys):
                return category
    return "other"


def _profile_steps(trainer, first_epoch: int, steps: int) -> dict[str, object]:
    """Milliseconds per step by category, from ``torch.profiler`` over ``steps`` steps.

    "outside operators" is the step's wall time not inside any recorded operator (Python).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for epoch in range(first_epoch, first_epoch + steps):
            trainer.step(epoch)
        wall = (time.perf_counter() - t) / steps
    ms = dict.fromkeys(PROFILE_CATEGORIES, 0.0)
    for ev in prof.events():
        scopes, parent = [], ev.cpu_parent
        while parent is not None:
            scopes.append(parent.name)
            parent = parent.cpu_parent
        ms[profile_category(ev.name, tuple(scopes))] += ev.self_cpu_time_total / 1e3 / steps
    # top-level events' totals cover every operator once; the rest of the wall time is Python
    inside = sum(ev.cpu_time_total for ev in prof.events() if ev.cpu_parent is None) / 1e3 / steps
    ms["outside operators"] = max(0.0, 1e3 * wall - inside)
    return {"profile_steps": steps, "profile_step_ms": round(1e3 * wall, 2),
            "profile_ms": {k: round(v, 2) for k, v in ms.items()}}


def _probe(trainer, sklearn_tols: list[float]) -> dict[str, object]:
    """Torch probe (default tol 1e-4) and the scikit-learn reference at each tol, same splits and grid.

    scikit-learn at its default tol (1e-4) can stop far from the optimum on ill-conditioned
    embeddings (on Photo after 55 epochs: 40 L-BFGS iterations, an objective 0.7 % above the
    optimum, 2.6 points lower test accuracy on a split); at 1e-8 it reaches the optimum the torch
    probe finds. The benchmark reports both.
    """
    from bgrl_werank.data import get_splits
    from bgrl_werank.eval import linear_probe

    z = trainer_embeddings(trainer)
    splits = get_splits(trainer.graph.data, "random", 20, 0)
    out: dict[str, object] = {"probe_splits": 20}
    res = linear_probe(z, trainer.graph.y, splits, backend="torch")
    out.update(probe_torch_s=round(res.seconds, 3), probe_torch_acc=round(100 * res.mean, 3), probe_torch_std=round(100 * res.std, 3))
    for tol in sklearn_tols:
        ref = linear_probe(z, trainer.graph.y, splits, backend="sklearn", tol=tol, max_iter=20000)
        key = f"probe_sklearn_tol{tol:g}"
        out.update({f"{key}_s": round(ref.seconds, 3), f"{key}_acc": round(100 * ref.mean, 3), f"{key}_std": round(100 * ref.std, 3),
                    f"{key}_diff_points": round(100 * (res.mean - ref.mean), 3),
                    f"{key}_same_c": sum(a == b for a, b in zip(res.best_c, ref.best_c))})
    return out


def _config(spec: dict):
    """The run config of a spec: ``spec['config']`` (a path under ``spec['root']``, default this tree;
    ``--against`` reads each tree's own configs, in the key names its package knows) with the overrides."""
    from bgrl_werank.config import build_config

    root = Path(spec.get("root") or ROOT)
    raw = yaml.safe_load(open(root / spec["config"])) if spec.get("config") else {}
    return build_config(raw, ["diagnostics.every=0", "train.progress=none", *spec.get("overrides", [])])


def run_epochs(spec: dict) -> dict[str, object]:
    """Worker: time ``spec['epochs']`` epochs after ``spec['warmup']`` (one process per spec).

    The floor (GEMM rate before and after, the step's multiply-adds) is BGRL's and is left out for
    other methods and where ``spec['floor']`` is false (``--methods``)."""
    import bgrl_werank
    from bgrl_werank.train.trainer import Trainer, load_graph

    torch.set_num_threads(spec["threads"])
    cfg = _config(spec)
    floor = spec.get("floor", True) and method_name(cfg) == "bgrl"
    rates_before = gemm_gflops(spec.get("gemm_n", 2048)) if floor else {}  # tests: a small product
    t = time.perf_counter()
    graph = load_graph(cfg)
    load_s = time.perf_counter() - t
    rss_loaded = _hwm_mb()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, graph, tmp, progress=False)
        for epoch in range(spec["warmup"]):
            trainer.step(epoch)
        times, cpu_times = [], []  # wall seconds, and this process's CPU seconds (all its threads)
        record: dict = {}
        for epoch in range(spec["warmup"], spec["warmup"] + spec["epochs"]):
            t, c = time.perf_counter(), time.process_time()
            record = trainer.step(epoch) or {}
            times.append(time.perf_counter() - t)
            cpu_times.append(time.process_time() - c)
        peak = _hwm_mb()
        out: dict[str, object] = {
            "mode": spec["mode"],
            "dataset": cfg.data.name if cfg.data.name != "csbm" else f"csbm-{cfg.data.csbm.num_nodes}",
            "method": method_name(cfg),
            "backend": trainer_backend(trainer),
            "werank": cfg.werank.enabled,
            "nodes": graph.num_nodes,
            "edges": int(graph.edge_index.size(1)),
            "features": int(graph.x.size(1)),
            "feature_layout": "sparse CSR" if graph.x.layout == torch.sparse_csr else "dense",
            "layers": list(cfg.model.layer_sizes),
            "encoder": encoder_summary(cfg),
            "predictor_hidden": predictor_hidden(cfg),
            "threads": torch.get_num_threads(),
            **{k: round(record[k], 1) for k in ("batches", "batch_nodes_mean", "batch_edges_mean") if k in record},
            "epochs_timed": len(times),
            "s_epoch_median": round(statistics.median(times), 4),
            "s_epoch_min": round(min(times), 4),
            "s_epoch_max": round(max(times), 4),
            "cpu_s_epoch_median": round(statistics.median(cpu_times), 4),
            "load_s": round(load_s, 2),
            "peak_rss_mb_after_load": round(rss_loaded, 1),
            "peak_rss_mb": round(peak, 1),
            "package": str(Path(bgrl_werank.__file__).resolve().parent),  # whose code ran (--against)
        }
        if floor:
            # The rate is measured before and after the timed epochs and the faster kept: this VM's
            # speed drifts, and one slow measurement would put the floor above what the step achieves.
            rates_after = gemm_gflops(spec.get("gemm_n", 2048))
            rates = {k: max(v, rates_after.get(k, 0.0)) for k, v in rates_before.items()}
            gflops = max(rates.values())
            macs = step_macs(graph, cfg)
            out.update({
                "gmacs_per_step": round(macs["total"] / 1e9, 4),
                "gmacs_dense_per_step": round(macs["dense"] / 1e9, 4),
                "gemm_gflops_measured": round(gflops, 1),
                **{f"gemm_gflops_{k}": round(v, 1) for k, v in rates.items()},
                "gemm_gflops_before_after": [round(max(rates_before.values()), 1), round(max(rates_after.values()), 1)],
                "floor_s_measured_rate": round(2 * macs["total"] / gflops / 1e9, 4),
                "floor_s_220gflops": round(2 * macs["total"] / ASSUMED_GFLOPS / 1e9, 4),
            })
        try:  # whether freed memory stayed in the heap (decided after the first step; older trees always)
            from bgrl_werank.ops import allocator_tuned

            out["heap_kept"] = allocator_tuned()
        except ImportError:
            pass
        if cfg.werank.enabled:
            out.update({k: (round(v, 5) if isinstance(v, float) else v) for k, v in _werank_times(trainer).items()})
        if spec.get("profile"):
            out["mode"] = "profile"
            out.update(_profile_steps(trainer, spec["warmup"] + spec["epochs"], spec["profile"]))
        if spec.get("probe") is not None:  # [] = the torch probe only; tolerances add scikit-learn
            out.update(_probe(trainer, spec["probe"]))
            if spec["probe"]:
                out["mode"] = "probe"
        if spec.get("evaluate"):  # the run's own probe (cfg.eval: protocol, splits), as train.py ends a run
            from bgrl_werank.train.trainer import evaluate

            res = evaluate(cfg, trainer_method(trainer), graph, getattr(trainer, "backend", None))
            out.update(eval_protocol=cfg.eval.protocol, eval_splits=len(res["test_acc"]), eval_acc=round(100 * res["mean"], 3),
                       eval_std=round(100 * res["std"], 3), rankme=round(res["rankme"], 2),
                       epochs_trained=spec["warmup"] + spec["epochs"], seed=cfg.seed)
            out["peak_rss_mb_with_eval"] = _hwm_mb()  # the run's own probe included (layerwise inference, RankMe)
        if spec.get("werank_ab") and cfg.werank.enabled:
            pairs = _pairs_for(statistics.median(times), spec["werank_ab"], spec.get("werank_ab_seconds", 10.0))
            out.update(_werank_in_step(trainer, spec["warmup"] + spec["epochs"], pairs))
        if spec.get("parts"):
            out.update(_parts_alone(trainer, spec["warmup"] + spec["epochs"]))
            out["floor_s_products"] = round(out["dense_products_alone_s"] + out["sparse_products_alone_s"], 4)
    out["loadavg_1min"] = round(os.getloadavg()[0], 2)
    return out


def run_compare(spec: dict) -> dict[str, object]:
    """Worker for ``--compare-plain``: train ``cfg.train.epochs`` epochs on the backend ``spec['path']``
    (``fast`` or ``plain``: the run config's ``backend`` key), then the config's probe (Cora: the public split)."""
    from bgrl_werank.train.trainer import Trainer, evaluate, load_graph

    torch.set_num_threads(spec["threads"])
    cfg = _config({**spec, "overrides": [*spec.get("overrides", []), f"backend={spec['path']}"]})
    graph = load_graph(cfg)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, graph, tmp, progress=False)
        times = []
        for epoch in range(cfg.train.epochs):
            t = time.perf_counter()
            trainer.step(epoch)
            times.append(time.perf_counter() - t)
        result = evaluate(cfg, trainer.method, graph, trainer.backend)
    return {
        "mode": "compare-plain",
        "dataset": cfg.data.name,
        "path": spec["path"],
        "backend": trainer.backend.name,
        "method": cfg.method.name,
        "seed": cfg.seed,
        "epochs": cfg.train.epochs,
        "threads": torch.get_num_threads(),
        "s_epoch_median": round(statistics.median(times), 4),
        "protocol": cfg.eval.protocol,
        "public_test_acc": round(100 * result["mean"], 2),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------


def run_kernels_ab(spec: dict) -> dict[str, object]:
    """Worker for ``--kernels-ab``: steps with and without the compiled kernels, in one process.

    After the warm-up, :func:`_alternating_steps` with the kernels switched off by making
    :func:`bgrl_werank.kernels.available` say no, so that every caller takes its PyTorch path (what
    ``BGRL_WERANK_KERNELS=0`` does for a whole process); at least ``spec['pairs']`` pairs and about
    ``spec['seconds']`` (default 10) s of steps.
    """
    from bgrl_werank import kernels
    from bgrl_werank.train.trainer import Trainer, load_graph

    torch.set_num_threads(spec["threads"])
    cfg = _config(spec)
    graph = load_graph(cfg)
    if not kernels.available():
        return {"mode": spec["mode"], "dataset": cfg.data.name, "error": f"no compiled kernels: {kernels.status()}"}
    real = kernels.available
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, graph, tmp, progress=False)
        t = time.perf_counter()
        for epoch in range(spec["warmup"]):
            trainer.step(epoch)
        pairs = _pairs_for((time.perf_counter() - t) / max(1, spec["warmup"]), spec["pairs"], spec.get("seconds", 10.0))

        def switch(on: bool) -> None:
            kernels.available = real if on else (lambda: False)

        with_k, without = _alternating_steps(trainer, spec["warmup"], pairs, switch)
    return {"mode": spec["mode"], "dataset": cfg.data.name, "werank": cfg.werank.enabled, "threads": torch.get_num_threads(),
            "backend": trainer_backend(trainer), "run": spec.get("run"), "round": spec.get("round", 0),
            "seconds": spec.get("seconds", 10.0), "pairs": pairs, "s_step_with_kernels": round(with_k, 6), "s_step_without_kernels": round(without, 6),
            "speedup": round(without / with_k, 4), "loadavg_1min": round(os.getloadavg()[0], 2)}


def _import_tree(tree: Path, name: str):
    """``tree``'s ``bgrl_werank`` package imported as ``name``, next to this tree's (``--in-process``).

    The package imports itself only relatively (``from .ops import …``), so its modules load as
    ``name.ops`` …, with their own autograd functions, kernels and defaults."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    init = tree / "bgrl_werank" / "__init__.py"
    module_spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def run_against_steps(spec: dict) -> dict[str, object]:
    """Worker for ``--against REV --in-process``: this tree's and REV's trainer in one process, steps alternating.

    Each package builds its run from its own tree's config file (``spec['config']`` under that
    tree), loads its graph and trains its own model; after ``spec['warmup']`` steps of each, steps
    alternate between the two in the order this, other, other, this, … for at least ``spec['pairs']``
    pairs and about 20 s, so that the machine's drift (and other jobs on it) weighs on both alike,
    which between processes it does not.
    """
    import importlib

    import bgrl_werank

    torch.set_num_threads(spec["threads"])
    ref_root = Path(spec["ref_root"])
    packages = {"this": (bgrl_werank, ROOT), "ref": (_import_tree(ref_root, "bgrl_werank_ref"), ref_root)}
    trainers, epochs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (package, root) in packages.items():
            config = importlib.import_module(f"{package.__name__}.config")
            trainer_module = importlib.import_module(f"{package.__name__}.train.trainer")
            raw = yaml.safe_load(open(root / spec["config"])) if spec.get("config") else {}
            cfg = config.build_config(raw, ["diagnostics.every=0", "train.progress=none", *spec.get("overrides", [])])
            run_dir = Path(tmp) / label
            run_dir.mkdir()
            trainers[label] = trainer_module.Trainer(cfg, trainer_module.load_graph(cfg), run_dir, progress=False)
            epochs[label] = 0
        t = time.perf_counter()
        for _ in range(spec["warmup"]):
            for label, trainer in trainers.items():
                trainer.step(epochs[label])
                epochs[label] += 1
        step_s = (time.perf_counter() - t) / max(1, 2 * spec["warmup"])
        pairs = max(spec["pairs"], min(200, int(spec.get("seconds", 20.0) / (2 * step_s))))
        times: dict[str, list[float]] = {"this": [], "ref": []}
        for i in range(2 * pairs):
            label = "this" if i % 4 in (0, 3) else "ref"
            t = time.perf_counter()
            trainers[label].step(epochs[label])
            times[label].append(time.perf_counter() - t)
            epochs[label] += 1
        cfg = trainers["this"].cfg
    this, ref = statistics.median(times["this"]), statistics.median(times["ref"])
    return {"mode": "against-steps", "dataset": cfg.data.name, "werank": cfg.werank.enabled, "threads": torch.get_num_threads(),
            "pairs": pairs, "s_step_this": round(this, 5), "s_step_ref": round(ref, 5), "ratio": round(this / ref, 4),
            "backend": trainer_backend(trainers["this"]),
            "packages": [str(Path(p.__file__).resolve().parent) for p, _ in packages.values()],
            "loadavg_1min": round(os.getloadavg()[0], 2)}


def run_methods_steps(spec: dict) -> dict[str, object]:
    """Worker for ``--methods --in-process``: one trainer per method config in this process, steps in turn.

    After ``spec['warmup']`` steps of each, cycles of one step of every method, the order rotating
    (and reversed every other cycle) from cycle to cycle, at least ``spec['cycles']`` cycles and
    about ``spec['seconds']`` s of steps: a burst of load on the machine falls on every method alike.
    """
    from bgrl_werank.train.trainer import Trainer, load_graph

    torch.set_num_threads(spec["threads"])
    names = list(spec["configs"])
    trainers, cfgs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cfg = _config({"config": spec["configs"][name], "overrides": spec.get("overrides", [])})
            run_dir = Path(tmp) / name
            run_dir.mkdir()
            trainers[name], cfgs[name] = Trainer(cfg, load_graph(cfg), run_dir, progress=False), cfg
        t = time.perf_counter()
        for epoch in range(spec["warmup"]):
            for name in names:
                trainers[name].step(epoch)
        cycle_s = (time.perf_counter() - t) / max(1, spec["warmup"])
        cycles = max(spec["cycles"], min(200, int(spec.get("seconds", 10.0) / cycle_s)))
        times: dict[str, list[float]] = {name: [] for name in names}
        for c in range(cycles):
            order = names[c % len(names):] + names[:c % len(names)]
            for name in (order if c % 2 == 0 else order[::-1]):
                t = time.perf_counter()
                trainers[name].step(spec["warmup"] + c)
                times[name].append(time.perf_counter() - t)
        rows = [{"method": cfgs[name].method.name, "config": spec["configs"][name], "backend": trainer_backend(trainers[name]),
                 "encoder": encoder_summary(cfgs[name]), "werank": cfgs[name].werank.enabled, "threads": torch.get_num_threads(),
                 "steps": cycles, "seconds": spec.get("seconds", 10.0), "s_step_median": round(statistics.median(times[name]), 5),
                 "s_step_min": round(min(times[name]), 5), "loadavg_1min": round(os.getloadavg()[0], 2)} for name in names]
    return {"mode": "methods-steps", "methods": rows}


def _spawn(spec: dict, tree: Path | None = None) -> dict:
    """Run one spec in a fresh process; with ``tree``, against that checkout's ``bgrl_werank``."""
    env = dict(os.environ)
    if tree is None:
        cmd, cwd = [sys.executable, "-m", "benchmarks.bench_epoch", "--worker", json.dumps(spec)], ROOT
    else:  # this file's worker code and configs, the other tree's package (first on the path)
        env["PYTHONPATH"] = str(tree)
        cmd, cwd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)], tree
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"mode": spec["mode"], "spec": spec, "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _emit(out: Path, row: dict) -> None:
    """One result: a JSON line on stdout and appended to ``out``."""
    line = json.dumps(row)
    print(line, flush=True)
    with open(out, "a") as f:
        f.write(line + "\n")


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


AGAINST_KEYS = ("s_epoch_median", "s_epoch_min", "s_epoch_max", "cpu_s_epoch_median", "epochs_timed", "gemm_gflops_measured", "peak_rss_mb",
                "threads", "method", "backend", "layers", "predictor_hidden", "package", "loadavg_1min", "error")


def run_against(args, out: Path, machine: dict) -> int:
    """``--against``: interleaved rounds of this tree and of ``args.against``, one process each.

    Both processes run this file's worker (the same timing code); the other one imports the other
    tree's package (``PYTHONPATH``, ``cwd``) and reads the other tree's own config files, in the key
    names its ``build_config`` knows (before 7035b16: ``model.predictor_hidden``, ``optim.momentum``;
    the values of the shipped BGRL configs did not change with the move). The worker's API helpers
    (:func:`trainer_weights`, :func:`predictor_hidden`, …) read either tree's package. Each row
    records the package that ran (``package``) and the settings it trained with.
    """
    rev = _git("rev-parse", "--short", args.against)
    head = _git("rev-parse", "--short", "HEAD") + ("+changes" if _git("status", "--porcelain", "--untracked-files=no") else "")
    failed = 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still removes its worktree (finally)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        _git("worktree", "add", "--detach", str(ref), rev)
        try:
            if args.in_process:
                for r in range(args.rounds):
                    for name in args.datasets:
                        spec = {"mode": "against-steps", "config": f"configs/{name}.yaml", "threads": args.threads,
                                "warmup": args.warmup, "pairs": 10, "ref_root": str(ref), "overrides": ["werank.enabled=true"]}
                        res = _spawn(spec)
                        row = {**res, "mode": "against-steps", "dataset": name, "round": r, "ref_revision": rev,
                               "head_revision": head, **machine}
                        failed += "error" in res
                        _emit(out, row)
                return 1 if failed else 0
            for name in args.datasets:
                # no floor: its GEMM measurements would add ~10 s a process on a busy machine, for no comparison
                spec = {"mode": "epoch", "config": f"configs/{name}.yaml", "threads": args.threads, "floor": False,
                        "warmup": args.warmup, "epochs": args.epochs, "overrides": ["werank.enabled=true"]}
                for r in range(args.rounds):
                    order = [("this", None), ("ref", ref)] if r % 2 == 0 else [("ref", ref), ("this", None)]
                    for label, tree in order:
                        res = _spawn(spec if tree is None else {**spec, "root": str(tree)}, tree)
                        row = {"mode": "against", "dataset": name, "tree": label, "round": r,
                               "revision": head if tree is None else rev, "ref_revision": rev, "head_revision": head,
                               **{k: res.get(k) for k in AGAINST_KEYS if k in res}, **machine}
                        failed += "error" in res
                        _emit(out, row)
        finally:
            _git("worktree", "remove", "--force", str(ref))
    return 1 if failed else 0


# --methods: each method's Cora config (the BGRL one is the shipped Cora config)
METHOD_CONFIGS = {"bgrl": "configs/cora.yaml", "grace": "configs/cora-grace.yaml", "gbt": "configs/cora-gbt.yaml",
                  "cca_ssg": "configs/cora-cca_ssg.yaml", "vicreg": "configs/cora-vicreg.yaml"}
METHODS_KEYS = ("method", "backend", "encoder", "werank", "layers", "threads", "epochs_timed", "s_epoch_median", "s_epoch_min",
                "s_epoch_max", "cpu_s_epoch_median", "peak_rss_mb", "package", "loadavg_1min", "error")


def run_methods(args, out: Path, machine: dict) -> int:
    """``--methods``: seconds per epoch of each method's Cora config as shipped (WERank as the config
    says, the backend ``auto`` picks for its encoder), ``--rounds`` rounds of one process per method,
    the order rotating from round to round, so a drift of the machine weighs on every method alike."""
    names = list(args.methods)
    run = time.strftime("%Y-%m-%dT%H:%M:%S")
    failed = 0
    if args.in_process:
        for r in range(args.rounds):
            spec = {"mode": "methods-steps", "configs": {n: METHOD_CONFIGS[n] for n in names}, "threads": args.threads,
                    "warmup": args.warmup, "cycles": 10, "seconds": args.ab_seconds, "round": r}
            res = _spawn(spec)
            for row in res.get("methods", [res]):
                failed += "error" in row
                _emit(out, {"mode": "methods-steps", "run": run, "dataset": "cora", "round": r, **row, **machine})
        return 1 if failed else 0
    for r in range(args.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            spec = {"mode": "methods", "config": METHOD_CONFIGS[name], "threads": args.threads,
                    "warmup": args.warmup, "epochs": args.epochs, "floor": False, "overrides": []}
            res = _spawn(spec)
            row = {"mode": "methods", "run": run, "dataset": "cora", "config": METHOD_CONFIGS[name], "round": r,
                   **{k: res.get(k) for k in METHODS_KEYS if k in res}, **machine}
            row.setdefault("method", name)
            failed += "error" in res
            _emit(out, row)
    return 1 if failed else 0


def specs(args) -> list[dict]:
    out = []
    if args.scaling:
        for n in args.nodes:
            overrides = [
                "data.name=csbm", f"data.csbm.num_nodes={n}", "data.csbm.avg_degree=10", "data.csbm.num_features=500",
                "data.csbm.feature_density=0.02", "data.csbm.num_classes=10", "data.row_normalize=true",
                "model.layer_sizes=[256, 128]", "method.bgrl.predictor_hidden=256", "werank.enabled=true",
                "train.epochs=10000", "optim.warmup_epochs=100",
            ]
            big = n >= 1_000_000
            out.append({"mode": "scaling", "overrides": overrides, "threads": args.threads,
                        "warmup": 1 if big else args.warmup, "epochs": 3 if big else min(args.epochs, 20 if n >= 100_000 else args.epochs)})
    elif args.kernels_ab:
        run = time.strftime("%Y-%m-%dT%H:%M:%S")
        for r in range(args.rounds or 1):
            for name in args.datasets:
                out.append({"mode": "kernels-ab", "config": f"configs/{name}.yaml", "threads": args.threads, "run": run, "round": r,
                            "warmup": args.warmup, "pairs": 10, "seconds": args.ab_seconds, "overrides": ["werank.enabled=true"]})
    elif args.profile:
        for name in args.datasets:
            out.append({"mode": "profile", "config": f"configs/{name}.yaml", "threads": args.threads,
                        "warmup": args.warmup, "epochs": args.epochs, "profile": 10,
                        "overrides": ["werank.enabled=true"]})
    elif args.probe:
        for name in ("cora", "amazon-photo"):
            out.append({"mode": "probe", "config": f"configs/{name}.yaml", "threads": args.threads,
                        "warmup": args.warmup, "epochs": args.epochs, "probe": [1e-4, 1e-8], "overrides": []})
    elif args.compare_plain:
        overrides = [f"train.epochs={args.compare_epochs}"]
        warmup = yaml.safe_load(open(ROOT / "configs/cora.yaml"))["optim"]["warmup_epochs"]
        if args.compare_epochs <= warmup:  # a short run (a check of the mode) keeps the config valid
            overrides.append(f"optim.warmup_epochs={args.compare_epochs // 10}")
        for path in ("fast", "plain"):
            for seed in args.seeds:
                out.append({"mode": "compare-plain", "config": "configs/cora.yaml", "path": path, "threads": args.threads,
                            "overrides": [f"seed={seed}", *overrides]})
    else:
        for name in args.datasets:
            for werank in (True, False):
                out.append({"mode": "epoch", "config": f"configs/{name}.yaml", "threads": args.threads,
                            "warmup": args.warmup, "epochs": args.epochs, "probe": [], "parts": True, "werank_ab": 10,
                            "overrides": [f"werank.enabled={str(werank).lower()}"]})
    return out


def machine_fields() -> dict[str, object]:
    """What every result row records of the machine: the CPU (:func:`bgrl_werank.cpu.cpu_info`) and
    its kind, as the per-CPU tables group rows, and torch's version."""
    from bgrl_werank.cpu import cpu_info, cpu_kind

    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "cpu_kind": cpu_kind(),
            "cpu": cpu_info(), "torch": torch.__version__}


def row_cpu_kind(row: dict) -> str:
    """The CPU kind a result row was measured on; rows from before it was recorded say so."""
    return row.get("cpu_kind") or f"not recorded ({row.get('machine', 'unknown machine')})"


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "error" not in r]


def _span(values: list[float]) -> str:
    lo, hi = f"{min(values):.1f}", f"{max(values):.1f}"
    return lo if lo == hi else f"{lo}–{hi}"


def against_rounds(rows: list[dict]) -> dict[str, list[tuple[dict, dict]]]:
    """``--against`` rows paired by round, per dataset: [(this tree's row, the other's), …] in file order
    (a later run of the same pair of revisions adds its rounds after the earlier ones)."""
    pairs: dict[str, list[tuple[dict, dict]]] = {}
    open_rounds: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        seen = open_rounds.setdefault((r["dataset"], r["round"]), {})
        seen[r["tree"]] = r
        if "this" in seen and "ref" in seen:
            pairs.setdefault(r["dataset"], []).append((seen["this"], seen["ref"]))
            del open_rounds[(r["dataset"], r["round"])]
    return pairs


def _against_markdown(against: list[dict]) -> list[str]:
    """The interleaved table of the newest pair of revisions in ``against.jsonl``."""
    if not against:
        return []
    last = against[-1]
    pair = (last["head_revision"], last["ref_revision"])
    rows = [r for r in against if (r["head_revision"], r["ref_revision"]) == pair]
    rounds = against_rounds(rows)
    if not rounds:
        return []
    this, ref = pair
    lines = [f"This code ({this}) against revision {ref}, BGRL, WERank on, shipped configs, {rows[0]['threads']} threads "
             f"(`--against {ref}`). A round is one process of each tree, back to back, the order alternating; both run "
             f"this script's worker, the other tree with its own package and config files. Each process times the "
             f"epochs given after 5 warm-up epochs. The machine's speed drifts between rounds (and other jobs share it), "
             f"so the two are compared within each round: the last columns are the per-round ratios of the medians "
             f"(this code's s / epoch over {ref}'s; above 1 = this code is slower) and their median.",
             "", f"| dataset | rounds | epochs timed | {ref}: s / epoch (median of rounds) | this code | "
             f"this / {ref}, per round | median ratio | load average |",
             "|---|---|---|---|---|---|---|---|"]
    for name, pairs in rounds.items():
        mine = [a["s_epoch_median"] for a, _ in pairs]
        theirs = [b["s_epoch_median"] for _, b in pairs]
        ratios = [a / b for a, b in zip(mine, theirs)]
        epochs = sorted({a["epochs_timed"] for a, _ in pairs} | {b["epochs_timed"] for _, b in pairs})
        loads = [r["loadavg_1min"] for pr in pairs for r in pr if r.get("loadavg_1min") is not None]
        lines.append(f"| {name} | {len(pairs)} | {', '.join(map(str, epochs))} | {statistics.median(theirs):.3f} "
                     f"({min(theirs):.3f}–{max(theirs):.3f}) | {statistics.median(mine):.3f} ({min(mine):.3f}–{max(mine):.3f}) | "
                     f"{', '.join(f'{q:.2f}' for q in ratios)} | **{statistics.median(ratios):.3f}** | {_span(loads) if loads else '—'} |")
    return lines + [""]


def _against_steps_markdown(rows: list[dict]) -> list[str]:
    """The ``--against REV --in-process`` table of the newest pair of revisions."""
    if not rows:
        return []
    pair = (rows[-1]["head_revision"], rows[-1]["ref_revision"])
    rows = [r for r in rows if (r["head_revision"], r["ref_revision"]) == pair]
    this, ref = pair
    lines = [f"This code ({this}) and {ref} in one process (`--against {ref} --in-process`): per dataset and round, one process "
             f"imports both packages ({ref}'s under another name), builds each tree's run from its own config file "
             f"(BGRL, WERank on, {rows[0]['threads']} threads) and, after 5 warm-up steps of each, alternates steps "
             f"between the two (order this, {ref}, {ref}, this, …; at least 10 pairs and about 20 s of steps). "
             f"Both then see the same machine at the same moment, which between processes they do not. The ratio is "
             f"the median step of this code over the median step of {ref} (above 1 = this code is slower).", "",
             f"| dataset | rounds | pairs of steps per round | {ref}: s / step (median of rounds) | this code | "
             f"this / {ref}, per round | median ratio | load average |",
             "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        ratios = [r["ratio"] for r in rs]
        pairs = sorted({r["pairs"] for r in rs})
        lines.append(f"| {name} | {len(rs)} | {pairs[0]}{'' if len(pairs) == 1 else '–' + str(pairs[-1])} | "
                     f"{statistics.median(r['s_step_ref'] for r in rs):.3f} | {statistics.median(r['s_step_this'] for r in rs):.3f} | "
                     f"{', '.join(f'{q:.2f}' for q in ratios)} | **{statistics.median(ratios):.3f}** | "
                     f"{_span([r['loadavg_1min'] for r in rs])} |")
    return lines + [""]


def methods_rounds(rows: list[dict]) -> dict[str, list[dict]]:
    """``--methods`` rows by method, each the list of its rounds' rows."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["method"], []).append(r)
    return out


def _methods_steps_markdown(rows: list[dict]) -> list[str]:
    """Seconds per step of each method's Cora config, from the newest ``--methods --in-process`` run."""
    if not rows:
        return []
    rows = [r for r in rows if r.get("run") == rows[-1].get("run")]
    by_method = methods_rounds(rows)
    bgrl = {r["round"]: r["s_step_median"] for r in by_method.get("bgrl", [])}
    lines = [f"The same configs in one process (`--methods --in-process`): per round, one process builds every "
             f"method's run and, after 5 warm-up steps of each, steps them in turn (one step of each per cycle, the "
             f"order rotating and reversed every other cycle; at least 10 cycles and about {rows[-1].get('seconds', 10):g} s), "
             f"{rows[0]['threads']} threads. \"vs BGRL\" is the median over rounds of the method's median step over "
             f"BGRL's in the same process.", "",
             "| method | config | backend | encoder | WERank | rounds × cycles | s / step (median of rounds) | per round | vs BGRL | load average |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rs in by_method.items():
        times = [r["s_step_median"] for r in rs]
        ratios = [r["s_step_median"] / bgrl[r["round"]] for r in rs if r["round"] in bgrl]
        lines.append(f"| {name} | `{rs[0]['config']}` | {rs[0]['backend']} | {rs[0]['encoder']} | {'on' if rs[0]['werank'] else 'off'} | "
                     f"{len(rs)} × {min(r['steps'] for r in rs)} | {statistics.median(times):.3f} | {', '.join(f'{q:.3f}' for q in times)} | "
                     f"{statistics.median(ratios):.2f}× | {_span([r['loadavg_1min'] for r in rs])} |")
    return lines + [""]


def _methods_markdown(rows: list[dict]) -> list[str]:
    """Seconds per epoch of each method's Cora config, from the newest ``--methods`` run."""
    if not rows:
        return []
    rows = [r for r in rows if r.get("run") == rows[-1].get("run")]  # the newest run
    by_method = methods_rounds(rows)
    bgrl = {r["round"]: r["s_epoch_median"] for r in by_method.get("bgrl", [])}
    any_row = rows[0]
    lines = [f"Each method's Cora config as shipped (`--methods`; WERank as configured, the backend `backend: auto` "
             f"chose for the config's encoder), {any_row['threads']} threads: {max(r['round'] for r in rows) + 1} rounds, "
             f"one process per method per round, the order rotating from round to round; each process times "
             f"{any_row['epochs_timed']} epochs after 5 warm-up epochs. \"vs BGRL\" is the median over rounds of the "
             f"method's s / epoch over BGRL's in the same round.", "",
             "| method | config | backend | encoder | WERank | rounds | s / epoch (median of rounds) | range over rounds | vs BGRL | load average |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rs in by_method.items():
        times = [r["s_epoch_median"] for r in rs]
        ratios = [r["s_epoch_median"] / bgrl[r["round"]] for r in rs if r["round"] in bgrl]
        lines.append(f"| {name} | `{rs[0]['config']}` | {rs[0]['backend']} | {rs[0].get('encoder', '—')} | "
                     f"{'on' if rs[0]['werank'] else 'off'} | {len(rs)} | {statistics.median(times):.3f} | "
                     f"{min(times):.3f}–{max(times):.3f} | {statistics.median(ratios):.2f}× | "
                     f"{_span([r['loadavg_1min'] for r in rs])} |")
    return lines + [""]


def _kernels_markdown(rows: list[dict]) -> list[str]:
    """The ``--kernels-ab`` table: per dataset, the newest run's rounds (older rows have no run: the newest row)."""
    if not rows:
        return []
    newest = rows[-1].get("run")
    rows = [r for r in rows if r.get("run") == newest] if newest is not None else list({r["dataset"]: r for r in rows}.values())
    seconds = rows[-1].get("seconds", 10)
    lines = [
        "What the compiled kernels (`bgrl_werank/kernels/`: the encoder's BatchNorm+PReLU, the predictor's PReLU backward, "
        "the views' feature masking) save, measured in one process (`--kernels-ab`): after 5 warm-up steps, steps alternate "
        "with and without them (order with, without, without, with, …; without = what `BGRL_WERANK_KERNELS=0` runs), "
        f"at least 10 pairs and about {seconds:g} s of steps per process; BGRL on the fast backend, WERank on, "
        f"{rows[-1]['threads']} threads. Between processes this VM drifts by more than the kernels save. With several "
        "rounds (one process each), the columns are medians over rounds.", "",
        "| dataset | rounds | pairs of steps per round | s / step with the kernels | without | step time without / with, per round | median | load average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        speedups = [r["speedup"] for r in rs]
        lines.append(f"| {name} | {len(rs)} | {min(r['pairs'] for r in rs)}{'' if len({r['pairs'] for r in rs}) == 1 else '–' + str(max(r['pairs'] for r in rs))} | "
                     f"{statistics.median(r['s_step_with_kernels'] for r in rs):.3f} | "
                     f"{statistics.median(r['s_step_without_kernels'] for r in rs):.3f} | {', '.join(f'{q:.3f}' for q in speedups)} | "
                     f"**{statistics.median(speedups):.3f}** ({100 * (statistics.median(speedups) - 1):+.1f} %) | "
                     f"{_span([r['loadavg_1min'] for r in rs])} |")
    return lines + [""]


def _per_cpu_markdown(rows: list[dict]) -> list[str]:
    """Epoch time of each dataset and WERank setting on every CPU kind measured (newest row of each)."""
    latest: dict[tuple[str, bool, str], dict] = {}
    for r in rows:
        latest[(r["dataset"], r["werank"], row_cpu_kind(r))] = r
    kinds = sorted({k for _, _, k in latest}, key=lambda k: (k.startswith("not recorded"), k))
    if not kinds:
        return []
    lines = ["Epoch time per CPU kind (the newest default-mode row of each; same columns as the first table, "
             "s / epoch median, × its own floor, GEMM rate measured in that process). Rows from before the CPU "
             "was recorded are grouped as such.", "",
             "| dataset | WERank |" + "".join(f" {k} |" for k in kinds), "|---|---|" + "---|" * len(kinds)]
    for name in DATASETS:
        for werank in (True, False):
            if not any((name, werank, k) in latest for k in kinds):
                continue
            cells = []
            for k in kinds:
                r = latest.get((name, werank, k))
                cells.append(f" {r['s_epoch_median']:.3f} s ({r['s_epoch_median'] / r['floor_s_measured_rate']:.2f}× floor, "
                             f"{r['gemm_gflops_measured']:.0f} GFLOP/s) |" if r else " — |")
            lines.append(f"| {name} | {'on' if werank else 'off'} |" + "".join(cells))
    return lines + [""]


def markdown() -> str:
    """README tables from the latest result of each configuration in benchmarks/results/."""
    lines = []
    epoch = {(r["dataset"], r["werank"]): r for r in _rows(RESULTS / "epoch.jsonl")}
    if epoch:
        any_row = next(iter(epoch.values()))
        rates = [r["gemm_gflops_measured"] for r in epoch.values()]
        lines += [
            f"Epoch time, {any_row['threads']} threads, median (min–max) over {any_row['epochs_timed']} epochs after 5 warm-up epochs. "
            f"Floor = 2 × the step's multiply-adds ÷ the float32 GEMM rate measured in the same process (a 2048³ product, the faster of MKL and oneDNN, measured before and after the timed epochs, the faster kept) "
            f"({min(rates):.0f}–{max(rates):.0f} GFLOP/s on this machine), and ÷ 220 GFLOP/s (the rate the performance "
            f"issue assumed). \"WERank alone\" is the penalty's forward and backward timed by themselves. The probe column is the "
            f"torch linear probe (20 random 10/10/80 splits, C from 2⁻¹⁰…2¹⁰) on the embeddings after these 55 epochs — far from "
            f"a full schedule, so its accuracy is a sanity check, not a result.",
            "",
            "| dataset | WERank | s / epoch | floor (measured rate) | × floor | floor (220 GFLOP/s) | GMAC / step | peak RSS | WERank alone | its largest Gram matmul | probe: 20 splits, accuracy |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (name, werank), r in sorted(epoch.items(), key=lambda kv: (DATASETS.index(kv[0][0]) if kv[0][0] in DATASETS else 9, not kv[0][1])):
            wr = f"{1000 * r['werank_s']:.1f} ms ({100 * r['werank_s'] / r['s_epoch_median']:.1f} % of the epoch)" if werank else "—"
            gm = f"{1000 * r['largest_gram_matmul_s']:.1f} ms ({r['largest_gram_shape'][0]}×{r['largest_gram_shape'][1]})" if werank else "—"
            pr = f"{r['probe_torch_s']:.1f} s, {r['probe_torch_acc']:.2f} ± {r['probe_torch_std']:.2f}" if "probe_torch_s" in r else "—"
            lines.append(
                f"| {name} | {'on' if werank else 'off'} | {r['s_epoch_median']:.3f} ({r['s_epoch_min']:.3f}–{r['s_epoch_max']:.3f}) | "
                f"{r['floor_s_measured_rate']:.3f} | {r['s_epoch_median'] / r['floor_s_measured_rate']:.2f} | {r['floor_s_220gflops']:.3f} | {r['gmacs_per_step']:.1f} | {r['peak_rss_mb']:.0f} MB | {wr} | {gm} | {pr} |"
            )
        lines.append("")
        lines += ["Against the performance issue's targets (WERank on). The last five columns are a floor for the step "
                  "as it is built: one more step records every operator it runs (at the dispatcher, forward and backward "
                  "passes alike, with its operands) and every sparse product and compiled-kernel call, and each is then "
                  "replayed alone, from Python as in the step. The columns add up the dense products (their rate at "
                  "their own shapes in brackets; the first table's floor assumes the 2048³ rate for all of them), the "
                  "sparse products, the BatchNorm+PReLU kernel, and every other operation (elementwise passes, "
                  "reductions, copies, the views' draws, the other kernels, the optimizer's update). What the target "
                  "leaves above that sum is all there is for autograd's and Python's work between the operations. "
                  "WERank's share: its forward and backward alone, and what it adds to a step in the same process "
                  "(≥ 20 more steps, about 10 s of them, WERank switched on and off in the order on, off, off, on, …; "
                  "difference of the medians over the median step without it), which decides the column.", "",
                  "| dataset | target s / epoch | measured | met | speed-up over the reference's s / epoch | WERank adds ≤ 20 % to the epoch "
                  "| dense products alone | + sparse products alone | + BatchNorm+PReLU kernel alone | + every other operation alone | target − that |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in DATASETS:
            r = epoch.get((name, True))
            if not r:
                continue
            lo, hi = REFERENCE_S[name]
            ref = f"{lo / r['s_epoch_median']:.1f}×" if lo == hi else f"{lo / r['s_epoch_median']:.1f}–{hi / r['s_epoch_median']:.1f}×"
            share = r["werank_s"] / r["s_epoch_median"]
            werank_cell = f"{'yes' if share <= 0.2 else '**no**'} ({100 * share:.1f} %)"
            if "werank_in_step_s" in r:  # the in-process A/B decides: it is what WERank adds to a step
                added = r["werank_in_step_s"] / r["werank_ab_off_s"]
                werank_cell = f"{'yes' if added <= 0.2 else '**no**'} (alone {100 * share:.1f} %, in the step {100 * added:+.1f} %)"
            parts = ["—"] * 5
            if "operations_alone_s" in r:  # rows from before every operation was replayed have no such column
                with_kernel = r["floor_s_products"] + r["bn_prelu_kernel_alone_s"]
                parts = [f"{r['dense_products_alone_s']:.3f} ({r['dense_products_gflops_alone']:.0f} GFLOP/s)", f"{r['floor_s_products']:.3f}",
                         f"{with_kernel:.3f}", f"{r['operations_alone_s']:.3f}", f"{TARGET_S[name] - r['operations_alone_s']:+.3f}"]
            lines.append(f"| {name} | {TARGET_S[name]:.2f} | {r['s_epoch_median']:.3f} | {'yes' if r['s_epoch_median'] <= TARGET_S[name] else '**no**'} | "
                         f"{ref} | {werank_cell} | {' | '.join(parts)} |")
        missed = [(name, epoch[(name, True)]) for name in DATASETS
                  if (name, True) in epoch and epoch[(name, True)]["s_epoch_median"] > TARGET_S[name]]
        if missed:
            verdicts = []
            for name, r in missed:
                if "operations_alone_s" not in r:
                    verdicts.append(f"{name}: not replayed")
                elif r["operations_alone_s"] > TARGET_S[name]:
                    verdicts.append(f"{name}: its operations alone take {r['operations_alone_s']:.3f} s, "
                                    f"more than the {TARGET_S[name]:.2f} s target before any autograd or Python")
                else:
                    verdicts.append(f"{name}: its operations alone take {r['operations_alone_s']:.3f} s, leaving "
                                    f"{TARGET_S[name] - r['operations_alone_s']:.3f} s for autograd and Python, "
                                    f"where the step spends {r['s_epoch_median'] - r['operations_alone_s']:.3f} s")
            lines += ["", "Missed epoch-time targets: " + "; ".join(verdicts) + "."]
        cs = epoch.get(("coauthor-cs", True))
        if cs:
            lines.append("")
            lines.append(f"Coauthor CS peak memory: {cs['peak_rss_mb'] / 1024:.2f} GB (target ≤ 1.5 GB: "
                         f"{'met' if cs['peak_rss_mb'] <= TARGET_CS_MB else '**not met**'}; the reference: 4.1 GB).")
        lines.append("")
        overhead = []
        for name in DATASETS:
            on, off = epoch.get((name, True)), epoch.get((name, False))
            if on and off:
                overhead.append(f"{name} {100 * (on['s_epoch_median'] / off['s_epoch_median'] - 1):+.1f}%")
        if overhead:
            lines += [f"Epoch with WERank on vs off (ratio of medians − 1; each one's min–max range is in the first table): {', '.join(overhead)}.", ""]
    lines += _per_cpu_markdown(_rows(RESULTS / "epoch.jsonl"))
    from benchmarks.bench_reference import markdown as reference_markdown

    lines += reference_markdown()
    lines += _kernels_markdown(_rows(RESULTS / "kernels-ab.jsonl"))
    profiles = {r["dataset"]: r for r in _rows(RESULTS / "profile.jsonl")}
    if profiles:
        cats = list(PROFILE_CATEGORIES)
        any_row = next(iter(profiles.values()))
        lines += [
            f"Where a step goes (`--profile`): milliseconds per step, torch.profiler over {any_row['profile_steps']} steps "
            f"after the timed ones, WERank on, {any_row['threads']} threads. Each operator's own time counts once: products "
            f"by the operator, everything else by the part of the model it runs in (the encoder's compiled BatchNorm+PReLU "
            f"kernel, or BatchNorm and PReLU where it is not built, the predictor's PReLU, the BGRL and WERank "
            f"losses, the optimizer, building the views, the EMA update); \"other\" is what runs outside those (autograd's "
            f"own additions and copies, reshapes), \"outside operators\" the Python between operators. The profiler adds "
            f"a little to the step (compare the first two columns). The last column is what the target leaves for "
            f"everything but the dense products.",
            "",
            f"| dataset | unprofiled step (median) | profiled step | {' | '.join(cats)} | dense products' rate | target | target − dense products |",
            "|---|---|---|" + "---|" * len(cats) + "---|---|---|",
        ]
        for name in DATASETS:
            r = profiles.get(name)
            if not r:
                continue
            ms = r["profile_ms"]
            rate = 2 * r["gmacs_dense_per_step"] / (ms["dense products"] / 1e3)
            target = 1e3 * TARGET_S[name]
            lines.append(f"| {name} | {1e3 * r['s_epoch_median']:.0f} ms | {r['profile_step_ms']:.0f} ms | " + " | ".join(f"{ms[c]:.0f} ms" if c in ms else "–" for c in cats)
                         + f" | {rate:.0f} GFLOP/s | {target:.0f} ms | {target - ms['dense products']:.0f} ms |")
        lines.append("")
    probes = {r["dataset"]: r for r in _rows(RESULTS / "probe.jsonl")}
    if probes:
        lines += [
            "Linear evaluation: 20 random 10/10/80 splits, C chosen on validation from 2⁻¹⁰…2¹⁰ (21 values), on the "
            "embeddings of the benchmark's model (shipped config, WERank on, after the 55 benchmark epochs); "
            "scikit-learn on the same splits and grid at its default tol 1e-4 and run to convergence (tol 1e-8).",
            "",
            "| dataset | torch probe | accuracy | scikit-learn, tol 1e-4 | accuracy | scikit-learn, tol 1e-8 | accuracy | torch − sklearn (1e-8) | load average |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in probes.items():
            a, b = "probe_sklearn_tol0.0001", "probe_sklearn_tol1e-08"
            lines.append(
                f"| {name} | {r['probe_torch_s']:.1f} s | {r['probe_torch_acc']:.2f} ± {r['probe_torch_std']:.2f} | "
                f"{r[a + '_s']:.1f} s | {r[a + '_acc']:.2f} ± {r[a + '_std']:.2f} | "
                f"{r[b + '_s']:.1f} s | {r[b + '_acc']:.2f} ± {r[b + '_std']:.2f} | {r[b + '_diff_points']:+.2f} pt ({r[b + '_same_c']}/20 same C) | {r['loadavg_1min']:.1f} |"
            )
        lines.append("")
    scaling = {r["nodes"]: r for r in _rows(RESULTS / "scaling.jsonl")}
    if scaling:
        lines += [
            "Scaling on CSBM graphs (average degree 10, 500 sparse features, 10 non-zeros per node, layers 256-128, "
            "predictor 256, WERank on, full batch):",
            "",
            "| nodes | edges | s / epoch | floor (measured rate) | GEMM rate | peak RSS | freed memory kept in the heap | epochs timed | time / edges vs 10⁴ | memory / edges vs 10⁴ |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in sorted(scaling):
            r = scaling[n]
            r0 = scaling[min(scaling)]
            t_rel = (r["s_epoch_median"] / r["edges"]) / (r0["s_epoch_median"] / r0["edges"])
            m_rel = (r["peak_rss_mb"] / r["edges"]) / (r0["peak_rss_mb"] / r0["edges"])
            heap = {True: "yes", False: "no"}.get(r.get("heap_kept"), "yes (always, then)")
            lines.append(f"| {n:,} | {r['edges']:,} | {r['s_epoch_median']:.2f} | {r['floor_s_measured_rate']:.2f} | {r['gemm_gflops_measured']:.0f} GFLOP/s | {r['peak_rss_mb'] / 1024:.2f} GB | "
                         f"{heap} | {r['epochs_timed']} | {t_rel:.2f} | {m_rel:.2f} |")
        lines.append("")
    lines += _against_markdown(_rows(RESULTS / "against.jsonl"))
    lines += _against_steps_markdown(_rows(RESULTS / "against-steps.jsonl"))
    lines += _methods_markdown(_rows(RESULTS / "methods.jsonl"))
    lines += _methods_steps_markdown(_rows(RESULTS / "methods-steps.jsonl"))
    compare = _rows(RESULTS / "compare-plain.jsonl")
    if compare:
        # rows with a "backend" are of the plain backend (7035b16 on); older ones of bgrl_werank.plain
        current = [r for r in compare if "backend" in r]
        latest = {(r["path"], r["seed"]): r for r in (current or compare)}  # the newest run of each (path, seed)
        by_path: dict[str, list[dict]] = {}
        for r in latest.values():
            by_path.setdefault(r["path"], []).append(r)
        what = ("Fast backend vs the plain backend (`backend=plain`: the encoder of `bgrl_werank.encoders.build` from stock "
                "PyG layers, plain views; the yardstick the fast backend is held to), BGRL on Cora" if current else
                "Fast path vs the plain implementation of the code before 7035b16 (`bgrl_werank.plain`, since replaced "
                "by the `plain` backend), BGRL on Cora")
        lines += [f"{what}, same seeds, public split:", "",
                  "| path | seeds | epochs | s / epoch (median of seeds) | test accuracy (mean ± sample std over seeds) | load average |", "|---|---|---|---|---|---|"]
        for path in ("fast", "plain"):
            rows = by_path.get(path, [])
            if not rows:
                continue
            accs = [r["public_test_acc"] for r in rows]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            lines.append(f"| {path} | {', '.join(str(r['seed']) for r in rows)} | {rows[0]['epochs']} | "
                         f"{statistics.median(r['s_epoch_median'] for r in rows):.3f} | {statistics.mean(accs):.2f} ± {std:.2f} | "
                         f"{_span([r['loadavg_1min'] for r in rows])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--epochs", type=int, default=50, help="timed epochs per configuration (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed epochs first (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--scaling", action="store_true", help="CSBM scaling table instead")
    p.add_argument("--nodes", type=int, nargs="+", default=list(SCALING_NODES), help="CSBM sizes for --scaling")
    p.add_argument("--profile", action="store_true", help="where a step's time goes, by kind of operator (torch.profiler, WERank on)")
    p.add_argument("--probe", action="store_true", help="linear-probe timing and accuracy vs scikit-learn (Cora, Photo)")
    p.add_argument("--compare-plain", action="store_true", help="BGRL on Cora on the fast and the plain backend: time and accuracy")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for --compare-plain")
    p.add_argument("--compare-epochs", type=int, default=300, help="epochs per --compare-plain run (default 300, Cora's config)")
    p.add_argument("--kernels-ab", action="store_true", help="steps with and without the compiled kernels, alternating in one process (WERank on)")
    p.add_argument("--against", metavar="REV", help="time this tree against git revision REV, interleaved (WERank on)")
    p.add_argument("--in-process", action="store_true",
                   help="with --against: both trees' trainers in one process per dataset and round, steps alternating; "
                        "with --methods: every method's trainer in one process per round, steps in turn")
    p.add_argument("--methods", nargs="*", choices=list(METHOD_CONFIGS), metavar="METHOD",
                   help=f"seconds per epoch of each method's Cora config, interleaved (default: all of {', '.join(METHOD_CONFIGS)})")
    p.add_argument("--rounds", type=int, help="processes per tree (--against), per method (--methods) (default 3), "
                                              "per dataset (--kernels-ab, default 1)")
    p.add_argument("--ab-seconds", type=float, default=10.0,
                   help="--kernels-ab, --methods --in-process: about this many seconds of steps per process (default 10)")
    p.add_argument("--out", help="JSONL file to append to (default benchmarks/results/<mode>.jsonl)")
    p.add_argument("--markdown", action="store_true", help="print the README tables from benchmarks/results/")
    p.add_argument("--update", metavar="README", help="with --markdown: paste the tables into README between perf markers")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        worker = {"compare-plain": run_compare, "kernels-ab": run_kernels_ab, "against-steps": run_against_steps,
                  "methods-steps": run_methods_steps}.get(spec["mode"], run_epochs)
        result = worker(spec)
        print(json.dumps(result), flush=True)
        return 0
    if args.markdown:
        text = markdown()
        if args.update:
            from bgrl_werank.results import update_file

            update_file(args.update, "perf", text)
        else:
            print(text)
        return 0

    mode = ("scaling" if args.scaling else "compare-plain" if args.compare_plain else "probe" if args.probe else "profile" if args.profile
            else "kernels-ab" if args.kernels_ab else ("against-steps" if args.in_process else "against") if args.against
            else ("methods-steps" if args.in_process else "methods") if args.methods is not None else "epoch")
    out = Path(args.out) if args.out else RESULTS / f"{mode}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_fields()
    if args.rounds is None and (args.against or args.methods is not None):
        args.rounds = 3
    if args.methods is not None:
        args.methods = args.methods or list(METHOD_CONFIGS)
        return run_methods(args, out, machine)
    if args.against:
        try:
            return run_against(args, out, machine)
        except subprocess.CalledProcessError as e:
            print(f"error: git {' '.join(e.cmd[1:3])} failed: {(e.stderr or '').strip().splitlines()[-1:] or ['?']}", file=sys.stderr)
            return 2
    failed = 0
    for spec in specs(args):
        result = {**_spawn(spec), **machine}
        failed += "error" in result
        _emit(out, result)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
