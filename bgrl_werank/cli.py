"""Command-line entry points: ``train_main(argv)`` and ``eval_main(argv)`` return an exit code.

``train.py`` and ``eval.py`` at the repository root only call these, so tests run the real entry
points in-process. Expected failures (a bad config, missing data, an unusable checkpoint, an
unwritable or busy folder, a full disk) print one line on stderr and exit 2; an interrupt (Ctrl-C,
SIGTERM) at any moment prints one line and exits 130, leaving the run folder resumable; ``--debug``
shows the traceback.

What a run folder promises, and what ``--resume`` and ``eval.py`` may change
(:data:`RESUME_MAY_CHANGE`, :data:`EVAL_MAY_CHANGE`): ``docs/guarantees.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from .config import Config, ConfigError, build_config, load_config, to_dict
from .rundir import (
    RunDirError,
    atomic_write_text,
    claim,
    is_disk_full,
    make_writable,
    run_dir_path,
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

# Config keys a resumed run may change (a trailing "." covers a section): they extend the run, say
# how it is logged, evaluated, or where it runs. Nothing else may change, because config.yaml must
# keep describing the run whose weights and metrics.jsonl the folder holds. train.epochs may not go
# below the epochs already trained; a changed value is recorded in progress.json and the report
# (with warmup_cosine, a longer run's remaining schedule differs from a fresh run of that length).
RESUME_MAY_CHANGE = (
    "train.epochs", "train.log_every", "train.progress", "checkpoint.every", "diagnostics.every",
    "diagnostics.rel_threshold", "eval.", "data.root", "data.download", "device", "backend", "threads",
    "train.dist_timeout_s",
)
# Config keys eval.py may change: how the checkpoint is evaluated and where its data and device are.
# The report describes the checkpoint as it was trained.
EVAL_MAY_CHANGE = ("eval.", "data.root", "data.download", "device", "backend", "threads")
# What a new run's folder holds; --force removes these (and nothing else) before a new run starts.
RUN_FILES = ("checkpoint.pt", "config.yaml", "metrics.jsonl", "spectra.jsonl", "spectra.png", "report.json",
             "report.md", "progress.json", "error.txt")


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DatasetError
    from .train.checkpoint import CheckpointError
    from .backends import BackendError
    from .train.trainer import TrainingError

    return (ConfigError, DatasetError, CheckpointError, TrainingError, RunDirError, BackendError)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_ERROR


class SignalGate:
    """SIGINT and SIGTERM for a command-line run: held while it is unsafe to stop, acted on at once
    where it is safe.

    An interrupt raised inside an import can leave a library half-imported (seen here: numpy's
    lazily imported ``numpy.exceptions`` left in ``sys.modules`` but not bound, after which every
    import of scipy recursed without end and the error handler itself failed). So while a command
    starts (imports, data, model) a first signal is only recorded, and :meth:`check`, called between
    those steps, turns it into ``KeyboardInterrupt``; a second signal stops at once. Where nothing
    can be half-done any more (the final probe), ``immediate`` makes the first one stop at once.
    During training the trainer's own handler takes over (finish the epoch, checkpoint).
    """

    def __init__(self, held: list[str] | None = None) -> None:
        # the signals that arrived, first first; shared with train.py / eval.py (what they recorded
        # while importing this package) or a sweep (which stops between cells on any)
        self.held = held if held is not None else []
        self.immediate = False
        self.closed = False  # the command has returned: a late signal no longer changes how it ends

    def install(self) -> "SignalGate":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)
        return self

    def __call__(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        stop_now = (self.immediate or bool(self.held)) and not self.closed
        self.held.append(name)
        if stop_now:
            raise KeyboardInterrupt(self.held[0])

    def check(self) -> None:
        """Raise the first signal that arrived, if any, as ``KeyboardInterrupt``."""
        if self.held:
            raise KeyboardInterrupt(self.held[0])


class _Stage:
    """Where a command is, so that an interrupt at any moment can say what state it left behind."""

    def __init__(self, gate: SignalGate | None = None, command: str = "train") -> None:
        self.command = command  # train | eval
        self.name = "start"  # start | prepared | final-eval | eval
        self.run_dir: Path | None = None
        self.epoch = 0
        self.gate = gate

    def check(self) -> None:
        """A safe point: stop here if a signal arrived."""
        if self.gate is not None:
            self.gate.check()

    def safe_to_stop_at_once(self) -> None:
        if self.gate is not None:
            self.gate.check()
            self.gate.immediate = True

    def interrupted(self, signame: str) -> str:
        r = self.run_dir
        if self.name == "prepared":
            return (f"interrupted ({signame}) before training began; run folder {r} holds the run's config: "
                    f"start it with python train.py --resume {_q(r)}")
        if self.name == "final-eval":
            return (f"interrupted ({signame}) during the final evaluation; training is finished and checkpointed "
                    f"(epoch {self.epoch}): python train.py --resume {_q(r)} writes the report")
        if self.name == "eval" or self.command == "eval":
            return f"interrupted ({signame}); no report was written"
        return f"interrupted ({signame}) before the run started; nothing was written"


def _guard(fn: Callable[[argparse.Namespace, _Stage], int], args: argparse.Namespace, gate: SignalGate | None,
           command: str) -> int:
    stage = _Stage(gate, command)
    errors: tuple[type[BaseException], ...] = ()
    dist_failure: Callable[[BaseException], bool] = lambda e: False
    try:
        if gate is not None:
            gate.install()
        errors = _user_errors()  # imported now: the handlers below must not import anything
        from .distributed import is_dist_failure as dist_failure
        import torch.distributed  # noqa: F401 - what dist_failure reads
        stage.check()
        return fn(args, stage)
    except KeyboardInterrupt as e:
        if args.debug:
            traceback.print_exc()
        print(_rank_prefix() + stage.interrupted(str(e) or "SIGINT"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - sorted below; anything else is re-raised
        if args.debug:
            traceback.print_exc()
        if isinstance(e, errors):
            return _fail(_rank_prefix() + str(e))
        if dist_failure(e):
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            return _fail(f"{_rank_prefix()}lost contact with the other processes of this torchrun (one of them failed or "
                         f"was stopped, see its message; or none answered within train.dist_timeout_s): {first}")
        if isinstance(e, OSError):
            where = f" '{e.filename}'" if getattr(e, "filename", None) else ""
            if is_disk_full(e):
                return _fail(f"no space left on the device{where}; free some space there, then run the command again")
            return _fail(f"{e.strerror or e}{where}; check the path and its permissions")
        raise
    finally:
        if gate is not None:
            gate.closed = True


def _rank_prefix() -> str:
    """``"rank r of N: "`` in a torchrun process (messages of several processes interleave), else empty."""
    try:
        size, rank = int(os.environ.get("WORLD_SIZE") or 1), int(os.environ.get("RANK") or 0)
    except ValueError:  # a malformed environment is reported by distributed.from_env
        return ""
    return f"rank {rank} of {size}: " if size > 1 else ""


def _set_threads(cfg: Config) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config mapping as ``{dotted.key: value}``, with ``--set``'s paths: a list of sections
    (``augment``) by index, a list of values (``model.layer_sizes``) as one value."""
    if isinstance(d, list) and any(isinstance(v, dict) for v in d):
        d = {str(i): v for i, v in enumerate(d)}
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_keys(before: Config, after: Config) -> dict[str, tuple[Any, Any]]:
    """The keys whose values differ between two configs: ``{key: (before, after)}``."""
    a, b = _flat(to_dict(before)), _flat(to_dict(after))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _allowed(key: str, allowed: tuple[str, ...]) -> bool:
    return any(key == a or (a.endswith(".") and key.startswith(a)) for a in allowed)


