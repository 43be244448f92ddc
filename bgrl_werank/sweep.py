"""Sweeps: strength × run configs × methods × any config key × seeds, each cell one run.

Usage::

    python -m bgrl_werank.sweep --config configs/sweeps/cora.yaml [--jobs N] [--set key=value ...]
    python -m bgrl_werank.sweep --config configs/sweeps/cora.yaml --out results/sweeps --summarize

A sweep config (YAML); every key is optional (``seeds`` defaults to [0, 1, 2])::

    name: cora                      # sweep folder: <out_dir>/<name>/
    out_dir: sweeps
    base: configs/cora.yaml         # every cell starts from this run config (unless grid.config gives others) ...
    overrides: [train.epochs=300]   # ... with these --set overrides
    strength:                       # absent or null: no strength axis (each run config's own views)
      scale: [0.0, 0.5, 1.0, 1.5]   # factors applied to the run config's view probabilities, or
      # explicit: [[[0.0, 0.0], [0.0, 0.0]], [[0.2, 0.3], [0.4, 0.4]]]   (per strength: per view (edge_drop_p, feat_mask_p))
    methods: [bgrl, grace+werank]   # entries <method> or <method>+werank: they set method.name and werank.enabled;
                                    # absent: the run configs' (or the grid's) own method and WERank setting
    seeds: [0, 1, 2]
    grid:                           # any config key as an extra axis (the product of all of them) ...
      werank.alpha: [0.01, 0.1]
      config: [configs/cora.yaml, configs/cora-grace.yaml]   # ... and ``config``: run configs in place of base

Cells are the product strength × grid × methods × seeds. Every run config is read and every cell's
config is built and validated before anything runs (a one-line :class:`ConfigError` naming the file
or the key). Cell folders are named after their values, e.g. ``s0.5_bgrl-werank_alpha0.1_seed0`` or
``cora-grace_werank-on_seed2`` (a ``config`` value by its file's stem).

Every cell is an ordinary run folder under ``<sweep>/cells/``. A cell with a ``report.json`` is
done and never re-run; a cell with a checkpoint but no report is resumed; a failed cell is recorded
(``error.txt`` and the ``error`` column of ``results.csv``) and retried on the next invocation,
while the other cells go on. Outputs: ``results.csv`` (one row per cell, with its ``method``,
``werank`` and ``label`` as run), ``summary.md`` (per method and setting: without and with WERank and
their difference), and ``accuracy_vs_strength.png`` and ``rankme_vs_strength.png`` when there is a
strength axis of more than one value, else ``accuracy_by_setting.png`` and ``rankme_by_setting.png``.
``--summarize`` rewrites those outputs from the cells as they are, running nothing.

One sweep process at a time owns a sweep folder (:func:`bgrl_werank.rundir.claim`; a second one stops
with one line), and each cell's run owns its cell. Ctrl-C or SIGTERM stops the sweep with one line
(exit 130): the running cell checkpoints, and the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import os
import signal
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from tqdm.auto import tqdm

from .config import (PROBABILITY, SEED, Bounds, ConfigError, build_config, check_folder_name, check_ranges, closed,
                     from_mapping, read_yaml, to_dict)
from .labels import method_title, report_method, run_label
from .rundir import RunDirError, atomic_write_text, claim, read_jsonl

if TYPE_CHECKING:
    from .cli import SignalGate

EXIT_INTERRUPTED = 130

MAX_P = 0.95  # scaled probabilities are clipped here (1.0 would drop everything)
CONFIG_AXIS = "config"  # the grid axis whose values are run-config files (they replace ``base``)
# Grid keys that say which method a cell runs: summary.md pairs cells on werank.enabled (without /
# with columns) and shows the method as a column of its own, the plots as the line's label.
METHOD_KEYS = ("method.name", "werank.enabled")


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
    strength: Union[StrengthConfig, None] = None
    methods: Union[list[str], None] = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    grid: dict = field(default_factory=dict)


# Every numeric key of a sweep config and its range (bgrl_werank.config.RANGES explains the notation).
# Grid values and overrides are run-config values: each cell's config is checked against RANGES.
SWEEP_RANGES: dict[str, Bounds] = {
    "seeds.*": SEED,  # run seeds: each cell runs with seed=<it>
    # factors on the run config's probabilities, clipped at MAX_P, so beyond 100 they only saturate
    "strength.scale.*": closed(0.0, 100.0),
    "strength.explicit.*.*.*": PROBABILITY,  # [edge_drop_p, feat_mask_p] of each view of each setting
}
VIEW_KEYS = ("edge_drop_p", "feat_mask_p")
EXPLICIT_SHAPE = "two views of [edge_drop_p, feat_mask_p], e.g. [[0.2, 0.3], [0.4, 0.4]]"


def _is_view(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and not any(isinstance(p, (list, dict)) for p in v)


def _check_strength_shape(strength: Any) -> None:
    """The shape of a raw ``strength`` value, before its types are read, so that a wrong nesting is
    said in terms of settings and views."""
    if strength is None:
        return
    if not isinstance(strength, dict):
        raise ConfigError(f"strength must be a mapping, scale: [factors] or explicit: [settings], or null for no "
                          f"strength axis; got {strength!r}")
    explicit = strength.get("explicit")
    if explicit is None:
        return
    if not isinstance(explicit, list):
        raise ConfigError(f"strength.explicit must be a list of settings, each {EXPLICIT_SHAPE}; got {explicit!r}")
    for i, setting in enumerate(explicit):
        if not (isinstance(setting, list) and len(setting) == 2 and all(_is_view(v) for v in setting)):
            hint = ""
            if len(explicit) == 2 and all(_is_view(v) for v in explicit):
                hint = f" (one setting is a list of two views: write explicit: [{explicit}])"
            raise ConfigError(f"strength.explicit.{i} must be {EXPLICIT_SHAPE}; explicit is a list of such settings, "
                              f"got {setting!r}{hint}")


def parse_method(entry: str) -> tuple[str, bool]:
    """A ``methods`` entry: ``"grace+werank"`` → ``("grace", True)``, ``"gbt"`` → ``("gbt", False)``."""
    name, plus, suffix = str(entry).partition("+")
    if not name or (plus and suffix != "werank"):
        raise ConfigError(f"methods: entry {entry!r} is not <method> or <method>+werank (e.g. grace, grace+werank)")
    return name, bool(plus)


@dataclass
class Cell:
    name: str
    strength: Union[float, None]  # the scale factor, or the index of an explicit setting; None: no strength axis
    views: Union[list[list[float]], None]  # views the strength axis sets [[edge_drop_p, feat_mask_p] × 2]; None: the config's
    method: Union[str, None]  # the ``methods`` entry (e.g. "grace+werank"); None: no methods axis
    seed: int
    grid: dict[str, Any]  # this cell's grid values, the config axis included
    base: str = ""  # the run config file the cell starts from
    # what the cell runs, from its resolved config (filled in by make_cells)
    method_name: str = "bgrl"
    werank: bool = False
    run_views: list[list[float]] = field(default_factory=list)

    def overrides(self) -> list[str]:
        out = []
        if self.views is not None:
            out += [f"augment.0.edge_drop_p={self.views[0][0]}", f"augment.0.feat_mask_p={self.views[0][1]}",
                    f"augment.1.edge_drop_p={self.views[1][0]}", f"augment.1.feat_mask_p={self.views[1][1]}"]
        if self.method is not None:
            name, werank = parse_method(self.method)
            out += [f"method.name={name}", f"werank.enabled={str(werank).lower()}"]
        out.append(f"seed={self.seed}")
        out += [f"{k}={json.dumps(v)}" for k, v in self.grid.items() if k != CONFIG_AXIS]
        return out

    @property
    def label(self) -> str:
        return run_label(self.method_name, self.werank)


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Read and check a sweep config: its own keys, every run config it names, every cell's config."""
    data = read_yaml(path)
    _check_strength_shape(data.get("strength"))
    sweep = from_mapping(SweepConfig, data)
    sweep.overrides = list(sweep.overrides) + list(overrides)
    check_folder_name(sweep.name, "name")
    st = sweep.strength
    if st is not None:
        if (st.scale is None) == (st.explicit is None):
            raise ConfigError("strength: give exactly one of 'scale' (factors) or 'explicit' (per-view probabilities), "
                              "or leave strength out for no strength axis")
        values = st.scale if st.scale is not None else st.explicit
        if not values:
            raise ConfigError(f"strength.{'scale' if st.scale is not None else 'explicit'} is empty; give at least one "
                              "setting, or leave strength out for no strength axis")
        for i, views in enumerate(st.explicit or []):
            for v, view in enumerate(views):
                for key, p in zip(VIEW_KEYS, view):
                    if p not in PROBABILITY:  # said as the run-config key it sets, too
                        raise ConfigError(f"strength.explicit.{i}.{v}.{VIEW_KEYS.index(key)} (view {v + 1}'s {key}, "
                                          f"augment.{v}.{key}) must be a probability in {PROBABILITY.interval()}, got {p!r}")
    check_ranges(sweep, SWEEP_RANGES)
    if sweep.methods is not None:
        if not sweep.methods:
            raise ConfigError("methods is empty; list entries such as bgrl, bgrl+werank, or leave methods out")
        for m in sweep.methods:
            name, _ = parse_method(m)
            try:  # a method name the run config does not know, said about the entry
                build_config({}, [f"method.name={name}"])
            except ConfigError as e:
                raise ConfigError(f"methods: entry {m!r}: {e}") from None
        dup = sorted({m for m in sweep.methods if sweep.methods.count(m) > 1})
        if dup:
            raise ConfigError(f"methods: {dup[0]!r} is listed twice; list each entry once")
        clash = [k for k in METHOD_KEYS if k in sweep.grid]
        if clash:
            raise ConfigError(f"methods and grid.{clash[0]} both set {clash[0]} (an entry <method>+werank sets "
                              "method.name and werank.enabled); drop one of them")
    if not sweep.seeds:
        raise ConfigError("seeds is empty; give at least one seed")
    if len(set(sweep.seeds)) != len(sweep.seeds):
        raise ConfigError(f"seeds: {sweep.seeds} lists a seed twice; list each seed once")
    for key, values in sweep.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key} must be a non-empty list of values")
        if key == "seed":
            raise ConfigError("grid.seed: seeds are their own axis; list them under seeds: [...]")
        if st is not None and key.startswith("augment"):
            raise ConfigError(f"grid.{key}: the strength axis sets the views; drop one of them (or give the views "
                              "as strength.explicit)")
    for value in sweep.grid.get(CONFIG_AXIS, []):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"grid.{CONFIG_AXIS} must list run-config YAML files, got {value!r}")
    make_cells(sweep)  # reads every run config, builds and validates every cell's config
    return sweep


