"""Eval-mode BatchNorm statistics: the reference's convention, statistics that describe the data, and
their re-estimation over training views.

The probes and RankMe see the encoder in eval mode, where BatchNorm normalises by its running
statistics. With row-normalised bag-of-words features (Cora-like) the first layer's pre-normalisation
activations have a variance of ~1e-5; a running variance that still remembers its initial value of 1
turns every node's representation into nearly the same vector. These tests train a few dozen steps on
such a graph and check what eval mode computes.
"""

import pytest
import torch
import torch.nn.functional as F

from bgrl_werank.config import Config, build_config
from bgrl_werank.encoders.fast_gcn import FastGCNEncoder as GCNEncoder
from bgrl_werank.train.trainer import Trainer, embed, load_graph

# A small CSBM graph with sparse binary "bag-of-words" features, row-normalised as Cora's are.
BOW = [
    "data.name=csbm", "data.csbm.num_nodes=400", "data.csbm.num_features=300", "data.csbm.num_classes=4",
    "data.csbm.feature_density=0.05", "data.csbm.avg_degree=6", "data.csbm.signal=1.0", "data.row_normalize=true",
    "model.layer_sizes=[64, 32]", "model.predictor_hidden=64",
    "augment.0.edge_drop_p=0.2", "augment.0.feat_mask_p=0.2", "augment.1.edge_drop_p=0.2", "augment.1.feat_mask_p=0.2",
    "train.epochs=40", "optim.warmup_epochs=4", "optim.lr=0.005", "threads=1",
    "werank.enabled=false", "eval.protocol=random", "eval.num_splits=2",
]
STEPS = 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = build_config({}, BOW)
    graph = load_graph(cfg)
    trainer = Trainer(cfg, graph, tmp_path_factory.mktemp("bn"), progress=False)
    for epoch in range(STEPS):
        trainer.step(epoch)
    return cfg, graph, trainer


def _norm_inputs(encoder, graph):
    """Each BatchNorm's input on the clean graph in eval mode, with its running statistics."""
    seen = []
    hooks = [n.register_forward_hook(lambda m, inp, out: seen.append((inp[0].detach(), m))) for n in encoder.norms]
    encoder.eval()
    try:
        with torch.no_grad():
            encoder(graph.x, graph.full_adjacency())
    finally:
        encoder.train()
        for h in hooks:
            h.remove()
    return seen


def test_features_have_the_tiny_variance_of_bag_of_words(trained):
    # the premise: the first layer's inputs really are in the regime where the old default failed
    _, graph, trainer = trained
    z = _norm_inputs(trainer.model.online_encoder, graph)[0][0]
    assert float(z.var(0).median()) < 1e-3


def test_eval_statistics_match_the_activations(trained):
    """Eval-mode normalisation by the running statistics ≈ normalisation by the real activations'
    statistics: per channel, std(z) / sqrt(running_var) near 1 and the mean offset well under one std."""
    _, graph, trainer = trained
    for z, norm in _norm_inputs(trainer.model.online_encoder, graph):
        mean, std = z.mean(0), z.std(0)
        ratio = std / (norm.running_var + norm.eps).sqrt()
        offset = (mean - norm.running_mean).abs() / std
        assert 0.5 < float(ratio.median()) < 2.0, f"std / sqrt(running_var) median {float(ratio.median()):.3g}"
        assert float(offset.median()) < 0.5, f"|mean - running_mean| / std median {float(offset.median()):.3g}"


