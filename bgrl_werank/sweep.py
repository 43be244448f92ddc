"""Augmentation-strength sweep: strength × {BGRL, BGRL + WERank} × seeds (× any other config key).

Usage::

    python -m bgrl_werank.sweep --config configs/sweeps/cora.yaml [--jobs N] [--set key=value ...]

A sweep config (YAML)::

    name: cora                      # sweep folder: <out_dir>/<name>/
    out_dir: sweeps
    base: configs/cora.yaml         # every cell starts from this run config ...
    overrides: [train.epochs=300]   # ... with these --set overrides
    strength:
      scale: [0.0, 0.5, 1.0, 1.5]   # factors applied to the base config's view probabilities, or
      # explicit: [[[0.0, 0.0], [0.0, 0.0]], [[0.2, 0.3], [0.4, 0.4]]]   (per strength: per view (edge_drop_p, feat_mask_p))
    methods: [bgrl, bgrl+werank]
    seeds: [0, 1, 2]
    grid: {werank.alpha: [0.01, 0.1]}   # optional: any config key as an extra axis

Every cell is an ordinary run folder under ``<sweep>/cells/``. A cell with a ``report.json`` is
done and never re-run; a cell with a checkpoint but no report is resumed; a failed cell is recorded
(``error.txt`` and the ``error`` column of ``results.csv``) and retried on the next invocation,
while the other cells go on. Outputs: ``results.csv``, ``summary.md``, ``accuracy_vs_strength.png``
and ``rankme_vs_strength.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from tqdm.auto import tqdm

from .config import ConfigError, build_config, from_mapping, read_yaml, to_dict

METHODS = {"bgrl": False, "bgrl+werank": True}
MAX_P = 0.95  # scaled probabilities are clipped here (1.0 would drop everything)


@dataclass
class StrengthConfig:
    scale: Union[list[float], None] = None
    explicit: Union[list[list[list[float]]], None] = None


@dataclass
class SweepConfig:
    name: str = "sweep"
    out_dir: str = "sweeps"
    base: str = "configs/cora.yaml"
    overrides: list[str] = field(default_factory=list)
    strength: StrengthConfig = field(default_factory=lambda: StrengthConfig(scale=[0.0, 0.5, 1.0]))
    methods: list[str] = field(default_factory=lambda: ["bgrl", "bgrl+werank"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    grid: dict = field(default_factory=dict)


@dataclass
class Cell:
    name: str
    strength: float  # the scale factor, or the index of an explicit setting
    views: list[list[float]]  # [[edge_drop_p, feat_mask_p], [edge_drop_p, feat_mask_p]]
    method: str
    seed: int
    grid: dict[str, Any]

    def overrides(self) -> list[str]:
        out = [
            f"augment.0.edge_drop_p={self.views[0][0]}", f"augment.0.feat_mask_p={self.views[0][1]}",
            f"augment.1.edge_drop_p={self.views[1][0]}", f"augment.1.feat_mask_p={self.views[1][1]}",
            f"werank.enabled={str(METHODS[self.method]).lower()}", f"seed={self.seed}",
        ]
        out += [f"{k}={json.dumps(v)}" for k, v in self.grid.items()]
        return out


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    data = read_yaml(path)
    sweep = from_mapping(SweepConfig, data)
    sweep.overrides = list(sweep.overrides) + list(overrides)
    if (sweep.strength.scale is None) == (sweep.strength.explicit is None):
        raise ConfigError("strength: give exactly one of 'scale' (factors) or 'explicit' (per-view probabilities)")
    if sweep.strength.scale is not None:
        bad = [s for s in sweep.strength.scale if s < 0]
        if bad:
            raise ConfigError(f"strength.scale values must be >= 0, got {bad}")
    for m in sweep.methods:
        if m not in METHODS:
            raise ConfigError(f"methods: unknown method {m!r}; use {', '.join(METHODS)}")
    if not sweep.seeds:
        raise ConfigError("seeds is empty; give at least one seed")
    for key, values in sweep.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key} must be a non-empty list of values")
    # Validate the base config and every grid value now, not an hour in.
    base_data = read_yaml(sweep.base)
    for combo in _grid_combos(sweep.grid):
        build_config(base_data, sweep.overrides + [f"{k}={json.dumps(v)}" for k, v in combo.items()])
    return sweep


def _grid_combos(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))] or [{}]


def _slug(value: Any) -> str:
    return json.dumps(value).replace(" ", "").replace('"', "").replace("[", "").replace("]", "").replace(",", "_")


def make_cells(sweep: SweepConfig) -> list[Cell]:
    """Every cell of the sweep, in a fixed order."""
    base = build_config(read_yaml(sweep.base), sweep.overrides)
    base_views = [[v.edge_drop_p, v.feat_mask_p] for v in base.augment]
    if sweep.strength.scale is not None:
        strengths = [(s, [[min(MAX_P, round(p * s, 6)) for p in view] for view in base_views]) for s in sweep.strength.scale]
    else:
        strengths = [(float(i), views) for i, views in enumerate(sweep.strength.explicit)]
    cells = []
    for (s, views), combo, method, seed in itertools.product(strengths, _grid_combos(sweep.grid), sweep.methods, sweep.seeds):
        parts = [f"s{s:g}", method.replace("+", "-")] + [f"{k.split('.')[-1]}{_slug(v)}" for k, v in combo.items()] + [f"seed{seed}"]
        cells.append(Cell("_".join(parts), s, views, method, seed, combo))
    return cells


def _run_cell(sweep_dir: str, cell: Cell, base: str, overrides: list[str], threads: int) -> dict:
    """Run one cell in this process; never raises (failures are returned)."""
    from .cli import train_main

    run_dir = Path(sweep_dir) / "cells" / cell.name
    (run_dir / "error.txt").unlink(missing_ok=True)
    if (run_dir / "checkpoint.pt").exists():
        argv = ["--resume", str(run_dir)]
    else:
        argv = ["--config", base, "--run-dir", str(run_dir), "--force"]
        for o in overrides + cell.overrides() + ["train.progress=none", f"threads={threads}"]:
            argv += ["--set", o]
    err = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = train_main(argv)
    except BaseException:  # noqa: BLE001 - a cell must never take the sweep down
        rc, err = 1, io.StringIO(traceback.format_exc())
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.startswith("error:") or "Error" in ln]
    if rc != 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        msg = lines[-1] if lines else f"exit code {rc}"
        (run_dir / "error.txt").write_text(err.getvalue() or msg)
        return {"cell": cell.name, "ok": False, "error": msg, "seconds": time.perf_counter() - t0}
    return {"cell": cell.name, "ok": True, "seconds": time.perf_counter() - t0}


def _row(sweep_dir: Path, cell: Cell) -> dict:
    run_dir = sweep_dir / "cells" / cell.name
    row: dict[str, Any] = {
        "cell": cell.name, "strength": cell.strength,
        "edge_drop_p_1": cell.views[0][0], "feat_mask_p_1": cell.views[0][1],
        "edge_drop_p_2": cell.views[1][0], "feat_mask_p_2": cell.views[1][1],
        "werank": METHODS[cell.method], "method": cell.method, "seed": cell.seed,
    }
    row.update({k: json.dumps(v) for k, v in cell.grid.items()})
    report = run_dir / "report.json"
    if report.exists():
        r = json.loads(report.read_text())
        last = {}
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists():
            lines = metrics.read_text().splitlines()
            last = json.loads(lines[-1]) if lines else {}
        row.update(
            alpha=json.dumps(r["werank_alpha"]), accuracy_mean=r["accuracy_mean"], accuracy_std=r["accuracy_std"],
            val_mean=float(np.mean(r["val_acc"])) if r.get("val_acc") else None,
            num_splits=r["num_splits"], rankme=r.get("rankme"), final_loss=last.get("loss"),
            final_bgrl_loss=last.get("bgrl_loss"), final_werank=last.get("werank"),
            wall_time_s=r.get("train_seconds"), status="done", error="",
        )
    else:
        err = run_dir / "error.txt"
        status = "failed" if err.exists() else "missing"
        msg = err.read_text().strip().splitlines()[-1] if err.exists() and err.read_text().strip() else ""
        row.update(status=status, error=msg)
    return row


RESULT_COLUMNS = [
    "cell", "strength", "edge_drop_p_1", "feat_mask_p_1", "edge_drop_p_2", "feat_mask_p_2", "method", "werank",
    "alpha", "seed", "accuracy_mean", "accuracy_std", "val_mean", "num_splits", "rankme", "final_loss", "final_bgrl_loss",
    "final_werank", "wall_time_s", "status", "error",
]


def write_results(sweep_dir: Path, cells: list[Cell], grid_keys: list[str]) -> list[dict]:
    rows = [_row(sweep_dir, c) for c in cells]
    cols = RESULT_COLUMNS[:10] + grid_keys + RESULT_COLUMNS[10:]
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return rows


def _ms(values: list[float], scale: float = 1.0) -> str:
    a = scale * np.asarray(values, dtype=float)
    return f"{a.mean():.2f} ± {a.std():.2f}" if len(a) else "—"


def summarize(rows: list[dict], grid_keys: list[str], title: str) -> str:
    """Markdown table: strength × method, mean ± std over seeds, and WERank − BGRL."""
    done = [r for r in rows if r["status"] == "done"]
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in done:
        key = (r["strength"], tuple(r.get(k) for k in grid_keys), (r["edge_drop_p_1"], r["feat_mask_p_1"], r["edge_drop_p_2"], r["feat_mask_p_2"]))
        groups.setdefault(key, {}).setdefault(r["method"], []).append(r)
    extra = "".join(f" {k} |" for k in grid_keys)
    lines = [
        f"# Sweep: {title}",
        "",
        "Accuracy (%) and RankMe: mean ± std over seeds (each seed's accuracy is its mean over probe splits).",
        "Δ = BGRL + WERank − BGRL, in accuracy points (difference of the means).",
        "",
        f"| strength | views (p_edge, p_feat) |{extra} BGRL acc | +WERank acc | Δ acc | BGRL RankMe | +WERank RankMe | Δ RankMe | seeds |",
        "|---|---|" + "---|" * len(grid_keys) + "---|---|---|---|---|---|---|",
    ]
    for (s, gvals, views), by in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        b, w = by.get("bgrl", []), by.get("bgrl+werank", [])
        acc_b, acc_w = [r["accuracy_mean"] for r in b], [r["accuracy_mean"] for r in w]
        rk_b, rk_w = [r["rankme"] for r in b], [r["rankme"] for r in w]
        d_acc = f"{100 * (np.mean(acc_w) - np.mean(acc_b)):+.2f}" if b and w else "—"
        d_rk = f"{np.mean(rk_w) - np.mean(rk_b):+.1f}" if b and w else "—"
        gcells = "".join(f" {v} |" for v in gvals)
        lines.append(
            f"| {s:g} | ({views[0]}, {views[1]}) / ({views[2]}, {views[3]}) |{gcells} {_ms(acc_b, 100)} | {_ms(acc_w, 100)} | {d_acc} | "
            f"{_ms(rk_b)} | {_ms(rk_w)} | {d_rk} | {len(b)} / {len(w)} |"
        )
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        lines += ["", f"{len(failed)} cell(s) not finished: " + ", ".join(f"{r['cell']} ({r['status']})" for r in failed)]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], sweep_dir: Path, grid_keys: list[str], explicit: bool = False) -> list[Path]:
    """``accuracy_vs_strength.png`` and ``rankme_vs_strength.png``; ``explicit``: strengths are indices
    of ``strength.explicit`` settings, not scale factors (the x-axis says which)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "done"]
    outs = []
    for metric, label, fname, scale in (
        ("accuracy_mean", "test accuracy (%)", "accuracy_vs_strength.png", 100.0),
        ("rankme", "RankMe of representations", "rankme_vs_strength.png", 1.0),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        combos = sorted({tuple(r.get(k) for k in grid_keys) for r in done})
        for combo in combos:
            for method, style in (("bgrl", "o-"), ("bgrl+werank", "s--")):
                sel = [r for r in done if r["method"] == method and tuple(r.get(k) for k in grid_keys) == combo]
                xs = sorted({r["strength"] for r in sel})
                if not xs:
                    continue
                means = [scale * np.mean([r[metric] for r in sel if r["strength"] == x]) for x in xs]
                stds = [scale * np.std([r[metric] for r in sel if r["strength"] == x]) for x in xs]
                name = "BGRL" if method == "bgrl" else "BGRL + WERank"
                if grid_keys:
                    name += " (" + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(grid_keys, combo)) + ")"
                ax.errorbar(xs, means, yerr=stds, fmt=style, capsize=3, label=name)
        ax.set_xlabel("view setting (index into strength.explicit)" if explicit else "augmentation strength (× the base views)")
        if explicit:  # the settings are indices: whole-number ticks only
            ax.set_xticks(sorted({r["strength"] for r in done}))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{sweep_dir.name}: {label}, mean ± std over seeds", fontsize=9)
        fig.tight_layout()
        fig.savefig(sweep_dir / fname, dpi=120)
        plt.close(fig)
        outs.append(sweep_dir / fname)
    return outs