def _grid_combos(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))] or [{}]


def _slug(value: Any) -> str:
    return (json.dumps(value).replace(" ", "").replace('"', "").replace("[", "").replace("]", "").replace(",", "_")
            .replace("/", "-").replace("\\", "-"))


def _short_names(keys: list[str]) -> dict[str, str]:
    """A grid key's name in cell names: its last part (``alpha``), or the whole dotted path where two
    keys share a last part (``augment.0.edge_drop_p`` and ``augment.1.edge_drop_p``)."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k.replace(".", "-")) for k, s in zip(keys, last)}


def _name_part(key: str, value: Any, short: str) -> str:
    if key == CONFIG_AXIS:
        return Path(str(value)).stem
    if key == "werank.enabled" and isinstance(value, bool):
        return "werank-on" if value else "werank-off"
    if key == "method.name":
        return _slug(value)
    return f"{short}{_slug(value)}"


def _read_run_config(file: str, what: str, cache: dict) -> dict:
    if file not in cache:
        if not Path(file).is_file():
            raise ConfigError(f"{what}: run config '{file}' not found (paths are relative to the folder the sweep "
                              f"runs in, {Path.cwd()}); write it or fix the path")
        try:
            cache[file] = read_yaml(file)
        except ConfigError as e:
            raise ConfigError(f"{what}: {e}") from None
    return cache[file]


def _build(file: str, data: dict, overrides: list[str], where: str):
    try:
        return build_config(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{where} (run config {file}): {e}") from None


def make_cells(sweep: SweepConfig) -> list[Cell]:
    """Every cell of the sweep, in a fixed order, with what it runs filled in from its resolved config
    (so every cell's config is built and checked here)."""
    cache: dict[str, dict] = {}
    st = sweep.strength
    if st is None:
        strengths: list[tuple[Any, Any]] = [(None, None)]
    elif st.scale is not None:
        strengths = [(float(s), None) for s in st.scale]
    else:
        strengths = [(float(i), views) for i, views in enumerate(st.explicit)]
    entries = sweep.methods if sweep.methods is not None else [None]
    short = _short_names(list(sweep.grid))
    own_views: dict[str, list[list[float]]] = {}
    cells, seen = [], {}
    for (s, explicit), combo, entry, seed in itertools.product(strengths, _grid_combos(sweep.grid), entries, sweep.seeds):
        what = f"grid.{CONFIG_AXIS}" if CONFIG_AXIS in combo else "base"
        file = str(combo.get(CONFIG_AXIS, sweep.base))
        data = _read_run_config(file, what, cache)
        views = explicit
        if st is not None and st.scale is not None:  # the factor applies to this cell's run config's views
            key = json.dumps([file, combo])
            if key not in own_views:
                grid_over = [f"{k}={json.dumps(v)}" for k, v in combo.items() if k != CONFIG_AXIS]
                cfg = _build(file, data, sweep.overrides + grid_over, "the sweep's overrides and grid values")
                own_views[key] = [[v.edge_drop_p, v.feat_mask_p] for v in cfg.augment]
            views = [[min(MAX_P, round(p * s, 6)) for p in view] for view in own_views[key]]
        parts = ([f"s{s:g}"] if s is not None else []) + ([entry.replace("+", "-")] if entry is not None else [])
        parts += [_name_part(k, v, short[k]) for k, v in combo.items()] + [f"seed{seed}"]
        cell = Cell("_".join(parts), s, views, entry, seed, combo, base=file)
        if cell.name in seen:
            raise ConfigError(f"two cells would share the folder name '{cell.name}' ({seen[cell.name]} and {file}); "
                              f"give the grid.{CONFIG_AXIS} files different names (cells are named by the file's stem)")
        seen[cell.name] = file
        cfg = _build(file, data, sweep.overrides + cell.overrides(), f"cell {cell.name}")
        cell.method_name, cell.werank = cfg.method.name, bool(cfg.werank.enabled)
        cell.run_views = [[v.edge_drop_p, v.feat_mask_p] for v in cfg.augment]
        cells.append(cell)
    return cells


def _run_cell(sweep_dir: str, cell: Cell, base: str, overrides: list[str], threads: int,
              signals: list[str] | None = None) -> dict:
    """Run one cell in this process; failures are returned, an interrupt (exit 130) is raised as
    KeyboardInterrupt. ``signals``: as :func:`bgrl_werank.cli.train_main`'s."""
    from .cli import train_main

    if _STOP is not None and _STOP.is_set():  # a worker given a cell after the sweep was interrupted
        raise KeyboardInterrupt(cell.name)
    global _IN_CELL
    _IN_CELL = True
    try:
        return _run_cell_here(sweep_dir, cell, base, overrides, threads, signals, train_main)
    finally:
        _IN_CELL = False


def _run_cell_here(sweep_dir: str, cell: Cell, base: str, overrides: list[str], threads: int,
                   signals: list[str] | None, train_main: Any) -> dict:
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
            rc = train_main(argv, signals=signals)
    except BaseException:  # noqa: BLE001 - a cell must never take the sweep down
        rc, err = 1, io.StringIO(traceback.format_exc())
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.startswith("error:") or "Error" in ln]
    if rc == EXIT_INTERRUPTED:  # Ctrl-C or SIGTERM reached the cell: the sweep stops, the cell resumes next time
        raise KeyboardInterrupt(cell.name)
    if rc != 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        msg = lines[-1] if lines else f"exit code {rc}"
        (run_dir / "error.txt").write_text(err.getvalue() or msg)
        return {"cell": cell.name, "ok": False, "error": msg, "seconds": time.perf_counter() - t0}
    return {"cell": cell.name, "ok": True, "seconds": time.perf_counter() - t0}