def _shown(allowed: tuple[str, ...]) -> str:
    return ", ".join(a + "*" if a.endswith(".") else a for a in allowed)


def check_changes(before: Config, after: Config, allowed: tuple[str, ...], what: str, why: str) -> dict[str, tuple[Any, Any]]:
    """The changes from ``before`` to ``after``; raises ConfigError (one line) on a key not in ``allowed``."""
    changes = changed_keys(before, after)
    refused = [k for k in changes if not _allowed(k, allowed)]
    if refused:
        k = refused[0]
        old, new = changes[k]
        more = f" (and {', '.join(refused[1:])})" if len(refused) > 1 else ""
        raise ConfigError(f"{what} may not change {k} ({old!r} -> {new!r}){more}: {why}; {what} may change only "
                          f"{_shown(allowed)}")
    return changes


# --------------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------------


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Pretrain an encoder with a self-supervised method (+ WERank), then evaluate it with a linear probe.",
    )
    p.add_argument("--config", help="YAML config (e.g. configs/cora.yaml); defaults only when omitted")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set werank.enabled=false --set augment.0.edge_drop_p=0.3 (repeatable)")
    p.add_argument("--run-dir", help="explicit run folder (default: <out_dir>/<name>/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR (or RUN_DIR/checkpoint.pt) from its last checkpoint; --set may "
                        "change only " + _shown(RESUME_MAY_CHANGE))
    p.add_argument("--force", action="store_true", help="overwrite a run folder that already holds a run")
    p.add_argument("--no-eval", action="store_true", help="skip the linear evaluation at the end")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _q(path: Any) -> str:
    """A path as a shell word, for the commands that messages suggest."""
    return shlex.quote(str(path))


