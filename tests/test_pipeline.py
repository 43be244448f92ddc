"""End to end on a small synthetic graph: train → checkpoint → eval.py; determinism; exact resume."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from bgrl_werank.cli import eval_main, train_main

from .conftest import ROOT, TINY, sets


def _losses(run):
    return [(r["epoch"], r["loss"], r["ssl_loss"], r["werank"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_train_then_eval_reproduces_accuracy(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(sets(TINY) + ["--run-dir", str(run)]) == 0
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "report.json", "report.md"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert report["num_splits"] == 3 and 0.0 <= report["accuracy_mean"] <= 1.0
    assert report["accuracy_mean"] > 0.5  # 3 well-separated classes: far above chance (1/3)
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(rec) >= {"epoch", "loss", "ssl_loss", "ssl_view1", "ssl_view2", "werank", "lr", "momentum", "epoch_time_s"}
    assert rec["epoch"] == 12 and abs(rec["loss"] - rec["ssl_loss"] - rec["werank"]) < 1e-5
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 12
    captured = capsys.readouterr()
    assert "Test accuracy" in captured.out
    # without --config the run says that it trains the built-in defaults (here overridden), and how to choose
    assert "no --config given: training the built-in defaults (csbm, 12 epochs, with --set overrides)" in captured.err

    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out)]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["test_acc"] == report["test_acc"]
    assert len(again["representation_spectrum"]) == 16 and again["rankme"] == report["rankme"]
    spectrum = again["representation_spectrum"]
    assert all(a >= b >= 0 for a, b in zip(spectrum, spectrum[1:]))
    assert again["accuracy_mean"] == report["accuracy_mean"]

    # another protocol setting on the same checkpoint writes its own report
    assert eval_main(["--checkpoint", str(run), "--set", "eval.num_splits=5", "--out", str(tmp_path / "e5")]) == 0
    assert json.loads((tmp_path / "e5" / "report.json").read_text())["num_splits"] == 5


def test_same_seed_identical_trajectory_other_seed_differs(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert train_main(sets(TINY + [f"seed={seed}"]) + ["--run-dir", str(tmp_path / name), "--no-eval"]) == 0
    a, b, c = (_losses(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c


def test_werank_off_logs_zero_penalty(tmp_path):
    assert train_main(sets(TINY + ["werank.enabled=false", "train.epochs=3"]) + ["--run-dir", str(tmp_path / "r"), "--no-eval"]) == 0
    assert all(w == 0.0 for *_, w in _losses(tmp_path / "r"))


def _state(path):
    s = torch.load(path, weights_only=True)
    return {k: s[k] for k in ("method", "optimizer", "generator_state", "epoch")}


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def kill_mid_run(run, overrides, env, lines: int) -> dict:
    """Start ``train.py`` on ``run`` with ``overrides``, SIGKILL it once ``metrics.jsonl`` has ``lines``
    lines and a checkpoint exists (or after 120 s), and return the checkpoint it left."""
    proc = subprocess.Popen([sys.executable, "train.py", *sets(overrides), "--run-dir", str(run), "--no-eval"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.exists() and len(m.read_text().splitlines()) >= lines and (run / "checkpoint.pt").exists():
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return torch.load(run / "checkpoint.pt", weights_only=True)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    """Kill -9 a real training process mid-run, resume it, compare with an uninterrupted run."""
    # sparse features: the fast path's sparse first layer and feature masking are in the loop too
    overrides = TINY + ["train.epochs=40", "checkpoint.every=3", "data.csbm.feature_density=0.05", "data.csbm.num_features=200"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = tmp_path / "full"
    subprocess.run([sys.executable, "train.py", *sets(overrides), "--run-dir", str(full), "--no-eval"], cwd=ROOT, env=env, check=True, capture_output=True)

    run = tmp_path / "killed"
    killed_at = kill_mid_run(run, overrides, env, lines=10)["epoch"]
    assert 0 < killed_at < 40
    r = subprocess.run([sys.executable, "train.py", "--resume", str(run), "--no-eval"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _equal(_state(run / "checkpoint.pt"), _state(full / "checkpoint.pt"))
    assert _losses(run) == _losses(full)
