"""This project against the BGRL reference implementation (nerdslab/bgrl), side by side, per CPU kind.

The reference is not part of this repository and nothing here fetches it: point ``--reference`` at
your own checkout of https://github.com/nerdslab/bgrl (pure Python on PyTorch and PyG; it needs
``absl-py`` only for its own scripts, which are not used). Both sides train BGRL on the same graph
(loaded by :func:`bgrl_werank.data.load_dataset` from the same raw files, features row-normalised as
the reference's loader does) with the same settings, read from this project's config file:

* **this code**: :class:`bgrl_werank.train.trainer.Trainer` on the backend ``backend: auto`` picks
  (``fast`` on CPU), through :func:`benchmarks.bench_epoch.run_epochs` — WERank off (the reference's
  model exactly) and, in the timing rounds, also WERank on as shipped, and WERank off on the
  ``plain`` backend (stock PyG layers; the fast backend must never be slower than it);
* **the reference**: its ``GCN`` (GCNConv → PyG BatchNorm with ``momentum=0.99`` → PReLU per layer),
  ``MLP_Predictor``, ``BGRL`` (EMA target), its ``get_graph_drop_transform`` views,
  ``CosineDecayScheduler`` for the learning rate and the momentum, and PyTorch's AdamW, in the step
  of its ``train_transductive.py`` (without the TensorBoard writes).

Modes:

* default — timing: ``--rounds`` rounds per dataset, each one process of the reference and one of this
  code per WERank setting, the order rotating; every process times ``--epochs`` epochs after
  ``--warmup``. The project's process also measures the GEMM rate and the step's multiply-adds
  (``bench_epoch``'s floor): the reference's s / epoch divided by that floor is the largest speed-up
  any implementation of the same arithmetic could show on this CPU.
* ``--accuracy`` — both trained for the config's epochs (``--accuracy-epochs`` to shorten, with the
  warm-up scaled), per ``--seeds``, WERank off, then probed by this project's probe under the
  config's ``eval`` protocol (Cora: the public split; the others: 20 random 10/10/80 splits) on the
  eval-mode encoder's representations.

Rows go to ``benchmarks/results/reference.jsonl`` (with the CPU, :func:`bgrl_werank.cpu.cpu_info`);
``python -m benchmarks.bench_epoch --markdown --update docs/performance.md`` puts the tables, one
column group per CPU kind, into docs/performance.md.

Usage::

    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_reference --reference ~/src/bgrl
    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_reference --reference ~/src/bgrl --accuracy --datasets cora --seeds 0 1 2
"""

from __future__ import annotations

import bgrl_werank  # noqa: F401  (first: sets THP_MEM_ALLOC_ENABLE before torch starts)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.bench_epoch import DATASETS, RESULTS, ROOT, _emit, _spawn, machine_fields, row_cpu_kind  # noqa: E402

# The goals: this code's speed-up over the reference, side by side on one machine.
GOAL = {"cora": 3.0, "amazon-photo": 7.0, "coauthor-cs": 12.0}
REFERENCE_FILES = ("bgrl/models.py", "bgrl/predictors.py", "bgrl/bgrl.py", "bgrl/transforms.py", "bgrl/scheduler.py")


def check_reference(path: Path) -> str | None:
    """Why ``path`` is not a checkout of the reference, or None."""
    missing = [f for f in REFERENCE_FILES if not (path / f).is_file()]
    if missing:
        return (f"{path} is not a checkout of nerdslab/bgrl (missing {', '.join(missing)}); "
                f"clone https://github.com/nerdslab/bgrl and pass its folder to --reference")
    return None


def _schedule_overrides(cfg_raw: dict, epochs: int | None) -> dict:
    """Epochs and warm-up of a run of ``epochs`` epochs (None: the config's), warm-up scaled with them."""
    total = cfg_raw["train"]["epochs"] if epochs is None else epochs
    warmup = cfg_raw["optim"]["warmup_epochs"]
    if epochs is not None:
        warmup = max(1, round(warmup * epochs / cfg_raw["train"]["epochs"]))
    return {"epochs": total, "warmup_epochs": min(warmup, total - 1)}


