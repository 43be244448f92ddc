"""Results tables generated from run folders (never typed by hand).

Usage::

    python -m bgrl_werank.results runs/paper                  # print the Markdown table
    python -m bgrl_werank.results runs/paper --update README.md --marker results

Every ``report.json`` below the given folders is one run. Runs are grouped by dataset, protocol,
config (the ``name`` in the run's ``config.yaml``, e.g. ``citeseer`` or ``citeseer-bgrl``) and
method (the report's ``"method"``; reports written before there were other methods are BGRL), one
row each, with the runs without and with WERank side by side: each run contributes its mean test
accuracy over its probe splits, and the table shows mean ± std (numpy, ddof=0) of those over the
runs (seeds) with their count, the difference of the two means (with − without WERank, in points),
their mean RankMe, and what the rank diagnostics cost: their time (``diagnostics_time_s`` in each
run's ``metrics.jsonl``) as a share of the run's training time (mean logged epoch time × epochs),
averaged over all runs of the row. Where a row's dataset, protocol and method have a published
number (:data:`PUBLISHED`), two more columns give it and our means minus it. With ``--update FILE``
the table replaces the text between ``<!-- {marker}:begin -->`` and ``<!-- {marker}:end -->`` in FILE.

``--compare KEY=A,B`` (e.g. ``train.batching=full,subgraph``) sets the runs whose saved config has
KEY = A against those with KEY = B instead, per dataset, protocol, config, method and WERank setting
(:func:`compare_table`); ``--tolerance P`` marks whether each difference is within P points.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .labels import method_title, report_method, run_label

# Published linear-evaluation test accuracies (%, mean ± std) to set our rows against, by (dataset,
# protocol) and method. Source: GraphMAE (Hou et al., "GraphMAE: Self-Supervised Masked Graph
# Autoencoders", KDD 2022), Table 1, Cora on the Planetoid public split; each method with its own
# encoder, schedule and probe there, so a difference is a reference point, not a controlled comparison.
PUBLISHED: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("cora", "public"): {"grace": (81.9, 0.4), "cca_ssg": (84.0, 0.4), "bgrl": (82.7, 0.6)},
}


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


def _mean(rs: list[dict]) -> float:
    return float(np.mean([r["accuracy_mean"] for r in rs]))


def _epochs(r: dict) -> Any:
    return (r.get("hyperparameters") or {}).get("epochs", r.get("epochs", "—"))


def group(reports: list[dict]) -> dict[tuple, dict[bool, list[dict]]]:
    """(dataset, protocol, config, method) → {WERank on: its runs}."""
    groups: dict[tuple, dict[bool, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in reports:
        groups[(r["dataset"], r["protocol"], r.get("_config", "—"), report_method(r))][bool(r.get("werank"))].append(r)
    return groups


def table(reports: list[dict], published: bool = True) -> str:
    """Markdown: one row per (dataset, protocol, config, method); without and with WERank side by side
    (and, with ``published``, the published number where :data:`PUBLISHED` has the row's)."""
    groups = group(reports)
    refs = {key: PUBLISHED.get(key[:2], {}).get(key[3]) for key in groups} if published else {}
    ref_cols = any(refs.values())
    lines = [
        "| dataset | protocol | config | method | without WERank | with WERank | with − without | WERank α | epochs | "
        "seeds (without / with) | RankMe (without / with) | rank diagnostics: share of training time |"
        + (" published | ours − published (without / with) |" if ref_cols else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if ref_cols else ""),
    ]
    for key, by in sorted(groups.items()):
        dataset, protocol, config, method = key
        base, reg = by.get(False, []), by.get(True, [])
        cell = lambda rs: _fmt([r["accuracy_mean"] for r in rs]) if rs else "—"  # noqa: E731
        rank = lambda rs: f"{np.mean([r['rankme'] for r in rs]):.1f}" if rs and all("rankme" in r for r in rs) else "—"  # noqa: E731
        alphas = sorted({json.dumps(r.get("werank_alpha")) for r in reg}) or ["—"]
        epochs = sorted({_epochs(r) for r in base + reg}, key=lambda e: (isinstance(e, str), e if not isinstance(e, str) else 0, str(e)))
        diff = f"{100 * (_mean(reg) - _mean(base)):+.2f}" if base and reg else "—"
        shares = [x for x in (diagnostics_share(r["_path"]) for r in base + reg if "_path" in r) if x is not None]
        share = f"{100 * np.mean(shares):.1f} %" if shares else "—"
        line = (
            f"| {dataset} | {protocol} | {config} | {method_title(method)} | {cell(base)} | {cell(reg)} | {diff} | "
            f"{', '.join(alphas)} | {', '.join(map(str, epochs))} | {len(base)} / {len(reg)} | {rank(base)} / {rank(reg)} | {share} |"
        )
        if ref_cols:
            ref = refs.get(key)
            if ref:
                ours = " / ".join(f"{100 * _mean(rs) - ref[0]:+.2f}" if rs else "—" for rs in (base, reg))
                line += f" {ref[0]:.1f} ± {ref[1]:.1f} | {ours} |"
            else:
                line += " — | — |"
        lines.append(line)
    cross = _across_configs(groups)
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(cross) + "\n" if cross else "")


