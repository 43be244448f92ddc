"""Every method × every encoder trains through the framework: loss falls, the probe beats chance,
the checkpoint re-evaluates to the stored accuracy; fast and plain backends agree; examples run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bgrl_werank import encoders, methods, werank_penalty
from bgrl_werank.cli import eval_main, train_main

from .conftest import TINY, sets

ROOT = Path(__file__).resolve().parents[1]
METHODS = methods.names()[:5]
ENCODERS = ("gcn", "sage", "gat", "gin")
RUN = TINY + ["data.csbm.signal=2.5", "train.epochs=16", "optim.warmup_epochs=2", "checkpoint.every=16", "method.grace.projection_hidden=16"]


def _ssl_losses(run):
    return [json.loads(line)["ssl_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_with_every_encoder_trains_and_reevaluates(tmp_path, method, encoder):
    run = tmp_path / "run"
    extra = ["model.heads=2"] if encoder == "gat" else []
    assert train_main(sets(RUN + extra + [f"method.name={method}", f"model.encoder={encoder}"]) + ["--run-dir", str(run)]) == 0
    losses = _ssl_losses(run)
    assert sum(losses[-3:]) < sum(losses[:3]), losses  # the method's own loss falls
    report = json.loads((run / "report.json").read_text())
    assert report["method"] == method and report["encoder"] == encoder
    assert report["accuracy_mean"] > 0.5, report["accuracy_mean"]  # 3 classes: chance is 1/3
    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(run), "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["test_acc"] == report["test_acc"]


@pytest.mark.parametrize("method", METHODS)
def test_fast_and_plain_backends_train_the_same_trajectory(tmp_path, method):
    """GCN + BatchNorm + PReLU runs on both backends; same seed, same views, same losses up to rounding."""
    losses = {}
    for backend in ("fast", "plain"):
        run = tmp_path / backend
        args = sets(RUN + [f"method.name={method}", f"backend={backend}", "train.epochs=6"]) + ["--run-dir", str(run), "--no-eval"]
        assert train_main(args) == 0
        losses[backend] = _ssl_losses(run)
    assert losses["fast"] == pytest.approx(losses["plain"], rel=2e-3, abs=1e-4)


def test_the_python_api_composes_with_a_user_encoder():
    from torch_geometric.data import Data
    from torch_geometric.nn import GCNConv

    class Mine(torch.nn.Module):
        out_channels = 8

        def __init__(self):
            super().__init__()
            self.conv = GCNConv(5, 8)

        def forward(self, x, edge_index):
            return self.conv(x, edge_index).relu()

    torch.manual_seed(0)
    x, ei = torch.randn(30, 5), torch.randint(0, 30, (2, 90))
    view = Data(x=x, edge_index=ei)
    for name in METHODS:
        method = methods.build(name, Mine() if name != "bgrl" else encoders.build("gcn", 5, [8]))
        terms = method.loss(view, view)
        assert set(terms) >= {"loss"} and terms["loss"].dim() == 0
        names = [n for n, _ in method.named_regularised_weights()]
        assert names[0].startswith("encoder.conv") or names[0].startswith("encoder.convs.0")
        (terms["loss"] + werank_penalty(method.regularised_weights(), alpha=0.01)).backward()
        assert method.step_end(0, 10) == ({"momentum": pytest.approx(0.99)} if name == "bgrl" else {})
        assert method.embed(view).shape == (30, 8)


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError, match="unknown method 'simclr'; choose one of bgrl, grace, gbt, cca_ssg, vicreg"):
        methods.build("simclr", encoders.build("gcn", 4, [8]))


def test_examples_run(tmp_path):
    """examples/custom_method.py (a registered new method, trained by train.py) and examples/compose.py."""
    env_run = [sys.executable, str(ROOT / "examples" / "custom_method.py")] + sets(RUN) + ["--run-dir", str(tmp_path / "s")]
    r = subprocess.run(env_run, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["method"] == "simsiam" and report["accuracy_mean"] > 0.5
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "compose.py"), "--dataset", "csbm", "--epochs", "5"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "test accuracy" in r.stdout, r.stderr[-2000:]
    assert (ROOT / "examples" / "custom_method.py").read_text().count("\n") < 80
