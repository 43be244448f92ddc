"""Tests of bgrl_werank.data: roots, loaders, errors, the CSBM generator and probe splits.

Real-data tests (marker ``realdata``) read the data root from ``$BGRL_WERANK_DATA`` and are skipped
when it is unset; a dataset whose folder is absent there is skipped on its own. Every test gets an
empty cache root in a temporary folder, so real datasets are processed from scratch.
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.datasets import Amazon, Coauthor, Planetoid, WikiCS
from torch_geometric.utils import is_undirected

import bgrl_werank.data.datasets as ds
from bgrl_werank.data import (
    DATASET_NAMES,
    DatasetError,
    Split,
    cache_root,
    get_splits,
    load_dataset,
    make_csbm,
    resolve_data_root,
)
import bgrl_werank.data.csbm as csbm_module
from bgrl_werank.data.csbm import _distinct

from .conftest import missing_data

REPO_ROOT = Path(__file__).resolve().parents[1]

# SOURCES.md: nodes, edges (both directions), features, classes, unlabelled nodes, feature non-zeros
REAL_STATS = {
    "cora": (2708, 10556, 1433, 7, 0, None),
    "citeseer": (3327, 9104, 3703, 6, 15, None),
    "amazon-computers": (13752, 491722, 767, 10, 0, 3675081),
    "amazon-photo": (7650, 238162, 745, 8, 0, 1979909),
    "coauthor-cs": (18333, 163788, 6805, 15, 0, 1092079),
    "coauthor-physics": (34493, 495924, 8415, 5, 0, 1137311),
}
PUBLIC_SPLIT_SIZES = {"cora": (140, 500, 1000), "citeseer": (120, 500, 1000)}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache root per test; never touch the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("BGRL_WERANK_CACHE", str(cache))
    monkeypatch.delenv("BGRL_WERANK_OFFLINE", raising=False)
    return cache


def _real_root() -> Path:
    env = os.environ.get("BGRL_WERANK_DATA", "")
    if not env:
        missing_data("BGRL_WERANK_DATA is not set: real-data tests skipped")
    return Path(env)


def _real_raw_dir(name: str) -> Path:
    raw_dir = _real_root() / ds._SPECS[name].subdir
    if not all((raw_dir / f).is_file() for f in ds._SPECS[name].raw_files):
        missing_data(f"{name} is not in the data root {_real_root()}")
    return raw_dir


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def _write_fake_planetoid(folder: Path, prefix: str = "cora", num_test: int = 10, num_classes: int = 3) -> int:
    """A tiny dataset in the Planetoid pickle format (PyG needs >= 500 nodes after the training
    rows, for its 500 validation ids). Returns the number of nodes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n_train, n_all, f = 6, 520, 5
    n = n_all + num_test
    feats = (rng.random((n, f)) < 0.4).astype(np.float32)
    labels = np.eye(num_classes)[rng.integers(0, num_classes, n)]
    test_index = n_all + rng.permutation(num_test)
    items = {
        "x": sp.csr_matrix(feats[:n_train]),
        "y": labels[:n_train],
        "allx": sp.csr_matrix(feats[:n_all]),
        "ally": labels[:n_all],
        "tx": sp.csr_matrix(feats[test_index]),
        "ty": labels[test_index],
        "graph": {i: [(i + 1) % n, (i - 1) % n] for i in range(n)},
    }
    for item, value in items.items():
        with open(folder / f"ind.{prefix}.{item}", "wb") as fh:
            pickle.dump(value, fh)
    (folder / f"ind.{prefix}.test.index").write_text("\n".join(str(i) for i in test_index) + "\n")
    return n


# --------------------------------------------------------------------------------------------
# Roots


