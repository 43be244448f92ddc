"""Issue 25 (1): mini-batched training, ``train.batching: subgraph`` (bgrl_werank/sampling.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

from bgrl_werank.cli import train_main
from bgrl_werank.config import ConfigError, load_config
from bgrl_werank.losses import barlow_twins_terms
from bgrl_werank.methods import BatchView, GBT
from bgrl_werank.encoders import build as build_encoder
from bgrl_werank.sampling import KHopSampler, SubgraphBatches, csr_rows, torch_wheel_url
from bgrl_werank.schedules import learning_rate
from bgrl_werank.train.trainer import Trainer, load_graph

from .conftest import ROOT, TINY, sets
from .test_pipeline import _equal, _losses, _state, kill_mid_run

SUB = ["train.batching=subgraph"]


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


# ------------------------------------------------------------------------------------- the sampler
def _random_graph(n=60, e=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)  # directed, with duplicates and self-loops
    return ei, n


@pytest.mark.parametrize("hops", [0, 1, 2, 3])
def test_khop_sampler_is_pyg_k_hop_subgraph(hops):
    ei, n = _random_graph()
    sampler = KHopSampler(ei, n, hops)
    g = torch.Generator().manual_seed(1)
    for size in (1, 5, 17, n):
        seeds = torch.randperm(n, generator=g)[:size].sort().values
        nodes, local, rows = sampler.sample(seeds)
        subset, ref_ei, mapping, _ = k_hop_subgraph(seeds, hops, ei, relabel_nodes=True, num_nodes=n)
        assert torch.equal(nodes, subset)
        assert torch.equal(local, ref_ei)
        assert torch.equal(rows, mapping)
        assert torch.equal(nodes[rows], seeds)
    assert bool((sampler._mark == -1).all())  # the scratch map is clean between calls


def test_csr_rows_equals_dense_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 12, generator=g) * (torch.rand(30, 12, generator=g) < 0.2)
    rows = torch.tensor([5, 0, 29, 5, 17])
    got = csr_rows(x.to_sparse_csr(), rows)
    assert got.layout == torch.sparse_csr and torch.equal(got.to_dense(), x[rows])
    assert torch.equal(csr_rows(x, rows), x[rows])
    assert csr_rows(x.to_sparse_csr(), torch.tensor([], dtype=torch.long)).shape == (0, 12)


def _batches(seed, batch_size=50):
    cfg = load_config(None, TINY + SUB + [f"train.batch_size={batch_size}", f"seed={seed}"])
    graph = load_graph(cfg)
    return SubgraphBatches(graph.x, graph.edge_index, cfg.train, 2, cfg.seed), graph


def test_same_seed_same_batches_other_seed_differs():
    (a, graph), (b, _), (c, _) = _batches(0), _batches(0), _batches(1)
    assert a.num_batches == 5  # 240 nodes / 50: ceil, near-equal sizes (48 each), no tiny last batch
    for epoch in range(2):
        sa, sb, sc = a.seeds(), b.seeds(), c.seeds()
        assert [s.numel() for s in sa] == [48] * 5
        assert torch.equal(torch.cat(sa).sort().values, torch.arange(graph.num_nodes))  # one pass over the nodes
        assert all(torch.equal(x, y) for x, y in zip(sa, sb))
        assert not all(torch.equal(x, y) for x, y in zip(sa, sc))
    a, _ = _batches(0)
    first = a.seeds()
    assert not all(torch.equal(x, y) for x, y in zip(first, a.seeds()))  # each epoch draws anew
    sub = next(iter(_batches(0)[0].epoch()))
    assert sub.loss_nodes is not None and torch.equal(sub.nodes[sub.loss_nodes], first[0])
    assert torch.equal(sub.x, graph.x[sub.nodes])


# --------------------------------------------------------------------------------- the loss on seeds
def test_represent_keeps_the_loss_rows():
    torch.manual_seed(0)
    enc = build_encoder("gcn", 8, [16, 8])
    method = GBT(enc)
    x, ei = torch.randn(20, 8), torch.randint(0, 20, (2, 60))
    rows = torch.tensor([3, 4, 9, 11, 15])
    view = BatchView(x, ei, rows)
    method.train()
    got = method.loss(view, view)
    h = enc(x, ei)[rows]
    want = barlow_twins_terms(h, h, lambd=None)
    assert torch.allclose(got["loss"], want["loss"], rtol=1e-6, atol=1e-7)
    assert method.represent(view).shape == (5, 8)


# ----------------------------------------------------------------------- one batch == the full graph
@pytest.mark.parametrize("method, backend", [("bgrl", "fast"), ("bgrl", "plain"), ("grace", "plain"), ("cca_ssg", "plain")])
def test_one_batch_covering_the_graph_is_full_batch_training(tmp_path, method, backend):
    extra = [f"method.name={method}", f"backend={backend}", "train.epochs=5", "method.grace.projection_hidden=16"]
    assert train_main(sets(TINY + extra) + ["--run-dir", str(tmp_path / "full"), "--no-eval"]) == 0
    assert train_main(sets(TINY + extra + SUB + ["train.batch_size=100000"]) + ["--run-dir", str(tmp_path / "one"), "--no-eval"]) == 0
    full, one = _records(tmp_path / "full"), _records(tmp_path / "one")
    assert len(full) == len(one) == 5 and all(r["batches"] == 1 for r in one)
    for f, o in zip(full, one):
        for key in ("loss", "ssl_loss", "werank", "lr"):
            assert o[key] == pytest.approx(f[key], rel=1e-6, abs=1e-7), (key, f, o)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["method"]
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["method"]
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-5, atol=1e-6) for k in a)


def test_fast_and_plain_backends_agree_on_subgraph_batches(tmp_path):
    extra = SUB + ["train.batch_size=64", "train.epochs=4", "data.csbm.feature_density=0.1", "data.csbm.num_features=80"]
    for backend in ("fast", "plain"):
        assert train_main(sets(TINY + extra + [f"backend={backend}"]) + ["--run-dir", str(tmp_path / backend), "--no-eval"]) == 0
    fast, plain = _records(tmp_path / "fast"), _records(tmp_path / "plain")
    assert all(r["batches"] == 4 for r in fast)
    for f, p in zip(fast, plain):
        assert f["loss"] == pytest.approx(p["loss"], rel=2e-3)
    # mini-batches are not the full batch: the losses differ from a full-batch run
    assert train_main(sets(TINY + ["train.epochs=4"]) + ["--run-dir", str(tmp_path / "full"), "--no-eval"]) == 0
    assert [r["loss"] for r in _records(tmp_path / "full")] != [r["loss"] for r in fast]


# ------------------------------------------------------------------------------------ step counting
def test_schedules_and_step_end_count_steps(tmp_path):
    cfg = load_config(None, TINY + SUB + ["train.batch_size=80", "train.epochs=3", "optim.warmup_epochs=1"])
    trainer = Trainer(cfg, load_graph(cfg), tmp_path)
    calls, lrs = [], []
    step_end = trainer.method.step_end

    def recording(step, total):
        calls.append((step, total))
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return step_end(step, total)

    trainer.method.step_end = recording
    trainer.fit()
    nb = trainer.batches.num_batches
    assert nb == 3
    assert calls == [(s, 9) for s in range(9)]
    assert lrs == [learning_rate("warmup_cosine", s, 9, 3, cfg.optim.lr) for s in range(9)]
    records = _records(tmp_path)
    assert [r["lr"] for r in records] == [lrs[2], lrs[5], lrs[8]]  # an epoch logs its last step's
    bgrl_momentum = [r["momentum"] for r in records]
    assert bgrl_momentum == [trainer.method.momentum_at(s, 9) for s in (2, 5, 8)]


def test_epoch_loss_is_the_mean_over_batches(tmp_path):
    cfg = load_config(None, TINY + SUB + ["train.batch_size=60", "train.epochs=2", "optim.warmup_epochs=1"])
    trainer = Trainer(cfg, load_graph(cfg), tmp_path)
    seen = []
    train_step = trainer._train_step

    def recording(*args):
        out = train_step(*args)
        seen.append(float(out[1] + out[2]))
        return out

    trainer._train_step = recording
    trainer.fit()
    records = _records(tmp_path)
    assert len(seen) == 8
    assert records[0]["loss"] == pytest.approx(sum(seen[:4]) / 4, rel=1e-12)
    assert records[1]["loss"] == pytest.approx(sum(seen[4:]) / 4, rel=1e-12)


# ----------------------------------------------------------------------------------- exact resume
def test_sigkill_of_a_minibatched_run_then_resume_is_bit_identical(tmp_path):
    overrides = TINY + SUB + ["train.batch_size=100", "train.epochs=14", "checkpoint.every=3",
                              "data.csbm.feature_density=0.05", "data.csbm.num_features=200"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = tmp_path / "full"  # the uninterrupted run in this process (saves a start-up; threads=1: the same bits)
    assert train_main(sets(overrides) + ["--run-dir", str(full), "--no-eval"]) == 0
    run = tmp_path / "killed"
    killed = kill_mid_run(run, overrides, env, lines=4)
    assert 0 < killed["epoch"] < 14 and "sampler_state" in killed
    r = subprocess.run([sys.executable, "train.py", "--resume", str(run), "--no-eval"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _equal(_state(run / "checkpoint.pt"), _state(full / "checkpoint.pt"))
    a, b = torch.load(run / "checkpoint.pt", weights_only=True), torch.load(full / "checkpoint.pt", weights_only=True)
    assert torch.equal(a["sampler_state"], b["sampler_state"])
    assert _losses(run) == _losses(full)


def test_resume_may_not_change_the_batching(tmp_path, capsys):
    run = tmp_path / "r"
    assert train_main(sets(TINY + SUB + ["train.batch_size=64", "train.epochs=2", "optim.warmup_epochs=1"]) + ["--run-dir", str(run), "--no-eval"]) == 0
    capsys.readouterr()
    before = (run / "checkpoint.pt").read_bytes()
    for change in ("train.batch_size=32", "train.batching=full", "train.num_hops=1"):
        assert train_main(["--resume", str(run), "--set", "train.epochs=3", "--set", change, "--no-eval"]) == 2
        assert change.split("=")[0] in _one_error_line(capsys)
    assert (run / "checkpoint.pt").read_bytes() == before


# --------------------------------------------------------------------------------- errors in input
def test_neighbor_sampler_without_pyg_lib_or_torch_sparse_is_one_line(tmp_path, capsys, monkeypatch):
    import torch_geometric.typing as pyg_typing

    monkeypatch.setattr(pyg_typing, "WITH_PYG_LIB", False)
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    run = tmp_path / "r"
    assert train_main(sets(TINY + SUB + ["train.sampler=neighbor"]) + ["--run-dir", str(run)]) == 2
    line = _one_error_line(capsys)
    assert "train.sampler=neighbor" in line and "pyg-lib" in line and "torch-sparse" in line
    assert f"pip install pyg-lib -f {torch_wheel_url()}" in line
    assert torch_wheel_url() == f"https://data.pyg.org/whl/torch-{torch.__version__}.html"
    assert "train.sampler=khop" in line
    assert not run.exists()


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=1", "train.batch_size"), ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=-5", "train.batch_size"), ("train.batching=minibatch", "train.batching"),
    ("train.sampler=cluster", "train.sampler"), ("train.num_hops=-1", "train.num_hops"),
    ("train.num_neighbors=[]", "train.num_neighbors"), ("train.num_neighbors=[10,-2]", "train.num_neighbors.1"),
    ("train.batch_size=lots", "train.batch_size"),
])
def test_bad_batching_settings_are_one_line_naming_the_key(tmp_path, capsys, override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value) and key in str(e.value)
    assert train_main(sets(TINY + SUB + [override]) + ["--run-dir", str(tmp_path / "r")]) == 2
    line = _one_error_line(capsys)
    assert key in line
    assert not (tmp_path / "r").exists()


def test_batch_size_message_says_what_is_accepted():
    with pytest.raises(ConfigError, match=r"train\.batch_size must be a number of seed nodes in \[2, 2147483647\], got 1"):
        load_config(None, ["train.batch_size=1"])