def _across_configs(groups: dict[tuple, dict[bool, list[dict]]]) -> list[str]:
    """Where a dataset was run with one method under several configs (e.g. each WERank setting's own
    tuned one), one line per pair (with WERank under one config, without under another): the
    difference of their means."""
    out = []
    for (dataset, protocol, config, method), by in sorted(groups.items()):
        for (d2, p2, other, m2), by2 in sorted(groups.items()):
            if (d2, p2, m2) != (dataset, protocol, method) or other == config or not by.get(True) or not by2.get(False):
                continue
            reg, base = by[True], by2[False]
            diff = 100 * (_mean(reg) - _mean(base))
            out.append(f"Across configs, {dataset} ({protocol}): {run_label(method, True)} ({config}) − {run_label(method, False)} ({other}) "
                       f"= {diff:+.2f} points ({_fmt([r['accuracy_mean'] for r in reg])} vs {_fmt([r['accuracy_mean'] for r in base])}, "
                       f"{len(reg)} / {len(base)} seeds).")
    return out


def config_value(run_dir: str | Path, key: str) -> str | None:
    """The value of dotted ``key`` (e.g. ``train.batching``) in a run's saved ``config.yaml``, as text
    (None where the folder has no config or the config no such key)."""
    import yaml

    try:
        node: Any = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return json.dumps(node) if isinstance(node, (list, dict)) else str(node)


def _epoch_seconds(run_dir: str | Path) -> float | None:
    """Median logged epoch time of a run (None without metrics)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    times = [json.loads(line).get("epoch_time_s") for line in path.read_text().splitlines() if line.strip()]
    times = [t for t in times if t is not None]
    return float(np.median(times)) if times else None


def compare_table(reports: list[dict], key: str, values: tuple[str, str], tolerance: float | None = None) -> str:
    """Markdown: the runs whose config sets ``key`` to ``values[0]`` and to ``values[1]`` side by side,
    one row per (dataset, protocol, config, method, WERank on/off); each run contributes its mean test
    accuracy over its probe splits, as in :func:`table`. With ``tolerance`` (points) a last column says
    whether |second − first| is within it. Runs with any other value of ``key`` are left out."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in reports:
        value = config_value(r["_path"], key) if "_path" in r else None
        if value in values:
            groups[(r["dataset"], r["protocol"], r.get("_config", "—"), report_method(r), bool(r.get("werank")))][value].append(r)
    a, b = values
    lines = [f"| dataset | protocol | config | method | {key}: {a} | {key}: {b} | {b} − {a} | epochs | seeds ({a} / {b}) | "
             f"RankMe ({a} / {b}) | s / epoch ({a} / {b}) |" + (f" within {tolerance:g} point{'s' * (tolerance != 1)} |" if tolerance is not None else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if tolerance is not None else "")]
    for (dataset, protocol, config, method, werank), by in sorted(groups.items()):
        first, second = by.get(a, []), by.get(b, [])
        cell = lambda rs: _fmt([r["accuracy_mean"] for r in rs]) if rs else "—"  # noqa: E731
        rank = lambda rs: f"{np.mean([r['rankme'] for r in rs]):.1f}" if rs and all("rankme" in r for r in rs) else "—"  # noqa: E731

        def secs(rs: list[dict]) -> str:
            ts = [t for t in (_epoch_seconds(r["_path"]) for r in rs) if t is not None]
            return f"{np.mean(ts):.2f}" if ts else "—"

        diff = 100 * (_mean(second) - _mean(first)) if first and second else None
        epochs = sorted({str(_epochs(r)) for r in first + second})
        line = (f"| {dataset} | {protocol} | {config} | {run_label(method, werank)} | {cell(first)} | {cell(second)} | "
                f"{'—' if diff is None else f'{diff:+.2f}'} | {', '.join(epochs)} | {len(first)} / {len(second)} | "
                f"{rank(first)} / {rank(second)} | {secs(first)} / {secs(second)} |")
        if tolerance is not None:
            line += " — |" if diff is None else (" yes |" if abs(diff) <= tolerance else " **no** |")
        lines.append(line)
    return "\n".join(lines) + "\n"


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
    p.add_argument("--no-published", action="store_true", help="leave out the published-reference columns")
    p.add_argument("--compare", metavar="KEY=A,B",
                   help="instead: the runs with config KEY set to A and to B side by side (e.g. train.batching=full,subgraph)")
    p.add_argument("--tolerance", type=float, help="with --compare: mark each row within this many points or not")
    add_update_arguments(p, "results")
    args = p.parse_args(argv)
    compare = None
    if args.compare:
        key, _, vals = args.compare.partition("=")
        compare = (key, tuple(vals.split(",")))
        if not key or len(compare[1]) != 2 or not all(compare[1]):
            print(f"error: --compare {args.compare!r} is not KEY=A,B (e.g. train.batching=full,subgraph)", file=sys.stderr)
            return 2
    reports = collect(args.folders)
    if not reports:
        print(f"error: no report.json found under {', '.join(args.folders)}; train some runs first", file=sys.stderr)
        return 2
    if compare:
        return publish(compare_table(reports, compare[0], compare[1], args.tolerance), args)
    return publish(table(reports, published=not args.no_published), args)


if __name__ == "__main__":
    sys.exit(main())
