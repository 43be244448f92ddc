"""The epoch benchmark's bookkeeping: operator categories of ``--profile`` and the dense-product count."""
import pytest
import torch

from benchmarks.bench_epoch import (PROFILE_CATEGORIES, _replay_seconds, _replayable, profile_category, run_epochs,
                                    run_kernels_ab, step_macs)
from .conftest import TINY


def test_profile_categories_name_the_operators_of_a_step():
    assert profile_category("mkldnn::_linear_pointwise", ("_Linear",)) == "dense products"
    assert profile_category("aten::mm", ("_DistanceToIdentityBackward",)) == "dense products"
    assert profile_category("aten::_embedding_bag_forward_only", ("_SparseMatmul",)) == "sparse products"
    assert profile_category("aten::native_batch_norm_backward", ("_BatchNormAfterBiasBackward", "x")) == "BatchNorm"
    assert profile_category("aten::sub", ("_PReLUBackward", "autograd::engine::evaluate_function: _PReLUBackward")) == "PReLU"
    assert profile_category("aten::_fused_adamw_", ("Optimizer.step#AdamW.step",)) == "optimizer"
    assert profile_category("aten::index_select", ("views",)) == "views"
    assert profile_category("aten::copy_") == "other"


def test_profiled_step_puts_time_in_every_category_it_runs():
    # A real (tiny) profiled run: if PyTorch renames an operator or a scope loses its name, its time
    # lands in "other" and the README's breakdown would silently lie; this catches it.
    threads = torch.get_num_threads()
    spec = {"mode": "profile", "threads": threads, "warmup": 2, "epochs": 2, "profile": 2,
            "overrides": [*TINY, "data.csbm.num_features=400", "data.csbm.feature_density=0.02",
                          "werank.enabled=true"]}
    row = run_epochs(spec)  # it sets the thread count; conftest puts it back
    assert row["mode"] == "profile" and row["feature_layout"] == "sparse CSR"
    ms = row["profile_ms"]
    assert set(ms) == set(PROFILE_CATEGORIES)
    from bgrl_werank import kernels

    # Python's share can round to 0 on a tiny graph; the encoder's BatchNorm runs either in the
    # compiled kernel or as its own autograd function, never both
    idle = {"outside operators", "BatchNorm" if kernels.available() else "BatchNorm+PReLU kernel"}
    for category in PROFILE_CATEGORIES:
        if category not in idle:
            assert ms[category] > 0, category
    assert ms["BatchNorm" if kernels.available() else "BatchNorm+PReLU kernel"] == 0
    # the categories split the profiled step's wall time, nothing counted twice
    assert sum(ms.values()) == pytest.approx(row["profile_step_ms"], rel=0.02)
    assert 0 < row["gmacs_dense_per_step"] < row["gmacs_per_step"]


def test_parts_replay_records_every_product_and_kernel_call_of_a_step():
    # The floor's parts are the step's own calls: per view and layer, two forward products (online,
    # target) and one backward product through the adjacency, and for the sparse first layer also
    # two forward products X·Wᵀ and one weight gradient Xᵀ·G; the kernel runs once per layer and pass
    # (online and target forward, online backward). Dense products: each later layer's online and
    # target forward, input and weight gradient (4), and the predictor's two layers forward, input
    # and weight gradient (6), per view; WERank's Gram blocks and gradients come on top.
    threads = torch.get_num_threads()
    spec = {"mode": "epoch", "threads": threads, "warmup": 1, "epochs": 1, "parts": True, "werank_ab": 2,
            "overrides": [*TINY, "data.csbm.num_features=400", "data.csbm.feature_density=0.02",
                          "werank.enabled=true", "model.layer_sizes=[32, 16, 8]"]}
    row = run_epochs(spec)  # it sets the thread count; conftest puts it back
    from bgrl_werank import kernels

    layers, views = 3, 2
    assert row["sparse_products_calls"] == views * (3 * layers + 3)
    assert row["bn_prelu_kernel_calls"] == (views * layers * 3 if kernels.available() else 0)
    werank_weights = layers  # the encoder's (include_predictor is off by default)
    assert row["dense_products_calls"] >= views * (4 * (layers - 1) + 6) + 2 * werank_weights
    assert row["sparse_products_alone_s"] > 0 and row["dense_products_alone_s"] > 0
    assert row["floor_s_products"] == pytest.approx(row["dense_products_alone_s"] + row["sparse_products_alone_s"], abs=2e-4)
    # everything else the step runs (its elementwise passes, the optimizer's update, ...) is replayed too
    assert row["other_operations_calls"] > 50 and row["other_operations_alone_s"] > 0
    parts = ("dense_products_alone_s", "sparse_products_alone_s", "bn_prelu_kernel_alone_s", "other_operations_alone_s")
    assert row["operations_alone_s"] == pytest.approx(sum(row[k] for k in parts), abs=4e-4)
    # WERank's Gram is formed from its upper triangle only, so fewer multiply-adds run than it counts
    assert 0 < row["dense_products_gmacs"] <= row["gmacs_dense_per_step"]
    # the WERank on/off steps ran, and their difference is what the row reports
    assert row["werank_ab_pairs"] >= 2 and row["werank_ab_on_s"] > 0 and row["werank_ab_off_s"] > 0
    assert row["werank_in_step_s"] == pytest.approx(row["werank_ab_on_s"] - row["werank_ab_off_s"], abs=2e-5)