def _grid_value(key: str, value: Any) -> str:
    """A grid value as results.csv writes it: strings (e.g. a config file) as they are, else JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _row(sweep_dir: Path, cell: Cell) -> dict:
    run_dir = sweep_dir / "cells" / cell.name
    views = cell.views if cell.views is not None else cell.run_views
    row: dict[str, Any] = {
        "cell": cell.name, "strength": cell.strength,
        "edge_drop_p_1": views[0][0], "feat_mask_p_1": views[0][1],
        "edge_drop_p_2": views[1][0], "feat_mask_p_2": views[1][1],
        "method": cell.method_name, "werank": cell.werank, "label": cell.label, "seed": cell.seed,
    }
    row.update({k: _grid_value(k, v) for k, v in cell.grid.items()})
    report = run_dir / "report.json"
    r = None
    if report.exists():
        try:
            r = json.loads(report.read_text())
            r["accuracy_mean"], r["accuracy_std"], r["num_splits"]  # noqa: B018 - what the table needs
        except (ValueError, OSError, TypeError, KeyError) as e:
            row.update(status="damaged", error=f"{report} unreadable ({' '.join(str(e).split())[:80]}); delete it to re-evaluate")
            return row
    if r is not None:
        try:
            records, _ = read_jsonl(run_dir / "metrics.jsonl")  # a torn last line is left out
        except RunDirError:
            records = []
        last = records[-1] if records else {}
        method, werank = report_method(r), bool(r.get("werank", cell.werank))  # what the cell ran
        row.update(
            method=method, werank=werank, label=run_label(method, werank),
            alpha=json.dumps(r.get("werank_alpha")), accuracy_mean=r["accuracy_mean"], accuracy_std=r["accuracy_std"],
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
    "cell", "strength", "edge_drop_p_1", "feat_mask_p_1", "edge_drop_p_2", "feat_mask_p_2", "method", "werank", "label",
    "alpha", "seed", "accuracy_mean", "accuracy_std", "val_mean", "num_splits", "rankme", "final_loss", "final_bgrl_loss",
    "final_werank", "wall_time_s", "status", "error",
]


def write_results(sweep_dir: Path, cells: list[Cell], grid_keys: list[str]) -> list[dict]:
    rows = [_row(sweep_dir, c) for c in cells]
    at = RESULT_COLUMNS.index("seed") + 1  # the grid's columns follow the cell's identity
    cols = RESULT_COLUMNS[:at] + grid_keys + RESULT_COLUMNS[at:]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(sweep_dir / "results.csv", buf.getvalue())
    return rows


def _ms(values: list[float], scale: float = 1.0) -> str:
    a = scale * np.asarray(values, dtype=float)
    return f"{a.mean():.2f} ± {a.std():.2f}" if len(a) else "—"


def _shown(value: Any, key: str) -> str:
    """A grid value as tables and legends show it (a run config by its file's stem)."""
    return Path(str(value)).stem if key == CONFIG_AXIS else str(value)


def _has_strength(rows: list[dict]) -> bool:
    return any(r.get("strength") not in (None, "") for r in rows)


def _settings(rows: list[dict], grid_keys: list[str]):
    """The methods (first-seen order), the grid keys other than the method's, and the sort key of a
    (method, grid values, strength) group: methods and run configs in the sweep's order, other grid
    values by their text, then strength."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = [k for k in grid_keys if k not in METHOD_KEYS]
    configs = list(dict.fromkeys(r.get(CONFIG_AXIS) for r in rows))

    def sort_key(method: str, gvals: tuple, strength: Any) -> tuple:
        g = tuple((configs.index(v), "") if k == CONFIG_AXIS else (0, str(v)) for k, v in zip(keys, gvals))
        return methods.index(method), g, 0.0 if strength in (None, "") else strength

    return methods, keys, sort_key


def summarize(rows: list[dict], grid_keys: list[str], title: str) -> str:
    """Markdown table: per method and setting (strength, views, grid values), mean ± std over seeds
    without and with WERank, and their difference."""
    done = [r for r in rows if r["status"] == "done"]
    methods, keys, sort_key = _settings(rows, grid_keys)
    strength = _has_strength(rows)
    multi = len(methods) > 1
    groups: dict[tuple, dict[bool, list[dict]]] = {}
    for r in done:
        views = (r["edge_drop_p_1"], r["feat_mask_p_1"], r["edge_drop_p_2"], r["feat_mask_p_2"])
        key = (r["method"], r["strength"], tuple(r.get(k) for k in keys), views)
        groups.setdefault(key, {}).setdefault(bool(r["werank"]), []).append(r)
    t = "" if multi else method_title(methods[0]) if methods else "BGRL"
    delta = ("Δ = <method> + WERank − <method> (each row's method)" if multi else f"Δ = {t} + WERank − {t}")
    head = ("| method |" if multi else "|") + (" strength |" if strength else "") + " views (p_edge, p_feat) |"
    head += "".join(f" {k} |" for k in keys)
    pre = f"{t} " if t else ""
    head += f" {pre}acc | +WERank acc | Δ acc | {pre}RankMe | +WERank RankMe | Δ RankMe | seeds |"
    lines = [
        f"# Sweep: {title}",
        "",
        "Accuracy (%) and RankMe: mean ± std over seeds (each seed's accuracy is its mean over probe splits).",
        f"{delta}, in accuracy points (difference of the means).",
        "",
        head,
        "|" + "---|" * (int(multi) + int(strength) + 1 + len(keys) + 7),
    ]
    for (method, s, gvals, views), by in sorted(groups.items(), key=lambda kv: sort_key(kv[0][0], kv[0][2], kv[0][1])):
        b, w = by.get(False, []), by.get(True, [])
        acc_b, acc_w = [r["accuracy_mean"] for r in b], [r["accuracy_mean"] for r in w]
        rk_b, rk_w = [r["rankme"] for r in b], [r["rankme"] for r in w]
        d_acc = f"{100 * (np.mean(acc_w) - np.mean(acc_b)):+.2f}" if b and w else "—"
        d_rk = f"{np.mean(rk_w) - np.mean(rk_b):+.1f}" if b and w else "—"
        cells = ([method_title(method)] if multi else []) + ([f"{s:g}"] if strength else [])
        cells.append(f"({views[0]}, {views[1]}) / ({views[2]}, {views[3]})")
        cells += [_shown(v, k) for k, v in zip(keys, gvals)]
        cells += [_ms(acc_b, 100), _ms(acc_w, 100), d_acc, _ms(rk_b), _ms(rk_w), d_rk, f"{len(b)} / {len(w)}"]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        lines += ["", f"{len(failed)} cell(s) not finished: " + ", ".join(f"{r['cell']} ({r['status']})" for r in failed)]
    return "\n".join(lines) + "\n"


def _line_label(method: str, werank: bool, keys: list[str], gvals: tuple) -> str:
    """'GRACE + WERank (cora-grace, alpha=0.1)': the run's label and its other grid values."""
    extra = [_shown(v, k) if k == CONFIG_AXIS else f"{k.split('.')[-1]}={v}" for k, v in zip(keys, gvals)]
    return run_label(method, werank) + (f" ({', '.join(extra)})" if extra else "")


def plot(rows: list[dict], sweep_dir: Path, grid_keys: list[str], explicit: bool = False) -> list[Path]:
    """With a strength axis of more than one value, ``accuracy_vs_strength.png`` and
    ``rankme_vs_strength.png`` (one line per method, WERank setting and grid values; ``explicit``:
    strengths are indices of ``strength.explicit`` settings, not scale factors, and the x-axis says
    which); otherwise ``accuracy_by_setting.png`` and ``rankme_by_setting.png``: per method and grid
    values, the mean ± std without and with WERank side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "done"]
    methods, keys, sort_key = _settings(rows, grid_keys)
    strengths = sorted({r["strength"] for r in done if r.get("strength") not in (None, "")})
    vs_strength = len(strengths) > 1
    settings = sorted({(r["method"], tuple(r.get(k) for k in keys)) for r in done},
                      key=lambda mg: sort_key(mg[0], mg[1], None))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    outs = []
    for metric, label, stem, scale in (
        ("accuracy_mean", "test accuracy (%)", "accuracy", 100.0),
        ("rankme", "RankMe of representations", "rankme", 1.0),
    ):
        sel = lambda m, g, w: [r for r in done if r["method"] == m and tuple(r.get(k) for k in keys) == g  # noqa: E731
                               and bool(r["werank"]) == w]
        if vs_strength:
            fig, ax = plt.subplots(figsize=(5.5, 3.8))
            n = 0
            for method, gvals in settings:
                for werank, style in ((False, "o-"), (True, "s--")):
                    rs = sel(method, gvals, werank)
                    xs = sorted({r["strength"] for r in rs})
                    if not xs:
                        continue
                    means = [scale * np.mean([r[metric] for r in rs if r["strength"] == x]) for x in xs]
                    stds = [scale * np.std([r[metric] for r in rs if r["strength"] == x]) for x in xs]
                    ax.errorbar(xs, means, yerr=stds, fmt=style, capsize=3, label=_line_label(method, werank, keys, gvals),
                                color=colors[n % len(colors)])
                    n += 1
            ax.set_xlabel("view setting (index into strength.explicit)" if explicit else "augmentation strength (× the base views)")
            if explicit:  # the settings are indices: whole-number ticks only
                ax.set_xticks(strengths)
            fname = f"{stem}_vs_strength.png"
        else:
            fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(settings) + 2), 3.8))
            x = np.arange(len(settings))
            for j, (werank, name, fmt) in enumerate(((False, "without WERank", "o"), (True, "with WERank", "s"))):
                means, stds = [], []
                for method, gvals in settings:
                    vals = [scale * r[metric] for r in sel(method, gvals, werank)]
                    means.append(np.mean(vals) if vals else np.nan)
                    stds.append(np.std(vals) if vals else 0.0)
                ax.errorbar(x + (j - 0.5) * 0.25, means, yerr=stds, fmt=fmt, capsize=3, label=name, color=colors[j])
            ax.set_xticks(x)
            ax.set_xlim(-0.6, len(settings) - 0.4)
            ax.set_xticklabels([_line_label(m, False, keys, g) for m, g in settings], fontsize=8,
                               rotation=20 if len(settings) > 3 else 0, ha="right" if len(settings) > 3 else "center")
            fname = f"{stem}_by_setting.png"
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{sweep_dir.name}: {label}, mean ± std over seeds", fontsize=9)
        fig.tight_layout()
        fig.savefig(sweep_dir / fname, dpi=120)
        plt.close(fig)
        outs.append(sweep_dir / fname)
    return outs


def write_outputs(sweep: SweepConfig, sweep_dir: Path, cells: list[Cell]) -> list[dict]:
    """``results.csv``, ``summary.md`` and the figures, from the cells' folders as they are now."""
    grid_keys = list(sweep.grid)
    rows = write_results(sweep_dir, cells, grid_keys)
    atomic_write_text(sweep_dir / "summary.md", summarize(rows, grid_keys, sweep.name))
    if any(r["status"] == "done" for r in rows):
        plot(rows, sweep_dir, grid_keys, explicit=sweep.strength is not None and sweep.strength.explicit is not None)
    return rows


SWEEP_BUSY = "wait for that sweep to finish, or give this one another name or --out"
# Keys in which a cell's recorded config may differ from what the sweep now asks (where and how a
# cell runs, not what it computes); any other difference means the sweep changed under its cells.
SWEEP_MAY_DIFFER = ("threads", "train.progress", "device", "backend", "data.root", "data.download")


def _check_cells_match(sweep: SweepConfig, sweep_dir: Path, cells: list[Cell]) -> None:
    """Refuse to reuse cells run under other settings (the sweep's overrides or run configs changed):
    their results would be tabulated as if the current sweep had produced them."""
    from .cli import changed_keys
    from .config import upgrade_saved_config

    cache: dict[str, dict] = {}
    for cell in cells:
        recorded_file = sweep_dir / "cells" / cell.name / "config.yaml"
        if not recorded_file.is_file():
            continue
        try:
            recorded = build_config(upgrade_saved_config(read_yaml(recorded_file)))
        except ConfigError:
            continue  # a damaged cell fails on its own when resumed, and is recorded as failed
        data = _read_run_config(cell.base, "base", cache)
        wanted = build_config(data, sweep.overrides + cell.overrides())
        diff = {k: v for k, v in changed_keys(recorded, wanted).items() if not k.startswith(SWEEP_MAY_DIFFER)}
        if diff:
            key, (old, new) = next(iter(diff.items()))
            raise ConfigError(f"cell {cell.name} in '{sweep_dir}' was run with {key}={old!r}, but the sweep now gives "
                              f"{new!r}; a changed sweep needs its own folder: change its name or --out (or delete "
                              f"that cell to run it again)")


def run_sweep(sweep: SweepConfig, jobs: int = 1, progress: bool | None = None, run: bool = True,
              gate: SignalGate | None = None) -> tuple[Path, list[dict]]:
    """Run every missing or failed cell (``jobs`` at a time), then write the outputs; ``run=False``
    only rewrites the outputs from the cells already there. ``gate``: the command line's SIGINT/SIGTERM
    handling (cells then stop at an epoch's end with a checkpoint, and the sweep between cells)."""
    sweep_dir = Path(sweep.out_dir) / sweep.name
    cells = make_cells(sweep)
    if not run:
        if not (sweep_dir / "cells").is_dir():
            raise ConfigError(f"--summarize: no sweep folder '{sweep_dir}' with cells; run the sweep first (or pass --out)")
        with claim(sweep_dir, SWEEP_BUSY, "sweep folder"):
            return sweep_dir, write_outputs(sweep, sweep_dir, cells)
    (sweep_dir / "cells").mkdir(parents=True, exist_ok=True)
    with claim(sweep_dir, SWEEP_BUSY, "sweep folder"):  # one sweep process per sweep folder; each cell is claimed by its own run
        _check_cells_match(sweep, sweep_dir, cells)
        return _run_cells(sweep, sweep_dir, cells, jobs, progress, gate)


def _run_cells(sweep: SweepConfig, sweep_dir: Path, cells: list[Cell], jobs: int, progress: bool | None,
               gate: SignalGate | None) -> tuple[Path, list[dict]]:
    atomic_write_text(sweep_dir / "sweep.json", json.dumps(to_dict(sweep), indent=2) + "\n")
    todo = [c for c in cells if not (sweep_dir / "cells" / c.name / "report.json").exists()]
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    show = sys.stderr.isatty() if progress is None else progress
    print(f"sweep {sweep_dir}: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run with {jobs} job(s)", file=sys.stderr)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), disable=not show, desc="cells", unit="cell")
    failures = []
    try:
        if jobs <= 1:
            for c in todo:
                if gate is not None:
                    gate.check()  # between cells: stop here on a signal that arrived
                res = _run_cell(str(sweep_dir), c, c.base, sweep.overrides, threads, gate.held if gate else None)
                failures += [res] if not res["ok"] else []
                bar.update(1)
        else:
            failures += _run_parallel(sweep, sweep_dir, todo, jobs, threads, gate, bar)
    finally:
        bar.close()
        rows = write_outputs(sweep, sweep_dir, cells)
    for f in failures:
        print(f"cell {f['cell']} failed: {f['error']}", file=sys.stderr)
    return sweep_dir, rows