def _check_path_arg(value: str | None, option: str) -> None:
    if value is None:
        return
    if value == "":
        raise ConfigError(f"{option} is empty; give a folder, or leave {option} out")
    if any(ord(c) < 32 for c in value):
        raise ConfigError(f"{option} {value!r} holds a control character (e.g. a newline); choose a plain folder name")


def _resume_folder(arg: str) -> Path:
    """The run folder that ``--resume`` names (a run folder, or the checkpoint.pt inside one)."""
    path = Path(arg)
    if path.is_file():
        if path.name != "checkpoint.pt":
            raise RunDirError(f"--resume {arg}: a file; pass the run folder (or the checkpoint.pt inside it)")
        path = path.parent
    if not path.is_dir():
        raise RunDirError(f"--resume {arg}: no such run folder; pass the folder train.py printed as 'run folder: ...'")
    ckpt = path / "checkpoint.pt"
    if os.path.lexists(ckpt) and not ckpt.is_file():
        raise RunDirError(f"'{ckpt}' is not a file (a folder, or a link to nothing); restore the checkpoint, or start a "
                          f"new run in another folder")
    if not ckpt.is_file() and not (path / "config.yaml").is_file():
        raise RunDirError(f"--resume {arg}: '{path}' holds neither checkpoint.pt nor config.yaml, so it is not a run "
                          f"folder; pass the folder train.py printed as 'run folder: ...'")
    return path