def test_eval_output_is_normalised_like_training_output(trained):
    # eval-mode BatchNorm output, undone by its affine parameters, has per-channel mean ~0 and std ~1
    _, graph, trainer = trained
    for z, norm in _norm_inputs(trainer.model.online_encoder, graph):
        with torch.no_grad():
            out = F.batch_norm(z, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
            y = (out - norm.bias) / norm.weight
        assert float(y.mean(0).abs().median()) < 0.5
        assert 0.5 < float(y.std(0).median()) < 2.0


def test_representations_are_not_collinear_with_their_centroid(trained):
    _, graph, trainer = trained
    z = F.normalize(embed(trainer.model, trainer.full_graph), dim=1)
    cos = F.cosine_similarity(z, z.mean(0, keepdim=True), dim=1)
    assert float(cos.mean()) < 0.9, f"mean cosine with the centroid {float(cos.mean()):.3f}"


def test_reestimated_statistics_agree_with_the_default(trained):
    # with the reference convention the running statistics are already the views' statistics:
    # re-estimating them over 20 training views changes RankMe by only a few percent
    from bgrl_werank.eval import rankme
    from bgrl_werank.train.trainer import eval_encoder

    cfg, graph, trainer = trained
    views_cfg = build_config({}, BOW + ["eval.batchnorm=views"])
    before = [n.running_var.clone() for n in trainer.model.online_encoder.norms]
    fresh = eval_encoder(views_cfg, trainer.model, graph)
    assert fresh is not trainer.model.online_encoder
    assert all(torch.equal(a, n.running_var) for a, n in zip(before, trainer.model.online_encoder.norms))  # untouched
    r_running, r_views = float(rankme(embed(trainer.model, trainer.full_graph))), float(rankme(embed(fresh, trainer.full_graph)))
    assert abs(r_running - r_views) / r_views < 0.1, (r_running, r_views)


# ------------------------------------------------------------------ the convention itself


def test_default_momentum_is_the_references_in_pytorchs_convention():
    """The BGRL reference builds ``torch_geometric.nn.BatchNorm(out, momentum=0.99)`` (its
    ``batchnorm_mm`` flag): the same running statistics as ours after the same batches, through the
    encoder's own (fused) training path, bias included."""
    from torch_geometric.nn import BatchNorm

    from bgrl_werank.ops import batch_norm_prelu

    assert Config().model.batchnorm_momentum == 0.99
    enc = GCNEncoder(5, [7])
    norm, act, bias = enc.norms[0], enc.acts[0], torch.randn(7)
    reference = BatchNorm(7, momentum=0.99)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        z = torch.randn(50, 7, generator=g) * 0.01 + 0.3
        batch_norm_prelu(z, bias, norm, act)
        reference(z + bias)
    assert torch.allclose(norm.running_mean, reference.module.running_mean, atol=1e-6)
    assert torch.allclose(norm.running_var, reference.module.running_var, rtol=1e-4)


def test_running_statistics_by_hand():
    # PyTorch's convention, written out: running <- (1 - m) * running + m * batch (unbiased variance)
    from bgrl_werank.ops import batch_norm_prelu

    enc = GCNEncoder(5, [3])
    z = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 4.0, 1.0]])
    batch_norm_prelu(z, None, enc.norms[0], enc.acts[0])
    m = 0.99
    assert torch.allclose(enc.norms[0].running_mean, m * z.mean(0))
    assert torch.allclose(enc.norms[0].running_var, (1 - m) * 1.0 + m * z.var(0, unbiased=True))


# ------------------------------------------------------------------ re-estimation


def test_reestimate_averages_the_passes_and_restores_the_module():
    from bgrl_werank.models import reestimate_batchnorm

    bn = torch.nn.Sequential(torch.nn.BatchNorm1d(4, momentum=0.3))
    bn.eval()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(30, 4, generator=g) * s + s for s in (1.0, 2.0, 3.0)]
    tracked = bn[0].num_batches_tracked.clone()
    assert reestimate_batchnorm(bn, [(b,) for b in batches]) == 3
    assert torch.allclose(bn[0].running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-6)
    assert torch.allclose(bn[0].running_var, torch.stack([b.var(0) for b in batches]).mean(0), atol=1e-5)
    assert bn[0].momentum == 0.3 and not bn.training and torch.equal(bn[0].num_batches_tracked, tracked)
    with pytest.raises(ValueError, match="at least one"):
        reestimate_batchnorm(bn, [])


def test_eval_with_reestimated_statistics_says_so(tmp_path):
    import json

    from bgrl_werank.cli import eval_main, train_main

    from .conftest import TINY, sets

    run = tmp_path / "run"
    assert train_main(sets(TINY) + ["--run-dir", str(run)]) == 0
    assert "running (momentum 0.99" in json.loads((run / "report.json").read_text())["eval_batchnorm"]
    out = tmp_path / "views"
    assert eval_main(["--checkpoint", str(run), "--set", "eval.batchnorm=views", "--set", "eval.batchnorm_views=6", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["eval_batchnorm"] == "re-estimated over 6 training views"
    assert "re-estimated over 6 training views" in (out / "report.md").read_text()


def test_checkpoints_from_before_the_shared_prelu_still_load(tmp_path):
    """A checkpoint written before ``model.prelu`` existed had per-channel slopes; it evaluates as trained."""
    import json

    from bgrl_werank.cli import eval_main, train_main

    from .conftest import TINY, sets

    run = tmp_path / "run"
    assert train_main(sets(TINY + ["model.prelu=channel"]) + ["--run-dir", str(run)]) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["method"]["encoder.acts.0.weight"].numel() == 32
    # as written by earlier versions: no model.prelu, the BGRL parts under their own keys
    del state["config"]["model"]["prelu"]
    weights = state.pop("method")
    for key, prefix in (("online_encoder", "encoder."), ("predictor", "predictor."), ("target_encoder", "target_encoder.")):
        state[key] = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    torch.save(state, run / "checkpoint.pt")
    assert eval_main(["--checkpoint", str(run), "--out", str(tmp_path / "e")]) == 0
    want = json.loads((run / "report.json").read_text())["test_acc"]
    assert json.loads((tmp_path / "e" / "report.json").read_text())["test_acc"] == want
