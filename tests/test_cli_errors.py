"""Bad input through the real entry points: one line on stderr, non-zero exit, nothing changed."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bgrl_werank.cli import eval_main, train_main
from bgrl_werank.train.trainer import Trainer, TrainingError

from .conftest import ROOT, TINY, missing_data, sets


def _snapshot(folder: Path) -> dict:
    """Every file's hash, except the owner lock (a refused writer may have claimed the folder)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("done") / "run"
    assert train_main(sets(TINY + ["train.epochs=4"]) + ["--run-dir", str(run)]) == 0
    return run


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "werank.alhpa=0.1"], "did you mean 'werank.alpha'"),
        (["--set", "seed=abc"], "seed: expected an integer"),
        (["--set", "werank.alpha=-1"], "werank.alpha must be >= 0"),
        (["--set", "augment.0.edge_drop_p=1.5"], "must be a probability in [0, 1)"),
        (["--set", "train.epochs=0"], "train.epochs must be > 0"),
        (["--set", "model.layer_sizes=[]"], "model.layer_sizes is empty"),
        (["--set", "werank.alpha=[0.1,0.1,0.1]"], "werank.alpha has 3 values but BGRL + gcn has 2 regularised matrices "
                                                  "(encoder.convs.0.lin.weight, encoder.convs.1.lin.weight)"),
        (["--set", "model.encoder=sage", "--set", "werank.alpha=[0.1,0.1]"], "has 4 regularised matrices (encoder.convs.0.lin_l.weight"),
        (["--set", "method.name=grac"], "method.name must be one of bgrl, grace, gbt, cca_ssg, vicreg, got 'grac'"),
        (["--set", "model.encoder=gan"], "model.encoder must be one of gcn, sage, gat, gin, got 'gan'"),
        (["--set", "device=gpu"], "device must be auto, cpu, cuda or cuda:N"),
        (["--set", "model.encoder=sage", "--set", "backend=fast"], "backend=fast cannot run this run: it implements the gcn encoder only"),
        (["--set", "model.encoder=gat", "--set", "model.layer_sizes=[30,16]"], "gat layer size 30 is not divisible by heads=4"),
        (["--set", "data.name=coraa"], "cora"),
    ],
)
def test_bad_config_values(tmp_path, capsys, args, expected):
    out = tmp_path / "runs"
    rc = train_main(sets(TINY) + args + ["--set", f"out_dir={out}"])
    assert rc != 0
    assert expected in _one_error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_on_a_machine_without_one_is_a_one_line_error_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "runs"
    assert train_main(sets(TINY) + ["--set", "device=cuda", "--set", f"out_dir={out}"]) != 0
    assert "device=cuda but this machine has no CUDA device" in _one_error_line(capsys)
    assert not out.exists()


def test_a_per_matrix_alpha_list_of_the_right_length_trains(tmp_path):
    # SAGE has two matrices per layer; the list is checked against the built model, not a count in the config
    rc = train_main(sets(TINY) + ["--set", "model.encoder=sage", "--set", "werank.alpha=[0.1,0.0,0.1,0.0]",
                                  "--set", "train.epochs=2", "--set", "optim.warmup_epochs=0", "--no-eval",
                                  "--run-dir", str(tmp_path / "r")])
    assert rc == 0