# Set in worker processes (_init_worker): the sweep was interrupted, start no further cell. The pool
# hands a worker its next cell before the current one ends, so cancelling futures alone would let
# one more cell run to its end.
_STOP: Any = None
_IN_CELL = False  # a worker is inside a cell (its watchdog waits for the cell's checkpoint)


def _init_worker(stop: Any) -> None:
    """Set up a worker process: the stop event; no share in the sweep folder's lock (a worker made
    by fork holds it too, and one outliving a killed sweep would keep the folder locked); and a
    watchdog that stops the worker when the sweep process dies (SIGKILL), else it would wait for
    work for ever."""
    import threading

    from .rundir import close_inherited_claims

    global _STOP
    _STOP = stop
    close_inherited_claims()
    threading.Thread(target=_watch_sweep, args=(os.getppid(),), daemon=True).start()


def _watch_sweep(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    _STOP.set()
    os.kill(os.getpid(), signal.SIGTERM)  # a running cell finishes its epoch and checkpoints
    while _IN_CELL:
        time.sleep(0.1)
    os._exit(EXIT_INTERRUPTED)


def _run_parallel(sweep: SweepConfig, sweep_dir: Path, todo: list[Cell], jobs: int, threads: int,
                  gate: SignalGate | None, bar: Any) -> list[dict]:
    """Cells in ``jobs`` worker processes. On an interrupt the workers are told to stop too (each
    finishes its epoch and checkpoints), the cells not started are cancelled, and it is re-raised."""
    import multiprocessing

    failures = []
    stop = multiprocessing.get_context().Event()
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(stop,))
    try:
        signals = [] if gate is not None else None  # each worker's cell handles its own signals
        futures = [pool.submit(_run_cell, str(sweep_dir), c, c.base, sweep.overrides, threads, signals) for c in todo]
        if gate is not None:
            gate.check()
            gate.immediate = True  # this process only waits: it may stop at once
        for fut in as_completed(futures):
            res = fut.result()
            failures += [res] if not res["ok"] else []
            bar.update(1)
    except KeyboardInterrupt:
        stop.set()
        for proc in list((getattr(pool, "_processes", None) or {}).values()):  # private, but the only handle on the workers
            try:
                os.kill(proc.pid, signal.SIGINT)
            except OSError:
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failures