def _recorded_config(run_dir: Path, state: dict | None) -> Config:
    """The run's config as its folder records it.

    ``config.yaml`` is the latest record (a resume that extended the run or changed how it is
    evaluated rewrote it before training on); the checkpoint's copy is from its last save. The two
    may differ only in keys a resume may change, else the folder was edited and is refused.
    """
    from .config import read_yaml, upgrade_saved_config

    yaml_path = run_dir / "config.yaml"
    recorded = None
    if yaml_path.exists():
        try:
            recorded = build_config(upgrade_saved_config(read_yaml(yaml_path)))
        except ConfigError as e:
            fix = "delete it to resume from the checkpoint's own copy" if state is not None else "restore it"
            raise RunDirError(f"cannot resume '{run_dir}': its config.yaml is damaged ({e}); {fix}") from None
    if state is None:
        return recorded
    try:
        saved = build_config(state["config"])
    except ConfigError as e:
        raise RunDirError(f"cannot resume '{run_dir}': its checkpoint's config is invalid ({e})") from None
    if recorded is None:
        return saved
    edited = [k for k in changed_keys(saved, recorded) if not _allowed(k, RESUME_MAY_CHANGE)]
    if edited:
        old, new = changed_keys(saved, recorded)[edited[0]]
        raise RunDirError(f"cannot resume '{run_dir}': its config.yaml and checkpoint.pt disagree on {edited[0]} "
                          f"({new!r} vs {old!r}), so the folder was edited; restore config.yaml (or delete it to "
                          f"resume from the checkpoint's own copy)")
    return recorded


def _load_resume(args: argparse.Namespace, writer: bool = True):
    """Claim the run folder, then read its checkpoint (None: none written yet) and config; returns
    (folder, claim, checkpoint, the resumed config, what it changes). ``writer=False`` (a torchrun rank
    other than 0, which only reads) claims nothing and returns None for the claim."""
    from .train.checkpoint import load_checkpoint

    if args.config:
        raise ConfigError("--resume takes the config saved in the run folder; drop --config (use --set for train.epochs and the like)")
    if args.run_dir is not None:
        raise ConfigError("--resume names the run folder itself; drop --run-dir")
    if args.force:
        raise ConfigError("--resume continues a run and --force starts one over; give only one of them")
    run_dir = _resume_folder(args.resume)
    owner = claim(run_dir) if writer else None  # before reading: a writer that finishes meanwhile cannot leave us an older state
    try:
        state = load_checkpoint(run_dir / "checkpoint.pt") if (run_dir / "checkpoint.pt").is_file() else None
        before = _recorded_config(run_dir, state)
        cfg = build_config(to_dict(before), args.overrides)
        changes = check_changes(before, cfg, RESUME_MAY_CHANGE, "--resume",
                                f"the run in {run_dir} was trained with the saved value (start a new run to change it)")
        done = int(state["epoch"]) if state is not None else 0
        if cfg.train.epochs < done:
            raise ConfigError(f"--resume: train.epochs={cfg.train.epochs} is below the {done} epochs {run_dir} has "
                              f"already trained; give train.epochs >= {done}")
    except BaseException:
        if owner is not None:
            owner.release()
        raise
    return run_dir, owner, state, cfg, changes


def _only_reports(folder: Path) -> list[Path]:
    """The files under ``folder`` that eval.py did not write (anything but report.json / report.md)."""
    return [p for p in folder.rglob("*") if not p.is_dir() and p.name not in ("report.json", "report.md")]


def _new_run_dir(cfg: Config, explicit: str | None, force: bool):
    """Create (or, with ``force``, take over) the run folder and claim it; returns (folder, claim).

    Nothing but a run's own files is ever removed: a folder holding a ``config.yaml`` that is not a
    run's, or files under ``eval/`` that eval.py did not write, is refused even with ``force``. A
    folder this call created is removed again if it fails.
    """
    _check_path_arg(explicit, "--run-dir")
    run_dir = run_dir_path(explicit, Path(cfg.out_dir) / cfg.name)
    created = not run_dir.exists()
    try:
        make_writable(run_dir)
    except OSError as e:
        raise RunDirError(f"cannot write to run folder '{run_dir}' ({e.strerror}); choose another --run-dir or out_dir") from None
    try:
        owner = claim(run_dir)  # before anything is read or removed: a live writer of this folder stops us here
    except BaseException:
        _remove_if_empty(run_dir, created)
        raise
    try:
        if (run_dir / "config.yaml").exists():
            try:
                from .config import read_yaml

                build_config(read_yaml(run_dir / "config.yaml"))
            except ConfigError:
                raise RunDirError(f"'{run_dir}' holds a config.yaml that is not a run's; choose another --run-dir") from None
        held = [n for n in ("checkpoint.pt", "config.yaml") if os.path.lexists(run_dir / n)]
        if held and not force:
            what = "a run" if "checkpoint.pt" in held else "a run that has not reached its first checkpoint"
            raise RunDirError(f"run folder '{run_dir}' already holds {what}; use --resume {_q(run_dir)} to continue it "
                              f"or --force to overwrite it")
        if force:
            foreign = _only_reports(run_dir / "eval") if (run_dir / "eval").is_dir() else []
            if foreign:
                raise RunDirError(f"--force removes the run in '{run_dir}' and its eval/ reports, but eval/ also holds "
                                  f"files eval.py did not write (e.g. {foreign[0].relative_to(run_dir)}); move them, "
                                  f"then use --force")
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "eval", ignore_errors=True)  # they evaluated the checkpoint --force removes
    except BaseException:
        owner.release()
        _remove_if_empty(run_dir, created)
        raise
    return run_dir, owner