def test_malformed_yaml_and_unknown_key_in_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  layer_sizes: [512, 256\n")
    assert train_main(["--config", str(bad)]) != 0
    assert "not valid YAML" in _one_error_line(capsys)
    bad.write_text("optim:\n  learnig_rate: 0.1\n")
    assert train_main(["--config", str(bad)]) != 0
    line = _one_error_line(capsys)
    assert "unknown config key 'optim.learnig_rate'" in line and "lr" in line


def test_missing_dataset_files(tmp_path, capsys):
    empty = tmp_path / "emptyroot"
    empty.mkdir()
    rc = train_main(["--set", "data.name=cora", "--set", f"data.root={empty}", "--set", "data.download=false", "--set", f"out_dir={tmp_path / 'r'}"])
    assert rc != 0
    line = _one_error_line(capsys)
    assert "ind.cora" in line and "BGRL_WERANK_DATA" in line
    assert not (tmp_path / "r").exists()


def test_refuses_to_overwrite_finished_run_unless_forced(finished_run, capsys, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    before = _snapshot(run)
    assert train_main(sets(TINY + ["train.epochs=4"]) + ["--run-dir", str(run)]) != 0
    assert "--resume" in _one_error_line(capsys)
    assert _snapshot(run) == before
    assert train_main(sets(TINY + ["train.epochs=4"]) + ["--run-dir", str(run), "--force"]) == 0


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert train_main(sets(TINY) + ["--run-dir", str(blocker / "run")]) != 0
    assert "cannot write to run folder" in _one_error_line(capsys)


def test_corrupted_truncated_foreign_checkpoints(finished_run, tmp_path, capsys):
    ckpt = finished_run / "checkpoint.pt"
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    text = tmp_path / "notes.pt"
    text.write_text("# not a checkpoint\n")
    for path in (truncated, garbage, foreign, text, tmp_path / "missing.pt"):
        assert eval_main(["--checkpoint", str(path), "--out", str(tmp_path / "ev")]) != 0
        line = _one_error_line(capsys)
        assert "checkpoint" in line
        # torch's advice to load unsafely or allow-list globals is never the fix for our files
        assert "weights_only" not in line and "safe_globals" not in line, line
    assert not (tmp_path / "ev").exists()


def test_checkpoint_cannot_run_code(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "bgrl-werank-checkpoint-v1", "payload": Evil()}, evil)
    assert eval_main(["--checkpoint", str(evil)]) != 0
    assert "safe_globals" not in _one_error_line(capsys)
    assert not (tmp_path / "pwned").exists()


def test_architecture_mismatch(finished_run, tmp_path, capsys):
    before = _snapshot(finished_run)
    assert eval_main(["--checkpoint", str(finished_run), "--set", "model.layer_sizes=[64,32]", "--out", str(tmp_path / "ev")]) != 0
    assert "eval.py may not change model.layer_sizes ([32, 16] -> [64, 32])" in _one_error_line(capsys)
    assert _snapshot(finished_run) == before and not (tmp_path / "ev").exists()


def test_debug_shows_traceback(capsys):
    assert train_main(["--set", "seed=abc", "--debug"]) != 0
    assert "Traceback" in capsys.readouterr().err


def test_nan_stops_run_and_keeps_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "nan"

    def inject(trainer: Trainer, epoch: int, record: dict) -> None:
        if epoch == 5:  # after the epoch-4 checkpoint: poison a weight
            with torch.no_grad():
                trainer.model.online_encoder.convs[0].lin.weight[0, 0] = float("nan")

    from bgrl_werank.config import load_config
    from bgrl_werank.train.trainer import load_graph

    cfg = load_config(None, TINY + ["train.epochs=12", "checkpoint.every=4"])
    run.mkdir()
    trainer = Trainer(cfg, load_graph(cfg), run, on_epoch_end=inject)
    with pytest.raises(TrainingError) as e:
        trainer.fit()
    msg = str(e.value)
    assert "epoch 6" in msg and ("WERank" in msg or "BGRL" in msg)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 4
    assert all(torch.isfinite(t).all() for t in state["method"].values())


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from bgrl_werank.train import checkpoint as ck

    path = tmp_path / "checkpoint.pt"
    ck.save_checkpoint({"epoch": 1, "config": {}, "online_encoder": {}, "predictor": {}, "target_encoder": {}}, path)
    good = path.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(ck.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint({"epoch": 2, "config": {}, "online_encoder": {}, "predictor": {}, "target_encoder": {}}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
    assert ck.load_checkpoint(path)["epoch"] == 1


def test_sigint_finishes_epoch_checkpoints_and_says_how_to_resume(tmp_path):
    import signal
    import time

    run = tmp_path / "int"
    proc = subprocess.Popen([sys.executable, "train.py", *sets(TINY + ["train.epochs=100000", "checkpoint.every=100000"]), "--run-dir", str(run)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"--resume {run}" in err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert state["epoch"] == last["epoch"] >= 3
    # the interrupted segment's training time is on record (a resumed run's wall time includes it)
    assert json.loads((run / "progress.json").read_text())["train_seconds"] > 0


@pytest.mark.realdata
def test_corrupted_dataset_file_through_entry_point(tmp_path, capsys):
    import os

    src = os.environ.get("BGRL_WERANK_DATA")
    if not src or not (Path(src) / "planetoid" / "cora").is_dir():
        missing_data("needs Cora under BGRL_WERANK_DATA")
    root = tmp_path / "root"
    shutil.copytree(Path(src) / "planetoid" / "cora", root / "planetoid" / "cora")
    graph = root / "planetoid" / "cora" / "ind.cora.graph"
    graph.write_bytes(graph.read_bytes()[:1000])  # a half-copied file
    before = _snapshot(root)
    rc = train_main(["--set", "data.name=cora", "--set", f"data.root={root}", "--set", "data.download=false",
                     "--set", f"out_dir={tmp_path / 'runs'}"])
    assert rc != 0
    line = _one_error_line(capsys)
    assert "ind.cora.graph" in line
    assert _snapshot(root) == before and not (tmp_path / "runs").exists()


def test_unknown_dataset_lists_valid_names(tmp_path, capsys):
    assert train_main(["--set", "data.name=imagenet", "--set", f"out_dir={tmp_path / 'r'}"]) != 0
    line = _one_error_line(capsys)
    assert all(n in line for n in ("cora", "citeseer", "amazon-photo", "coauthor-cs", "csbm"))


def test_split_protocol_the_dataset_lacks_stops_before_training(tmp_path, capsys):
    # a CSBM graph has no shipped split: "public" must stop the run at once, not after the last epoch
    out = tmp_path / "runs"
    assert train_main(sets(TINY + ["eval.protocol=public"]) + ["--set", f"out_dir={out}"]) != 0
    line = _one_error_line(capsys)
    assert "has no public split" in line and "random" in line
    assert not out.exists()
    # with --no-eval there is no probe to check, so the run goes ahead
    assert train_main(sets(TINY + ["eval.protocol=public", "train.epochs=3"]) + ["--run-dir", str(tmp_path / "r"), "--no-eval"]) == 0