def test_data_root_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_root, explicit = tmp_path / "env", tmp_path / "explicit"
    monkeypatch.delenv("BGRL_WERANK_DATA", raising=False)
    assert resolve_data_root() == (REPO_ROOT / "datasets").resolve()
    monkeypatch.setenv("BGRL_WERANK_DATA", "")  # empty counts as unset
    assert resolve_data_root() == (REPO_ROOT / "datasets").resolve()
    monkeypatch.setenv("BGRL_WERANK_DATA", str(env_root))
    assert resolve_data_root() == env_root.resolve()
    assert resolve_data_root(str(explicit)) == explicit.resolve()
    assert resolve_data_root(explicit) == explicit.resolve()


def test_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGRL_WERANK_CACHE", str(tmp_path / "c"))
    assert cache_root() == (tmp_path / "c").resolve()
    monkeypatch.delenv("BGRL_WERANK_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == (tmp_path / "home" / ".cache" / "bgrl_werank").resolve()


def test_registry_matches_pyg_file_names() -> None:
    """Our expected raw file names are the ones PyG's classes look for."""

    def pyg_files(cls: type, **attrs: str) -> list[str]:
        obj = cls.__new__(cls)
        for k, v in attrs.items():
            setattr(obj, k, v)
        files = obj.raw_file_names
        return [files] if isinstance(files, str) else list(files)

    expected = {
        "cora": pyg_files(Planetoid, name="Cora"),
        "citeseer": pyg_files(Planetoid, name="CiteSeer"),
        "pubmed": pyg_files(Planetoid, name="PubMed"),
        "amazon-computers": pyg_files(Amazon, name="computers"),
        "amazon-photo": pyg_files(Amazon, name="photo"),
        "coauthor-cs": pyg_files(Coauthor, name="CS"),
        "coauthor-physics": pyg_files(Coauthor, name="Physics"),
        "wikics": pyg_files(WikiCS),
    }
    assert set(DATASET_NAMES) == set(expected) | {"csbm"}
    for name, files in expected.items():
        assert list(ds._SPECS[name].raw_files) == files, name


# --------------------------------------------------------------------------------------------
# Errors


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(DatasetError, match=r"did you mean 'cora'\?.*citeseer, pubmed") as exc:
        load_dataset("corra")
    assert "\n" not in str(exc.value)
    with pytest.raises(DatasetError, match="did you mean 'amazon-photo'"):
        load_dataset("amazon_photos")
    with pytest.raises(DatasetError, match="valid names: cora"):
        load_dataset("zzzz")


def test_missing_files_no_download(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(DatasetError) as exc:
        load_dataset("cora", root=tmp_path, download=False)
    assert time.monotonic() - start < 2.0
    msg = str(exc.value)
    assert "\n" not in msg
    for part in ("cora", "ind.cora.x", "ind.cora.test.index", str(tmp_path), "BGRL_WERANK_DATA", "data.root"):
        assert part in msg
    assert not (tmp_path / "planetoid").exists()  # nothing created in the data root


def test_missing_files_env_root_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGRL_WERANK_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=r"ms_academic_cs\.npz.*from BGRL_WERANK_DATA"):
        load_dataset("coauthor-cs", download=False)


def test_missing_files_offline_download_is_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No network here: the probe must fail within a few seconds and name the dataset and files.
    start = time.monotonic()
    with pytest.raises(DatasetError, match=r"pubmed: missing raw file\(s\) ind\.pubmed\.x.*cannot download"):
        load_dataset("pubmed", root=tmp_path, download=True)
    assert time.monotonic() - start < 10.0
    monkeypatch.setenv("BGRL_WERANK_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DatasetError, match=r"data\.json.*BGRL_WERANK_OFFLINE=1"):
        load_dataset("wikics", root=tmp_path)
    assert time.monotonic() - start < 1.0
    assert list(tmp_path.iterdir()) == []


def test_download_into_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The online path, served from a local folder: files land in the data root's layout."""
    source = tmp_path / "server"
    n = _write_fake_planetoid(source)
    monkeypatch.setattr(ds, "_offline_reason", lambda url: None)
    monkeypatch.setattr(Planetoid, "url", source.as_uri())
    root = tmp_path / "root"
    data = load_dataset("cora", root=root)
    assert data.num_nodes == n
    assert sorted(p.name for p in (root / "planetoid" / "cora").iterdir()) == sorted(ds._SPECS["cora"].raw_files)


def test_failed_download_leaves_no_partial_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "server"
    _write_fake_planetoid(source)
    (source / "ind.cora.graph").unlink()  # the server lacks one file: the download fails midway
    monkeypatch.setattr(ds, "_offline_reason", lambda url: None)
    monkeypatch.setattr(Planetoid, "url", source.as_uri())
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match="download failed"):
        load_dataset("cora", root=root)
    assert list((root / "planetoid" / "cora").iterdir()) == []


@pytest.mark.parametrize("victim", ["ind.cora.graph", "ind.cora.allx", "ind.cora.test.index"])
def test_truncated_planetoid_file(tmp_path: Path, victim: str) -> None:
    folder = tmp_path / "planetoid" / "cora"
    _write_fake_planetoid(folder)
    path = folder / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match=victim.replace(".", r"\.")) as exc:
        load_dataset("cora", root=tmp_path)
    assert "\n" not in str(exc.value)


