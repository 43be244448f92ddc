"""Scale benchmark: full-batch against mini-batched (``train.batching: subgraph``) BGRL on CSBM graphs of
10⁴ … 10⁷ nodes, and data-parallel training under ``torchrun`` with 1 and 2 processes.

Modes (each measurement in its own process, so peak memory is per configuration):

* default — CSBM graphs of ``--nodes`` nodes (default 10⁴, 10⁵, 10⁶, 10⁷; average degree 10, 500
  sparse binary features with 10 ones per node, 10 classes, weak feature signal), BGRL with GCN [128, 64], predictor 128,
  WERank on, the fast backend, each trained ``full`` and ``subgraph`` (``--batch-size`` seeds, one
  hop: ``--num-hops``), then probed as ``train.py`` ends a run (``eval.inference: layerwise``, random
  10/10/80 split, ``--splits`` splits). Rows: seconds per epoch, nodes per second, seconds per
  million edges, peak RSS, probe accuracy and RankMe. ``full`` is run where it fits: its peak memory
  at the next size down, scaled by the node count, is compared with this machine's available memory
  first, and a size that would not fit is recorded as such (with the estimate) instead of run.
* ``--ddp`` — ``torchrun --standalone --nproc-per-node N train.py`` for N = 1 and 2 (gloo, one thread
  per process), and one process with two threads, on one CSBM graph with ``subgraph`` batching: seconds
  per epoch from each run's ``metrics.jsonl``, and the efficiency of two processes over one.

Every result is one JSON line on stdout, also appended to ``benchmarks/results/scale.jsonl`` (or
``scale-ddp.jsonl``); ``--markdown`` prints the tables and ``--update README.md`` pastes them between
``<!-- scale:begin -->`` and ``<!-- scale:end -->``.

Usage::

    python -m benchmarks.bench_scale                     # all four sizes (10⁷: about an hour on 2 cores)
    python -m benchmarks.bench_scale --nodes 10000 100000
    python -m benchmarks.bench_scale --ddp
    python -m benchmarks.bench_scale --markdown --update README.md
"""

from __future__ import annotations

import bgrl_werank  # noqa: F401  (first: sets THP_MEM_ALLOC_ENABLE before torch starts)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.bench_epoch import RESULTS, ROOT, _emit, _rows, _spawn, machine_fields  # noqa: E402
from bgrl_werank.results import add_update_arguments, publish  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
# The graph and model of every row: a CSBM graph of average degree 10 with bag-of-words-like sparse
# features, a BGRL GCN narrow enough that the 10⁷-node graph trains an epoch in well under an hour here.
# The class signal in the features is weak (``signal`` 0.1: 18 % of a node's ones in its class's block,
# against 10 % by chance; homophily 0.8), so the probe's accuracy says something (the generator's
# default, signal 1, is separable to ~99 % at every size).
GRAPH = ["data.name=csbm", "data.csbm.avg_degree=10", "data.csbm.num_features=500", "data.csbm.feature_density=0.02",
         "data.csbm.num_classes=10", "data.csbm.signal=0.1", "data.row_normalize=true"]
MODEL = ["model.layer_sizes=[128, 64]", "method.bgrl.predictor_hidden=128", "werank.enabled=true",
         "train.epochs=1000", "optim.warmup_epochs=10"]
# The probe of every row: the run's own (``train.py``'s last step), layer by layer, on a random split.
# Five values of C instead of the default 21: the probe's L-BFGS holds (train nodes × C values × classes)
# logits, 10⁶ × 21 × 10 at 10⁷ nodes (the random split's 10 %), gigabytes of temporaries.
PROBE = ["eval.protocol=random", "eval.inference=layerwise", "eval.inference_batch_size=65536",
         "eval.c_grid=[0.01, 0.1, 1.0, 10.0, 100.0]"]
FIT_MARGIN = 0.8  # run ``full`` only where the estimated peak stays under this share of the available memory


