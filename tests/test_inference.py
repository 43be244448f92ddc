"""Issue 25 (2): layer-by-layer inference over node batches equals the whole-graph forward pass."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bgrl_werank.augment import normalized_adjacency
from bgrl_werank.cli import eval_main, train_main
from bgrl_werank.config import ConfigError, load_config
from bgrl_werank.encoders import build
from bgrl_werank.encoders.fast_gcn import FastGCNEncoder
from bgrl_werank.inference import InferenceError, layerwise_forward
from bgrl_werank.methods import GRACE
from bgrl_werank.train import diagnostics

from .conftest import TINY, sets

N, F = 70, 12


def _graph(seed=0, sparse=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, F, generator=g)
    if sparse:
        x = x * (torch.rand(N, F, generator=g) < 0.25)
    ei = torch.randint(0, N - 5, (2, 300), generator=g)  # the last 5 nodes are isolated
    ei = torch.cat([ei, torch.tensor([[3, 8], [3, 8]])], 1)  # self-loops, which GCN/GAT handle themselves
    return x, ei


def _trained_statistics(encoder, x, ei):
    """A few training-mode passes, so that eval-mode BatchNorm uses statistics of its own (not 0 / 1)."""
    encoder.train()
    with torch.no_grad():
        for i in range(3):
            encoder(x * (1.0 + 0.1 * i), ei)
    encoder.eval()


CASES = [
    ("gcn", dict()), ("sage", dict()), ("gat", dict(heads=2)), ("gin", dict()),
    ("gcn", dict(norm="layer", activation="elu")), ("sage", dict(last_activation=False, activation="relu")),
    ("gat", dict(norm="none", heads=4)), ("gin", dict(prelu="channel")),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'bn'}" for n, kw in CASES])
def test_layerwise_equals_full_inference_for_every_encoder(name, kwargs):
    torch.manual_seed(0)
    x, ei = _graph()
    encoder = build(name, F, [16, 8, 8], **kwargs)
    _trained_statistics(encoder, x, ei)
    bns = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm1d)]
    if kwargs.get("norm", "batch") == "batch":
        assert bns and not torch.allclose(bns[0].running_var, torch.ones_like(bns[0].running_var))
    with torch.no_grad():
        full = encoder(x, ei)
    for batch_size in (1, 7, 32, N + 3):
        got = layerwise_forward(encoder, x, ei, batch_size)
        assert got.shape == full.shape
        assert torch.allclose(got, full, rtol=1e-5, atol=1e-5), (batch_size, (got - full).abs().max())
    assert not encoder.training  # left as it was
    encoder.train()
    layerwise_forward(encoder, x, ei, 9)
    assert encoder.training


def test_layerwise_with_sparse_features_plain_gcn():
    torch.manual_seed(1)
    x, ei = _graph(sparse=True)
    encoder = build("gcn", F, [16, 8])
    _trained_statistics(encoder, x, ei)
    xs = x.to_sparse_csr()
    with torch.no_grad():
        full = encoder(xs, ei)
    assert torch.allclose(layerwise_forward(encoder, xs, ei, 10), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_layerwise_equals_full_for_the_fast_backend_encoder(sparse):
    torch.manual_seed(2)
    x, ei = _graph(sparse=sparse)
    x = x.to_sparse_csr() if sparse else x
    adj = normalized_adjacency(ei, N)
    encoder = FastGCNEncoder(F, [16, 8])
    _trained_statistics(encoder, x, adj)
    with torch.no_grad():
        full = encoder(x, adj)
    for batch_size in (1, 13, N):
        assert torch.allclose(layerwise_forward(encoder, x, adj, batch_size), full, rtol=1e-5, atol=1e-5)


def test_an_encoder_of_other_layers_is_a_one_line_error():
    class Other(nn.Module):
        def forward(self, x, edge_index):
            return x

    x, ei = _graph()
    with pytest.raises(InferenceError) as e:
        layerwise_forward(Other(), x, ei, 8)
    assert "\n" not in str(e.value) and "eval.inference=full" in str(e.value)


def test_diagnostics_and_embed_use_layerwise_inference():
    torch.manual_seed(3)
    x, ei = _graph()
    method = GRACE(build("gat", F, [16, 8], heads=2), projection_hidden=8)
    _trained_statistics(method.encoder, x, ei)

    class G:
        pass

    data = G()
    data.x, data.edge_index = x, ei
    assert torch.allclose(method.embed(data, batch_size=6), method.embed(data), rtol=1e-5, atol=1e-5)
    a, spec_a = diagnostics.collect(method, data)
    b, spec_b = diagnostics.collect(method, data, batch_size=6)
    assert a.keys() == b.keys()
    assert b["rankme"] == pytest.approx(a["rankme"], rel=1e-4)
    assert spec_b["representation_cov"] == pytest.approx(spec_a["representation_cov"], rel=1e-3, abs=1e-6)


def test_probe_on_layerwise_representations_matches_full(tmp_path):
    run = tmp_path / "run"
    assert train_main(sets(TINY + ["model.encoder=sage", "train.epochs=4", "diagnostics.every=2"]) + ["--run-dir", str(run)]) == 0
    full = json.loads((run / "report.json").read_text())
    out = tmp_path / "lw"
    assert eval_main(["--checkpoint", str(run), "--set", "eval.inference=layerwise", "--set", "eval.inference_batch_size=17",
                      "--out", str(out)]) == 0
    lw = json.loads((out / "report.json").read_text())
    assert lw["rankme"] == pytest.approx(full["rankme"], rel=1e-4)
    assert lw["accuracy_mean"] == pytest.approx(full["accuracy_mean"], abs=0.02)
    # a run may train with layerwise diagnostics and probe
    run2 = tmp_path / "run2"
    assert train_main(sets(TINY + ["model.encoder=sage", "train.epochs=4", "diagnostics.every=2", "eval.inference=layerwise",
                                   "eval.inference_batch_size=17"]) + ["--run-dir", str(run2)]) == 0
    r1 = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    r2 = [json.loads(line) for line in (run2 / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in r1] == [r["loss"] for r in r2]  # inference never touches training
    assert [r.get("rankme") for r in r2 if "rankme" in r] == pytest.approx([r.get("rankme") for r in r1 if "rankme" in r], rel=1e-4)


@pytest.mark.parametrize("override, key", [("eval.inference=batched", "eval.inference"),
                                           ("eval.inference_batch_size=0", "eval.inference_batch_size")])
def test_bad_inference_settings_are_one_line(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value) and key in str(e.value)
