"""Issue 25 (3): data-parallel training under torchrun (bgrl_werank/distributed.py).

Real ``torchrun --standalone --nproc-per-node 2`` launches (gloo, CPU) of ``train.py``'s entry point
through a small wrapper script written here: it runs :func:`bgrl_werank.cli.train_main` unchanged,
after (test-only) patches that record what each rank writes and dump its final state, or make one
rank fail. The single-process reference is ``train.replicas: 2``, which computes the same two
batches per step in one process and averages their gradients.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bgrl_werank.cli import train_main
from bgrl_werank.config import load_config
from bgrl_werank.sampling import SubgraphBatches
from bgrl_werank.train.trainer import load_graph

from .conftest import ROOT, TINY, sets

TORCHRUN = shutil.which("torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not on PATH")

# 240 nodes in 4 batches of 60 seeds: 2 steps per epoch with 2 replicas
DP = TINY + ["train.batching=subgraph", "train.batch_size=60", "checkpoint.every=100"]

WRAPPER = r'''
import json, os, sys, time
from pathlib import Path
import torch

rank = int(os.environ["RANK"])
dump = Path(os.environ["DP_DUMP"])
mode = os.environ.get("DP_MODE", "")
calls = []

import bgrl_werank.rundir as rundir
import bgrl_werank.cli as cli
import bgrl_werank.train.checkpoint as checkpoint
import bgrl_werank.train.trainer as trainer


def recording(module, name):
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(f"{module.__name__}.{name}")
        return original(*args, **kwargs)

    setattr(module, name, wrapped)


# every way the package writes a file or claims a folder
for module, name in ((rundir, "atomic_write"), (checkpoint, "atomic_write"), (rundir, "claim"), (cli, "claim"),
                     (trainer, "claim"), (cli, "make_writable"), (trainer, "take_over"), (rundir, "take_over")):
    recording(module, name)
_init = rundir.JsonlAppender.__init__


def appender(self, *args, **kwargs):
    calls.append("JsonlAppender")
    _init(self, *args, **kwargs)


rundir.JsonlAppender.__init__ = appender

if mode == "perturb" and rank == 1:  # rank 1 starts from other weights: DDP must broadcast rank 0's
    _build = trainer.build_method

    def perturbed(*args, **kwargs):
        method = _build(*args, **kwargs)
        with torch.no_grad():
            for t in list(method.parameters()) + list(method.buffers()):
                if t.is_floating_point():
                    t.add_(0.25)
        return method

    trainer.build_method = perturbed

if mode in ("raise", "hang") and rank == 1:  # rank 1 fails at its third step: an exception, or it stops answering
    _step = trainer.Trainer._train_step
    count = [0]

    def failing(self, *args, **kwargs):
        count[0] += 1
        if count[0] == 3:
            if mode == "raise":
                raise RuntimeError("injected failure on rank 1")
            # stop answering; torchrun's SIGTERM then ends it at once (a rank stuck inside C++ code would
            # ignore it, and torchrun SIGKILLs such a worker 30 s later: bounded too, but slow for a test)
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(3600)
        return _step(self, *args, **kwargs)

    trainer.Trainer._train_step = failing

_fit = trainer.Trainer.fit


def fit(self):
    try:
        _fit(self)
    finally:
        state = {k: v.clone() for k, v in self.method.state_dict().items()}
        torch.save({"method": state, "epoch": self.epoch}, dump / f"state{rank}.pt")


trainer.Trainer.fit = fit
try:
    code = cli.train_main(sys.argv[1:])
finally:
    (dump / f"calls{rank}.json").write_text(json.dumps({"pid": os.getpid(), "calls": calls}))
sys.exit(code)
'''


def _torchrun(tmp_path: Path, args: list[str], mode: str = "", timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    dump = tmp_path / f"dump{mode}"
    dump.mkdir(exist_ok=True)
    script = tmp_path / "dp_wrapper.py"
    script.write_text(WRAPPER)
    env = {**os.environ, "DP_DUMP": str(dump), "DP_MODE": mode, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", str(script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _method(path: Path) -> dict:
    return torch.load(path, weights_only=True)["method"]


def _close(a: dict, b: dict, rtol=1e-5, atol=1e-6) -> bool:
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k].double(), b[k].double(), rtol=rtol, atol=atol) for k in a)


def test_two_processes_train_as_one_process_averaging_their_two_batches(tmp_path):
    """(a) identical weights and EMA target on both ranks (rank 1 even starts from other weights: DDP broadcasts
    rank 0's), equal to ``train.replicas=2`` in one process; the logged losses are the means over both ranks'
    batches; (b) only rank 0 created, claimed or wrote anything."""
    extra = ["train.epochs=3", "optim.warmup_epochs=1", f"out_dir={tmp_path / 'runs'}", "name=dp"]
    proc, _ = _torchrun(tmp_path, sets(DP + extra) + ["--no-eval"], mode="perturb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data-parallel: 2 processes (gloo), 4 batches = 2 steps per epoch" in proc.stderr
    runs = list((tmp_path / "runs" / "dp").iterdir())
    assert len(runs) == 1, runs  # a second rank writing would have made its own timestamped folder
    run = runs[0]
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoint.pt", "config.yaml", "metrics.jsonl",
                                                     "progress.json"]
    dump = tmp_path / "dumpperturb"
    calls = [json.loads((dump / f"calls{r}.json").read_text()) for r in (0, 1)]
    assert calls[1]["calls"] == []  # rank 1: no claim, no folder, no atomic write, no log
    assert {"bgrl_werank.cli.claim", "bgrl_werank.rundir.atomic_write", "bgrl_werank.train.checkpoint.atomic_write",
            "JsonlAppender"} <= set(calls[0]["calls"])  # the recording works: rank 0's writes were seen
    assert json.loads((run / ".lock").read_text())["pid"] == calls[0]["pid"]

    s0, s1 = (torch.load(dump / f"state{r}.pt", weights_only=True)["method"] for r in (0, 1))
    assert all(torch.equal(s0[k], s1[k]) for k in s0)  # online, predictor, EMA target, BatchNorm statistics
    assert any(k.startswith("target_encoder.") for k in s0)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["replicas"] == 2 and len(ckpt["replica_generators"]) == 2 and ckpt["epoch"] == 3
    assert all(torch.equal(ckpt["method"][k], s0[k]) for k in s0)

    # the same steps in one process: per step both batches, per-batch BatchNorm, gradients averaged
    assert train_main(sets(DP + extra + ["train.replicas=2"]) + ["--run-dir", str(tmp_path / "emulated"), "--no-eval"]) == 0
    assert _close(s0, _method(tmp_path / "emulated" / "checkpoint.pt"))
    dp, emulated = _records(run), _records(tmp_path / "emulated")
    assert [r["batches"] for r in dp] == [4, 4, 4] and [r["replicas"] for r in dp] == [2, 2, 2]
    for a, b in zip(dp, emulated):
        for key in ("loss", "ssl_loss", "werank", "lr", "momentum"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (key, a, b)
    # and it is not what one process on one batch per step trains
    assert train_main(sets(DP + extra) + ["--run-dir", str(tmp_path / "one"), "--no-eval"]) == 0
    assert not _close(s0, _method(tmp_path / "one" / "checkpoint.pt"))


def test_resume_under_two_processes_continues_every_rank_s_stream(tmp_path, capsys):
    """(c) 2 epochs, then ``--resume`` to 4, both under torchrun, equal the 4 epochs of the emulated run
    (G-BT, constant learning rate: nothing depends on the epoch count); a one-process resume is refused."""
    extra = ["method.name=gbt", "optim.schedule=constant", "optim.warmup_epochs=0"]
    run = tmp_path / "run"
    proc, _ = _torchrun(tmp_path, sets(DP + extra + ["train.epochs=2"]) + ["--run-dir", str(run), "--no-eval"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, _ = _torchrun(tmp_path, ["--resume", str(run), "--set", "train.epochs=4", "--no-eval"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming {run} at epoch 2/4" in proc.stderr
    assert train_main(sets(DP + extra + ["train.epochs=4", "train.replicas=2"]) + ["--run-dir", str(tmp_path / "ref"),
                                                                                  "--no-eval"]) == 0
    assert _close(_method(run / "checkpoint.pt"), _method(tmp_path / "ref" / "checkpoint.pt"))
    got, ref = _records(run), _records(tmp_path / "ref")
    assert [r["epoch"] for r in got] == [1, 2, 3, 4]
    for a, b in zip(got, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    capsys.readouterr()
    assert train_main(["--resume", str(run), "--set", "train.epochs=5", "--no-eval"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained by 2 data-parallel replica(s)" in err[0] and "--nproc-per-node 2" in err[0]


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_a_failing_rank_stops_the_whole_run_with_a_clear_message(tmp_path, mode):
    """(d) rank 1 raises (or stops answering) at its third step of a long run: torchrun exits non-zero in
    bounded time; rank 0 says in one line that it lost its peers (a hang: after train.dist_timeout_s)."""
    args = sets(DP + ["train.epochs=100000", "optim.warmup_epochs=1", "checkpoint.every=100000",
                      "train.dist_timeout_s=5"]) + ["--run-dir", str(tmp_path / "run"), "--no-eval"]
    proc, elapsed = _torchrun(tmp_path, args, mode=mode, timeout=150)
    assert proc.returncode != 0
    assert elapsed < 90, elapsed
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: rank 0 of 2: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "lost contact with the other processes" in lines[0]
    if mode == "raise":
        assert "injected failure on rank 1" in proc.stderr
    else:
        assert "timeout" in lines[0]


def test_settings_data_parallel_runs_cannot_have_are_one_line(tmp_path, capsys, monkeypatch):
    """Full batching under torchrun (and with train.replicas), and train.replicas under torchrun, are refused
    before anything is written."""
    def one_line():
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
        return err[0]

    assert train_main(sets(TINY + ["train.replicas=2"]) + ["--run-dir", str(tmp_path / "a")]) == 2
    assert "train.batching=full" in one_line() and not (tmp_path / "a").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert train_main(sets(TINY) + ["--run-dir", str(tmp_path / "b")]) == 2
    line = one_line()
    assert line.startswith("error: rank 0 of 2: 2 torchrun processes") and "train.batching=subgraph" in line
    assert train_main(sets(DP + ["train.replicas=2"]) + ["--run-dir", str(tmp_path / "c")]) == 2
    assert "drop --set train.replicas" in one_line()
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    monkeypatch.setenv("RANK", "2")
    assert train_main(sets(DP) + ["--run-dir", str(tmp_path / "d")]) == 2
    assert "launch with torchrun" in one_line()


def test_replicas_round_the_batches_up_and_ranks_take_their_share():
    cfg = load_config(None, DP + ["train.batch_size=70"])  # 240 / 70: 4 batches; 3 replicas: 6
    graph = load_graph(cfg)
    one = SubgraphBatches(graph.x, graph.edge_index, cfg.train, 2, cfg.seed)
    three = [SubgraphBatches(graph.x, graph.edge_index, cfg.train, 2, cfg.seed, replicas=3) for _ in range(3)]
    assert one.num_batches == 4 and three[0].num_batches == 6
    every = [b.nodes for b in SubgraphBatches(graph.x, graph.edge_index, cfg.train, 2, cfg.seed, replicas=3).epoch()]
    parts = [[b.nodes for b in s.epoch((r, 3))] for r, s in enumerate(three)]
    assert [len(p) for p in parts] == [2, 2, 2]
    for r in range(3):  # rank r takes batches r and r + 3 of the permutation every rank draws
        assert all(torch.equal(a, every[i * 3 + r]) for i, a in enumerate(parts[r]))
    with pytest.raises(Exception, match="data-parallel replicas need at least"):
        SubgraphBatches(graph.x, graph.edge_index, cfg.train, 2, cfg.seed, replicas=200)


def test_sigterm_to_torchrun_stops_every_rank_at_the_same_epoch_with_a_checkpoint(tmp_path):
    """torchrun forwards SIGTERM to its workers; the ranks agree on the epoch to stop after (an all-reduce of
    the flag), rank 0 writes that epoch's checkpoint and says how to resume."""
    run = tmp_path / "run"
    args = sets(DP + ["train.epochs=100000", "optim.warmup_epochs=1", "checkpoint.every=100000"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([TORCHRUN, "--standalone", "--nproc-per-node", "2", "train.py", *args, "--run-dir", str(run),
                             "--no-eval"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, "no epoch finished"
            time.sleep(0.2)
        proc.send_signal(__import__("signal").SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    epochs = len(_records(run))
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == epochs
    line = f"interrupted by SIGTERM after epoch {epochs}; checkpoint written. Resume with: python train.py --resume {run}"
    assert line in err, err[-3000:]