def main(argv: list[str] | None = None, signals: list[str] | None = None) -> int:
    """``python -m bgrl_werank.sweep ...``; returns the exit code (``signals``: handle SIGINT/SIGTERM
    as ``train.py`` does, see :class:`bgrl_werank.cli.SignalGate`)."""
    p = argparse.ArgumentParser(prog="python -m bgrl_werank.sweep", description="Sweeps over strength, run configs, methods and any config key (resumable, parallel).")
    p.add_argument("--config", required=True, help="sweep YAML, e.g. configs/sweeps/cora.yaml")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes (default 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override applied to every cell")
    p.add_argument("--out", metavar="DIR", help="folder that holds the sweep's folder <DIR>/<name>/ (default: the YAML's out_dir)")
    p.add_argument("--summarize", action="store_true",
                   help="run nothing: rewrite results.csv, summary.md and the figures from the cells already there")
    p.add_argument("--update", metavar="FILE", help="also paste summary.md into the marked block of FILE (e.g. README.md)")
    p.add_argument("--marker", default="sweep", help="marker name of that block (default: sweep)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    gate = None
    try:
        if signals is not None:
            from .cli import SignalGate

            gate = SignalGate(signals).install()
        if args.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
        sweep = load_sweep(args.config, args.overrides)
        if args.out:
            sweep.out_dir = args.out
        sweep_dir, rows = run_sweep(sweep, args.jobs, run=not args.summarize, gate=gate)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print("interrupted; finished cells are kept and an interrupted cell resumes from its checkpoint: run the "
              "same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001
        if args.debug:
            traceback.print_exc()
        from .data import DatasetError

        if isinstance(e, (ConfigError, DatasetError, RunDirError, OSError)):
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
    sys.exit(main(signals=[]))  # Ctrl-C / SIGTERM: the running cell checkpoints, the sweep stops with one line
