"""``python -m bgrl_werank.toy --figure N``: train the runs of one figure, write spectra and the PNG.

The run folder (``--out``, else ``<out_dir>/fig<N>/<timestamp>``) receives:

* ``config.yaml``: the resolved config, every key;
* ``spectra.json``: every run's recorded spectra over training (see :mod:`bgrl_werank.toy.train`);
* ``summary.json`` and ``summary.md``: final singular values, losses and seconds of every run;
* ``fig<N>.png``: the figure.

Expected failures (a bad config, an unwritable folder, a diverging run) print one line on stderr and
exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from ..rundir import make_writable, run_dir_path
from .config import ConfigError, ToyConfig, load_config, save_config
from .experiments import FIGURES, TRAJECTORY_LOSS, draw, run_figure, summarise
from .report import ReportError, read_json, report
from .train import RunSpec, ToyTrainingError

EXIT_ERROR = 2
DEFAULT_CONFIG = "configs/toy/fig{figure}.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bgrl_werank.toy",
        description="Controlled Gaussian experiments of the WERank paper (Figures 1-5): deep linear networks "
                    "trained with VICReg, InfoNCE or an EMA teacher, with and without WERank.",
    )
    p.add_argument("--figure", type=int, choices=FIGURES,
                   help="1: VICReg spectra over training; 2: embedding spectra by depth; 3: weight spectra by "
                        "noise strength k; 4: InfoNCE spectra over training; 5: EMA spectra over training")
    p.add_argument("--config", help=f"YAML config (default: {DEFAULT_CONFIG.format(figure='<N>')} when it exists, "
                                    f"else the schema's defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=200 --set data.k=0.5 (repeatable)")
    p.add_argument("--out", help="run folder (default: <out_dir>/fig<N>/<timestamp>)")
    p.add_argument("--replot", metavar="RUN_DIR",
                   help="redraw the figure of an existing run folder from its config.yaml and spectra.json "
                        "(no training; the other options are ignored)")
    p.add_argument("--report", action="store_true",
                   help="print the README's toy-experiment tables, generated from the run folders under --runs")
    p.add_argument("--runs", default="runs/toy", help="with --report: where the run folders are (default runs/toy)")
    p.add_argument("--update", metavar="README", help="with --report: paste the tables between the toy-* markers of this file")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _resolve_config(args: argparse.Namespace) -> ToyConfig:
    path = args.config
    if path is None:
        default = Path(DEFAULT_CONFIG.format(figure=args.figure))
        path = default if default.is_file() else None
    cfg = load_config(path, args.overrides)
    if args.figure in TRAJECTORY_LOSS and cfg.loss != TRAJECTORY_LOSS[args.figure]:
        # Figures 1, 4, 5 are defined by their loss; record the one actually trained.
        print(f"note: figure {args.figure} trains {TRAJECTORY_LOSS[args.figure]}; loss={cfg.loss} is ignored",
              file=sys.stderr)
        cfg.loss = TRAJECTORY_LOSS[args.figure]
    return cfg


def _run_dir(cfg: ToyConfig, figure: int, explicit: str | None) -> Path:
    run_dir = run_dir_path(explicit, Path(cfg.out_dir) / f"fig{figure}")
    try:
        make_writable(run_dir)
    except OSError as e:
        raise ConfigError(f"cannot write to run folder '{run_dir}' ({e.strerror}); pass a writable --out") from None
    return run_dir


def _summary_md(figure: int, rows: list[dict], seconds: float) -> str:
    lines = [f"# Figure {figure}: final spectra", "",
             "| loss | L | k | WERank α | epochs | final SSL loss | min/max weight σ per layer | "
             "min/max embedding-covariance σ | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w = ", ".join(f"{lo:.3g}/{hi:.3g}" for lo, hi in zip(r["weight_sv_min"], r["weight_sv_max"]))
        e = r["embedding_sv"]
        lines.append(f"| {r['loss']} | {r['num_layers']} | {r['k']:g} | {r['alpha']:g} | {r['epochs']} | "
                     f"{r['final_loss']:.4g} | {w} | {min(e):.3g}/{max(e):.3g} | {r['seconds']:.1f} |")
    lines += ["", f"Total training time: {seconds:.1f} s.", ""]
    return "\n".join(lines)


def _rerun(run_dir: Path, figure: object = None) -> str:
    n = figure if isinstance(figure, int) and figure in FIGURES else "N"
    return f"re-run the experiment (python -m bgrl_werank.toy --figure {n} --out {run_dir}, without --replot)"


def _replot(run_dir: Path) -> int:
    spectra = run_dir / "spectra.json"
    config = run_dir / "config.yaml"
    for f in (spectra, config):
        if not f.is_file():
            raise ConfigError(f"'{f}' not found; --replot takes a run folder written by --figure")
    data = read_json(spectra, _rerun(run_dir), ConfigError)
    figure = data.get("figure") if isinstance(data, dict) else None
    rerun = _rerun(run_dir, figure)
    if (not isinstance(data, dict) or figure not in FIGURES or isinstance(figure, bool)
            or not isinstance(data.get("runs"), list) or not all(isinstance(r, dict) for r in data["runs"])):
        raise ConfigError(f"'{spectra}' does not hold what --figure writes (a figure 1-5 and its runs); {rerun}")
    cfg = load_config(config)
    try:
        fig = draw(cfg, figure, data["runs"])
    except (KeyError, IndexError, TypeError, ValueError) as e:  # runs missing a spectrum, or of the wrong shape
        raise ConfigError(f"'{spectra}' does not hold every spectrum figure {figure} needs "
                          f"({type(e).__name__}: {e}); {rerun}") from e
    png = run_dir / f"fig{figure}.png"
    fig.savefig(png, dpi=110)
    print(f"wrote {png}", file=sys.stderr)
    return 0


def _main(args: argparse.Namespace) -> int:
    if args.replot:
        return _replot(Path(args.replot))
    if args.report:
        print(report(args.runs, args.update))
        return 0
    if args.figure is None:
        raise ConfigError("--figure is required (1-5), unless --replot RUN_DIR is given")
    cfg = _resolve_config(args)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    run_dir = _run_dir(cfg, args.figure, args.out)
    save_config(cfg, run_dir / "config.yaml")
    print(f"run folder: {run_dir}", file=sys.stderr)

    def done(spec: RunSpec, hist: dict, seconds: float) -> None:
        print(f"  {spec.label()}: {hist['epochs'][-1]} epochs in {seconds:.1f} s", file=sys.stderr)

    t0 = time.perf_counter()
    histories, fig = run_figure(cfg, args.figure, on_run_done=done)
    seconds = time.perf_counter() - t0
    (run_dir / "spectra.json").write_text(json.dumps({"figure": args.figure, "runs": histories}) + "\n")
    rows = summarise(histories)
    (run_dir / "summary.json").write_text(json.dumps({"figure": args.figure, "seconds": seconds, "runs": rows},
                                                     indent=1) + "\n")
    (run_dir / "summary.md").write_text(_summary_md(args.figure, rows, seconds))
    png = run_dir / f"fig{args.figure}.png"
    fig.savefig(png, dpi=110)
    print(f"wrote {png} ({seconds:.1f} s of training)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except (ConfigError, ToyTrainingError, ReportError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        if args.debug:
            traceback.print_exc()
        where = f" '{e.filename}'" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}; check the path and its permissions", file=sys.stderr)
        return EXIT_ERROR