def test_kernels_ab_alternates_steps_and_restores_the_switch():
    from bgrl_werank import kernels

    from .test_kernels import need_kernel

    need_kernel()
    threads = torch.get_num_threads()
    real = kernels.available
    spec = {"mode": "kernels-ab", "threads": threads, "warmup": 1, "pairs": 2,
            "overrides": [*TINY, "data.csbm.num_features=400", "data.csbm.feature_density=0.02", "werank.enabled=true"]}
    row = run_kernels_ab(spec)  # it sets the thread count; conftest puts it back
    assert kernels.available is real and kernels.available()
    assert row["pairs"] >= 2 and row["s_step_with_kernels"] > 0 and row["s_step_without_kernels"] > 0
    assert row["speedup"] == pytest.approx(row["s_step_without_kernels"] / row["s_step_with_kernels"], rel=1e-3)


@pytest.mark.parametrize("sparse", [True, False])
def test_dense_multiply_adds_counted_by_hand(sparse):
    # Two views, no edges: layer sizes 8 → 6 → 4, predictor 5, n = 10 nodes, WERank on the encoder.
    from types import SimpleNamespace

    n, f = 10, 8
    x = torch.eye(n, f).to_sparse_csr() if sparse else torch.ones(n, f)
    graph = SimpleNamespace(num_nodes=n, x=x, edge_index=torch.zeros(2, 0, dtype=torch.long))
    view = SimpleNamespace(edge_drop_p=0.0)
    cfg = SimpleNamespace(model=SimpleNamespace(layer_sizes=[6, 4], predictor_hidden=5), augment=[view, view],
                          werank=SimpleNamespace(enabled=True, include_predictor=False))
    layer2 = n * 6 * 4  # per pass
    per_view = 4 * layer2 + (0 if sparse else 3 * n * f * 6)  # online fwd, target fwd, weight grad, input grad
    predictor = 3 * 2 * n * 4 * 5  # forward and backward of both linears, online only
    werank = 2 * 6**2 * 8 + 2 * 4**2 * 6  # Gram and gradient product per layer
    assert step_macs(graph, cfg)["dense"] == pytest.approx(2 * (per_view + predictor) + werank)


def test_recorded_dense_products_are_the_counted_multiply_adds():
    # Without WERank every dense product of a step is one the floor's count names, and no other:
    # the multiply-adds recorded where the products ran equal step_macs' dense count exactly.
    threads = torch.get_num_threads()
    spec = {"mode": "epoch", "threads": threads, "warmup": 1, "epochs": 1, "parts": True,
            "overrides": [*TINY, "data.csbm.num_features=400", "data.csbm.feature_density=0.02",
                          "werank.enabled=false", "model.layer_sizes=[32, 16]"]}
    row = run_epochs(spec)
    assert row["dense_products_calls"] == 2 * (4 * 1 + 6)
    from benchmarks.bench_epoch import _config
    from bgrl_werank.train.trainer import load_graph

    cfg = _config(spec)
    assert row["dense_products_macs"] == step_macs(load_graph(cfg), cfg)["dense"]


def test_replaying_an_in_place_operator_leaves_its_operands_alone():
    # The floor replays the optimizer's update and gradient accumulations; each replay must write to
    # fresh copies, or a benchmark step would move the weights several times over.
    x, y = torch.ones(4), torch.full((4,), 2.0)
    call = _replayable(torch.ops.aten.add_.Tensor, (x, y), {})
    assert _replay_seconds(call, 3) >= 0
    assert torch.equal(x, torch.ones(4))
    xs = [torch.ones(3), torch.zeros(2)]
    _replay_seconds(_replayable(torch.ops.aten._foreach_mul_.Scalar, (xs, 5.0), {}), 3)
    assert torch.equal(xs[0], torch.ones(3)) and torch.equal(xs[1], torch.zeros(2))
    # an operator that writes nothing runs on its operands as recorded
    out = _replayable(torch.ops.aten.mul.Tensor, (y, y), {})()()
    assert torch.equal(out, torch.full((4,), 4.0))
