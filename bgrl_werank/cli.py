"""Command-line entry points: ``train_main(argv)`` and ``eval_main(argv)`` return an exit code.

``train.py`` and ``eval.py`` at the repository root only call these, so tests run the real entry
points in-process. Expected failures (a bad config, missing data, an unusable checkpoint, an
unwritable folder) print one line on stderr and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from .rundir import make_writable, run_dir_path
from .config import Config, ConfigError, build_config, load_config, save_config, to_dict

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DatasetError
    from .train.checkpoint import CheckpointError
    from .backends import BackendError
    from .train.trainer import TrainingError

    return (ConfigError, DatasetError, CheckpointError, TrainingError, RunDirError, BackendError)


class RunDirError(Exception):
    """The run folder cannot be used (exists with a finished run, unwritable, …)."""


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _guard(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return fn(args)
    except _user_errors() as e:
        if args.debug:
            traceback.print_exc()
        return _fail(str(e))
    except OSError as e:
        if args.debug:
            traceback.print_exc()
        where = f" '{e.filename}'" if getattr(e, "filename", None) else ""
        return _fail(f"{e.strerror or e}{where}; check the path and its permissions")


def _set_threads(cfg: Config) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)


# --------------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------------


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Pretrain a GCN encoder with BGRL (+ WERank), then evaluate it with a linear probe.",
    )
    p.add_argument("--config", help="YAML config (e.g. configs/cora.yaml); defaults only when omitted")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set werank.enabled=false --set augment.0.edge_drop_p=0.3 (repeatable)")
    p.add_argument("--run-dir", help="explicit run folder (default: <out_dir>/<name>/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a run folder that already holds a finished run")
    p.add_argument("--no-eval", action="store_true", help="skip the linear evaluation at the end")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _new_run_dir(cfg: Config, explicit: str | None, force: bool) -> Path:
    run_dir = run_dir_path(explicit, Path(cfg.out_dir) / cfg.name)
    if run_dir.exists() and (run_dir / "checkpoint.pt").exists() and not force:
        raise RunDirError(
            f"run folder '{run_dir}' already holds a run; use --resume {run_dir} to continue it or --force to overwrite it"
        )
    try:
        make_writable(run_dir)
    except OSError as e:
        raise RunDirError(f"cannot write to run folder '{run_dir}' ({e.strerror}); choose another --run-dir or out_dir") from None
    if force:
        for name in ("checkpoint.pt", "metrics.jsonl", "report.json", "report.md"):
            (run_dir / name).unlink(missing_ok=True)
    return run_dir


def _architecture(cfg: Config) -> tuple:
    """What a checkpoint's weights fix: the encoder and the method (device and backend may change)."""
    d = to_dict(cfg)
    return d["model"], d["method"]