def run_reference(spec: dict) -> dict[str, object]:
    """Worker: the reference's BGRL, built and stepped as its ``train_transductive.py`` does.

    Trains ``spec['warmup'] + spec['epochs']`` epochs of a schedule of ``spec['total']`` epochs, times
    the last ``spec['epochs']``, and with ``spec['evaluate']`` probes the eval-mode online encoder's
    representations with this project's probe under the config's protocol.
    """
    sys.path.insert(0, spec["reference"])
    from torch.nn.functional import cosine_similarity
    from torch.optim import AdamW
    from torch_geometric.data import Data

    from bgrl.bgrl import BGRL
    from bgrl.models import GCN
    from bgrl.predictors import MLP_Predictor
    from bgrl.scheduler import CosineDecayScheduler
    from bgrl.transforms import get_graph_drop_transform
    from bgrl.utils import set_random_seeds

    from bgrl_werank.data import get_splits, load_dataset
    from bgrl_werank.eval import linear_probe, rankme

    torch.set_num_threads(spec["threads"])
    raw = yaml.safe_load(open(ROOT / spec["config"]))
    seed = spec.get("seed", 0)
    set_random_seeds(seed)
    loaded = load_dataset(raw["data"]["name"], row_normalize=bool(raw["data"].get("row_normalize", False)))
    data = Data(x=loaded.x, edge_index=loaded.edge_index)
    (v1, v2) = raw["augment"]
    transform_1 = get_graph_drop_transform(drop_edge_p=v1["edge_drop_p"], drop_feat_p=v1["feat_mask_p"])
    transform_2 = get_graph_drop_transform(drop_edge_p=v2["edge_drop_p"], drop_feat_p=v2["feat_mask_p"])
    sizes = raw["model"]["layer_sizes"]
    bgrl_cfg = raw["method"]["bgrl"]
    encoder = GCN([data.x.size(1)] + sizes, batchnorm=True)
    predictor = MLP_Predictor(sizes[-1], sizes[-1], hidden_size=bgrl_cfg["predictor_hidden"])
    model = BGRL(encoder, predictor)
    lr, wd = raw["optim"]["lr"], raw["optim"]["weight_decay"]
    optimizer = AdamW(model.trainable_parameters(), lr=lr, weight_decay=wd)
    total, warmup_epochs = spec["total"], spec["warmup_epochs"]
    lr_scheduler = CosineDecayScheduler(lr, warmup_epochs, total)
    mm_scheduler = CosineDecayScheduler(1 - bgrl_cfg["momentum"], 0, total)

    def train(step: int) -> float:  # the reference's train(step), TensorBoard writes left out
        model.train()
        rate = lr_scheduler.get(step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        mm = 1 - mm_scheduler.get(step)
        optimizer.zero_grad()
        x1, x2 = transform_1(data), transform_2(data)
        q1, y2 = model(x1, x2)
        q2, y1 = model(x2, x1)
        loss = 2 - cosine_similarity(q1, y2.detach(), dim=-1).mean() - cosine_similarity(q2, y1.detach(), dim=-1).mean()
        loss.backward()
        optimizer.step()
        model.update_target_network(mm)
        return float(loss)

    times = []
    for step in range(spec["warmup"] + spec["epochs"]):
        t = time.perf_counter()
        loss = train(step)
        if step >= spec["warmup"]:
            times.append(time.perf_counter() - t)
    out: dict[str, object] = {
        "tree": "reference", "dataset": raw["data"]["name"], "threads": torch.get_num_threads(), "seed": seed,
        "layers": sizes, "predictor_hidden": bgrl_cfg["predictor_hidden"], "epochs_timed": len(times),
        "s_epoch_median": round(statistics.median(times), 4), "s_epoch_min": round(min(times), 4),
        "s_epoch_max": round(max(times), 4), "last_loss": round(loss, 6), "reference": spec["reference"],
    }
    if spec.get("evaluate"):
        encoder.eval()
        with torch.no_grad():
            z = encoder(data).float()
        ev = raw.get("eval", {})
        splits = get_splits(loaded, ev.get("protocol", "random"), ev.get("num_splits", 20), ev.get("split_seed", 0))
        res = linear_probe(z, loaded.y, splits)
        out.update(eval_protocol=ev.get("protocol", "random"), eval_splits=len(splits), eval_acc=round(100 * res.mean, 3),
                   eval_std=round(100 * res.std, 3), rankme=round(float(rankme(z)), 2),
                   epochs_trained=spec["warmup"] + spec["epochs"])
    out["loadavg_1min"] = round(os.getloadavg()[0], 2)
    return out


def _spawn_reference(spec: dict) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_reference", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"tree": "reference", "spec": spec, "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


KEEP = ("s_epoch_median", "s_epoch_min", "s_epoch_max", "epochs_timed", "threads", "backend", "werank", "layers",
        "predictor_hidden", "gmacs_per_step", "gmacs_dense_per_step", "gemm_gflops_measured", "floor_s_measured_rate",
        "eval_protocol", "eval_splits", "eval_acc", "eval_std", "rankme", "epochs_trained", "seed", "peak_rss_mb",
        "loadavg_1min", "last_loss", "error")


def run(args) -> int:
    reference = Path(args.reference).expanduser().resolve()
    problem = check_reference(reference)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else RESULTS / "reference.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_fields()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    revision = head + ("+changes" if dirty.strip() else "")
    batch = time.strftime("%Y-%m-%dT%H:%M:%S")
    failed = 0
    for name in args.datasets:
        config = f"configs/{name}.yaml"
        raw = yaml.safe_load(open(ROOT / config))
        if args.accuracy:
            sched = _schedule_overrides(raw, args.accuracy_epochs)
            for seed in args.seeds:
                mine = {"mode": "epoch", "config": config, "threads": args.threads, "floor": False, "warmup": 0,
                        "epochs": sched["epochs"], "evaluate": True,
                        "overrides": ["werank.enabled=false", f"seed={seed}", f"train.epochs={sched['epochs']}",
                                      f"optim.warmup_epochs={sched['warmup_epochs']}"]}
                theirs = {"config": config, "threads": args.threads, "reference": str(reference), "seed": seed, "warmup": 0,
                          "epochs": sched["epochs"], "total": sched["epochs"], "warmup_epochs": sched["warmup_epochs"],
                          "evaluate": True}
                for tree, res in (("this", lambda: _spawn(mine)), ("reference", lambda: _spawn_reference(theirs))):
                    row = res()
                    failed += "error" in row
                    _emit(out, {"mode": "reference-accuracy", "dataset": name, "tree": tree, "batch": batch,
                                "revision": revision, **{k: row[k] for k in KEEP if k in row}, **machine})
            continue
        sched = _schedule_overrides(raw, None)
        mine = {"mode": "epoch", "config": config, "threads": args.threads, "floor": True, "warmup": args.warmup,
                "epochs": args.epochs}
        theirs = {"config": config, "threads": args.threads, "reference": str(reference), "warmup": args.warmup,
                  "epochs": args.epochs, "total": sched["epochs"], "warmup_epochs": sched["warmup_epochs"]}
        runs = [("reference", lambda: _spawn_reference(theirs)),
                ("this", lambda: _spawn({**mine, "overrides": ["werank.enabled=false"]})),
                ("this-werank", lambda: _spawn({**mine, "overrides": ["werank.enabled=true"]})),
                ("this-plain", lambda: _spawn({**mine, "floor": False, "overrides": ["werank.enabled=false", "backend=plain"]}))]
        for r in range(args.rounds):
            order = runs[r % len(runs):] + runs[:r % len(runs)]
            for tree, res in order:
                row = res()
                failed += "error" in row
                _emit(out, {"mode": "reference", "dataset": name, "tree": tree, "round": r, "batch": batch,
                            "revision": revision, **{k: row[k] for k in KEEP if k in row}, **machine})
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------


def _latest_batch(rows: list[dict], mode: str) -> dict[tuple[str, str], list[dict]]:
    """Per (CPU kind, dataset), the rows of the newest batch that measured it."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("mode") == mode and "error" not in r:
            groups.setdefault((row_cpu_kind(r), r["dataset"]), []).append(r)
    return {key: [r for r in rs if r["batch"] == rs[-1]["batch"]] for key, rs in groups.items()}


def speedups(rows: list[dict]) -> dict[str, object]:
    """One dataset's timing rounds on one CPU: medians, per-round speed-ups, the floor's bound."""
    by_round: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_round.setdefault(r["round"], {})[r["tree"]] = r
    complete = [t for t in by_round.values() if {"reference", "this", "this-werank", "this-plain"} <= set(t)]
    if not complete:
        return {}
    med = lambda tree: statistics.median(t[tree]["s_epoch_median"] for t in complete)  # noqa: E731
    ratio = lambda tree: [t["reference"]["s_epoch_median"] / t[tree]["s_epoch_median"] for t in complete]  # noqa: E731
    bound = [t["reference"]["s_epoch_median"] / t["this"]["floor_s_measured_rate"] for t in complete]
    return {"rounds": len(complete), "epochs": complete[0]["reference"]["epochs_timed"], "reference_s": med("reference"),
            "this_s": med("this"), "this_werank_s": med("this-werank"), "plain_s": med("this-plain"),
            "plain_over_fast": statistics.median(t["this-plain"]["s_epoch_median"] / t["this"]["s_epoch_median"] for t in complete), "speedup": statistics.median(ratio("this")),
            "speedup_rounds": ratio("this"), "speedup_werank": statistics.median(ratio("this-werank")),
            "floor_s": statistics.median(t["this"]["floor_s_measured_rate"] for t in complete),
            "gemm": statistics.median(t["this"]["gemm_gflops_measured"] for t in complete),
            "bound": statistics.median(bound), "threads": complete[0]["this"]["threads"],
            "loads": [t[k]["loadavg_1min"] for t in complete for k in t if t[k].get("loadavg_1min") is not None]}


def markdown(path: Path | None = None) -> list[str]:
    rows = []
    path = path or RESULTS / "reference.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines: list[str] = []
    timing = _latest_batch(rows, "reference")
    kinds = sorted({kind for kind, _ in timing})
    if kinds:
        stats = {key: speedups(rs) for key, rs in timing.items()}
        lines += [
            "Against the BGRL reference implementation (nerdslab/bgrl), side by side on each CPU kind "
            "(`python -m benchmarks.bench_reference --reference <checkout>`): BGRL on the shipped config's graph, "
            "layers, views and schedule; per round one process of the reference and one of this code with WERank off "
            "(the reference's model) and on (as shipped), the order rotating; each process times the epochs given "
            "after 3 warm-up epochs, and one of this code on the `plain` backend (stock PyG layers, WERank off: what "
            "the fast backend must never be slower than); medians over rounds, and the speed-up as the median of the per-round ratios "
            "(reference s / epoch over this code's). \"Bound\" is the reference's s / epoch over this code's "
            "arithmetic floor (2 × the step's multiply-adds ÷ the GEMM rate measured in the same process): "
            "no implementation of the same arithmetic can be faster than that on that CPU.", ""]
        head = "| dataset | goal |" + "".join(f" {k}: reference | this code (WERank on) | plain backend | speed-up (WERank on) | bound |"
                                           for k in kinds)
        lines += [head, "|---|---|" + "---|---|---|---|---|" * len(kinds)]
        for name in DATASETS:
            if not any((k, name) in stats and stats[(k, name)] for k in kinds):
                continue
            cells = [f"| {name} | ≥ {GOAL[name]:g}× |"]
            for k in kinds:
                s = stats.get((k, name)) or {}
                if not s:
                    cells.append(" — | — | — | — | — |")
                    continue
                met = "" if s["speedup"] >= GOAL[name] else " (goal not met)"
                cells.append(f" {s['reference_s']:.3f} s | {s['this_s']:.3f} s ({s['this_werank_s']:.3f} s) | "
                             f"{s['plain_s']:.3f} s ({s['plain_over_fast']:.2f}× the fast backend's) | "
                             f"**{s['speedup']:.2f}×**{met} ({s['speedup_werank']:.2f}×) | {s['bound']:.2f}× |")
            lines.append("".join(cells))
        lines.append("")
        details = []
        for (k, name), s in sorted(stats.items()):
            if s:
                details.append(f"{name} on {k}: {s['rounds']} rounds × {s['epochs']} epochs, {s['threads']} threads, "
                               f"per-round speed-ups {', '.join(f'{q:.2f}' for q in s['speedup_rounds'])}, GEMM "
                               f"{s['gemm']:.0f} GFLOP/s, floor {s['floor_s']:.3f} s, load average "
                               f"{min(s['loads']):.1f}–{max(s['loads']):.1f}")
        lines += ["Rounds: " + "; ".join(details) + ".", ""]
    acc = _latest_batch(rows, "reference-accuracy")
    if acc:
        lines += ["Accuracy of the two, trained alike (`--accuracy`): WERank off, the same seeds, epochs and schedule; "
                  "both probed by this project's probe under the config's protocol on the eval-mode encoder's "
                  "representations; mean ± sample std over seeds of each run's test accuracy.", "",
                  "| CPU | dataset | epochs | protocol | seeds | reference | this code | difference | RankMe (reference, this code) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for (k, name), rs in sorted(acc.items()):
            mine = [r for r in rs if r["tree"] == "this"]
            theirs = [r for r in rs if r["tree"] == "reference"]
            if not mine or not theirs:
                continue
            fmt = lambda v: f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"  # noqa: E731
            a, b = [r["eval_acc"] for r in theirs], [r["eval_acc"] for r in mine]
            lines.append(f"| {k} | {name} | {mine[0]['epochs_trained']} | {mine[0]['eval_protocol']} "
                         f"({mine[0]['eval_splits']} split{'s' if mine[0]['eval_splits'] > 1 else ''}) | "
                         f"{', '.join(str(r['seed']) for r in mine)} | {fmt(a)} | {fmt(b)} | "
                         f"{statistics.mean(b) - statistics.mean(a):+.2f} | "
                         f"{statistics.mean(r['rankme'] for r in theirs):.1f}, {statistics.mean(r['rankme'] for r in mine):.1f} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", help="a checkout of https://github.com/nerdslab/bgrl")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--epochs", type=int, default=20, help="timed epochs per process (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed epochs first (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds per dataset (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--accuracy", action="store_true", help="train both fully and probe them instead of timing")
    p.add_argument("--accuracy-epochs", type=int, help="--accuracy: train this many epochs (default: the config's), warm-up scaled")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--accuracy: seeds (default 0 1 2)")
    p.add_argument("--out", help="JSONL file to append to (default benchmarks/results/reference.jsonl)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_reference(json.loads(args.worker))), flush=True)
        return 0
    if not args.reference:
        p.error("--reference <checkout of nerdslab/bgrl> is required")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
