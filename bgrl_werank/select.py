"""Choose a config from sweeps by mean *validation* accuracy, never by test accuracy.

Usage::

    python -m bgrl_werank.select results/sweeps/citeseer-search-bgrl results/sweeps/citeseer-search-werank
    python -m bgrl_werank.select SWEEP_DIR ... --update README.md --marker citeseer-search

Each sweep folder's ``results.csv`` (written by :mod:`bgrl_werank.sweep`) holds one row per cell.
Cells that differ only in their seed are one *setting*: its views, WERank α and grid values. For each
method and WERank setting (its ``label``, e.g. BGRL or GRACE + WERank; a ``results.csv`` written
before sweeps had other methods says ``bgrl`` or ``bgrl+werank`` in its ``method`` column instead)
the table lists every setting with the mean ± std (numpy, ddof = 0) over seeds of the validation
accuracy (each cell's mean over its probe splits, at the C the probe chose on validation) and of the
test accuracy, best validation mean first; the chosen setting (highest validation mean; ties go to
the earlier row of the sweep) is in bold. The test column is shown for the record: it plays no part
in the choice.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .config import read_yaml
from .labels import run_label
from .results import add_update_arguments, publish
from .sweep import METHOD_KEYS, RESULT_COLUMNS

# Columns that name the method, not a setting: WERank's α has a column of its own, and a grid axis
# over the method or WERank is in the row's label.
NOT_SETTINGS = ("werank.alpha", *METHOD_KEYS)


def read_rows(folders: list[str | Path]) -> tuple[list[dict], list[str]]:
    """The finished cells of every sweep folder's ``results.csv``, and the grid keys found (WERank's α
    has a column of its own and the method's keys are in the label: :data:`NOT_SETTINGS`)."""
    rows, keys = [], []
    for folder in folders:
        path = Path(folder) / "results.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no results.csv in '{folder}'; run the sweep first (python -m bgrl_werank.sweep)")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys += [k for k in reader.fieldnames or [] if k not in RESULT_COLUMNS and k not in keys and k not in NOT_SETTINGS]
            rows += [dict(r, _cell_dir=str(Path(folder) / "cells" / r["cell"])) for r in reader if r["status"] == "done"]
    return rows, keys


def _value(row: dict, key: str) -> str:
    """``key``'s value in a cell: its grid column, else the cell's own resolved ``config.yaml`` (a
    key that is a grid axis of one sweep is fixed by the base config or the overrides of another)."""
    if row.get(key) not in (None, ""):
        return row[key]
    node = read_yaml(Path(row["_cell_dir"]) / "config.yaml")
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def label(row: dict) -> str:
    """A cell's method and WERank setting, e.g. ``"GRACE + WERank"``: its ``label`` column, or for a
    results.csv without one (``method`` was then ``bgrl`` or ``bgrl+werank``) from ``method`` and ``werank``."""
    if row.get("label"):
        return row["label"]
    return run_label(row["method"].split("+")[0], row["werank"] == "True")


def settings(rows: list[dict], keys: list[str]) -> dict[str, list[dict]]:
    """Per label (method and WERank setting), one entry per setting (in first-seen order): its
    description and the seeds' accuracies."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        views = f"({r['edge_drop_p_1']}, {r['feat_mask_p_1']}) / ({r['edge_drop_p_2']}, {r['feat_mask_p_2']})"
        grid = tuple(_value(r, k) for k in keys)
        alpha = r["alpha"] if r["werank"] == "True" else "—"
        key = (label(r), views, alpha, grid)
        g = groups.setdefault(key, {"views": views, "alpha": alpha, "grid": grid, "val": [], "test": [], "seeds": []})
        if r.get("val_mean") in (None, ""):
            raise ValueError(f"cell {r['cell']} has no validation accuracy; re-run the sweep to rewrite its results.csv")
        g["val"].append(float(r["val_mean"]))
        g["test"].append(float(r["accuracy_mean"]))
        g["seeds"].append(r["seed"])
    by_label: dict[str, list[dict]] = defaultdict(list)
    for (name, *_), g in groups.items():
        by_label[name].append(g)
    return by_label


def chosen(entries: list[dict]) -> dict:
    """The setting with the highest mean validation accuracy (the first such one on ties)."""
    return max(entries, key=lambda g: float(np.mean(g["val"])))  # max keeps the first maximum


def _pm(values: list[float]) -> str:
    a = 100 * np.asarray(values)
    return f"{a.mean():.2f} ± {a.std():.2f}"


def table(rows: list[dict], keys: list[str]) -> str:
    """Markdown: per method (and WERank setting), its settings by mean validation accuracy, the chosen one in bold."""
    short = [k.split(".")[-1] for k in keys]
    lines = [
        "| method | views (p_edge, p_feat) | α |" + "".join(f" {k} |" for k in short) + " validation | test | seeds |",
        "|---|---|---|" + "---|" * len(keys) + "---|---|---|",
    ]
    for name, entries in sorted(settings(rows, keys).items()):
        best = chosen(entries)
        for g in sorted(entries, key=lambda g: -float(np.mean(g["val"]))):
            mark = (lambda s: f"**{s}**") if g is best else (lambda s: s)
            cells = [name, g["views"], g["alpha"], *g["grid"], _pm(g["val"]), _pm(g["test"]), str(len(g["seeds"]))]
            lines.append("| " + " | ".join(mark(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bgrl_werank.select", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="sweep folders (each holding a results.csv)")
    add_update_arguments(p, "select")
    args = p.parse_args(argv)
    try:
        rows, keys = read_rows(args.folders)
        if not rows:
            raise ValueError(f"no finished cells in {', '.join(args.folders)}")
        text = table(rows, keys)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return publish(text, args)


if __name__ == "__main__":
    sys.exit(main())
