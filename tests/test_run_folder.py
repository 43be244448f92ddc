"""The run folder as a trustworthy record (issue 19): one writer, resume and eval that cannot rewrite
what a run was, append-only logs, no debris from killed writers, a full disk and an interrupt at any
moment said in one line. Faults about processes use real subprocesses and signals; the full disk is
a real (small) tmpfs where this machine lets the test mount one.

docs/guarantees.md lists each promise with the test here that holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bgrl_werank.cli import eval_main, train_main

from .conftest import ROOT, TINY, sets

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SHORT = TINY + ["train.epochs=6", "checkpoint.every=3"]
LONG = TINY + ["train.epochs=100000", "optim.warmup_epochs=1", "checkpoint.every=100000"]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _popen(args: list[str], script: str = "train.py") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(args: list[str], script: str = "train.py", timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def _wait_for(cond, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _lines_in(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _error_lines(stderr: str) -> list[str]:
    """stderr without the informational lines a run prints as it starts."""
    info = ("run folder:", "no --config given", "resuming ")
    return [ln for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith(info)]


@pytest.fixture()
def finished(tmp_path) -> Path:
    run = tmp_path / "run"
    assert train_main(sets(SHORT) + ["--run-dir", str(run)]) == 0
    return run


# ---------------------------------------------------------------------------------------------- 2
def test_a_second_writer_is_refused_while_the_first_runs_and_the_lock_dies_with_its_process(tmp_path):
    run = tmp_path / "run"
    first = _popen(sets(LONG) + ["--run-dir", str(run), "--no-eval"])
    try:
        _wait_for(lambda: _lines_in(run / "metrics.jsonl") >= 2, what="the first writer's epochs")
        assert not (run / "checkpoint.pt").exists()  # before its first checkpoint: the case that went unnoticed
        config_before = (run / "config.yaml").read_text()
        for extra in ([], ["--force"]):
            second = _run(sets(TINY + ["seed=7", "train.epochs=10"]) + ["--run-dir", str(run), "--no-eval", *extra])
            assert second.returncode == 2, second.stderr
            (line,) = _error_lines(second.stderr)
            assert line.startswith("error: run folder") and f"in use by pid {first.pid}" in line, line
        assert (run / "config.yaml").read_text() == config_before
        first.send_signal(signal.SIGKILL)  # the lock dies with its process ...
        first.wait()
    finally:
        first.kill()
        first.wait()
    records = _records(run)
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))  # one writer's epochs only
    # ... so the folder can be resumed at once (no checkpoint was written: it starts from its config)
    again = _run(["--resume", str(run), "--set", "train.epochs=5", "--no-eval"])
    assert again.returncode == 0, again.stderr
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 5 and state["config"]["seed"] == 0
    assert [r["epoch"] for r in _records(run)] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------- 3
@pytest.mark.parametrize("override, expected", [
    ("data.name=citeseer", "--resume may not change data.name ('csbm' -> 'citeseer')"),
    ("seed=5", "--resume may not change seed (0 -> 5)"),
    ("optim.lr=0.5", "--resume may not change optim.lr"),
    ("werank.enabled=false", "--resume may not change werank.enabled"),
    ("train.epochs=4", "train.epochs=4 is below the 6 epochs"),
])
def test_resume_refuses_changes_that_rewrite_history_before_writing_anything(finished, capsys, override, expected):
    capsys.readouterr()
    before = _snapshot(finished)
    assert train_main(["--resume", str(finished), "--set", override, "--no-eval"]) == 2
    assert expected in _one_error_line(capsys)
    assert _snapshot(finished) == before


def test_resume_argument_errors(finished, tmp_path, capsys):
    capsys.readouterr()
    before = _snapshot(finished)
    assert train_main(["--resume", str(finished), "--run-dir", str(tmp_path / "other")]) == 2
    assert "drop --run-dir" in _one_error_line(capsys)
    assert train_main(["--resume", str(finished), "--force"]) == 2
    assert "give only one of them" in _one_error_line(capsys)
    assert train_main(["--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in _one_error_line(capsys)
    assert _snapshot(finished) == before and not (tmp_path / "other").exists() and not (tmp_path / "nowhere").exists()


def test_resume_may_extend_a_run_and_records_it(finished, capsys):
    # the checkpoint.pt inside a run folder names the run too
    assert train_main(["--resume", str(finished / "checkpoint.pt"), "--set", "train.epochs=9"]) == 0
    assert "train.epochs: 6 -> 9" in capsys.readouterr().err
    assert [r["epoch"] for r in _records(finished)] == list(range(1, 10))
    assert "epochs: 9" in (finished / "config.yaml").read_text()
    progress = json.loads((finished / "progress.json").read_text())
    assert progress["resumes"][0]["at_epoch"] == 6 and progress["resumes"][0]["changed"] == {"train.epochs": [6, 9]}
    report = json.loads((finished / "report.json").read_text())
    assert report["epochs_trained"] == 9 and report["resumes"] == progress["resumes"]
    assert "resumed at epoch 6 with | train.epochs 6 → 9" in (finished / "report.md").read_text()


def test_extending_a_run_without_epoch_dependent_schedules_equals_training_it_that_long(tmp_path):
    # G-BT with a constant learning rate depends on train.epochs nowhere: 3 epochs extended to 6 must
    # be the 6-epoch run, bit for bit (the extension itself changes nothing but the length)
    flat = TINY + ["method.name=gbt", "optim.schedule=constant", "optim.warmup_epochs=0", "checkpoint.every=100"]
    assert train_main(sets(flat + ["train.epochs=6"]) + ["--run-dir", str(tmp_path / "six"), "--no-eval"]) == 0
    assert train_main(sets(flat + ["train.epochs=3"]) + ["--run-dir", str(tmp_path / "ext"), "--no-eval"]) == 0
    assert train_main(["--resume", str(tmp_path / "ext"), "--set", "train.epochs=6", "--no-eval"]) == 0
    a = torch.load(tmp_path / "six" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "ext" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["method"][k], b["method"][k]) for k in a["method"])
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rs]  # noqa: E731
    assert strip(_records(tmp_path / "six")) == strip(_records(tmp_path / "ext"))


# ---------------------------------------------------------------------------------------------- 4
@pytest.mark.parametrize("override", ["werank.enabled=false", "seed=3", "train.epochs=50", "method.name=grace",
                                      "augment.0.edge_drop_p=0.5"])
def test_eval_may_not_relabel_a_checkpoint(finished, tmp_path, capsys, override):
    capsys.readouterr()
    before = _snapshot(finished)
    out = tmp_path / "ev"
    assert eval_main(["--checkpoint", str(finished), "--set", override, "--out", str(out)]) == 2
    assert f"eval.py may not change {override.split('=')[0]}" in _one_error_line(capsys)
    assert not out.exists() and _snapshot(finished) == before


def test_eval_report_describes_a_mid_run_checkpoint_as_trained(tmp_path, capsys):
    from bgrl_werank.config import load_config, save_config
    from bgrl_werank.train.trainer import Trainer, load_graph

    class Stop(Exception):
        pass

    def stop_after_5(trainer, epoch, record):
        if epoch == 5:
            raise Stop

    cfg = load_config(None, TINY + ["train.epochs=12", "checkpoint.every=4"])
    run = tmp_path / "mid"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    with pytest.raises(Stop):
        Trainer(cfg, load_graph(cfg), run, on_epoch_end=stop_after_5).fit()
    out = tmp_path / "ev"
    assert eval_main(["--checkpoint", str(run), "--set", "eval.num_splits=2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["epochs_trained"] == 4 and report["hyperparameters"]["epochs"] == 12 and report["werank"] is True
    md = (out / "report.md").read_text()
    assert md.startswith("# Linear evaluation: csbm (BGRL + WERank)") and "| epochs (warmup) | 4 of 12 (2) |" in md


def test_eval_leaves_no_folder_when_it_fails_and_never_overwrites_a_report(finished, tmp_path, capsys):
    # the probe fails (csbm has no public split) after the checkpoint loaded: no output folder remains
    assert eval_main(["--checkpoint", str(finished), "--set", "eval.protocol=public"]) == 2
    assert not (finished / "eval").exists()
    out = tmp_path / "ev"
    assert eval_main(["--checkpoint", str(finished), "--out", str(out)]) == 0
    first = (out / "report.json").read_bytes()
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(finished), "--set", "eval.num_splits=2", "--out", str(out)]) == 2
    assert "already holds a report" in _one_error_line(capsys)
    assert (out / "report.json").read_bytes() == first


def test_eval_writes_where_the_docs_say(finished):
    assert eval_main(["--checkpoint", str(finished)]) == 0
    (protocol,) = (finished / "eval").iterdir()
    (stamp,) = protocol.iterdir()
    assert protocol.name == "random" and (stamp / "report.json").is_file()
    usage = (ROOT / "docs" / "usage.md").read_text()
    assert "RUN/eval/<protocol>/<timestamp>/" in usage and "<protocol>-<timestamp>" not in usage
    from bgrl_werank.cli import _eval_parser

    assert "<run>/eval/<protocol>/<timestamp>" in _eval_parser().format_help().replace("\n", " ").replace("  ", "")


# ---------------------------------------------------------------------------------------------- 5
def test_a_damaged_metrics_line_is_named_never_deleted(finished, capsys):
    metrics = finished / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # a damaged record in the middle of the log
    metrics.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    before = _snapshot(finished)
    assert train_main(["--resume", str(finished), "--set", "train.epochs=8", "--no-eval"]) == 2
    line = _one_error_line(capsys)
    assert "metrics.jsonl' line 3 is damaged" in line
    assert _snapshot(finished) == before  # every record after it is still there


def test_a_torn_last_line_is_a_crash_artefact_and_is_dropped(finished):
    metrics = finished / "metrics.jsonl"
    good = metrics.read_bytes()
    metrics.write_bytes(good + b'{"epoch": 7, "loss": 0.12')  # a write cut short by a crash
    assert train_main(["--resume", str(finished), "--set", "train.epochs=8", "--no-eval"]) == 0
    assert metrics.read_bytes().startswith(good)
    assert [r["epoch"] for r in _records(finished)] == list(range(1, 9))


def test_metrics_are_strict_json_even_for_non_finite_values(tmp_path):
    from bgrl_werank.rundir import JsonlAppender, read_jsonl

    with JsonlAppender(tmp_path / "m.jsonl") as log:
        log.write({"epoch": 1, "lr": float("nan"), "loss": float("inf"), "x": [1.0, float("-inf")]})
    text = (tmp_path / "m.jsonl").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == {
        "epoch": 1, "lr": None, "loss": None, "x": [1.0, None]}
    assert read_jsonl(tmp_path / "m.jsonl") == ([{"epoch": 1, "lr": None, "loss": None, "x": [1.0, None]}], False)


# ---------------------------------------------------------------------------------------------- 6
BIG = TINY + ["data.csbm.num_features=4000", "data.csbm.feature_density=0.02", "model.layer_sizes=[512, 128]",
              "method.bgrl.predictor_hidden=64", "train.epochs=30", "checkpoint.every=1"]  # 34 MB checkpoints


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sigkill_inside_checkpoint_writes_leaves_no_debris_and_resumes_bit_identically(tmp_path):
    full = tmp_path / "full"
    r = _run(sets(BIG) + ["--run-dir", str(full), "--no-eval"])
    assert r.returncode == 0, r.stderr
    run = tmp_path / "killed"
    for kill in range(2):  # killed mid-write twice: the debris must not pile up
        args = sets(BIG) + ["--run-dir", str(run), "--no-eval"] if kill == 0 else ["--resume", str(run), "--no-eval"]
        proc = _popen(args)
        try:
            _wait_for(lambda: (run.is_dir() and (run / "checkpoint.pt").exists() and _temporaries(run)) or proc.poll() is not None,
                      what="a checkpoint write in progress")
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before a checkpoint write could be caught"
        assert len(_temporaries(run)) <= 1  # at most the one write that was cut short
    r = _run(["--resume", str(run), "--no-eval"])
    assert r.returncode == 0, r.stderr
    assert _temporaries(run) == []
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (full, run))
    assert a["epoch"] == b["epoch"] == 30
    assert all(torch.equal(a["method"][k], b["method"][k]) for k in a["method"])
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rs]  # noqa: E731
    assert strip(_records(full)) == strip(_records(run))


def test_checkpoint_has_the_mode_of_the_run_s_other_files(finished):
    mode = lambda name: stat.S_IMODE((finished / name).stat().st_mode)  # noqa: E731
    assert mode("checkpoint.pt") == mode("config.yaml") == mode("metrics.jsonl")


@pytest.fixture()
def small_fs(tmp_path):
    """A 3 MB tmpfs (needs root and a kernel that lets this process mount one; skipped otherwise)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    """Fill ``folder``'s filesystem to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                continue
    return filler


@pytest.mark.parametrize("what, overrides", [
    ("writing the checkpoint of epoch", ["checkpoint.every=1", "train.log_every=100000"]),
    # a checkpoint at epoch 50, then one metrics line per epoch: the log crosses a page of the full
    # tmpfs long before the next checkpoint is due
    ("appending to metrics.jsonl", ["checkpoint.every=50", "train.log_every=1"]),
])
def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes(small_fs, what, overrides):
    run = small_fs / "run"
    proc = _popen(sets(TINY + ["train.epochs=100000", "optim.warmup_epochs=1"] + overrides) + ["--run-dir", str(run), "--no-eval"])
    try:
        _wait_for(lambda: (run / "checkpoint.pt").exists(), what="the first checkpoint")
        filler = _fill(small_fs)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 2, err
    (line,) = _error_lines(err)
    assert line.startswith(f"error: no space left on the device of run folder '{run}' while {what}"), line
    kept = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    assert f"the last good checkpoint (epoch {kept}) is kept" in line and f"--resume {run}" in line
    if "checkpoint" in what:
        assert "it needs about" in line and "free" in line
    assert _temporaries(run) == []
    filler.unlink()
    r = _run(["--resume", str(run), "--set", f"train.epochs={kept + 2}", "--no-eval"])
    assert r.returncode == 0, r.stderr
    epochs = [rec["epoch"] for rec in _records(run)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == kept + 2


# ---------------------------------------------------------------------------------------------- 7
def test_interrupt_while_starting_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "runs"
    proc = _popen(sets(TINY) + ["--set", f"out_dir={out}"])
    time.sleep(0.4)  # still importing torch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _error_lines(err) == ["interrupted (SIGINT) before the run started; nothing was written"]
    assert not out.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_the_final_evaluation_is_one_line_and_resumable(tmp_path, sig):
    run = tmp_path / "run"
    # a slow probe (many splits, the sklearn backend) so that the signal lands inside it
    proc = _popen(sets(TINY + ["train.epochs=5", "eval.num_splits=400", "eval.backend=sklearn"]) + ["--run-dir", str(run)])
    try:
        _wait_for(lambda: _lines_in(run / "metrics.jsonl") >= 5 and (run / "progress.json").exists(),
                  what="the end of training")
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    name = signal.Signals(sig).name
    assert _error_lines(err) == [f"interrupted ({name}) during the final evaluation; training is finished and "
                                 f"checkpointed (epoch 5): python train.py --resume {run} writes the report"]
    assert not (run / "report.json").exists()
    r = _run(["--resume", str(run), "--set", "eval.num_splits=2", "--set", "eval.backend=torch"])
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "report.json").read_text())["num_splits"] == 2


def test_interrupted_eval_is_one_line_and_leaves_no_folder(finished, tmp_path):
    out = tmp_path / "ev"
    proc = _popen(["--checkpoint", str(finished), "--set", "eval.num_splits=1000", "--set", "eval.backend=sklearn",
                   "--out", str(out)], script="eval.py")
    time.sleep(4.0)  # past start-up, inside the probe
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _error_lines(err)[-1].startswith("interrupted (SIGINT)") and "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- sweeps
def _sweep_config(tmp_path: Path, epochs: int) -> Path:
    import yaml

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"name": "tiny"}))
    cfg = {"name": "tiny", "out_dir": str(tmp_path / "sweeps"), "base": str(base), "seeds": [0, 1],
           "overrides": TINY + [f"train.epochs={epochs}", "checkpoint.every=5", "eval.num_splits=2"]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_second_sweep_on_a_sweep_folder_in_use_is_refused(tmp_path, capsys):
    from bgrl_werank import sweep as sweep_mod

    path = _sweep_config(tmp_path, 3)
    folder = tmp_path / "sweeps" / "tiny"
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
                               str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert sweep_mod.main(["--config", str(path)]) == 2
        assert "is in use by" in _one_error_line(capsys)
        assert not (folder / "cells").exists() or not any((folder / "cells").iterdir())
    finally:
        holder.kill()
        holder.wait()
    assert sweep_mod.main(["--config", str(path)]) == 0  # the lock died with its holder


def test_an_interrupted_sweep_is_one_line_and_continues_where_it_stopped(tmp_path):
    from bgrl_werank import sweep as sweep_mod

    path = _sweep_config(tmp_path, 150)
    cells = tmp_path / "sweeps" / "tiny" / "cells"
    proc = subprocess.Popen([sys.executable, "-m", "bgrl_werank.sweep", "--config", str(path)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: cells.is_dir() and any((c / "checkpoint.pt").exists() for c in cells.iterdir()),
                  what="the first cell's first checkpoint")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted; finished cells are kept")
    (first,) = [c for c in cells.iterdir() if (c / "checkpoint.pt").exists()]
    stopped_at = torch.load(first / "checkpoint.pt", weights_only=True)["epoch"]
    assert 0 < stopped_at < 150 and not (first / "error.txt").exists()
    assert sweep_mod.main(["--config", str(path)]) == 0
    assert [r["epoch"] for r in _records(first)] == list(range(1, 151))  # resumed, not started over


# ---------------------------------------------------------------------------------------------- a run folder in odd states
def test_an_extension_stopped_before_its_first_checkpoint_is_kept_by_the_next_resume(finished, monkeypatch):
    from bgrl_werank.train import trainer as trainer_mod

    class Killed(Exception):
        pass

    def killed(self):  # the process dies after preparing the resume, before any new checkpoint
        raise Killed

    with monkeypatch.context() as m, pytest.raises(Killed):
        m.setattr(trainer_mod.Trainer, "fit", killed)
        train_main(["--resume", str(finished), "--set", "train.epochs=9", "--set", "eval.num_splits=2"])
    assert torch.load(finished / "checkpoint.pt", weights_only=True)["epoch"] == 6
    assert train_main(["--resume", str(finished)]) == 0  # no --set: it continues what the folder records
    report = json.loads((finished / "report.json").read_text())
    assert report["epochs_trained"] == 9 and report["hyperparameters"]["epochs"] == 9 and report["num_splits"] == 2
    assert [r["epoch"] for r in _records(finished)] == list(range(1, 10))
    # the 6-epoch run's report was set aside with the evaluations of earlier checkpoints, not lost
    (old,) = (finished / "eval").glob("*/*/report.json")
    assert json.loads(old.read_text())["epochs_trained"] == 6


def test_a_folder_whose_config_yaml_was_edited_is_refused(finished, capsys):
    import re

    text = (finished / "config.yaml").read_text()
    (finished / "config.yaml").write_text(re.sub(r"(?m)^seed: 0$", "seed: 5", text))
    capsys.readouterr()
    before = _snapshot(finished)
    assert train_main(["--resume", str(finished), "--set", "train.epochs=8"]) == 2
    assert "config.yaml and checkpoint.pt disagree on seed" in _one_error_line(capsys)
    assert _snapshot(finished) == before


@pytest.mark.parametrize("make", ["dangling-link", "folder"])
def test_a_checkpoint_that_is_not_a_file_is_refused_not_restarted(finished, capsys, make):
    (finished / "checkpoint.pt").unlink()
    if make == "folder":
        (finished / "checkpoint.pt").mkdir()
    else:
        (finished / "checkpoint.pt").symlink_to(finished / "nowhere.pt")
    capsys.readouterr()
    before = _snapshot(finished)
    assert train_main(["--resume", str(finished)]) == 2
    assert "checkpoint.pt' is not a file" in _one_error_line(capsys)
    assert _snapshot(finished) == before


def test_links_in_a_run_folder_are_never_followed_for_writing(finished, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (finished / ".lock").unlink()
    (finished / ".lock").symlink_to(victim)
    capsys.readouterr()
    assert train_main(["--resume", str(finished), "--set", "train.epochs=8", "--no-eval"]) == 2
    assert ".lock is not a plain file" in _one_error_line(capsys)
    (finished / ".lock").unlink()
    (finished / "metrics.jsonl").rename(tmp_path / "real-metrics.jsonl")
    (finished / "metrics.jsonl").symlink_to(tmp_path / "real-metrics.jsonl")
    before = _snapshot(finished)
    assert train_main(["--resume", str(finished), "--set", "train.epochs=8", "--no-eval"]) == 2
    assert "a run's logs must be plain files" in _one_error_line(capsys)
    assert victim.read_text() == "precious\n" and _snapshot(finished) == before


def test_damaged_progress_json_is_named_not_reset(finished, capsys):
    for text in ("{not json", '{"resumes": "x"}', "[1, 2]", '{"train_seconds": "abc"}'):
        (finished / "progress.json").write_text(text)
        capsys.readouterr()
        assert train_main(["--resume", str(finished), "--set", "train.epochs=8"]) == 2
        assert "progress.json' is damaged" in _one_error_line(capsys)
        assert (finished / "progress.json").read_text() == text


def test_force_never_removes_what_a_run_did_not_write(tmp_path, capsys):
    folder = tmp_path / "proj"
    (folder / "eval" / "sub").mkdir(parents=True)
    (folder / "eval" / "sub" / "mycode.py").write_text("print('mine')\n")
    (folder / "config.yaml").write_text("x: 1\n")
    for extra in ([], ["--force"]):
        capsys.readouterr()
        assert train_main(sets(SHORT) + ["--run-dir", str(folder), *extra]) == 2
        assert "holds a config.yaml that is not a run's" in _one_error_line(capsys)
    (folder / "config.yaml").unlink()
    assert train_main(sets(SHORT) + ["--run-dir", str(folder), "--no-eval"]) == 0
    capsys.readouterr()
    assert train_main(sets(SHORT) + ["--run-dir", str(folder), "--force"]) == 2
    assert "files eval.py did not write (e.g. eval/sub/mycode.py)" in _one_error_line(capsys)
    assert (folder / "eval" / "sub" / "mycode.py").read_text() == "print('mine')\n"


def test_path_arguments_and_the_commands_messages_suggest(tmp_path, capsys):
    assert train_main(sets(SHORT) + ["--run-dir", ""]) == 2
    assert "--run-dir is empty" in _one_error_line(capsys)
    assert train_main(sets(SHORT) + ["--run-dir", str(tmp_path / "a\nb")]) == 2
    assert "control character" in _one_error_line(capsys)
    spaced = tmp_path / "my runs" / "run 1"
    assert train_main(sets(SHORT) + ["--run-dir", str(spaced), "--no-eval"]) == 0
    capsys.readouterr()
    assert train_main(sets(SHORT) + ["--run-dir", str(spaced)]) == 2
    assert f"use --resume '{spaced}' to continue it" in _one_error_line(capsys)  # quoted: pasting it works
    assert not (tmp_path / "a\nb").exists()


def test_blank_lines_in_a_log_are_not_damage(finished):
    metrics = finished / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + "\n")
    assert train_main(["--resume", str(finished), "--set", "train.epochs=8", "--no-eval"]) == 0
    assert [r["epoch"] for r in _records(finished)] == list(range(1, 9))


# ---------------------------------------------------------------------------------------------- eval's output
def test_eval_never_writes_into_a_run_folder_and_never_replaces_a_report(finished, tmp_path, capsys):
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(finished), "--out", str(finished)]) == 2
    assert "is a run folder" in _one_error_line(capsys)
    out = tmp_path / "ev"
    out.mkdir()
    (out / "report.md").write_text("mine\n")  # only half of a report: still not replaced
    assert eval_main(["--checkpoint", str(finished), "--out", str(out)]) == 2
    assert "already holds a report" in _one_error_line(capsys)
    assert (out / "report.md").read_text() == "mine\n" and not (out / "report.json").exists()
    from bgrl_werank.rundir import atomic_write_text

    with pytest.raises(FileExistsError):  # what two evals racing for one --out meet: the second fails
        atomic_write_text(out / "report.md", "theirs\n", exclusive=True)
    assert (out / "report.md").read_text() == "mine\n" and _temporaries(out) == []


def test_an_eval_whose_run_was_replaced_meanwhile_writes_no_report_there(finished, capsys, monkeypatch):
    from bgrl_werank.train import trainer as trainer_mod

    probe = trainer_mod.evaluate

    def probe_while_the_run_is_replaced(*args, **kwargs):
        result = probe(*args, **kwargs)
        assert train_main(sets(SHORT + ["seed=7"]) + ["--run-dir", str(finished), "--force", "--no-eval"]) == 0
        return result

    monkeypatch.setattr(trainer_mod, "evaluate", probe_while_the_run_is_replaced)
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(finished)]) == 2
    assert "was replaced while this eval ran" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (finished / "eval").exists()


def test_a_report_path_taken_by_a_folder_names_it_and_leaves_the_pair_alone(tmp_path):
    from bgrl_werank.train.report import write_report

    (tmp_path / "report.md").mkdir()
    (tmp_path / "report.json").write_text("{}\n")
    with pytest.raises(IsADirectoryError) as e:
        write_report({"never": "written"}, tmp_path)
    assert e.value.filename == str(tmp_path / "report.md")
    assert (tmp_path / "report.json").read_text() == "{}\n" and _temporaries(tmp_path) == []


def test_sigkill_of_a_parallel_sweep_leaves_its_folder_free_and_no_worker_behind(tmp_path):
    from bgrl_werank import sweep as sweep_mod

    path = _sweep_config(tmp_path, 150)
    cells = tmp_path / "sweeps" / "tiny" / "cells"
    proc = subprocess.Popen([sys.executable, "-m", "bgrl_werank.sweep", "--config", str(path), "--jobs", "2"], cwd=ROOT,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: cells.is_dir() and any((c / "checkpoint.pt").exists() for c in cells.iterdir()),
                  what="a cell's first checkpoint")
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    assert workers, "no worker processes found"

    def gone() -> bool:
        return all(not Path(f"/proc/{w}").exists() or "zombie" in Path(f"/proc/{w}/status").read_text() for w in workers)

    _wait_for(gone, timeout=60, what="the orphaned workers to stop")
    assert sweep_mod.main(["--config", str(path), "--jobs", "2"]) == 0  # the folder was not left locked


def test_a_sweep_whose_settings_changed_does_not_reuse_its_cells(tmp_path, capsys):
    from bgrl_werank import sweep as sweep_mod

    path = _sweep_config(tmp_path, 3)
    assert sweep_mod.main(["--config", str(path)]) == 0
    capsys.readouterr()
    assert sweep_mod.main(["--config", str(path), "--set", "werank.alpha=0.5"]) == 2
    line = _one_error_line(capsys)
    assert "was run with werank.alpha=0.01, but the sweep now gives 0.5" in line
    # a cell whose report is damaged is named in the table, and the table is still written
    cell = next((tmp_path / "sweeps" / "tiny" / "cells").iterdir())
    (cell / "report.json").write_text("{")
    assert sweep_mod.main(["--config", str(path), "--summarize"]) == 1
    rows = (tmp_path / "sweeps" / "tiny" / "results.csv").read_text()
    assert "damaged" in rows and "delete it to re-evaluate" in rows