def test_fake_planetoid_loads_and_cache_stays_out_of_data_root(tmp_path: Path, _isolated_env: Path) -> None:
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    n = _write_fake_planetoid(root_a / "planetoid" / "cora")
    shutil.copytree(root_a, root_b)
    before = _listing(root_a)
    data = load_dataset("cora", root=root_a)
    assert _listing(root_a) == before  # nothing written into the data root
    caches = sorted((_isolated_env / "processed").iterdir())
    assert len(caches) == 1 and (caches[0] / "data.pt").is_file()
    assert data.num_nodes == n and data.num_classes == 3 and bool(data.labelled.all())
    assert data.train_mask.sum() == 6 and data.val_mask.sum() == 500 and data.test_mask.sum() == 10

    stamp = (caches[0] / "data.pt").stat().st_mtime_ns
    again = load_dataset("cora", root=root_a)  # from the cache
    assert (caches[0] / "data.pt").stat().st_mtime_ns == stamp
    assert torch.equal(again.x, data.x) and torch.equal(again.edge_index, data.edge_index)

    load_dataset("cora", root=root_b)  # another root: its own cache
    assert len(list((_isolated_env / "processed").iterdir())) == 2

    (caches[0] / "data.pt").write_bytes(b"not a torch file")  # a damaged cache is rebuilt
    assert torch.equal(load_dataset("cora", root=root_a).x, data.x)


def test_truncated_npz(tmp_path: Path) -> None:
    folder = tmp_path / "amazon" / "photo"
    folder.mkdir(parents=True)
    np.savez(folder / "amazon_electronics_photo.npz", labels=np.arange(100))
    path = folder / "amazon_electronics_photo.npz"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"amazon_electronics_photo\.npz"):
        load_dataset("amazon-photo", root=tmp_path)


# --------------------------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL_STATS))
def test_real_dataset_statistics(name: str) -> None:
    _real_raw_dir(name)
    nodes, edges, feats, classes, unlabelled, nnz = REAL_STATS[name]
    data = load_dataset(name)  # root from BGRL_WERANK_DATA
    assert data.name == name
    assert data.x.shape == (nodes, feats) and data.x.dtype == torch.float32 and data.x.layout == torch.strided
    assert data.edge_index.shape == (2, edges) and data.edge_index.dtype == torch.long
    assert data.y.shape == (nodes,) and data.y.dtype == torch.long
    assert isinstance(data.num_classes, int) and data.num_classes == classes
    assert int(data.y[data.labelled].max()) + 1 == classes
    assert int((~data.labelled).sum()) == unlabelled
    ei = data.edge_index
    assert is_undirected(ei, num_nodes=nodes)
    assert not bool((ei[0] == ei[1]).any())
    key = ei[0] * nodes + ei[1]
    assert bool((key[1:] > key[:-1]).all())  # coalesced: sorted, no duplicates
    if nnz is not None:  # PyG binarises the npz features (Coauthor's are counts in the file)
        low, high = torch.aminmax(data.x)
        assert int(torch.count_nonzero(data.x)) == nnz
        assert (float(low), float(high)) == (0.0, 1.0) and float(data.x.sum()) == nnz  # binary (exact: integer sums < 2**24)
    if name in PUBLIC_SPLIT_SIZES:
        (split,) = get_splits(data, "public")
        assert (split.train.numel(), split.val.numel(), split.test.numel()) == PUBLIC_SPLIT_SIZES[name]
        assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == PUBLIC_SPLIT_SIZES[name]
    else:
        assert "train_mask" not in data
        with pytest.raises(DatasetError, match="protocols that apply: random"):
            get_splits(data, "public")