def _mem_available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def _epochs_for(n: int, batching: str) -> tuple[int, int]:
    """(untimed warm-up epochs, timed epochs) for a size: fewer where an epoch takes minutes."""
    if n >= 10_000_000:
        return 0, 1
    if n >= 1_000_000:
        return (0, 2) if batching == "subgraph" else (1, 2)
    return (1, 3) if n >= 100_000 else (2, 5)


def full_estimate_mb(full_peak: dict[int, float], n: int) -> float | None:
    """Full-batch peak RSS (MB) expected at ``n`` nodes: the measured peak at the largest smaller size,
    scaled by the node count (activations, features and edges all grow linearly at a fixed degree);
    None before any smaller size has run."""
    below = [m for m in full_peak if m < n]
    return None if not below else full_peak[max(below)] * n / max(below)


def scale_specs(args) -> list[dict]:
    out = []
    for n in args.nodes:
        for batching in ("full", "subgraph"):
            warmup, epochs = _epochs_for(n, batching)
            overrides = [*GRAPH, f"data.csbm.num_nodes={n}", *MODEL, *PROBE, f"eval.num_splits={args.splits}",
                         f"train.batching={batching}", f"seed={args.seed}"]
            if batching == "subgraph":
                overrides += [f"train.batch_size={args.batch_size}", f"train.num_hops={args.num_hops}"]
            out.append({"mode": "scale", "batching": batching, "nodes_requested": n, "threads": args.threads,
                        "warmup": warmup, "epochs": epochs, "floor": False, "evaluate": True, "overrides": overrides})
    return out


def run_scale(args, out: Path, machine: dict) -> int:
    failed = 0
    full_peak: dict[int, float] = {}  # nodes -> peak RSS (MB) of a finished full-batch row
    for spec in scale_specs(args):
        n = spec["nodes_requested"]
        if spec["batching"] == "full":
            available = _mem_available_mb()
            estimate = full_estimate_mb(full_peak, n)
            if estimate is not None and estimate > FIT_MARGIN * available:
                _emit(out, {"mode": "scale", "batching": "full", "nodes": n, "fits": False,
                            "estimated_peak_rss_mb": round(estimate), "available_mb": round(available),
                            "threads": args.threads, "revision": _revision(), **machine})
                continue
        t = time.perf_counter()
        res = _spawn(spec)
        row = {**res, "batching": spec["batching"], "overrides": spec["overrides"], "fits": "error" not in res, "wall_s": round(time.perf_counter() - t, 1),
               "revision": _revision(), **machine}
        if "error" not in res:
            edges = res["edges"]
            row["nodes_per_s"] = round(res["nodes"] / res["s_epoch_median"])
            row["s_per_million_edges"] = round(res["s_epoch_median"] / (edges / 1e6), 4)
            if spec["batching"] == "full":
                full_peak[res["nodes"]] = res["peak_rss_mb"]
        failed += "error" in res
        _emit(out, row)
    return 1 if failed else 0


def _revision() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------------------------------
# data-parallel: torchrun with 1 and 2 processes
# --------------------------------------------------------------------------------------------------


