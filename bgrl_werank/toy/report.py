"""The README's toy-experiment numbers, generated from the run folders (``--report``).

``python -m bgrl_werank.toy --report [--runs runs/toy] [--update docs/toy-experiments.md]`` reads the run folders
that the commands in :data:`RUNS` write and prints (or pastes between the README's ``toy-*``
markers) the runtime table, one table of measured quantities per figure, and each folder's final
spectra. Every number the README quotes about these experiments comes from here.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..results import update_file

# (label in the runtime table, run folder under --runs, the command that writes it)
RUNS = [
    ("1", "fig1", "python -m bgrl_werank.toy --figure 1 --out runs/toy/fig1"),
    ("1 (long)", "fig1-10k", "python -m bgrl_werank.toy --figure 1 --set train.epochs=10000 --set train.record_every=20 --out runs/toy/fig1-10k"),
    ("2", "fig2", "python -m bgrl_werank.toy --figure 2 --out runs/toy/fig2"),
    ("3", "fig3", "python -m bgrl_werank.toy --figure 3 --out runs/toy/fig3"),
    ("4", "fig4-10k", "python -m bgrl_werank.toy --figure 4 --set train.epochs=10000 --set train.record_every=20 --out runs/toy/fig4-10k"),
    ("5", "fig5", "python -m bgrl_werank.toy --figure 5 --out runs/toy/fig5"),
]
# figure number -> the run folders its measured-quantities table is made of
FIGURE_FOLDERS = {1: ["fig1", "fig1-10k"], 2: ["fig2"], 3: ["fig3"], 4: ["fig4-10k"], 5: ["fig5"]}
COLLAPSED = 1e-3  # a singular value or eigenvalue below this counts as collapsed
# for Figures 1, 4, 5: report the first epoch from which every WERank weight σ stays in these bands
BANDS = {1: [(0.9, 1.1)], 4: [(0.9, 1.1)], 5: [(0.95, None), (0.9, 1.1)]}


class ReportError(Exception):
    pass


def _command(folder: str) -> str:
    return next((command for _, f, command in RUNS if f == folder), "its command in bgrl_werank/toy/report.py RUNS")


def read_text(path: Path, rerun: str, error: type[Exception] = ReportError) -> str:
    """A file an experiment wrote, as text; an unreadable or non-UTF-8 one raises ``error`` naming it
    and ending with ``rerun`` (how to write it again)."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"'{path}' is corrupted (byte offset {e.start} is not UTF-8 text); {rerun}") from None
    except OSError as e:
        raise error(f"cannot read '{path}' ({e.strerror or e}); check it, or {rerun}") from None


def read_json(path: Path, rerun: str, error: type[Exception] = ReportError) -> object:
    """A JSON file an experiment wrote; a truncated or corrupted one raises ``error`` as :func:`read_text`."""
    try:
        return json.loads(read_text(path, rerun, error))
    except json.JSONDecodeError as e:
        raise error(f"'{path}' is truncated or corrupted (not valid JSON at line {e.lineno}, column {e.colno}: "
                    f"{e.msg}); {rerun}") from None
    except RecursionError:
        raise error(f"'{path}' is corrupted (nested too deeply to read); {rerun}") from None


def _rerun(folder: str) -> str:
    return f"re-run the experiment: {_command(folder)}"


def _read_json(path: Path, folder: str) -> dict:
    data = read_json(path, _rerun(folder))
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not data["runs"]:
        raise ReportError(f"'{path}' does not hold what --figure writes (its runs); {_rerun(folder)}")
    return data


def _load(runs: Path, folder: str) -> dict:
    path = runs / folder / "spectra.json"
    summary = runs / folder / "summary.json"
    if not path.is_file() or not summary.is_file():
        raise ReportError(f"'{runs / folder}' has no spectra.json/summary.json; run the command in bgrl_werank/toy/report.py RUNS first")
    data = _read_json(path, folder)
    data["summary"] = _read_json(summary, folder)
    data["folder"] = folder
    return data


def _g(x: float) -> str:
    return f"{x:.3g}"


def _range(values) -> str:
    values = list(values)
    return f"[{_g(min(values))}, {_g(max(values))}]"


def _final_weights(run: dict) -> list[list[float]]:
    return [layer[-1] for layer in run["weights"]]