def run_sweep(sweep: SweepConfig, jobs: int = 1, progress: bool | None = None) -> tuple[Path, list[dict]]:
    """Run every missing or failed cell (``jobs`` at a time), then write the outputs."""
    sweep_dir = Path(sweep.out_dir) / sweep.name
    (sweep_dir / "cells").mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(to_dict(sweep), indent=2) + "\n")
    cells = make_cells(sweep)
    todo = [c for c in cells if not (sweep_dir / "cells" / c.name / "report.json").exists()]
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    show = sys.stderr.isatty() if progress is None else progress
    print(f"sweep {sweep_dir}: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run with {jobs} job(s)", file=sys.stderr)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), disable=not show, desc="cells", unit="cell")
    failures = []
    try:
        if jobs <= 1:
            for c in todo:
                res = _run_cell(str(sweep_dir), c, sweep.base, sweep.overrides, threads)
                failures += [res] if not res["ok"] else []
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_run_cell, str(sweep_dir), c, sweep.base, sweep.overrides, threads) for c in todo]
                for fut in as_completed(futures):
                    res = fut.result()
                    failures += [res] if not res["ok"] else []
                    bar.update(1)
    finally:
        bar.close()
        grid_keys = list(sweep.grid)
        rows = write_results(sweep_dir, cells, grid_keys)
        (sweep_dir / "summary.md").write_text(summarize(rows, grid_keys, sweep.name))
        if any(r["status"] == "done" for r in rows):
            plot(rows, sweep_dir, grid_keys, explicit=sweep.strength.explicit is not None)
    for f in failures:
        print(f"cell {f['cell']} failed: {f['error']}", file=sys.stderr)
    return sweep_dir, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bgrl_werank.sweep", description="Augmentation-strength sweep (resumable, parallel).")
    p.add_argument("--config", required=True, help="sweep YAML, e.g. configs/sweeps/cora.yaml")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes (default 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override applied to every cell")
    p.add_argument("--out", metavar="DIR", help="folder that holds the sweep's folder <DIR>/<name>/ (default: the YAML's out_dir)")
    p.add_argument("--update", metavar="FILE", help="also paste summary.md into the marked block of FILE (e.g. README.md)")
    p.add_argument("--marker", default="sweep", help="marker name of that block (default: sweep)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
        sweep = load_sweep(args.config, args.overrides)
        if args.out:
            sweep.out_dir = args.out
        sweep_dir, rows = run_sweep(sweep, args.jobs)
    except Exception as e:  # noqa: BLE001
        if args.debug:
            traceback.print_exc()
        from .data import DatasetError

        if isinstance(e, (ConfigError, DatasetError, OSError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    summary = (sweep_dir / "summary.md").read_text()
    if args.update:
        from .results import update_file

        body = "\n".join(line for line in summary.splitlines() if not line.startswith("# ")).strip() + "\n"
        update_file(args.update, args.marker, body)
    print(summary)
    failed = [r for r in rows if r["status"] != "done"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
