"""Hostile and damaged dataset files (issue 19): nothing a data root or a cache folder holds may run
code, bad values stop the run at load time, and graphs too small for the probe stop it before
training. Every failure is one line on stderr (exit code 2), before any run folder exists, with the
data root left byte-identical.

The attacks prepend a payload to a genuine pickle: unpickled with plain ``pickle.load`` it runs
``os.system("touch <sentinel>")`` and then still yields the genuine object, so a vulnerable loader
loads the dataset as if nothing happened; only the sentinel file shows that code ran.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import pickletools
import re
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bgrl_werank.cli import train_main
from bgrl_werank.data import DatasetError, load_dataset

from .conftest import missing_data, sets

# Short runs: the runs that should fail must fail at load, the others finish in a second or two.
SHORT = ["train.epochs=3", "optim.warmup_epochs=1", "diagnostics.every=0", "train.progress=none",
         "model.layer_sizes=[32, 16]", "method.bgrl.predictor_hidden=32", "threads=1"]


# ------------------------------------------------------------------------------------------------
# Helpers


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


class _RunsCommand:
    """Unpickles to ``os.system(command)``'s return value."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _RunsProcess:
    """Unpickles to ``subprocess.call(argv)``'s return value. Unlike ``os.system``, whose module
    ``torch.load(weights_only=True)`` blocks outright, its refusal suggests ``add_safe_globals``,
    which is what makes PyG's ``torch_load`` retry with ``weights_only=False``."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __reduce__(self):
        return (subprocess.call, (self.argv,))


def _touch(sentinel: Path) -> str:
    return f"touch {shlex.quote(str(sentinel))}"


def _payload_then(genuine: bytes, sentinel: Path) -> bytes:
    """A pickle that runs ``touch sentinel`` and then yields what ``genuine`` (a pickle) holds."""
    head = pickletools.optimize(pickle.dumps(_RunsCommand(_touch(sentinel)), protocol=2))  # no memo
    assert head.endswith(b".")
    body = genuine[2:] if genuine[:1] == b"\x80" else genuine  # the genuine stream without its PROTO
    return head[:-1] + b"0" + body  # ... REDUCE, POP its result, then the genuine object, STOP


def _write_planetoid(folder: Path, prefix: str = "cora", *, num_test: int = 12, gaps: int = 0,
                     num_classes: int = 3, nan_in_allx: int = 0) -> int:
    """A small dataset in the Planetoid format (Python 3 pickles, the layout of the real files):
    6 training nodes (every class among them), 520 ``allx`` rows (PyG takes 500 validation nodes
    after the training ones), ``num_test`` test nodes listed in shuffled order, and ``gaps`` ids
    between the first and the last test id that ``test.index`` lacks (CiteSeer's isolated nodes). The graph is a ring
    with chords, one self-loop and one repeated edge. Returns the number of nodes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n_train, n_all, f = 6, 520, 8
    span = num_test + gaps
    n = n_all + span
    feats = (rng.random((n, f)) < 0.4).astype(np.float32)
    labels = np.eye(num_classes, dtype=np.int32)[np.arange(n) % num_classes]
    missing = 1 + rng.permutation(span - 2)[:gaps]  # never the first or the last test id
    in_test = np.setdiff1d(np.arange(span), missing)  # offsets of the listed test ids
    test_index = n_all + rng.permutation(in_test)
    allx = sp.csr_matrix(feats[:n_all])
    if nan_in_allx:
        allx.data[:nan_in_allx] = np.nan
    graph = {i: [(i + 1) % n, (i - 1) % n, int(rng.integers(n))] for i in range(n)}
    graph[3].append(3)  # a self-loop
    graph[4].append(5)  # a repeated edge
    items = {
        "x": sp.csr_matrix(feats[:n_train]), "y": labels[:n_train],
        "allx": allx, "ally": labels[:n_all],
        "tx": sp.csr_matrix(feats[test_index]), "ty": labels[test_index],
        "graph": graph,
    }
    for item, value in items.items():
        (folder / f"ind.{prefix}.{item}").write_bytes(pickle.dumps(value))
    (folder / f"ind.{prefix}.test.index").write_text("\n".join(str(i) for i in test_index) + "\n")
    return n


def _write_amazon_npz(path: Path, *, inf_at: tuple[int, ...] = (), **replace: np.ndarray) -> None:
    """A small graph in the Amazon/Coauthor npz format (keys as PyG's ``parse_npz`` reads them):
    120 nodes, 3 classes, 16 bag-of-words features, a ring with chords."""
    rng = np.random.default_rng(1)
    n, f = 120, 16
    attr = sp.csr_matrix((rng.random((n, f)) < 0.3).astype(np.float32))
    attr.data[list(inf_at)] = np.inf
    src = np.arange(n)
    adj = sp.csr_matrix((np.ones(2 * n, dtype=np.float32), (np.r_[src, src], np.r_[(src + 1) % n, (src + 7) % n])), shape=(n, n))
    arrays = {
        "attr_data": attr.data, "attr_indices": attr.indices, "attr_indptr": attr.indptr, "attr_shape": np.array(attr.shape),
        "adj_data": adj.data, "adj_indices": adj.indices, "adj_indptr": adj.indptr, "adj_shape": np.array(adj.shape),
        "labels": np.arange(n) % 3, "class_names": np.array(["a", "b", "c"], dtype=object),  # as Coauthor's
    }
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _train(root: Path, name: str, out: Path, *extra: str) -> int:
    return train_main(sets([f"data.name={name}", f"data.root={root}", "data.download=false", *SHORT, *extra,
                            f"out_dir={out}"]))


def _real_cora_copy(tmp_path: Path) -> Path:
    src = os.environ.get("BGRL_WERANK_DATA")
    if not src or not (Path(src) / "planetoid" / "cora").is_dir():
        missing_data("needs Cora under BGRL_WERANK_DATA")
    root = tmp_path / "root"
    shutil.copytree(Path(src) / "planetoid" / "cora", root / "planetoid" / "cora")
    for p in (root / "planetoid" / "cora").iterdir():
        p.chmod(0o644)
    return root


# ------------------------------------------------------------------------------------------------
# 1. Planetoid pickles cannot run code


@pytest.mark.realdata
def test_malicious_real_cora_file_is_refused_not_run(tmp_path, capsys):
    root = _real_cora_copy(tmp_path)
    victim = root / "planetoid" / "cora" / "ind.cora.x"
    sentinel = tmp_path / "pwned"
    victim.write_bytes(_payload_then(victim.read_bytes(), sentinel))
    before = _snapshot(root)
    rc = _train(root, "cora", tmp_path / "runs")
    assert not sentinel.exists(), "unpickling ind.cora.x ran code"
    assert rc == 2
    line = _one_error_line(capsys)
    assert "ind.cora.x" in line and "posix.system" in line and "could run code" in line and "good copy" in line
    assert _snapshot(root) == before and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("victim", ["ind.cora.x", "ind.cora.allx", "ind.cora.ally", "ind.cora.graph"])
def test_malicious_synthetic_planetoid_file_is_refused_not_run(tmp_path, capsys, victim):
    root = tmp_path / "root"
    _write_planetoid(root / "planetoid" / "cora")
    path = root / "planetoid" / "cora" / victim
    sentinel = tmp_path / "pwned"
    path.write_bytes(_payload_then(path.read_bytes(), sentinel))
    before = _snapshot(root)
    rc = _train(root, "cora", tmp_path / "runs")
    assert not sentinel.exists(), f"unpickling {victim} ran code"
    assert rc == 2
    line = _one_error_line(capsys)
    assert victim in line and "posix.system" in line and "could run code" in line
    assert _snapshot(root) == before and not (tmp_path / "runs").exists()


def test_a_file_that_is_only_a_payload_is_refused(tmp_path):
    folder = tmp_path / "planetoid" / "cora"
    _write_planetoid(folder)
    sentinel = tmp_path / "pwned"
    (folder / "ind.cora.tx").write_bytes(pickle.dumps(_RunsCommand(_touch(sentinel))))
    with pytest.raises(DatasetError) as exc:
        load_dataset("cora", root=tmp_path)
    assert not sentinel.exists(), "unpickling ind.cora.tx ran code"
    assert re.search(r"ind\.cora\.tx.*posix\.system.*could run code", str(exc.value)) and "\n" not in str(exc.value)


@pytest.mark.parametrize("item, value, expected", [
    ("x", np.array([["a", "b"]], dtype=object), "dtype object"),
    ("y", [1, 2, 3], "list where a numeric matrix belongs"),
    ("allx", np.array([1.0, 2.0]), "1-D array"),
    ("graph", {0: "1 2"}, "dict of node id -> list of node ids"),
    ("graph", [[1, 2]], "list where the adjacency dict belongs"),
])
def test_planetoid_file_of_the_wrong_kind_is_named(tmp_path, item, value, expected):
    folder = tmp_path / "planetoid" / "cora"
    _write_planetoid(folder)
    (folder / f"ind.cora.{item}").write_bytes(pickle.dumps(value))
    with pytest.raises(DatasetError, match=rf"ind\.cora\.{item}") as exc:
        load_dataset("cora", root=tmp_path)
    assert expected in str(exc.value) and "\n" not in str(exc.value)


def test_malformed_sparse_matrix_is_named(tmp_path):
    # column indices beyond the matrix: densifying it unchecked would write out of bounds
    folder = tmp_path / "planetoid" / "cora"
    _write_planetoid(folder)
    m = sp.csr_matrix(np.eye(6, 8, dtype=np.float32))
    m.indices[2] = 10_000
    (folder / "ind.cora.x").write_bytes(pickle.dumps(m))
    with pytest.raises(DatasetError, match=r"ind\.cora\.x.*malformed sparse matrix"):
        load_dataset("cora", root=tmp_path)


def _assert_same_data(mine, ref) -> None:
    assert set(mine.keys()) == set(ref.keys())
    for key in ref.keys():
        assert mine[key].dtype == ref[key].dtype and torch.equal(mine[key], ref[key]), key


def _pyg_read_planetoid_data(folder: Path, prefix: str):
    from torch_geometric.io import read_planetoid_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's deprecation of the scipy.sparse.csr name in the files
        return read_planetoid_data(str(folder), prefix)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_safe_assembly_equals_pyg_on_real_files(name):
    from bgrl_werank.data.readers import read_planetoid

    src = os.environ.get("BGRL_WERANK_DATA")
    folder = Path(src or "") / "planetoid" / name
    if not src or not folder.is_dir():
        missing_data(f"needs {name} under BGRL_WERANK_DATA")
    _assert_same_data(read_planetoid(folder, name), _pyg_read_planetoid_data(folder, name))


@pytest.mark.parametrize("prefix, gaps", [("cora", 0), ("pubmed", 0), ("citeseer", 0), ("citeseer", 5)])
def test_safe_assembly_equals_pyg_on_synthetic_files(tmp_path, prefix, gaps):
    from bgrl_werank.data.readers import read_planetoid

    n = _write_planetoid(tmp_path, prefix, gaps=gaps)
    mine = read_planetoid(tmp_path, prefix)
    _assert_same_data(mine, _pyg_read_planetoid_data(tmp_path, prefix))
    assert mine.num_nodes == n


def test_isolated_test_ids_are_unlabelled_zero_rows(tmp_path):
    n = _write_planetoid(tmp_path / "planetoid" / "citeseer", "citeseer", gaps=5)
    data = load_dataset("citeseer", root=tmp_path)
    assert data.num_nodes == n and int((~data.labelled).sum()) == 5
    assert float(data.x[~data.labelled].abs().sum()) == 0.0


# ------------------------------------------------------------------------------------------------
# 2. The processed cache and the npz archives cannot run code


def _cache_file(cache: Path, name: str) -> Path:
    files = sorted((cache / "processed").glob(f"{name}-*/data.pt"))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.parametrize("payload", ["subprocess.call", "os.system"])
@pytest.mark.parametrize("planted", ["data.pt", "pre_transform.pt", "pre_filter.pt"])
def test_planted_cache_file_never_runs_and_the_cache_is_rebuilt(tmp_path, monkeypatch, planted, payload):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BGRL_WERANK_CACHE", str(cache))
    _write_planetoid(tmp_path / "root" / "planetoid" / "cora")
    first = load_dataset("cora", root=tmp_path / "root")
    target = _cache_file(cache, "cora").parent / planted
    sentinel = tmp_path / "pwned"
    # torch.load(weights_only=True) refuses both; PyG retries the first with weights_only=False
    # (data.pt), and reads pre_transform.pt and pre_filter.pt with weights_only=False outright
    evil = _RunsProcess(["touch", str(sentinel)]) if payload == "subprocess.call" else _RunsCommand(_touch(sentinel))
    torch.save(evil, target)
    again = load_dataset("cora", root=tmp_path / "root")
    assert not sentinel.exists(), f"loading the cache ran the code in {planted}"
    assert torch.equal(again.x, first.x) and torch.equal(again.edge_index, first.edge_index)
    # the rebuilt cache is one that the safe load reads
    torch.load(_cache_file(cache, "cora"), weights_only=True)


def test_cache_that_is_not_one_graph_is_rebuilt(tmp_path, monkeypatch):
    # safe to load (only tensors), but edges name nodes the graph lacks: treated as damaged
    cache = tmp_path / "cache"
    monkeypatch.setenv("BGRL_WERANK_CACHE", str(cache))
    _write_planetoid(tmp_path / "root" / "planetoid" / "cora")
    first = load_dataset("cora", root=tmp_path / "root")
    path = _cache_file(cache, "cora")
    data, slices, cls = torch.load(path, weights_only=True)
    data["edge_index"] = data["edge_index"] + 10_000
    torch.save((data, slices, cls), path)
    again = load_dataset("cora", root=tmp_path / "root")
    assert torch.equal(again.edge_index, first.edge_index)


def test_own_caches_load_with_weights_only_and_without_warnings(tmp_path, monkeypatch):
    monkeypatch.setenv("BGRL_WERANK_CACHE", str(tmp_path / "cache"))
    _write_planetoid(tmp_path / "planetoid" / "citeseer", "citeseer", gaps=3)
    _write_amazon_npz(tmp_path / "amazon" / "photo" / "amazon_electronics_photo.npz")
    for name in ("citeseer", "amazon-photo"):
        first = load_dataset(name, root=tmp_path, sparse_x=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = load_dataset(name, root=tmp_path, sparse_x=True)  # from the cache
        assert torch.equal(again.y, first.y) and torch.equal(again.edge_index, first.edge_index)


def test_npz_with_an_object_array_is_refused_not_unpickled(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "amazon" / "photo" / "amazon_electronics_photo.npz"
    _write_amazon_npz(path, attr_data=np.array([_RunsCommand(_touch(sentinel))], dtype=object))
    with pytest.raises(DatasetError) as exc:
        load_dataset("amazon-photo", root=tmp_path)
    assert not sentinel.exists(), "reading the npz ran code"
    assert "amazon_electronics_photo.npz" in str(exc.value) and "\n" not in str(exc.value)


def test_npz_that_is_a_pickle_is_refused_not_unpickled(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "coauthor" / "cs" / "ms_academic_cs.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(_RunsCommand(_touch(sentinel))))
    with pytest.raises(DatasetError) as exc:
        load_dataset("coauthor-cs", root=tmp_path)
    assert not sentinel.exists(), "reading the npz ran code"
    assert "ms_academic_cs.npz" in str(exc.value) and "\n" not in str(exc.value)


def test_unread_object_arrays_do_not_stop_a_good_npz(tmp_path):
    # Coauthor's real files hold a class_names object array; it is never read, so never unpickled
    _write_amazon_npz(tmp_path / "coauthor" / "cs" / "ms_academic_cs.npz")
    data = load_dataset("coauthor-cs", root=tmp_path)
    assert data.num_nodes == 120 and data.num_classes == 3


# ------------------------------------------------------------------------------------------------
# 3. NaN or Inf features stop the run at load time


def test_nan_in_planetoid_features_is_one_line_before_training(tmp_path, capsys):
    root = tmp_path / "root"
    _write_planetoid(root / "planetoid" / "cora", nan_in_allx=3)
    before = _snapshot(root)
    assert _train(root, "cora", tmp_path / "runs") == 2
    line = _one_error_line(capsys)
    assert "ind.cora.allx" in line and "3 NaN or infinite" in line and "cora" in line
    assert _snapshot(root) == before and not (tmp_path / "runs").exists()


def test_inf_in_amazon_features_is_one_line_before_training(tmp_path, capsys):
    # PyG's read_npz binarises with x[x > 0] = 1, which would quietly turn +inf into 1
    root = tmp_path / "root"
    _write_amazon_npz(root / "amazon" / "photo" / "amazon_electronics_photo.npz", inf_at=(0, 5))
    before = _snapshot(root)
    assert _train(root, "amazon-photo", tmp_path / "runs", "eval.protocol=random") == 2
    line = _one_error_line(capsys)
    assert "amazon_electronics_photo.npz" in line and "2 NaN or infinite" in line and "amazon-photo" in line
    assert _snapshot(root) == before and not (tmp_path / "runs").exists()


def _write_wikics(path: Path, features: list[list[float]]) -> None:
    """A small ``data.json`` in the WikiCS format (Python's json reads and writes NaN and Infinity)."""
    import json

    n = len(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "features": features, "labels": [i % 2 for i in range(n)], "links": [[(i + 1) % n] for i in range(n)],
        "train_masks": [[i % 3 == 0 for i in range(n)]] * 2, "val_masks": [[i % 3 == 1 for i in range(n)]] * 2,
        "test_mask": [i % 3 == 2 for i in range(n)], "stopping_masks": [[False] * n] * 2,
    }))


def test_nan_in_wikics_json_is_one_line_at_load(tmp_path, monkeypatch):
    # WikiCS's JSON is parsed by PyG; load_dataset's own check counts what it lets through
    monkeypatch.setenv("BGRL_WERANK_CACHE", str(tmp_path / "cache"))
    features = [[float(i), 1.0, 0.5] for i in range(30)]
    features[3][1], features[7][0] = float("nan"), float("inf")
    _write_wikics(tmp_path / "root" / "wikics" / "data.json", features)
    with pytest.raises(DatasetError, match=r"wikics: 2 of the features' values are NaN or infinite") as exc:
        load_dataset("wikics", root=tmp_path / "root")
    assert str(tmp_path / "root" / "wikics") in str(exc.value) and "\n" not in str(exc.value)
    features[3][1], features[7][0] = 0.0, 0.0  # a good file loads, also from its cache
    _write_wikics(tmp_path / "root" / "wikics" / "data.json", features)
    first = load_dataset("wikics", root=tmp_path / "root")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(load_dataset("wikics", root=tmp_path / "root").x, first.x)


def test_nan_in_a_tampered_cache_is_caught_at_load(tmp_path, monkeypatch):
    # a cache holding NaN passes the safe load (it is only tensors); load_dataset counts them
    cache = tmp_path / "cache"
    monkeypatch.setenv("BGRL_WERANK_CACHE", str(cache))
    _write_planetoid(tmp_path / "root" / "planetoid" / "cora")
    load_dataset("cora", root=tmp_path / "root")
    path = _cache_file(cache, "cora")
    data, slices, cls = torch.load(path, weights_only=True)
    x = data["x"].to_dense() if data["x"].layout != torch.strided else data["x"].clone()
    x[0, :2] = float("nan")
    x[1, 0] = float("-inf")
    data["x"] = x
    torch.save((data, slices, cls), path)
    with pytest.raises(DatasetError, match=r"cora: 3 of the features' values are NaN or infinite") as exc:
        load_dataset("cora", root=tmp_path / "root")
    assert str(tmp_path / "root") in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------------
# 4. Graphs too small for the probe stop before training


@pytest.mark.parametrize("num_nodes, num_classes, avg_degree", [
    (2, 2, 0), (3, 3, 1), (4, 2, 1), (5, 4, 2), (8, 4, 1), (20, 4, 2), (20, 2, 1), (54, 2, 1), (60, 4, 1),
])
def test_tiny_csbm_is_one_line_or_a_run(tmp_path, capsys, num_nodes, num_classes, avg_degree):
    out = tmp_path / "runs"
    rc = train_main(sets(["data.name=csbm", f"data.csbm.num_nodes={num_nodes}", f"data.csbm.num_classes={num_classes}",
                          f"data.csbm.avg_degree={avg_degree}", "data.csbm.num_features=8", "eval.protocol=random",
                          *SHORT, f"out_dir={out}"]))
    if rc == 0:
        assert out.exists()
        return
    assert rc == 2
    line = _one_error_line(capsys)
    assert f"{num_nodes} labelled node" in line and "data.csbm.num_nodes" in line and "data.csbm.num_classes" in line
    assert not out.exists()
