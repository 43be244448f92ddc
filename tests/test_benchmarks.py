"""The epoch benchmark's bookkeeping: operator categories of ``--profile``, the dense-product count,
its workers on the fast and plain backends, the package API it reads in either tree (``--against``),
and the tables of ``--against`` and ``--methods``."""
import json
from types import SimpleNamespace

import pytest
import torch

from benchmarks.bench_epoch import (PROFILE_CATEGORIES, _against_markdown, _config, _methods_markdown, _replay_seconds,
                                    _replayable, against_rounds, include_heads, predictor_hidden, profile_category,
                                    run_compare, run_epochs, run_kernels_ab, step_macs, trainer_backend, trainer_embeddings,
                                    trainer_weights)
from .conftest import ROOT, TINY

SPARSE = [*TINY, "data.csbm.num_features=400", "data.csbm.feature_density=0.02"]


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
    spec = {"mode": "profile", "threads": threads, "warmup": 2, "epochs": 2, "profile": 2, "gemm_n": 256,
            "overrides": [*SPARSE,
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
    spec = {"mode": "epoch", "threads": threads, "warmup": 1, "epochs": 1, "parts": True, "werank_ab": 2, "werank_ab_seconds": 0, "gemm_n": 256,
            "overrides": [*SPARSE,
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
    spec = {"mode": "kernels-ab", "threads": threads, "warmup": 1, "pairs": 2, "seconds": 0,
            "overrides": [*SPARSE, "werank.enabled=true"]}
    row = run_kernels_ab(spec)  # it sets the thread count; conftest puts it back
    assert kernels.available is real and kernels.available()
    assert row["pairs"] >= 2 and row["s_step_with_kernels"] > 0 and row["s_step_without_kernels"] > 0
    assert row["speedup"] == pytest.approx(row["s_step_without_kernels"] / row["s_step_with_kernels"], rel=1e-3)


@pytest.mark.parametrize("sparse", [True, False])
def test_dense_multiply_adds_counted_by_hand(sparse):
    # Two views, no edges: layer sizes 8 → 6 → 4, predictor 5, n = 10 nodes, WERank on the encoder.
    n, f = 10, 8
    x = torch.eye(n, f).to_sparse_csr() if sparse else torch.ones(n, f)
    graph = SimpleNamespace(num_nodes=n, x=x, edge_index=torch.zeros(2, 0, dtype=torch.long))
    view = SimpleNamespace(edge_drop_p=0.0)
    cfg = SimpleNamespace(method=SimpleNamespace(name="bgrl", bgrl=SimpleNamespace(predictor_hidden=5)),
                          model=SimpleNamespace(layer_sizes=[6, 4]), augment=[view, view],
                          werank=SimpleNamespace(enabled=True, include_heads=False))
    layer2 = n * 6 * 4  # per pass
    per_view = 4 * layer2 + (0 if sparse else 3 * n * f * 6)  # online fwd, target fwd, weight grad, input grad
    predictor = 3 * 2 * n * 4 * 5  # forward and backward of both linears, online only
    werank = 2 * 6**2 * 8 + 2 * 4**2 * 6  # Gram and gradient product per layer
    assert step_macs(graph, cfg)["dense"] == pytest.approx(2 * (per_view + predictor) + werank)


def test_recorded_dense_products_are_the_counted_multiply_adds():
    # Without WERank every dense product of a step is one the floor's count names, and no other:
    # the multiply-adds recorded where the products ran equal step_macs' dense count exactly.
    threads = torch.get_num_threads()
    spec = {"mode": "epoch", "threads": threads, "warmup": 1, "epochs": 1, "parts": True, "gemm_n": 256,
            "overrides": [*SPARSE,
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


def test_config_keys_of_either_tree():
    # --against runs this worker on the package of 4b06ec7 (before methods): model.predictor_hidden,
    # werank.include_predictor, no method section; and on the current one (method.bgrl.*, include_heads)
    old = SimpleNamespace(model=SimpleNamespace(predictor_hidden=64), werank=SimpleNamespace(include_predictor=True))
    new = SimpleNamespace(method=SimpleNamespace(name="bgrl", bgrl=SimpleNamespace(predictor_hidden=32)),
                          model=SimpleNamespace(), werank=SimpleNamespace(include_heads=False))
    assert (predictor_hidden(old), include_heads(old)) == (64, True)
    assert (predictor_hidden(new), include_heads(new)) == (32, False)
    grace = SimpleNamespace(method=SimpleNamespace(name="grace"), model=SimpleNamespace())
    assert predictor_hidden(grace) is None
    cfg = _config({"config": "configs/cora.yaml", "root": str(ROOT), "overrides": ["werank.include_heads=true"]})
    assert predictor_hidden(cfg) == 512 and include_heads(cfg)


def test_worker_reads_the_method_through_either_api(tmp_path):
    from bgrl_werank.train.trainer import Trainer, load_graph

    cfg = _config({"overrides": [*TINY, "werank.include_heads=true"]})
    graph = load_graph(cfg)
    trainer = Trainer(cfg, graph, tmp_path, progress=False)
    weights = trainer_weights(trainer)
    assert [tuple(w.shape) for w in weights] == [(32, 24), (16, 32), (32, 16), (16, 32)]  # encoder, then predictor
    assert trainer_backend(trainer) == "fast"
    z = trainer_embeddings(trainer)
    assert z.shape == (graph.num_nodes, 16) and z.dtype == torch.float32
    # an older tree's trainer: a BGRL model without the Method API, no method/backend/full_graph; the
    # helper then calls that tree's trainer.regularised_weights(model, include_predictor), gone here
    legacy = SimpleNamespace(model=SimpleNamespace(), graph=graph,
                             cfg=SimpleNamespace(werank=SimpleNamespace(include_predictor=False)))
    assert trainer_backend(legacy) == "fast"
    with pytest.raises(ImportError, match="regularised_weights"):
        trainer_weights(legacy)


def test_compare_plain_trains_on_the_backend_it_names():
    # --compare-plain is the fast backend against the plain one (bgrl_werank.plain is gone)
    threads = torch.get_num_threads()
    rows = {path: run_compare({"mode": "compare-plain", "path": path, "threads": threads,
                               "overrides": [*SPARSE, "train.epochs=3"]}) for path in ("fast", "plain")}
    for path, row in rows.items():
        assert row["backend"] == path and row["epochs"] == 3 and row["s_epoch_median"] > 0
        assert 0 <= row["public_test_acc"] <= 100


def test_epochs_of_another_method_without_the_bgrl_floor():
    # --methods times each method's config; the floor counts BGRL's step only and is left out
    threads = torch.get_num_threads()
    spec = {"mode": "methods", "threads": threads, "warmup": 1, "epochs": 2, "floor": False,
            "overrides": [*SPARSE, "method.name=grace", "model.norm=none", "model.activation=relu"]}
    row = run_epochs(spec)
    assert row["method"] == "grace" and row["backend"] == "plain" and row["predictor_hidden"] is None
    assert row["encoder"] == "gcn 32-16, no norm, relu"
    assert "floor_s_measured_rate" not in row and row["epochs_timed"] == 2 and row["s_epoch_median"] > 0
    assert row["package"].endswith("bgrl_werank")


def _against_row(dataset, tree, rnd, s, epochs=50):
    return {"mode": "against", "dataset": dataset, "tree": tree, "round": rnd, "head_revision": "new", "ref_revision": "old",
            "s_epoch_median": s, "epochs_timed": epochs, "threads": 2, "loadavg_1min": 2.0}


def test_against_table_pairs_rounds_and_takes_the_median_ratio():
    rows = [_against_row("cora", "this", 0, 1.0), _against_row("cora", "ref", 0, 2.0),
            _against_row("cora", "ref", 1, 1.0), _against_row("cora", "this", 1, 1.1),
            _against_row("cora", "this", 2, 3.0), _against_row("cora", "ref", 2, 2.0),
            # a second run of the same pair starts its rounds at 0 again
            _against_row("coauthor-cs", "this", 0, 4.0, 20), _against_row("coauthor-cs", "ref", 0, 4.0, 20),
            _against_row("cora", "this", 0, 1.2), _against_row("cora", "ref", 0, 1.0)]
    pairs = against_rounds(rows)
    assert [(a["s_epoch_median"], b["s_epoch_median"]) for a, b in pairs["cora"]] == [(1.0, 2.0), (1.1, 1.0), (3.0, 2.0), (1.2, 1.0)]
    table = "\n".join(_against_markdown(rows))
    cora = next(line for line in table.splitlines() if line.startswith("| cora"))
    assert "0.50, 1.10, 1.50, 1.20" in cora and "**1.150**" in cora  # median of the four per-round ratios
    assert next(line for line in table.splitlines() if line.startswith("| coauthor-cs")).split(" | ")[2] == "20"


def test_methods_table_of_the_newest_run():
    def row(run, method, rnd, s, backend="fast"):
        return {"mode": "methods", "run": run, "method": method, "round": rnd, "config": f"configs/{method}.yaml", "backend": backend,
                "encoder": "gcn", "werank": True, "threads": 2, "epochs_timed": 50, "s_epoch_median": s, "loadavg_1min": 2.0}

    rows = [row("a", "bgrl", 0, 9.0), row("b", "bgrl", 0, 1.0), row("b", "grace", 0, 0.5, "plain"),
            row("b", "grace", 1, 1.0, "plain"), row("b", "bgrl", 1, 4.0)]
    lines = _methods_markdown(rows)
    bgrl = next(line for line in lines if line.startswith("| bgrl"))
    grace = next(line for line in lines if line.startswith("| grace"))
    assert "| 2 | 2.500 |" in bgrl  # run "a" is left out
    assert "| plain |" in grace and "0.38×" in grace  # median of 0.5 / 1 and 1 / 4


def test_in_process_and_kernels_tables_take_the_median_over_rounds():
    from benchmarks.bench_epoch import _against_steps_markdown, _kernels_markdown

    steps = [{"mode": "against-steps", "dataset": "cora", "round": r, "head_revision": "new", "ref_revision": "old", "threads": 2,
              "pairs": 10, "s_step_this": t, "s_step_ref": 1.0, "ratio": t, "loadavg_1min": 2.0} for r, t in enumerate((0.9, 1.2, 1.0))]
    row = next(line for line in _against_steps_markdown(steps) if line.startswith("| cora"))
    assert "0.90, 1.20, 1.00" in row and "**1.000**" in row
    ab = [{"dataset": "cora", "run": run, "round": r, "threads": 2, "pairs": 12, "seconds": 30, "s_step_with_kernels": 1.0,
           "s_step_without_kernels": q, "speedup": q, "loadavg_1min": 2.0}
          for run, r, q in (("a", 0, 2.0), ("b", 0, 1.04), ("b", 1, 1.10), ("b", 2, 1.06))]
    table = _kernels_markdown(ab)
    row = next(line for line in table if line.startswith("| cora"))
    assert "| 3 | 12 |" in row and "**1.060** (+6.0 %)" in row  # run "a" is older
    assert "about 30 s of steps" in table[0]


def test_in_process_against_runs_two_packages_side_by_side():
    # --against REV --in-process imports the other tree's package under another name; here this tree's
    # own, which must then train as a second, independent package (its own modules and autograd functions)
    import sys

    from benchmarks.bench_epoch import run_against_steps

    threads = torch.get_num_threads()
    row = run_against_steps({"mode": "against-steps", "threads": threads, "warmup": 1, "pairs": 2, "seconds": 0,
                             "ref_root": str(ROOT), "overrides": [*SPARSE, "werank.enabled=true"]})
    assert row["pairs"] == 2 and row["s_step_this"] > 0 and row["s_step_ref"] > 0
    # the step times are stored rounded to 0.1 ms, the ratio from the unrounded medians: at this tiny
    # graph's ~10 ms steps the two differ by up to ~1 %
    assert row["ratio"] == pytest.approx(row["s_step_this"] / row["s_step_ref"], rel=3e-2)
    ref = sys.modules["bgrl_werank_ref.train.trainer"]
    assert ref.Trainer is not sys.modules["bgrl_werank.train.trainer"].Trainer


def test_methods_in_one_process_step_in_turn():
    from benchmarks.bench_epoch import _methods_steps_markdown, run_methods_steps

    threads = torch.get_num_threads()
    res = run_methods_steps({"mode": "methods-steps", "threads": threads, "warmup": 1, "cycles": 2, "seconds": 0,
                             "configs": {"bgrl": "configs/cora.yaml", "grace": "configs/cora-grace.yaml"}, "overrides": SPARSE})
    rows = {r["method"]: r for r in res["methods"]}
    assert rows["bgrl"]["backend"] == "fast" and rows["grace"]["backend"] == "plain"
    assert all(r["steps"] == 2 and r["s_step_median"] > 0 for r in rows.values())
    table = _methods_steps_markdown([{**r, "run": "x", "round": 0} for r in res["methods"]])
    assert next(line for line in table if line.startswith("| bgrl")).split(" | ")[-2] == "1.00×"


def test_probe_of_the_benchmark_embeddings():
    # --probe: the torch probe and scikit-learn's on the trained method's embeddings of the full graph
    pytest.importorskip("sklearn")
    threads = torch.get_num_threads()
    row = run_epochs({"mode": "probe", "threads": threads, "warmup": 1, "epochs": 1, "probe": [1e-4], "floor": False,
                    "overrides": SPARSE})
    assert row["mode"] == "probe" and row["probe_splits"] == 20
    assert 0 < row["probe_torch_acc"] <= 100 and 0 < row["probe_sklearn_tol0.0001_acc"] <= 100


def _reference_row(tree, rnd, s, kind="Some CPU, AVX2, 2 cores", **extra):
    row = {"mode": "reference", "dataset": "cora", "tree": tree, "round": rnd, "batch": "b1", "s_epoch_median": s,
           "epochs_timed": 20, "threads": 2, "loadavg_1min": 1.0, "cpu_kind": kind}
    if tree == "this":
        row.update(floor_s_measured_rate=0.2, gemm_gflops_measured=70.0)
    return {**row, **extra}


def test_reference_table_takes_per_round_speedups_and_the_floor_bound(tmp_path):
    from benchmarks.bench_reference import markdown, speedups

    rows = []
    for rnd, (ref, mine, mine_on) in enumerate([(0.8, 0.4, 0.44), (0.9, 0.3, 0.33), (0.6, 0.3, 0.31)]):
        rows += [_reference_row("reference", rnd, ref), _reference_row("this", rnd, mine), _reference_row("this-werank", rnd, mine_on),
                 _reference_row("this-plain", rnd, 2 * mine)]
    rows.append(_reference_row("reference", 3, 5.0))  # an unfinished round: ignored
    s = speedups(rows)
    assert s["rounds"] == 3 and s["speedup_rounds"] == pytest.approx([2.0, 3.0, 2.0])
    assert s["plain_over_fast"] == pytest.approx(2.0)
    assert s["speedup"] == pytest.approx(2.0) and s["bound"] == pytest.approx(4.0)  # median of 0.8, 0.9, 0.6 over 0.2
    path = tmp_path / "reference.jsonl"
    other = [_reference_row(r["tree"], r["round"], r["s_epoch_median"] / 2, kind="Other CPU, AVX-512, 2 cores",
                            **({"floor_s_measured_rate": 0.1, "gemm_gflops_measured": 140.0} if r["tree"] == "this" else {}))
             for r in rows]
    path.write_text("\n".join(json.dumps(r) for r in rows + other) + "\n")
    text = "\n".join(markdown(path))
    assert "| cora | ≥ 3× | 0.400 s |" in text  # CPU kinds in sorted order: "Other CPU" (halved times) first
    assert text.count("(goal not met)") == 2 and "Other CPU, AVX-512, 2 cores: reference" in text


def test_reference_benchmark_refuses_a_folder_that_is_not_the_reference(tmp_path, capsys):
    from benchmarks.bench_reference import main

    assert main(["--reference", str(tmp_path), "--datasets", "cora"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nerdslab/bgrl" in err and "\n" not in err


def test_cpu_info_names_the_widest_vector_extension(monkeypatch):
    from bgrl_werank import cpu

    fields = {"model name": "Test CPU", "vendor_id": "AuthenticAMD", "cpu family": "23", "model": "1",
              "flags": "fpu sse4_2 avx avx2 fma"}
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: fields)
    cpu.cpu_info.cache_clear()
    try:
        info = cpu.cpu_info()
        assert info["isa"] == "AVX2" and info["family"] == 23 and info["cores"] == cpu.usable_cores()
        assert cpu.cpu_kind(info) == f"Test CPU, AVX2, {info['cores']} cores"
        fields["flags"] += " avx512f"
        cpu.cpu_info.cache_clear()
        assert cpu.cpu_info()["isa"] == "AVX-512"
        for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "CC"):
            monkeypatch.delenv(var, raising=False)
        assert cpu.isa_limit() is None
        monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
        assert cpu.isa_limit() == "partial: ATEN_CPU_CAPABILITY=avx2"  # oneDNN, MKL and the kernels still AVX-512
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
        monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
        monkeypatch.setenv("CC", "gcc -mno-avx512f")
        cpu.cpu_info.cache_clear()
        assert cpu.cpu_kind() == f"Test CPU, AVX-512 held to AVX2, {info['cores']} cores"
    finally:
        cpu.cpu_info.cache_clear()


def test_scale_full_batch_estimate_and_tables(tmp_path):
    from benchmarks.bench_scale import full_estimate_mb, markdown

    assert full_estimate_mb({}, 10**5) is None  # nothing smaller has run: run it and see
    assert full_estimate_mb({10**4: 500.0, 10**5: 2000.0}, 10**6) == pytest.approx(20000.0)  # the largest size below
    kind = "Some CPU, AVX2, 2 cores"
    over = ["train.batch_size=8192", "train.num_hops=1"]
    rows = [{"mode": "scale", "batching": "full", "nodes": 10**5, "edges": 10**6, "s_epoch_median": 2.0, "nodes_per_s": 50000,
             "s_per_million_edges": 2.0, "peak_rss_mb": 2048.0, "eval_acc": 91.234, "rankme": 50.0, "cpu_kind": kind,
             "threads": 2, "overrides": over, "epochs_trained": 7},
            {"mode": "scale", "batching": "subgraph", "nodes": 10**5, "edges": 10**6, "s_epoch_median": 6.0, "nodes_per_s": 16667,
             "s_per_million_edges": 6.0, "peak_rss_mb": 1024.0, "eval_acc": 90.0, "rankme": 49.0, "cpu_kind": kind,
             "threads": 2, "overrides": over, "epochs_trained": 7, "batches": 13, "batch_nodes_mean": 60000.0},
            {"mode": "scale", "batching": "full", "nodes": 10**7, "fits": False, "estimated_peak_rss_mb": 204800,
             "available_mb": 22528, "cpu_kind": kind}]
    ddp = [{"mode": "scale-ddp", "label": "1 process, 1 thread", "processes": 1, "threads_per_process": 1, "nodes": 10**5,
            "batch_size": 8192, "num_hops": 1, "epochs": 4, "s_epoch_median": 4.0, "steps_per_epoch": 14},
           {"mode": "scale-ddp", "label": "2 processes, 1 thread each", "processes": 2, "threads_per_process": 1,
            "nodes": 10**5, "batch_size": 8192, "num_hops": 1, "epochs": 4, "s_epoch_median": 2.5, "steps_per_epoch": 14}]
    (tmp_path / "scale.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "scale-ddp.jsonl").write_text("\n".join(json.dumps(r) for r in ddp) + "\n")
    text = markdown(tmp_path)
    assert "| 100,000 | 1,000,000 | full | 2.00 | 50,000 | 2.000 | 2.00 GB | 100,000 (× 1) | 20.00 | 91.23 (7) | 50.0 |" in text
    # 6 s over 13 batches of 60 000 nodes: 7.69 µs per node computed
    assert "| 100,000 | 1,000,000 | subgraph | 6.00 | 16,667 | 6.000 | 1.00 GB | 60,000 (× 7.8) | 7.69 | 90.00 (7) | 49.0 |" in text
    assert "| 10,000,000 | | full | not run: ≈ 200 GB estimated (scaled from the size below), 22 GB available |" in text
    assert "batches of 8192 seed nodes with their 1-hop" in text
    assert "| 2 processes, 1 thread each | 14 (7) | 2.50 | 1.60× | 80 % |" in text
