"""Results tables generated from run folders (never typed by hand).

Usage::

    python -m bgrl_werank.results runs/paper                  # print the Markdown table
    python -m bgrl_werank.results runs/paper --update README.md --marker results

Every ``report.json`` below the given folders is one run. Runs are grouped by dataset, protocol,
config (the ``name`` in the run's ``config.yaml``, e.g. ``citeseer`` or ``citeseer-bgrl``) and
method (BGRL or BGRL + WERank); each run contributes its mean test accuracy over its probe
splits, and the table shows mean ± std (numpy, ddof=0) of those over the runs (seeds) with their
count, and the difference of the two means (WERank − BGRL, in points), and what the rank diagnostics
cost: their time (``diagnostics_time_s`` in each run's ``metrics.jsonl``) as a share of the run's
training time (mean logged epoch time × epochs), averaged over all runs of the row. With
``--update FILE`` the table replaces the text between ``<!-- {marker}:begin -->`` and
``<!-- {marker}:end -->`` in FILE.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def collect(folders: list[str | Path]) -> list[dict]:
    """Every ``report.json`` (of a training run, not of a later eval) below ``folders``."""
    reports = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("report.json")):
            if "eval" in path.relative_to(folder).parts[:-1]:
                continue
            r = json.loads(path.read_text())
            r["_path"] = str(path.parent)
            r["_config"] = _config_name(path.parent)
            reports.append(r)
    return reports


def _config_name(run_dir: Path) -> str:
    """The ``name`` of a run's saved config ("—" where the folder has none)."""
    import yaml

    try:
        return str(yaml.safe_load((run_dir / "config.yaml").read_text()).get("name", "—"))
    except (OSError, AttributeError, yaml.YAMLError):
        return "—"


def diagnostics_share(run_dir: str | Path) -> float | None:
    """Rank diagnostics' time over the training time of one run (None without diagnostics or metrics)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    diag = sum(r.get("diagnostics_time_s", 0.0) for r in rows)
    times = [r["epoch_time_s"] for r in rows if "epoch_time_s" in r]
    epochs = max((r["epoch"] for r in rows), default=0)
    if not diag or not times:
        return None
    return diag / (np.mean(times) * epochs)


def _fmt(values: list[float]) -> str:
    a = 100 * np.asarray(values)
    return f"{a.mean():.2f} ± {a.std():.2f}"


def table(reports: list[dict]) -> str:
    """Markdown: one row per (dataset, protocol, config); BGRL and BGRL + WERank side by side."""
    groups: dict[tuple, dict[bool, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in reports:
        groups[(r["dataset"], r["protocol"], r.get("_config", "—"))][bool(r["werank"])].append(r)
    lines = [
        "| dataset | protocol | config | BGRL | BGRL + WERank | WERank − BGRL | WERank α | epochs | seeds (BGRL / +WERank) | RankMe (BGRL / +WERank) | rank diagnostics: share of training time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, protocol, config), by in sorted(groups.items()):
        base, reg = by.get(False, []), by.get(True, [])
        cell = lambda rs: _fmt([r["accuracy_mean"] for r in rs]) if rs else "—"  # noqa: E731
        rank = lambda rs: f"{np.mean([r['rankme'] for r in rs]):.1f}" if rs and all("rankme" in r for r in rs) else "—"  # noqa: E731
        alphas = sorted({json.dumps(r["werank_alpha"]) for r in reg}) or ["—"]
        epochs = sorted({r["hyperparameters"]["epochs"] for r in base + reg})
        diff = (f"{100 * (np.mean([r['accuracy_mean'] for r in reg]) - np.mean([r['accuracy_mean'] for r in base])):+.2f}"
                if base and reg else "—")
        shares = [x for x in (diagnostics_share(r["_path"]) for r in base + reg if "_path" in r) if x is not None]
        share = f"{100 * np.mean(shares):.1f} %" if shares else "—"
        lines.append(
            f"| {dataset} | {protocol} | {config} | {cell(base)} | {cell(reg)} | {diff} | {', '.join(alphas)} | "
            f"{', '.join(map(str, epochs))} | {len(base)} / {len(reg)} | {rank(base)} / {rank(reg)} | {share} |"
        )
    cross = _across_configs(groups)
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(cross) + "\n" if cross else "")


def _across_configs(groups: dict[tuple, dict[bool, list[dict]]]) -> list[str]:
    """Where a dataset was run under several configs (e.g. each method's own tuned one), one line per
    pair (BGRL + WERank under one config, BGRL under another): the difference of their means."""
    out = []
    for (dataset, protocol, config), by in sorted(groups.items()):
        for (d2, p2, other), by2 in sorted(groups.items()):
            if (d2, p2) != (dataset, protocol) or other == config or not by.get(True) or not by2.get(False):
                continue
            reg, base = by[True], by2[False]
            diff = 100 * (np.mean([r["accuracy_mean"] for r in reg]) - np.mean([r["accuracy_mean"] for r in base]))
            out.append(f"Across configs, {dataset} ({protocol}): BGRL + WERank ({config}) − BGRL ({other}) = {diff:+.2f} points "
                       f"({_fmt([r['accuracy_mean'] for r in reg])} vs {_fmt([r['accuracy_mean'] for r in base])}, {len(reg)} / {len(base)} seeds).")
    return out


def update_file(path: str | Path, marker: str, text: str) -> None:
    path = Path(path)
    src = path.read_text()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(src):
        raise SystemExit(f"error: markers '{begin}' … '{end}' not found in {path}; add them where the table goes")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{text}{end}", src))


def add_update_arguments(p: argparse.ArgumentParser, marker: str) -> None:
    """``--update FILE`` and ``--marker NAME``: where a generated table is pasted (see :func:`publish`)."""
    p.add_argument("--update", metavar="FILE", help="replace the marked block in FILE (e.g. README.md)")
    p.add_argument("--marker", default=marker, help=f"marker name of the block (default: {marker})")


def publish(text: str, args: argparse.Namespace) -> int:
    """Paste ``text`` into ``args.update``'s marked block when asked, print it; returns exit code 0."""
    if args.update:
        update_file(args.update, args.marker, text)
    print(text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bgrl_werank.results", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="folders containing run folders")
    add_update_arguments(p, "results")
    args = p.parse_args(argv)
    reports = collect(args.folders)
    if not reports:
        print(f"error: no report.json found under {', '.join(args.folders)}; train some runs first", file=sys.stderr)
        return 2
    return publish(table(reports), args)


if __name__ == "__main__":
    sys.exit(main())