def _train_run(cmd: list[str], env: dict, cwd: Path) -> tuple[float, dict | None, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return wall, None, (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return wall, {}, ""


def run_ddp(args, out: Path, machine: dict) -> int:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        print("error: torchrun is not on PATH; it comes with torch (pip install torch==2.13.0)", file=sys.stderr)
        return 2
    n = args.ddp_nodes
    overrides = [*GRAPH, f"data.csbm.num_nodes={n}", *MODEL, "train.batching=subgraph",
                 f"train.batch_size={args.batch_size}", f"train.num_hops={args.num_hops}", f"train.epochs={args.ddp_epochs}",
                 "optim.warmup_epochs=1", "train.progress=none", "diagnostics.every=0", "checkpoint.every=1000",
                 f"seed={args.seed}"]
    failed = 0
    # (label, processes, threads per process)
    for label, procs, threads in (("1 process, 1 thread", 1, 1), ("2 processes, 1 thread each", 2, 1), ("1 process, 2 threads", 1, 2)):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp, "run")
            sets = [*(a for o in [*overrides, f"threads={threads}"] for a in ("--set", o)), "--run-dir", str(run_dir), "--no-eval"]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            if procs == 1:
                cmd = [sys.executable, "train.py", *sets]
            else:
                cmd = [torchrun, "--standalone", f"--nproc-per-node={procs}", "train.py", *sets]
            wall, ok, err = _train_run(cmd, env, ROOT)
            row = {"mode": "scale-ddp", "label": label, "processes": procs, "threads_per_process": threads, "nodes": n,
                   "batch_size": args.batch_size, "num_hops": args.num_hops, "epochs": args.ddp_epochs,
                   "wall_s": round(wall, 1), "revision": _revision(), **machine}
            if ok is None:
                row["error"] = err
                failed += 1
            else:
                metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl") if line.strip()]
                epochs = [m for m in metrics if "epoch_time_s" in m]
                times = [m["epoch_time_s"] for m in epochs[1:]] or [m["epoch_time_s"] for m in epochs]  # first: warm-up
                row.update(s_epoch_median=round(statistics.median(times), 3), epochs_timed=len(times),
                           steps_per_epoch=epochs[-1].get("batches"), last_loss=round(epochs[-1]["loss"], 5))
            _emit(out, row)
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------


def _latest(rows: list[dict], key) -> dict:
    latest: dict = {}
    for r in rows:
        latest[key(r)] = r
    return latest


def markdown(results: Path = RESULTS) -> str:
    lines: list[str] = []
    scale = _latest([r for r in _rows(results / "scale.jsonl") if "nodes" in r or "nodes_requested" in r],
                    lambda r: (r.get("nodes", r.get("nodes_requested")), r["batching"]))
    if scale:
        some = next((r for r in scale.values() if r.get("batching") == "subgraph" and r.get("overrides")),
                    next(iter(scale.values())))
        lines += [
            f"CSBM graphs (average degree 10, homophily 0.8, 500 sparse features with 10 ones per node, signal 0.1, 10 "
            f"classes), BGRL + WERank, "
            f"GCN [128, 64], fast backend, {some.get('threads', '?')} threads, on {some.get('cpu_kind', '?')}; `subgraph`: "
            f"batches of {_spec_value(some, 'train.batch_size') or '?'} seed nodes with their "
            f"{_spec_value(some, 'train.num_hops') or '?'}-hop induced subgraph. Probe: layerwise inference, random "
            f"10/10/80 split, C ∈ {_spec_value(some, 'eval.c_grid') or 'the default grid'}, after the few epochs timed (a sanity "
            f"check that the graph trains and is probed, not a result). Peak RSS is the training's, before the probe. Generated by `python -m benchmarks.bench_scale` (`benchmarks/results/scale.jsonl`).",
            "",
            "| nodes | edges | batching | s / epoch | nodes / s | s per 10⁶ edges | peak RSS, training | nodes per step (× N per epoch) | "
            "µs per node computed | probe accuracy (epochs) | RankMe |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (n, batching), r in sorted(scale.items()):
            if not r.get("fits", True) and "estimated_peak_rss_mb" in r:
                lines.append(f"| {n:,} | | {batching} | not run: ≈ {r['estimated_peak_rss_mb'] / 1024:.0f} GB estimated (scaled "
                             f"from the size below), {r['available_mb'] / 1024:.0f} GB available | | | | | | | |")
                continue
            if "error" in r:
                lines.append(f"| {n:,} | | {batching} | failed: {r['error']} | | | | | | | |")
                continue
            if "batch_nodes_mean" in r:
                computed = r["batches"] * r["batch_nodes_mean"]
                step = f"{r['batch_nodes_mean']:,.0f} (× {computed / r['nodes']:.1f})"
            else:
                computed = r["nodes"] if batching == "full" else None
                step = f"{r['nodes']:,} (× 1)" if batching == "full" else "—"
            per_node = f"{1e6 * r['s_epoch_median'] / computed:.2f}" if computed else "—"
            probe_peak = f" ({r['peak_rss_mb_with_eval'] / 1024:.1f} with the probe)" if "peak_rss_mb_with_eval" in r else ""
            lines.append(f"| {r['nodes']:,} | {r['edges']:,} | {batching} | {r['s_epoch_median']:.2f} | {r['nodes_per_s']:,} | "
                         f"{r['s_per_million_edges']:.3f} | {r['peak_rss_mb'] / 1024:.2f} GB{probe_peak} | {step} | {per_node} | "
                         f"{r['eval_acc']:.2f} ({r.get('epochs_trained', '?')}) | {r['rankme']:.1f} |")
        lines.append("")
    ddp = _latest(_rows(results / "scale-ddp.jsonl"), lambda r: r["label"])
    if ddp:
        some = next(iter(ddp.values()))
        base = ddp.get("1 process, 1 thread")
        lines += [
            f"Data-parallel (`torchrun --standalone --nproc-per-node N train.py`, gloo), CSBM {some['nodes']:,} nodes, "
            f"`subgraph` batches of {some['batch_size']} seeds ({some['num_hops']} hop), {some['epochs']} epochs, on "
            f"{some.get('cpu_kind', '?')}. Generated by `python -m benchmarks.bench_scale --ddp`.",
            "",
            "| run | batches / epoch (steps per process) | s / epoch | speed-up over 1 process, 1 thread | efficiency per core |",
            "|---|---|---|---|---|",
        ]
        for label, r in ddp.items():
            if "error" in r:
                lines.append(f"| {label} | failed: {r['error']} | | | |")
                continue
            cores = r["processes"] * r["threads_per_process"]
            speed = base["s_epoch_median"] / r["s_epoch_median"] if base and "error" not in base else float("nan")
            steps = r["steps_per_epoch"] // r["processes"]
            lines.append(f"| {label} | {r['steps_per_epoch']} ({steps}) | {r['s_epoch_median']:.2f} | {speed:.2f}× | "
                         f"{100 * speed / cores:.0f} % |")
        lines.append("")
    return "\n".join(lines)


def _spec_value(row: dict, key: str) -> str | None:
    for o in row.get("overrides", []) or row.get("spec", {}).get("overrides", []):
        if o.startswith(key + "="):
            return o.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=list(SIZES), help="CSBM sizes (default 10⁴ 10⁵ 10⁶ 10⁷)")
    p.add_argument("--batch-size", type=int, default=8192, help="subgraph: seed nodes per batch (default 8192)")
    p.add_argument("--num-hops", type=int, default=1, help="subgraph: hops around the seeds (default 1)")
    p.add_argument("--splits", type=int, default=1, help="probe splits per row (default 1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ddp", action="store_true", help="torchrun with 1 and 2 processes instead")
    p.add_argument("--ddp-nodes", type=int, default=100_000, help="--ddp: CSBM nodes (default 10⁵)")
    p.add_argument("--ddp-epochs", type=int, default=4, help="--ddp: epochs per run, the first untimed (default 4)")
    p.add_argument("--out", help="JSONL file to append to (default benchmarks/results/scale.jsonl or scale-ddp.jsonl)")
    p.add_argument("--markdown", action="store_true", help="print the tables from benchmarks/results/ (with --update: paste them)")
    add_update_arguments(p, "scale")
    args = p.parse_args(argv)
    if args.markdown:
        return publish(markdown(), args)
    out = Path(args.out) if args.out else RESULTS / ("scale-ddp.jsonl" if args.ddp else "scale.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_fields()
    return run_ddp(args, out, machine) if args.ddp else run_scale(args, out, machine)


if __name__ == "__main__":
    sys.exit(main())