def _remove_if_empty(run_dir: Path, created: bool) -> None:
    """Remove a folder this command created if it holds nothing but its lock (best effort)."""
    if not created:
        return
    try:
        if {p.name for p in run_dir.iterdir()} <= {".lock"}:
            (run_dir / ".lock").unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass


def _read_progress(run_dir: Path) -> dict[str, Any]:
    """``progress.json``: the training time so far and the resume history; damaged is an error (it is
    part of the record), absent is empty."""
    f = run_dir / "progress.json"
    if not f.exists():
        return {}
    try:
        data = json.loads(f.read_text())
        ok = (isinstance(data, dict) and isinstance(data.get("train_seconds", 0.0), (int, float))
              and isinstance(data.get("resumes", []), list)
              and all(isinstance(r, dict) and isinstance(r.get("changed"), dict) and isinstance(r.get("at_epoch"), int)
                      for r in data.get("resumes", [])))
        if not ok:
            raise ValueError("not the record train.py writes")
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"'{f}' is damaged ({' '.join(str(e).split())[:80]}); it holds the run's training time and "
                          f"resume history: repair it, or delete it to start that record afresh") from None
    return data


def _write_progress(run_dir: Path, progress: dict[str, Any]) -> None:
    atomic_write_text(run_dir / "progress.json", json.dumps(progress) + "\n")


def _save_config(cfg: Config, path: Path) -> None:
    import yaml

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _set_aside_report(run_dir: Path) -> Path | None:
    """Move the run's previous final report (it describes the run before this resume) to
    ``eval/<protocol>/<its time>/``, where eval.py's reports of earlier checkpoints live."""
    old = [run_dir / n for n in ("report.json", "report.md") if os.path.lexists(run_dir / n)]
    if not old:
        return None
    try:
        protocol = str(json.loads((run_dir / "report.json").read_text()).get("protocol", "earlier"))
    except (OSError, ValueError, AttributeError):
        protocol = "earlier"
    if not protocol.replace("-", "").replace("_", "").isalnum():
        protocol = "earlier"
    stamp = _dt.datetime.fromtimestamp(max(p.lstat().st_mtime for p in old)).strftime("%Y%m%d-%H%M%S-%f")
    dest = run_dir / "eval" / protocol / stamp
    dest.mkdir(parents=True, exist_ok=True)
    for p in old:
        os.replace(p, dest / p.name)
    return dest


def _train(args: argparse.Namespace, stage: _Stage) -> int:
    from . import distributed

    world = distributed.from_env()  # torchrun's RANK / WORLD_SIZE; size 1 without it
    try:
        return _train_in(args, stage, world)
    finally:
        distributed.shutdown(world)