def _alpha(run: dict) -> str:
    return f"{run['spec']['alpha']:g}"


def runtime_table(loaded: dict[str, dict]) -> str:
    rows = []
    for label, folder, command in RUNS:
        d = loaded[folder]
        epochs = f"{d['runs'][0]['epochs'][-1]:,}".replace(",", " ")
        rows.append([label, f"`{command}`", epochs, f"{d['summary']['seconds']:.1f} s"])
    return _table(["figure", "command", "epochs", "training time"], rows)


def _stays_from(epochs: list[int], ok: list[bool]) -> int | None:
    """The first recorded epoch from which ``ok`` holds at every later record (None if not at the end)."""
    first = None
    for e, good in zip(epochs, ok):
        if good and first is None:
            first = e
        elif not good:
            first = None
    return first


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _per_layer(weights: list[list[float]], cell) -> str:
    return ", ".join(cell(layer) for layer in weights)


def _count_below(values, threshold: float) -> int:
    return sum(v < threshold for v in values)


def _all_sv(weights: list[list[float]]) -> list[float]:
    return [s for layer in weights for s in layer]


def _trajectory_table(d: dict) -> str:
    """Figures 1, 4, 5: one row per run (without / with WERank)."""
    header = ["run", "WERank α", "epochs", "final SSL loss", "weight σ < 0.5 per layer", f"weight σ < {COLLAPSED:g} per layer",
              "smallest weight σ per layer", "all weight σ", f"embedding eigenvalues < {COLLAPSED:g}", "embedding eigenvalues"]
    rows = []
    for run in d["runs"]:
        w, e, spec = _final_weights(run), run["embedding"][-1], run["spec"]
        rows.append([
            f"{d['folder']}: {spec['loss']} L={spec['num_layers']} k={spec['k']:g}", _alpha(run), str(run["epochs"][-1]),
            f"{run['loss'][-1]:.4g}", _per_layer(w, lambda l: str(_count_below(l, 0.5))),
            _per_layer(w, lambda l: str(_count_below(l, COLLAPSED))), _per_layer(w, lambda l: _g(min(l))),
            _range(_all_sv(w)), f"{_count_below(e, COLLAPSED)} of {len(e)}", _range(e),
        ])
    return _table(header, rows)


def _trajectory_notes(figure: int, d: dict) -> list[str]:
    without, with_ = d["runs"][0], d["runs"][1]
    notes = []
    if with_["spec"]["alpha"] > 0:
        epochs = with_["epochs"]
        for lo, hi in BANDS[figure]:
            ok = [all(s > lo and (hi is None or s < hi) for layer in with_["weights"] for s in layer[i]) for i in range(len(epochs))]
            first = _stays_from(epochs, ok)
            band = f"above {lo:g}" if hi is None else f"in [{lo:g}, {hi:g}]"
            notes.append(f"with WERank, every weight σ is {band} from epoch {first} on" if first is not None
                         else f"with WERank, the weight σ are not all {band} at the end")
    if figure == 1 and without["epochs"][-1] > 1000 and 1000 in without["epochs"]:
        i = without["epochs"].index(1000)
        last = without["weights"][-1]
        notes.append(f"without WERank, W{len(without['weights'])}'s smallest σ: {_g(min(last[i]))} at epoch 1000, "
                     f"{_g(min(last[-1]))} at epoch {without['epochs'][-1]}")
    if figure == 4:
        w1, epochs = without["weights"][0], without["epochs"]
        at = epochs.index(20) if 20 in epochs else 1
        low = _count_below(w1[at], 0.1)
        # follow the r-th smallest singular value through training
        parts = []
        for rank in range(low):
            col = [sorted(s)[rank] for s in w1]
            first = _stays_from(epochs, [v >= 0.1 for v in col])
            parts.append(f"the {_ordinal(rank + 1)} smallest from epoch {first} on" if first is not None else f"the {_ordinal(rank + 1)} smallest never")
        notes.append(f"without WERank, {low} σ of W1 are below 0.1 at epoch {epochs[at]}; above 0.1 to the end: " + "; ".join(parts))
    if figure == 5:
        w1 = without["weights"][0]
        notes.append(f"without WERank, W1's largest σ: {_g(max(w1[0]))} at epoch 0, {_g(max(w1[-1]))} at epoch {without['epochs'][-1]}")
    return notes


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _depth_table(d: dict) -> str:
    header = ["depth L", "WERank α", "final SSL loss", f"embedding eigenvalues < {COLLAPSED:g}", "embedding eigenvalues",
              f"weight σ < {COLLAPSED:g} per layer", "all weight σ"]
    rows = []
    for run in d["runs"]:
        w, e = _final_weights(run), run["embedding"][-1]
        rows.append([
            str(run["spec"]["num_layers"]), _alpha(run), f"{run['loss'][-1]:.4g}", f"{_count_below(e, COLLAPSED)} of {len(e)}",
            _range(e), _per_layer(w, lambda l: str(_count_below(l, COLLAPSED))), _range(_all_sv(w)),
        ])
    return _table(header, rows)