def _train(args: argparse.Namespace) -> int:
    from .train.checkpoint import load_checkpoint
    from .train.report import build_report, write_report
    from .backends import resolve_backend
    from .train.trainer import Interrupted, Trainer, evaluate, load_graph, probe_splits

    if args.resume:
        if args.config:
            raise ConfigError("--resume takes the config saved in the run folder; drop --config (use --set for train.epochs and the like)")
        run_dir = Path(args.resume)
        state = load_checkpoint(run_dir / "checkpoint.pt")
        cfg = build_config(state["config"], args.overrides)
        # Only keys that do not change the model or its trajectory so far may be overridden on resume.
        if _architecture(cfg) != _architecture(build_config(state["config"])):
            raise ConfigError("model.* and method.* cannot change on --resume; the checkpoint's architecture is fixed")
    else:
        cfg = load_config(args.config, args.overrides)
        state = None
    _set_threads(cfg)
    backend = resolve_backend(cfg)  # a device this machine lacks fails here, before anything is loaded
    graph = load_graph(cfg)  # fails early on missing data, before any folder is created
    if not args.no_eval:
        probe_splits(cfg, graph)  # and on a split protocol the dataset lacks, before any training
    # builds the method: an unknown encoder option or a werank.alpha list of the wrong length fails
    # here, before a run folder exists
    trainer = Trainer(cfg, graph, args.resume or ".", backend=backend)
    if state is None:
        run_dir = _new_run_dir(cfg, args.run_dir, args.force)
        if not args.config:  # a bare `python train.py` trains the schema's defaults; say so, and how to choose
            print(f"no --config given: training the built-in defaults ({cfg.data.name}, {cfg.train.epochs} epochs"
                  f"{', with --set overrides' if args.overrides else ''}); pass --config configs/<dataset>.yaml "
                  f"for a dataset's settings", file=sys.stderr)
    save_config(cfg, run_dir / "config.yaml")
    trainer.run_dir = Path(run_dir)
    if state is not None:
        trainer.load_state_dict(state)
        print(f"resuming {run_dir} at epoch {trainer.epoch}/{cfg.train.epochs}", file=sys.stderr)
    else:
        print(f"run folder: {run_dir}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        trainer.fit()
    except Interrupted as e:
        print(f"interrupted by {e.signame} after epoch {e.epoch}; checkpoint written. Resume with: "
              f"python train.py --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    train_seconds = time.perf_counter() - t0 + _previous_train_seconds(run_dir)
    _write_progress(run_dir, train_seconds)
    if cfg.diagnostics.every > 0:
        from .plots import plot_spectra

        plot_spectra(run_dir)
    if args.no_eval:
        return 0
    probe = evaluate(cfg, trainer.method, graph, trainer.backend)
    extra = {"rankme": probe["rankme"], "representation_spectrum": probe["representation_spectrum"],
             "train_seconds": train_seconds, "run_dir": str(run_dir)}
    report = build_report(cfg, probe, extra)
    write_report(report, run_dir)
    print((run_dir / "report.md").read_text())
    return 0


def _previous_train_seconds(run_dir: Path) -> float:
    f = run_dir / "progress.json"
    if f.exists():
        try:
            return float(json.loads(f.read_text()).get("train_seconds", 0.0))
        except (ValueError, OSError):
            return 0.0
    return 0.0


def _write_progress(run_dir: Path, seconds: float) -> None:
    (run_dir / "progress.json").write_text(json.dumps({"train_seconds": seconds}) + "\n")


def train_main(argv: list[str] | None = None) -> int:
    """``python train.py ...``; returns the exit code."""
    args = _train_parser().parse_args(argv)
    return _guard(_train, args)


# --------------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------------


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py",
        description="Re-evaluate a checkpoint with a linear probe (any protocol) and write a report.",
    )
    p.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override eval.* or data.* keys, e.g. --set eval.protocol=random --set eval.num_splits=20")
    p.add_argument("--out", help="folder for report.json/report.md (default: <run>/eval/<protocol>-<timestamp>)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _eval(args: argparse.Namespace) -> int:
    from .train.checkpoint import CheckpointError, load_checkpoint
    from .train.report import build_report, write_report
    from .train.trainer import Trainer, evaluate, load_graph

    ckpt_path = Path(args.checkpoint)
    state = load_checkpoint(ckpt_path)
    cfg = build_config(state["config"], args.overrides)
    if _architecture(cfg) != _architecture(build_config(state["config"])):
        raise CheckpointError(
            "checkpoint architecture (model.*, method.*) differs from the requested config; drop those overrides"
        )
    _set_threads(cfg)
    graph = load_graph(cfg)
    if graph.x.size(1) != int(state.get("in_channels", graph.x.size(1))):
        raise CheckpointError(
            f"checkpoint expects {state['in_channels']} input features but {cfg.data.name} has {graph.x.size(1)}; "
            f"evaluate it on the dataset it was trained on"
        )
    run_dir = ckpt_path if ckpt_path.is_dir() else ckpt_path.parent
    out = run_dir_path(args.out, run_dir / "eval" / cfg.eval.protocol)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create output folder '{out}' ({e.strerror}); pass a writable --out") from None
    trainer = Trainer(cfg, graph, run_dir, progress=False)
    trainer.load_state_dict(state)
    probe = evaluate(cfg, trainer.method, graph, trainer.backend)
    extra = {"rankme": probe["rankme"], "representation_spectrum": probe["representation_spectrum"],
             "checkpoint": str(ckpt_path), "epoch": trainer.epoch}
    report = build_report(cfg, probe, extra)
    write_report(report, out)
    print((out / "report.md").read_text())
    print(f"report written to {out}", file=sys.stderr)
    return 0


def eval_main(argv: list[str] | None = None) -> int:
    """``python eval.py ...``; returns the exit code."""
    args = _eval_parser().parse_args(argv)
    return _guard(_eval, args)


__all__ = ["train_main", "eval_main", "RunDirError"]