def _train_in(args: argparse.Namespace, stage: _Stage, world) -> int:
    from . import distributed
    from .train.report import build_report, write_report
    from .backends import resolve_backend
    from .train.trainer import Interrupted, Trainer, TrainingError, evaluate, load_graph, probe_splits

    owner = None
    if args.resume:
        run_dir, owner, state, cfg, changes = _load_resume(args, writer=world.is_main)
        stage.run_dir = run_dir
    else:
        cfg = load_config(args.config, args.overrides)
        state, changes = None, {}
    try:
        distributed.check_config(cfg, world)  # e.g. full batching under torchrun, before anything else
        _set_threads(cfg)
        # a device this machine lacks fails here, before anything is loaded (torchrun on CUDA: cuda:LOCAL_RANK)
        backend = resolve_backend(cfg, distributed.device_for(cfg, world))
        stage.check()
        graph = load_graph(cfg)  # fails early on missing or bad data, before any folder is created
        if not args.no_eval or any(k.startswith("eval.") for k in changes):
            probe_splits(cfg, graph)  # and on a split protocol the dataset lacks, before any training
        stage.check()
        distributed.init(world, backend.device, cfg.train.dist_timeout_s)  # torchrun: join the process group
        # builds the method: an unknown encoder option or a werank.alpha list of the wrong length
        # fails here, before a run folder exists
        trainer = Trainer(cfg, graph, ".", backend=backend, world=world)
        if state is not None:
            trainer.load_state_dict(state)  # a checkpoint that does not fit fails here, before anything is written
        stage.check()
        if not world.is_main:  # a torchrun rank other than 0: it trains and writes nothing
            return _train_follower(trainer, run_dir if args.resume else None)
        if args.resume:
            progress = _read_progress(run_dir) if state is not None else {}
            trainer.run_dir = run_dir
            dropped = trainer.take_over_run_dir()  # before anything is written: a damaged log stops us here
        else:
            run_dir, owner = _new_run_dir(cfg, args.run_dir, args.force)
            progress, dropped = {}, []
    except BaseException:
        if owner is not None:
            owner.release()
        raise
    with owner:
        stage.run_dir = run_dir
        if args.resume:
            moved = _set_aside_report(run_dir)
            if moved is not None:
                dropped.append(f"the previous report moved to {moved.relative_to(run_dir)}")
        if changes:
            progress.setdefault("resumes", []).append({
                "at_epoch": trainer.epoch, "time": _dt.datetime.now().isoformat(timespec="seconds"),
                "changed": {k: [old, new] for k, (old, new) in changes.items()},
            })
            _write_progress(run_dir, progress)
        if changes or not (run_dir / "config.yaml").exists():
            _save_config(cfg, run_dir / "config.yaml")
        stage.name = "prepared"
        stage.check()
        trainer.run_dir = Path(run_dir)
        if args.resume:
            print(f"resuming {run_dir} at epoch {trainer.epoch}/{cfg.train.epochs}"
                  + "".join(f"; {k}: {old} -> {new}" for k, (old, new) in changes.items())
                  + (f" ({'; '.join(dropped)})" if dropped else ""), file=sys.stderr)
        else:
            if not args.config:  # a bare `python train.py` trains the schema's defaults; say so, and how to choose
                print(f"no --config given: training the built-in defaults ({cfg.data.name}, {cfg.train.epochs} epochs"
                      f"{', with --set overrides' if args.overrides else ''}); pass --config configs/<dataset>.yaml "
                      f"for a dataset's settings", file=sys.stderr)
            print(f"run folder: {run_dir}", file=sys.stderr)
        if world.distributed:
            print(f"data-parallel: {world.size} processes ({'nccl' if backend.device.type == 'cuda' else 'gloo'}), "
                  f"{trainer.batches.num_batches} batches = {trainer.batches.num_batches // world.size} steps per epoch; "
                  f"rank 0 writes", file=sys.stderr)
        t0 = time.perf_counter()

        def record_time() -> float:
            """Add this process's training time to progress.json (also when it stops early)."""
            progress["train_seconds"] = time.perf_counter() - t0 + float(progress.get("train_seconds", 0.0))
            try:
                _write_progress(run_dir, progress)
            except OSError:  # e.g. the full disk that stopped training; the time is not worth a second error
                pass
            return progress["train_seconds"]

        try:
            trainer.fit()
        except Interrupted as e:
            record_time()
            print(f"interrupted by {e.signame} after epoch {e.epoch}; checkpoint written. Resume with: "
                  f"python train.py --resume {_q(run_dir)}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except TrainingError:
            record_time()
            raise
        stage.name, stage.epoch = "final-eval", trainer.epoch
        stage.safe_to_stop_at_once()  # the checkpoint is complete; nothing below is left half-done by stopping
        train_seconds = record_time()
        if trainer.stop_signal:  # it arrived during the last epoch, whose checkpoint is written
            raise KeyboardInterrupt(trainer.stop_signal)
        if cfg.diagnostics.every > 0:
            from .plots import plot_spectra

            plot_spectra(run_dir)
        if args.no_eval:
            return 0
        probe = evaluate(cfg, trainer.method, graph, trainer.backend)
        extra = {"rankme": probe["rankme"], "representation_spectrum": probe["representation_spectrum"],
                 "train_seconds": train_seconds, "run_dir": str(run_dir), "epochs_trained": trainer.epoch}
        if progress.get("resumes"):
            extra["resumes"] = progress["resumes"]
        report = build_report(cfg, probe, extra)
        write_report(report, run_dir)
        print((run_dir / "report.md").read_text())
        return 0


def _train_follower(trainer, run_dir: Path | None) -> int:
    """Training on a torchrun rank other than 0: the same steps and collectives, no file written, no
    report (rank 0 evaluates); an interrupt ends it with 130 silently (rank 0 says what was left)."""
    from .train.trainer import Interrupted

    trainer.run_dir = Path(run_dir) if run_dir is not None else Path(".")
    try:
        trainer.fit()
    except Interrupted:
        return EXIT_INTERRUPTED
    if trainer.stop_signal:
        return EXIT_INTERRUPTED
    return 0


def train_main(argv: list[str] | None = None, *, signals: list[str] | None = None) -> int:
    """``python train.py ...``; returns the exit code.

    ``signals``: take over SIGINT/SIGTERM (:class:`SignalGate`) and act on the names in this list
    (those ``train.py`` recorded while it imported the package). None, as when called from Python,
    leaves signal handling alone, except during training (the trainer's handler).
    """
    args = _train_parser().parse_args(argv)
    return _guard(_train, args, SignalGate(signals) if signals is not None else None, "train")


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
                   help="override how the checkpoint is evaluated, e.g. --set eval.protocol=random --set eval.num_splits=20 "
                        "(may change only " + _shown(EVAL_MAY_CHANGE) + ")")
    p.add_argument("--out", help="folder for report.json/report.md (default: <run>/eval/<protocol>/<timestamp>)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _writable_ancestor(path: Path) -> None:
    """Raise RunDirError unless ``path`` exists as a folder or could be created (its nearest existing
    ancestor is a writable folder). Creates nothing."""
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot create output folder '{path}' ('{p}' is not a writable folder); pass a writable --out")


def _make_out(out: Path) -> list[Path]:
    """Create ``out`` (and missing parents); returns the folders created, deepest last."""
    created = []
    p = out
    while not p.exists():
        created.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create output folder '{out}' ({e.strerror}); pass a writable --out") from None
    return created[::-1]


def _run_identity(run_dir: Path) -> dict[str, Any] | None:
    """What makes a run folder's run the one it is: its config.yaml's keys a resume may not change
    (None when it has no readable config.yaml)."""
    from .config import read_yaml

    try:
        flat = _flat(to_dict(build_config(read_yaml(run_dir / "config.yaml"))))
    except (ConfigError, OSError):
        return None
    return {k: v for k, v in flat.items() if not _allowed(k, RESUME_MAY_CHANGE)}


def _eval(args: argparse.Namespace, stage: _Stage) -> int:
    from .train.checkpoint import CheckpointError, load_checkpoint
    from .train.report import build_report, write_report
    from .train.trainer import Trainer, evaluate, load_graph

    stage.name = "eval"
    _check_path_arg(args.out, "--out")
    ckpt_path = Path(args.checkpoint)
    state = load_checkpoint(ckpt_path)
    trained = build_config(state["config"])
    cfg = build_config(state["config"], args.overrides)
    check_changes(trained, cfg, EVAL_MAY_CHANGE, "eval.py",
                  "the report describes the checkpoint as it was trained (train another run to change it)")
    _set_threads(cfg)
    stage.check()
    graph = load_graph(cfg)
    stage.check()
    if graph.x.size(1) != int(state.get("in_channels", graph.x.size(1))):
        raise CheckpointError(
            f"checkpoint expects {state['in_channels']} input features but {cfg.data.name} has {graph.x.size(1)}; "
            f"evaluate it on the dataset it was trained on"
        )
    run_dir = ckpt_path if ckpt_path.is_dir() else ckpt_path.parent
    out = run_dir_path(args.out, run_dir / "eval" / cfg.eval.protocol)
    if any(os.path.lexists(out / n) for n in ("checkpoint.pt", "config.yaml", "metrics.jsonl", ".lock")):
        raise RunDirError(f"--out '{out}' is a run folder; eval.py never writes a run's own files: pass another --out")
    if any(os.path.lexists(out / n) for n in ("report.json", "report.md")):
        raise RunDirError(f"'{out}' already holds a report; pass another --out (or delete that folder)")
    _writable_ancestor(out)  # fail before the probe, creating nothing
    identity = _run_identity(run_dir)
    trainer = Trainer(cfg, graph, run_dir, progress=False)
    trainer.load_state_dict(state, training=False)  # the weights of a run of any number of replicas
    stage.safe_to_stop_at_once()  # nothing is written before the probe is done
    probe = evaluate(cfg, trainer.method, graph, trainer.backend)
    extra = {"rankme": probe["rankme"], "representation_spectrum": probe["representation_spectrum"],
             "checkpoint": str(ckpt_path), "epoch": trainer.epoch, "epochs_trained": trainer.epoch}
    try:
        resumes = _read_progress(run_dir).get("resumes")
    except RunDirError:  # a damaged record of the run is train.py's to refuse; the report goes without it
        resumes = None
    if resumes:
        extra["resumes"] = [r for r in resumes if r.get("at_epoch", 0) <= trainer.epoch]
    report = build_report(cfg, probe, extra)
    if out.resolve().is_relative_to(run_dir.resolve()) and _run_identity(run_dir) != identity:
        raise RunDirError(f"the run in '{run_dir}' was replaced while this eval ran (its config.yaml now describes "
                          f"another run), so its report is not written there; evaluate with --out elsewhere")
    created = _make_out(out)  # only now: a failure or an interrupt before this leaves no folder behind
    written: list[Path] = []
    try:
        write_report(report, out, exclusive=True, written=written)
    except BaseException as e:
        for path in written:  # only what this eval wrote: never another writer's report
            path.unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(e, FileExistsError):
            raise RunDirError(f"'{out}' already holds a report (another eval wrote it meanwhile); pass another --out") from None
        raise
    print((out / "report.md").read_text())
    print(f"report written to {out}", file=sys.stderr)
    return 0


def eval_main(argv: list[str] | None = None, *, signals: list[str] | None = None) -> int:
    """``python eval.py ...``; returns the exit code (``signals``: as for :func:`train_main`)."""
    args = _eval_parser().parse_args(argv)
    return _guard(_eval, args, SignalGate(signals) if signals is not None else None, "eval")


__all__ = ["train_main", "eval_main", "RunDirError", "SignalGate"]