def _noise_table(d: dict) -> str:
    header = ["loss", "k", "WERank α", "final SSL loss", "σ < 1e-7", "σ < 0.005", "σ in [0.9, 1.1]",
              "8 smallest σ (noisy directions)", "8 largest σ"]
    rows = []
    for run in d["runs"]:
        s = sorted(_all_sv(_final_weights(run)))
        rows.append([
            run["spec"]["loss"], f"{run['spec']['k']:g}", _alpha(run), f"{run['loss'][-1]:.4g}", str(_count_below(s, 1e-7)),
            str(_count_below(s, 0.005)), str(sum(0.9 <= v <= 1.1 for v in s)), _range(s[:8]), _range(s[-8:]),
        ])
    return _table(header, rows)


def figure_block(figure: int, loaded: dict[str, dict]) -> str:
    """Measured quantities of one figure: a table (and, for 1, 4, 5, what happened over training)."""
    parts = []
    for folder in FIGURE_FOLDERS[figure]:
        d = loaded[folder]
        if figure == 2:
            parts.append(_depth_table(d))
        elif figure == 3:
            parts.append(_noise_table(d))
        else:
            parts.append(_trajectory_table(d))
            notes = _trajectory_notes(figure, d)
            if notes:
                parts.append("".join(f"- {d['folder']}: {n}.\n" for n in notes))
    return f"Generated from {', '.join('`runs/toy/' + f + '`' for f in FIGURE_FOLDERS[figure])} (final values unless stated):\n\n" + "\n".join(parts)


def spectra_details(runs: Path) -> str:
    out = []
    for _, folder, _ in RUNS:
        path = runs / folder / "summary.md"
        if not path.is_file():
            raise ReportError(f"'{runs / folder}' has no summary.md; re-run the experiment: {_command(folder)}")
        md = read_text(path, _rerun(folder)).strip().splitlines()
        if not md or not md[0].startswith("# "):
            raise ReportError(f"'{path}' is truncated or corrupted (no '# ' title line); re-run the experiment: {_command(folder)}")
        title = md[0].lstrip("# ").strip()
        out.append(f"<details><summary>runs/toy/{folder} — {title}</summary>\n\n" + "\n".join(md[1:]).strip() + "\n\n</details>\n")
    return "\n".join(out)


def build(runs: str | Path = "runs/toy") -> dict[str, str]:
    """Every generated block, by README marker."""
    runs = Path(runs)
    loaded = {folder: _load(runs, folder) for _, folder, _ in RUNS}
    try:
        blocks = {"toy-runtimes": runtime_table(loaded)}
        for figure in FIGURE_FOLDERS:
            blocks[f"toy-fig{figure}"] = figure_block(figure, loaded)
    except (KeyError, IndexError, TypeError, ValueError) as e:  # valid JSON, but not every entry a run writes
        raise ReportError(f"a spectra.json or summary.json under '{runs}' lacks an entry its figure needs "
                          f"({type(e).__name__}: {e}); re-run that experiment (the commands: bgrl_werank/toy/report.py RUNS)") from e
    blocks["toy-spectra"] = spectra_details(runs)
    return blocks


def report(runs: str | Path = "runs/toy", update: str | Path | None = None) -> str:
    """The blocks as one markdown text; with ``update``, each is also pasted between its markers there."""
    blocks = build(runs)
    if update is not None:
        for marker, text in blocks.items():
            update_file(update, marker, text)
    return "\n".join(f"<!-- {m} -->\n{t}" for m, t in blocks.items())