@pytest.mark.realdata
def test_real_citeseer_unlabelled_nodes() -> None:
    _real_raw_dir("citeseer")
    data = load_dataset("citeseer")
    unlabelled = (~data.labelled).nonzero().view(-1)
    # PyG fills the 15 missing test ids with zero feature rows. Contrary to SOURCES.md (and PyG's
    # comment) they are not isolated: the graph file gives each of them 1 or 2 neighbours.
    assert bool((data.x[unlabelled].sum(dim=1) == 0).all())
    degree = torch.bincount(data.edge_index[0], minlength=data.num_nodes)
    assert degree[unlabelled].tolist() == [1] * 8 + [2] + [1] * 6
    assert bool((unlabelled >= 2312).all())
    assert not bool(data.test_mask[unlabelled].any())
    for split in get_splits(data, "random", num_splits=3):
        used = torch.cat([split.train, split.val, split.test])
        assert used.numel() == 3327 - 15 and not bool(torch.isin(used, unlabelled).any())


@pytest.mark.realdata
def test_real_feature_flags_cora() -> None:
    _real_raw_dir("cora")
    raw = load_dataset("cora")
    assert bool(((raw.x == 0) | (raw.x == 1)).all())  # binary bag-of-words, untouched
    normed = load_dataset("cora", row_normalize=True)
    reference = T.NormalizeFeatures()(Data(x=raw.x.clone())).x
    torch.testing.assert_close(normed.x, reference)
    torch.testing.assert_close(normed.x.sum(dim=1), torch.ones(raw.num_nodes))
    std = load_dataset("cora", standardize=True).x
    torch.testing.assert_close(std.mean(dim=0), torch.zeros(raw.x.shape[1]), atol=1e-5, rtol=0)
    spread = raw.x.std(dim=0) > 0
    torch.testing.assert_close(std.std(dim=0, unbiased=False)[spread], torch.ones(int(spread.sum())))


@pytest.mark.realdata
def test_real_amazon_photo_directed() -> None:
    _real_raw_dir("amazon-photo")
    data = load_dataset("amazon-photo", undirected=False)
    # SOURCES.md: 143663 stored entries, one of them a self-loop.
    assert data.edge_index.shape == (2, 143662)
    assert not is_undirected(data.edge_index, num_nodes=data.num_nodes)


@pytest.mark.realdata
def test_real_truncated_cora_file(tmp_path: Path) -> None:
    src = _real_raw_dir("cora")
    folder = tmp_path / "planetoid" / "cora"
    shutil.copytree(src, folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    victim = folder / "ind.cora.tx"
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=r"ind\.cora\.tx.*corrupted or truncated"):
        load_dataset("cora", root=tmp_path)


# --------------------------------------------------------------------------------------------
# Feature flags on synthetic data


def test_row_normalize_matches_pyg_including_small_rows() -> None:
    data = load_dataset("csbm", csbm=dict(num_nodes=60, num_features=8, seed=1))  # Gaussian: negatives
    raw = make_csbm(num_nodes=60, num_features=8, seed=1).x
    reference = T.NormalizeFeatures()(Data(x=raw.clone())).x
    normed = load_dataset("csbm", csbm=dict(num_nodes=60, num_features=8, seed=1), row_normalize=True).x
    torch.testing.assert_close(normed, reference)
    assert not torch.equal(normed, data.x)
    small = torch.tensor([[0.1, 0.2], [0.0, 0.0], [2.0, 2.0]])
    # PyG divides by max(row sum, 1): a row summing to 0.3 is left as it is.
    expected = torch.tensor([[0.1, 0.2], [0.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(ds._row_normalize(small), expected)
    torch.testing.assert_close(T.NormalizeFeatures()(Data(x=small.clone())).x, expected)


def test_flags_on_sparse_csbm() -> None:
    args = dict(num_nodes=300, num_features=40, feature_density=0.25, seed=2)
    sparse = load_dataset("csbm", csbm=args)
    assert sparse.x.layout == torch.sparse_csr
    normed = load_dataset("csbm", csbm=args, row_normalize=True).x
    assert normed.layout == torch.sparse_csr
    torch.testing.assert_close(normed.to_dense(), T.NormalizeFeatures()(Data(x=sparse.x.to_dense())).x)
    std = load_dataset("csbm", csbm=args, standardize=True).x
    assert std.layout == torch.strided
    torch.testing.assert_close(std.mean(dim=0), torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(std.std(dim=0, unbiased=False), torch.ones(40))


def test_csbm_arguments_only_for_csbm() -> None:
    with pytest.raises(DatasetError, match="only apply to name='csbm'"):
        load_dataset("cora", csbm=dict(num_nodes=10))
    with pytest.raises(DatasetError, match="unknown argument.*nodes.*accepted: num_nodes"):
        load_dataset("csbm", csbm=dict(nodes=10))


# --------------------------------------------------------------------------------------------
# CSBM


def _edge_homophily(data: Data) -> float:
    return float((data.y[data.edge_index[0]] == data.y[data.edge_index[1]]).float().mean())


def _nearest_mean_accuracy(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Class means from the even nodes, nearest-mean prediction on the odd ones."""
    x = x.to_dense() if x.layout != torch.strided else x
    fit, held = torch.arange(0, len(y), 2), torch.arange(1, len(y), 2)
    means = torch.stack([x[fit][y[fit] == c].mean(dim=0) for c in range(num_classes)])
    pred = torch.cdist(x[held], means).argmin(dim=1)
    return float((pred == y[held]).float().mean())


def test_csbm_shapes_and_attributes() -> None:
    data = make_csbm(num_nodes=1001, num_classes=4, num_features=32, seed=0)
    assert data.x.shape == (1001, 32) and data.x.dtype == torch.float32 and data.x.layout == torch.strided
    assert data.y.shape == (1001,) and data.y.dtype == torch.long and data.num_nodes == 1001
    assert torch.bincount(data.y).tolist() == [251, 250, 250, 250]  # balanced
    assert data.num_classes == 4 and isinstance(data.num_classes, int)
    assert data.labelled.dtype == torch.bool and bool(data.labelled.all())
    assert data.name == "csbm" and "train_mask" not in data
    ei = data.edge_index
    assert ei.dtype == torch.long and is_undirected(ei, num_nodes=1001)
    assert not bool((ei[0] == ei[1]).any())
    key = ei[0] * 1001 + ei[1]
    assert bool((key[1:] > key[:-1]).all())


@pytest.mark.parametrize(
    "num_nodes,num_classes,avg_degree,homophily",
    [(2000, 4, 10.0, 0.8), (2000, 4, 10.0, 0.25), (1500, 3, 20.0, 0.05), (3000, 5, 4.0, 1.0)],
)
def test_csbm_degree_and_homophily(num_nodes: int, num_classes: int, avg_degree: float, homophily: float) -> None:
    data = make_csbm(num_nodes=num_nodes, num_classes=num_classes, avg_degree=avg_degree, homophily=homophily, seed=3)
    degree = data.edge_index.size(1) / num_nodes
    assert abs(degree - avg_degree) <= 0.15 * avg_degree
    assert abs(_edge_homophily(data) - homophily) <= 0.05


def test_csbm_deterministic_and_seed_dependent() -> None:
    for args in (dict(), dict(feature_density=0.2)):
        a, b, c = (make_csbm(num_nodes=400, seed=s, **args) for s in (7, 7, 8))
        for key in ("y", "edge_index"):
            assert torch.equal(a[key], b[key])
            assert not torch.equal(a[key], c[key])
        assert torch.equal(a.x.to_dense(), b.x.to_dense())
        assert not torch.equal(a.x.to_dense(), c.x.to_dense())


def test_csbm_sparse_features() -> None:
    data = make_csbm(num_nodes=500, num_features=100, feature_density=0.1, seed=4)
    x = data.x
    assert x.layout == torch.sparse_csr and x.dtype == torch.float32 and x.shape == (500, 100)
    dense = x.to_dense()
    assert bool(((dense == 0) | (dense == 1)).all())  # binary, no repeated column within a row
    assert abs(int(dense.sum()) / (500 * 100) - 0.1) < 0.01
    assert (dense.sum(dim=1) == 10).all()
    coarse = make_csbm(num_nodes=300, num_features=64, feature_density=0.3, seed=4).x
    assert abs(coarse.values().numel() / (300 * 64) - 0.3) < 1 / 64


@pytest.mark.parametrize("density", [1.0, 0.1])
def test_csbm_features_carry_the_class(density: float) -> None:
    strong = make_csbm(num_nodes=2000, num_features=64, signal=3.0, feature_density=density, seed=5)
    none = make_csbm(num_nodes=2000, num_features=64, signal=0.0, feature_density=density, seed=5)
    assert _nearest_mean_accuracy(strong.x, strong.y, 4) > 0.7  # chance is 0.25
    assert _nearest_mean_accuracy(none.x, none.y, 4) < 0.35


def test_csbm_dense_mean_distance() -> None:
    data = make_csbm(num_nodes=20000, num_classes=3, num_features=16, signal=2.0, seed=6)
    means = torch.stack([data.x[data.y == c].mean(dim=0) for c in range(3)])
    dist = torch.cdist(means, means)[torch.triu_indices(3, 3, 1).unbind()]
    assert bool(((dist - 2.0).abs() < 0.15).all())


def test_distinct_subsets_are_uniform() -> None:
    gen = torch.Generator().manual_seed(0)
    for n, m in ((10, 3), (10, 8), (7, 7)):
        s = _distinct(20000, n, m, gen)
        assert s.shape == (20000, m)
        assert bool((s[:, 1:] > s[:, :-1]).all())  # sorted and distinct
        freq = torch.bincount(s.view(-1), minlength=n).float() / 20000
        torch.testing.assert_close(freq, torch.full((n,), m / n), atol=0.02, rtol=0)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(num_nodes=3, num_classes=4), "num_nodes"),
        (dict(num_nodes=10.5), "num_nodes"),
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=True), "num_classes"),
        (dict(avg_degree=-1.0), "avg_degree"),
        (dict(num_nodes=10, avg_degree=10.0), "avg_degree"),
        (dict(avg_degree=float("nan")), "avg_degree"),
        (dict(num_features=0), "num_features"),
        (dict(homophily=1.2), "homophily"),
        (dict(homophily=-0.1), "homophily"),
        (dict(signal=-1.0), "signal"),
        (dict(signal=float("inf")), "signal"),
        (dict(feature_density=0.0), "feature_density"),
        (dict(feature_density=1.5), "feature_density"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_csbm_rejects_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be .*got"):
        make_csbm(**kwargs)


def test_csbm_large_runs() -> None:
    data = make_csbm(num_nodes=100_000, avg_degree=10.0, num_features=16, seed=0)
    assert data.num_nodes == 100_000
    assert abs(data.edge_index.size(1) / 100_000 - 10.0) < 0.5


def _csbm_digest(data: Data) -> str:
    import hashlib

    x = data.x
    parts = [data.edge_index, data.y]
    parts += [x.crow_indices(), x.col_indices(), x.values()] if x.layout == torch.sparse_csr else [x]
    h = hashlib.sha256()
    for t in parts:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# The generator's output before it drew its edges in chunks (commit 18c9a51, make_csbm and
# load_dataset alike): edges, labels and features, byte for byte.
_CSBM_BEFORE_CHUNKS = [
    (dict(num_nodes=240, num_features=24, num_classes=3, avg_degree=6, signal=1.5, seed=0), "8f9916e7a3209e97"),
    (dict(num_nodes=1001, num_classes=4, num_features=32, seed=0), "ef0256054ad7a05e"),
    (dict(num_nodes=1500, num_classes=3, avg_degree=20.0, homophily=0.05, seed=3), "1300b1ac875ee808"),
    (dict(num_nodes=400, feature_density=0.2, seed=7), "21af1a13ef181b4f"),
    (dict(num_nodes=150, num_classes=3, num_features=60, feature_density=0.05, avg_degree=5, seed=2), "c05c457b1d37e22e"),
    (dict(num_nodes=50_000, avg_degree=10.0, num_features=8, seed=1), "f7d2dd5a74628841"),
]


@pytest.mark.parametrize("args,digest", _CSBM_BEFORE_CHUNKS)
def test_csbm_output_is_the_one_before_chunking(args: dict, digest: str) -> None:
    assert _csbm_digest(make_csbm(**args)) == digest
    assert _csbm_digest(load_dataset("csbm", csbm=args)) == digest


@pytest.mark.parametrize("chunk", [1, 7, 256])
@pytest.mark.parametrize("args", [dict(num_nodes=60, num_classes=3, avg_degree=8.0, num_features=5, seed=4),
                                  dict(num_nodes=90, num_classes=2, avg_degree=30.0, feature_density=0.3, seed=5),
                                  dict(num_nodes=500, num_classes=5, avg_degree=3.0, homophily=0.1, seed=6)])
def test_csbm_drawn_in_small_chunks_equals_one_chunk(monkeypatch, args: dict, chunk: int) -> None:
    """The chunk size never changes the graph: the random stream is consumed in the same order, and
    everything drawn after the edges (the features) is the same too."""
    monkeypatch.setattr(csbm_module, "EDGE_CHUNK", 1 << 40)
    whole = make_csbm(**args)
    assert whole.edge_index.size(1) > 0
    monkeypatch.setattr(csbm_module, "EDGE_CHUNK", chunk)
    chunked = make_csbm(**args)
    assert _csbm_digest(chunked) == _csbm_digest(whole)


@pytest.mark.parametrize("undirected", [True, False])
def test_csbm_edges_need_no_cleaning(undirected: bool) -> None:
    """load_dataset keeps the generator's edges as they are (no copies of a 10⁸-edge list): self-loop
    removal, symmetrisation and coalescing give the same edges (the pipeline every other dataset takes)."""
    from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

    args = dict(num_nodes=700, num_classes=3, avg_degree=12.0, homophily=0.6, seed=8)
    data = load_dataset("csbm", csbm=args, undirected=undirected)
    ei, _ = remove_self_loops(make_csbm(**args).edge_index)
    cleaned = to_undirected(ei, num_nodes=700) if undirected else coalesce(ei, num_nodes=700)
    assert torch.equal(data.edge_index, cleaned)
    assert torch.equal(data.edge_index, make_csbm(**args).edge_index)


def test_csbm_peak_memory_is_a_small_multiple_of_the_edge_list(monkeypatch) -> None:
    """Generating + loading 3·10⁵ nodes (degree 10, one feature) with small chunks holds at most
    ~2x the final edge_index on top of what it returns (the pre-chunking code: ~5x to generate,
    then ~10x more in load_dataset's cleaning)."""
    clear = Path("/proc/self/clear_refs")
    if not clear.exists() or not os.access(clear, os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        pytest.skip(f"no {key} in /proc/self/status")

    monkeypatch.setattr(csbm_module, "EDGE_CHUNK", 1 << 16)
    clear.write_text("5")  # the peak RSS becomes the current RSS
    before = status("VmRSS:")
    data = load_dataset("csbm", csbm=dict(num_nodes=300_000, avg_degree=10.0, num_features=1, seed=0))
    peak = status("VmHWM:") - before
    edge_bytes = data.edge_index.numel() * 8
    assert data.edge_index.size(1) > 2_900_000
    assert peak <= 3 * edge_bytes + (16 << 20), (peak / 2**20, edge_bytes / 2**20)


# --------------------------------------------------------------------------------------------
# Splits


def _toy_graph(n: int = 200) -> Data:
    data = make_csbm(num_nodes=n, num_features=4, seed=9)
    data.labelled[::10] = False
    return data


def test_random_splits_fractions_disjoint_labelled_only() -> None:
    data = _toy_graph()
    labelled = data.labelled.nonzero().view(-1)
    splits = get_splits(data, "random", num_splits=5, split_seed=1)
    assert len(splits) == 5 and all(isinstance(s, Split) for s in splits)
    for s in splits:
        assert (s.train.numel(), s.val.numel(), s.test.numel()) == (18, 18, 144)
        used = torch.cat([s.train, s.val, s.test])
        assert used.unique().numel() == used.numel() == labelled.numel()  # disjoint, covering
        assert bool(torch.isin(used, labelled).all())
    again = get_splits(data, "random", num_splits=5, split_seed=1)
    assert all(torch.equal(a.train, b.train) and torch.equal(a.test, b.test) for a, b in zip(splits, again))
    other = get_splits(data, "random", num_splits=5, split_seed=2)
    assert not torch.equal(splits[0].train, other[0].train)
    assert not torch.equal(splits[0].train, splits[1].train)


def test_public_and_preset_protocols() -> None:
    data = _toy_graph()
    with pytest.raises(DatasetError, match="csbm has no public split; protocols that apply: random"):
        get_splits(data, "public")
    with pytest.raises(DatasetError, match="no preset split masks; protocols that apply: random"):
        get_splits(data, "preset")
    with pytest.raises(DatasetError, match="unknown split protocol 'geom-gcn'; valid: public, random, preset"):
        get_splits(data, "geom-gcn")

    n = data.num_nodes
    public = data.clone()
    public.train_mask = torch.zeros(n, dtype=torch.bool)
    public.train_mask[:20] = True  # nodes 0 and 10 are unlabelled: dropped from the split
    public.val_mask = torch.zeros(n, dtype=torch.bool)
    public.val_mask[20:50] = True
    public.test_mask = torch.zeros(n, dtype=torch.bool)
    public.test_mask[50:] = True
    (split,) = get_splits(public, "public", num_splits=20)
    assert split.train.numel() == 18 and split.val.numel() == 27 and split.test.numel() == 135
    with pytest.raises(DatasetError, match="protocols that apply: public, random"):
        get_splits(public, "preset")

    preset = data.clone()
    gen = torch.Generator().manual_seed(0)
    preset.train_mask = torch.rand(n, 5, generator=gen) < 0.1
    preset.val_mask = (torch.rand(n, 5, generator=gen) < 0.1) & ~preset.train_mask
    preset.test_mask = torch.zeros(n, dtype=torch.bool)
    preset.test_mask[100:] = True
    splits = get_splits(preset, "preset")
    assert len(splits) == 5
    for s, col in zip(splits, range(5)):
        expected = (preset.train_mask[:, col] & preset.labelled).nonzero().view(-1)
        assert torch.equal(s.train, expected)
        assert torch.equal(s.test, (preset.test_mask & preset.labelled).nonzero().view(-1))
    assert len(get_splits(preset, "preset", num_splits=3)) == 3
    with pytest.raises(DatasetError, match="protocols that apply: preset, random"):
        get_splits(preset, "public")
