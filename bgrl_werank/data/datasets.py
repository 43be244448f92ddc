"""Dataset registry: where raw files live, where processed caches go, and how a graph is loaded.

Datasets are PyTorch Geometric's own dataset classes (``Planetoid``, ``Amazon``, ``Coauthor``,
``WikiCS``), in thin subclasses that move the folders:

* ``raw_dir`` is a folder of the data root in the team's layout, e.g. ``<root>/planetoid/cora``;
* ``processed_dir`` is under the cache root (:func:`cache_root`), in a folder whose name hashes the
  resolved raw folder, the raw files' sizes and modification times, and the PyG version, so two data
  roots (or a changed raw file) never share a cache. Nothing is ever written into the data root,
  except raw files that PyG downloads there when a user is online.

No file can run code while it is read (a data root or a cache folder may hold files from anywhere):
the Planetoid pickles and the Amazon/Coauthor archives are parsed by :mod:`.readers` instead of PyG's
``pickle.load`` and ``np.load`` (same result; an unsafe file is refused and named), and processed
caches are only ever read with ``torch.load(weights_only=True)`` (a refused cache is rebuilt from
the raw files). WikiCS's ``data.json`` is parsed by PyG (JSON cannot run code). Features with NaN or
infinite values stop :func:`load_dataset` with a one-line :class:`DatasetError` naming the file and
the count.

Features as PyG produces them (``row_normalize=False, standardize=False``):

* Cora, CiteSeer: binary bag-of-words (CiteSeer's 15 isolated test ids get zero rows);
* PubMed: TF-IDF values;
* Amazon Computers/Photo: binary bag-of-words (PyG's ``read_npz`` also sets ``x[x > 0] = 1``);
* Coauthor CS/Physics: keyword *counts* in the files, binarised by ``read_npz`` (``x[x > 0] = 1``);
* WikiCS: 300-d averaged GloVe vectors (real-valued).

PyG applies no normalisation unless a ``transform`` is passed. The BGRL reference
(nerdslab/bgrl, ``bgrl/data.py``) passes ``NormalizeFeatures`` for Amazon and Coauthor (our
``row_normalize=True``) and, for WikiCS, ``NormalizeFeatures`` followed by per-feature
standardisation (our ``row_normalize=True, standardize=True``, applied in that order); GCN-style
Planetoid baselines also use ``NormalizeFeatures``.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_geometric
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.datasets import Amazon, Coauthor, Planetoid, WikiCS
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from . import readers
from .csbm import make_csbm
from .errors import DatasetError
from .splits import Split, random_splits, splits_from_masks

__all__ = [
    "DATASET_NAMES",
    "DatasetError",
    "cache_root",
    "get_splits",
    "load_dataset",
    "resolve_data_root",
]

ENV_DATA = "BGRL_WERANK_DATA"
ENV_CACHE = "BGRL_WERANK_CACHE"
ENV_OFFLINE = "BGRL_WERANK_OFFLINE"

# Bump when what we store in a processed file changes (e.g. a new attribute), to orphan old caches.
# 2: raw files are checked while processing (safe unpickling, finite features): a cache that an
# older version built from a bad file (e.g. an Amazon file whose +inf PyG binarised to 1) is rebuilt.
_CACHE_FORMAT = 2
# Seconds allowed for the "are we online?" probe before a download is attempted.
_PROBE_TIMEOUT_S = 3.0
# Socket timeout while PyG downloads (urllib has none by default and could hang forever).
_DOWNLOAD_TIMEOUT_S = 60.0

DATASET_NAMES: tuple[str, ...] = (
    "cora",
    "citeseer",
    "pubmed",
    "amazon-computers",
    "amazon-photo",
    "coauthor-cs",
    "coauthor-physics",
    "wikics",
    "csbm",
)

PROTOCOLS: tuple[str, ...] = ("public", "random", "preset")


# --------------------------------------------------------------------------------------------
# Roots


def _data_root_and_source(explicit: str | os.PathLike[str] | None) -> tuple[Path, str]:
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser().resolve(), "from data.root"
    env = os.environ.get(ENV_DATA, "")
    if env:
        return Path(env).expanduser().resolve(), f"from {ENV_DATA}"
    return (Path(__file__).resolve().parents[2] / "datasets").resolve(), "the repository default"


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds the raw dataset files.

    Order: ``explicit`` (config ``data.root`` / ``--set data.root=PATH``), else the environment
    variable ``BGRL_WERANK_DATA``, else ``datasets/`` at the repository root. Empty strings count as
    unset. The folder need not exist.

    Args:
        explicit: a path that overrides everything else (default None).

    Returns:
        The absolute, user-expanded data root.
    """
    return _data_root_and_source(explicit)[0]


def cache_root() -> Path:
    """The folder for processed caches: ``$BGRL_WERANK_CACHE``, else ``~/.cache/bgrl_werank``.

    Returns:
        The absolute, user-expanded cache root (created on first write, not here).
    """
    env = os.environ.get(ENV_CACHE, "")
    return (Path(env) if env else Path.home() / ".cache" / "bgrl_werank").expanduser().resolve()


def _cache_dir(name: str, raw_dir: Path, raw_files: tuple[str, ...], variant: str) -> Path:
    parts = [str(raw_dir.resolve()), torch_geometric.__version__, str(_CACHE_FORMAT), variant]
    for f in raw_files:
        p = raw_dir / f
        st = p.stat() if p.is_file() else None
        parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}" if st else f"{f}:missing")
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return cache_root() / "processed" / f"{name}-{digest}"


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# PyG subclasses: our folders, PyG's parsing


def _pyg_root() -> str:
    # PyG's ``root``; unused since raw_dir and processed_dir are overridden, but pointed at the
    # cache so that nothing PyG might write there lands in the (read-only) data root.
    return str(cache_root() / "pyg")


def _is_one_graph(stored: dict) -> bool:
    """Whether a cache's stored dict is one graph as :meth:`_Layout.save` writes it (cheap checks)."""
    x, edge_index, y = (stored.get(k) for k in ("x", "edge_index", "y"))
    if not all(isinstance(t, Tensor) for t in (x, edge_index, y)):
        return False
    if x.dim() != 2 or y.dim() != 1 or y.shape[0] != x.shape[0]:
        return False
    if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.dtype != torch.long:
        return False
    return edge_index.numel() == 0 or (int(edge_index.min()) >= 0 and int(edge_index.max()) < x.shape[0])


class _Layout:
    """Mixin for PyG ``InMemoryDataset`` classes: raw files in the data root, processed files in
    the cache, downloads that leave no partial files behind, atomic cache writes.

    Subclasses set ``self._bg_name``, ``self._bg_raw_dir``, ``self._bg_raw_files`` and
    ``self._bg_variant`` before calling the PyG constructor.
    """

    _bg_name: str
    _bg_raw_dir: Path
    _bg_raw_files: tuple[str, ...]
    _bg_variant: str

    @property
    def raw_dir(self) -> str:
        return str(self._bg_raw_dir)

    @property
    def processed_dir(self) -> str:
        # Evaluated lazily: PyG downloads before it processes, so after a download the cache key
        # already reflects the downloaded files.
        return str(_cache_dir(self._bg_name, self._bg_raw_dir, self._bg_raw_files, self._bg_variant))

    def download(self) -> None:
        before = {f for f in self._bg_raw_files if (self._bg_raw_dir / f).exists()}
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
        try:
            super().download()  # type: ignore[misc]
        except BaseException:
            for f in self._bg_raw_files:  # remove partial downloads so the next run starts clean
                if f not in before and (self._bg_raw_dir / f).exists():
                    (self._bg_raw_dir / f).unlink()
            raise
        finally:
            socket.setdefaulttimeout(old_timeout)

    @classmethod
    def save(cls, data_list: Any, path: str) -> None:
        # Bag-of-words features are mostly zeros: cache them as CSR (Coauthor Physics: 1.1 GB dense,
        # ~10 MB sparse; loading drops from ~5 s to ~1 s). load_dataset makes x dense again.
        for data in data_list:
            x = getattr(data, "x", None)
            if isinstance(x, Tensor) and x.layout == torch.strided and x.dim() == 2:
                if 3 * int(torch.count_nonzero(x)) < x.numel():
                    data.x = x.to_sparse_csr()
        # Write then rename, so an interrupted run never leaves a truncated cache file.
        # Whatever stops the write (an error, Ctrl-C, a full disk) removes the temporary.
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            super().save(data_list, tmp)  # type: ignore[misc]
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _process(self) -> None:
        """PyG's ``Dataset._process`` without its checks of ``pre_transform.pt`` / ``pre_filter.pt``.

        PyG reads those two files of the processed folder with ``torch.load(weights_only=False)``
        on every construction, so a planted one would run code; we never pass a ``pre_transform`` or
        a ``pre_filter``, so they are neither read nor written here. Nor is "Processing..." printed:
        an error while processing must be the only line on stderr.
        """
        if not self.force_reload and all(os.path.exists(p) for p in self.processed_paths):  # type: ignore[attr-defined]
            return
        os.makedirs(self.processed_dir, exist_ok=True)
        self.process()  # type: ignore[attr-defined]

    def load(self, path: str, data_cls: type = Data) -> None:
        """Read a processed cache with ``torch.load(weights_only=True)`` only.

        PyG's ``InMemoryDataset.load`` retries a failed safe load with ``weights_only=False``, which
        runs whatever code a planted cache file holds. Here a file the safe load refuses, or one that
        is not the ``(dict, None, Data)`` triple that :meth:`save` writes for one graph (an ``x``
        with one row per label of ``y``, an ``edge_index`` of node ids), raises, and :func:`_load_raw`
        treats the cache as damaged and rebuilds it from the raw files.
        """
        with open(path, "rb") as fh:
            out = torch.load(fh, map_location="cpu", weights_only=True)
        if not (isinstance(out, tuple) and len(out) == 3 and isinstance(out[0], dict) and out[1] is None
                and out[2] is Data and _is_one_graph(out[0])):
            raise ValueError(f"{path} is not a processed cache written by this version")
        self.data, self.slices = Data.from_dict(out[0]), None  # type: ignore[attr-defined]

    def _file_error(self, fname: str, exc: BaseException) -> DatasetError:
        """The one-line error for a raw file that a reader in :mod:`.readers` refused."""
        path = self._bg_raw_dir / fname
        if isinstance(exc, readers.UnsafeContentError):
            return DatasetError(
                f"{self._bg_name}: refused to read raw file {path}: it {exc}; it was not loaded because "
                f"unpickling it could run code: replace it with a good copy (check it against SHA256SUMS "
                f"if you have one)"
            )
        if isinstance(exc, readers.NonFiniteError):
            return DatasetError(
                f"{self._bg_name}: raw file {path} holds {exc.count} NaN or infinite value(s); training on "
                f"them ends in NaN losses: replace it with a good copy (check it against SHA256SUMS if you "
                f"have one)"
            )
        if isinstance(exc, readers.RawFileError):
            return DatasetError(
                f"{self._bg_name}: raw file {path} is not a {self._bg_name} file: it {exc}; replace it with "
                f"a good copy (check it against SHA256SUMS if you have one)"
            )
        return self._corrupt(exc, (fname,))

    def _corrupt(self, exc: BaseException, files: tuple[str, ...] | None = None) -> DatasetError:
        files = files or self._bg_raw_files
        where = ", ".join(str(self._bg_raw_dir / f) for f in files)
        return DatasetError(
            f"{self._bg_name}: cannot parse raw file {where} ({_one_line(exc)}); the file is corrupted "
            f"or truncated: replace it with a good copy (check it against SHA256SUMS if you have one)"
        )


class _Planetoid(_Layout, Planetoid):
    _ITEMS = readers.PLANETOID_ITEMS

    def __init__(self, name: str, pyg_name: str, raw_dir: Path, force_reload: bool = False) -> None:
        self._bg_name, self._bg_raw_dir, self._bg_variant = name, raw_dir, "public"
        self._bg_raw_files = tuple(f"ind.{pyg_name.lower()}.{item}" for item in self._ITEMS)
        super().__init__(_pyg_root(), pyg_name, split="public", force_reload=force_reload)

    def process(self) -> None:
        # Read every file once on its own (safely: see readers.py) so a broken one is named, and
        # check they fit together (a truncated text file such as test.index would otherwise load
        # "successfully"); then assemble the graph as PyG's read_planetoid_data does.
        items: dict[str, Any] = {}
        for item, fname in zip(self._ITEMS, self._bg_raw_files):
            try:
                items[item] = readers.read_planetoid_item(self._bg_raw_dir / fname, item)
            except Exception as exc:
                raise self._file_error(fname, exc) from exc
        try:
            readers.check_planetoid(items, self.name)
        except readers.InconsistentFilesError as exc:
            raise DatasetError(f"{self._bg_name}: raw files in {self.raw_dir} are inconsistent ({exc}); "
                               f"a file is truncated or from another dataset: replace it with a good copy") from exc
        try:
            data = readers.assemble_planetoid(items)
        except Exception as exc:
            raise self._corrupt(exc) from exc
        # Nodes without a label row (CiteSeer's isolated test ids, which get zero rows and label 0)
        # are unlabelled.
        ally, ty, test_index = items["ally"], items["ty"], items["test.index"]
        labelled = torch.zeros(data.num_nodes, dtype=torch.bool)
        labelled[: ally.shape[0]] = ally.sum(dim=1) > 0
        labelled[test_index] = ty.sum(dim=1) > 0
        data.labelled = labelled
        self.save([data], self.processed_paths[0])


class _Npz(_Layout):
    """Amazon / Coauthor: PyG's ``read_npz`` (read safely, see readers.py), with the symmetrisation
    made switchable."""

    _bg_undirected: bool

    @property
    def processed_file_names(self) -> str:
        return "data.pt" if self._bg_undirected else "data_directed.pt"

    def process(self) -> None:
        try:
            data = readers.read_npz(self.raw_paths[0], to_undirected=self._bg_undirected)  # type: ignore[attr-defined]
        except Exception as exc:
            raise self._file_error(self._bg_raw_files[0], exc) from exc
        self.save([data], self.processed_paths[0])  # type: ignore[attr-defined]


class _Amazon(_Npz, Amazon):
    def __init__(self, name: str, pyg_name: str, raw_dir: Path, undirected: bool, force_reload: bool = False) -> None:
        self._bg_name, self._bg_raw_dir, self._bg_undirected = name, raw_dir, undirected
        self._bg_raw_files, self._bg_variant = (f"amazon_electronics_{pyg_name}.npz",), "npz"
        super().__init__(_pyg_root(), pyg_name, force_reload=force_reload)


class _Coauthor(_Npz, Coauthor):
    def __init__(self, name: str, pyg_name: str, raw_dir: Path, undirected: bool, force_reload: bool = False) -> None:
        self._bg_name, self._bg_raw_dir, self._bg_undirected = name, raw_dir, undirected
        self._bg_raw_files, self._bg_variant = (f"ms_academic_{pyg_name[:3].lower()}.npz",), "npz"
        super().__init__(_pyg_root(), pyg_name, force_reload=force_reload)


class _WikiCS(_Layout, WikiCS):
    def __init__(self, name: str, raw_dir: Path, undirected: bool, force_reload: bool = False) -> None:
        self._bg_name, self._bg_raw_dir = name, raw_dir
        self._bg_raw_files, self._bg_variant = ("data.json",), "json"
        super().__init__(_pyg_root(), is_undirected=undirected, force_reload=force_reload)

    def process(self) -> None:
        try:
            super().process()
        except DatasetError:
            raise
        except Exception as exc:
            raise self._corrupt(exc) from exc


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class _Spec:
    subdir: str  # folder inside the data root
    raw_files: tuple[str, ...]  # what PyG's raw_file_names gives for this dataset
    build: Callable[[Path, bool, bool], InMemoryDataset]  # (raw_dir, undirected, force_reload)
    url: str  # where PyG downloads from (probed before a download)
    note: str = ""


def _planetoid_files(prefix: str) -> tuple[str, ...]:
    return tuple(f"ind.{prefix}.{item}" for item in _Planetoid._ITEMS)


_NOT_SHARED = "the team's shared copy lacks this dataset (see shared/datasets/SOURCES.md); it downloads on first use when online"

_SPECS: dict[str, _Spec] = {
    "cora": _Spec("planetoid/cora", _planetoid_files("cora"),
                  lambda d, u, f: _Planetoid("cora", "Cora", d, f), Planetoid.url),
    "citeseer": _Spec("planetoid/citeseer", _planetoid_files("citeseer"),
                      lambda d, u, f: _Planetoid("citeseer", "CiteSeer", d, f), Planetoid.url),
    "pubmed": _Spec("planetoid/pubmed", _planetoid_files("pubmed"),
                    lambda d, u, f: _Planetoid("pubmed", "PubMed", d, f), Planetoid.url, _NOT_SHARED),
    "amazon-computers": _Spec("amazon/computers", ("amazon_electronics_computers.npz",),
                              lambda d, u, f: _Amazon("amazon-computers", "computers", d, u, f), Amazon.url),
    "amazon-photo": _Spec("amazon/photo", ("amazon_electronics_photo.npz",),
                          lambda d, u, f: _Amazon("amazon-photo", "photo", d, u, f), Amazon.url),
    "coauthor-cs": _Spec("coauthor/cs", ("ms_academic_cs.npz",),
                         lambda d, u, f: _Coauthor("coauthor-cs", "CS", d, u, f), Coauthor.url),
    "coauthor-physics": _Spec("coauthor/physics", ("ms_academic_phy.npz",),
                              lambda d, u, f: _Coauthor("coauthor-physics", "Physics", d, u, f), Coauthor.url),
    "wikics": _Spec("wikics", ("data.json",), lambda d, u, f: _WikiCS("wikics", d, u, f), WikiCS.url, _NOT_SHARED),
}


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key in DATASET_NAMES:
        return key
    close = difflib.get_close_matches(key, DATASET_NAMES, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise DatasetError(f"unknown dataset '{name}'; {hint}valid names: {', '.join(DATASET_NAMES)}")


def _offline_reason(url: str) -> str | None:
    """None when ``url``'s server answers within a few seconds, else why we think we're offline."""
    if os.environ.get(ENV_OFFLINE, "") not in ("", "0"):
        return f"{ENV_OFFLINE}={os.environ[ENV_OFFLINE]} is set"
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered (e.g. 404 or 405 for HEAD): we are online
        except Exception as exc:
            outcome.append(_one_line(exc, 120))

    # A thread bounds the probe even when name resolution ignores the socket timeout.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S + 1.0)
    if not outcome:
        return f"no answer from {url} within {_PROBE_TIMEOUT_S:.0f} s"
    return None if outcome[0] is None else f"cannot reach {url} ({outcome[0]})"


def _missing_error(name: str, spec: _Spec, root: Path, source: str, missing: list[str], why: str) -> DatasetError:
    note = f"; {spec.note}" if spec.note else ""
    return DatasetError(
        f"{name}: missing raw file(s) {', '.join(missing)} in {root / spec.subdir} "
        f"(data root {root}, {source}); {why}{note}. Fix: put the files in {spec.subdir}/ under the data root, "
        f"or point the data root at a folder that has them: set {ENV_DATA}=/path/to/datasets "
        f"or pass --set data.root=/path/to/datasets (layout: datasets/README.md)"
    )


def _load_raw(name: str, root: Path, source: str, undirected: bool, download: bool) -> Data:
    spec = _SPECS[name]
    raw_dir = root / spec.subdir
    missing = [f for f in spec.raw_files if not (raw_dir / f).is_file()]
    if missing:
        if not download:
            raise _missing_error(name, spec, root, source, missing, "download=False")
        offline = _offline_reason(spec.url)
        if offline is not None:
            raise _missing_error(name, spec, root, source, missing, f"cannot download: {offline}")
    try:
        dataset = spec.build(raw_dir, undirected, False)
    except DatasetError:
        raise
    except Exception as exc:
        if missing:  # the download failed (partial files were removed)
            raise _missing_error(name, spec, root, source, missing, f"download failed: {_one_line(exc)}") from exc
        # Raw files are fine (parse errors are DatasetErrors), so the cache is damaged or was
        # written by an incompatible version: rebuild it once from the raw files.
        try:
            dataset = spec.build(raw_dir, undirected, True)
        except DatasetError:
            raise
        except Exception as exc2:
            raise DatasetError(f"{name}: cannot build the processed cache under {cache_root()} "
                               f"({_one_line(exc2)}); delete that folder and retry") from exc2
    return dataset[0]


# --------------------------------------------------------------------------------------------
# Post-processing


def _row_normalize(x: Tensor) -> Tensor:
    """PyG ``NormalizeFeatures``: shift by the global minimum, divide rows by max(row sum, 1)."""
    if x.layout == torch.sparse_csr:
        values = x.values()
        # The shift is a no-op only if some entry is an implicit zero and none is negative.
        if values.numel() == x.shape[0] * x.shape[1] or (values.numel() and float(values.min()) < 0):
            return _row_normalize(x.to_dense())
        crow = x.crow_indices()
        row = torch.repeat_interleave(torch.arange(x.shape[0]), crow[1:] - crow[:-1])
        sums = torch.zeros(x.shape[0], dtype=values.dtype).index_add_(0, row, values).clamp_(min=1.0)
        return torch.sparse_csr_tensor(crow, x.col_indices(), values / sums[row], size=x.shape)
    if x.numel() == 0:
        return x
    x = x - x.min()
    return x / x.sum(dim=-1, keepdim=True).clamp(min=1.0)


def _standardize(x: Tensor) -> Tensor:
    """Per-feature zero mean, unit (population) variance over all nodes; constant features -> 0."""
    if x.layout != torch.strided:
        x = x.to_dense()
    std, mean = torch.std_mean(x, dim=0, unbiased=False)
    return (x - mean) / torch.where(std > 0, std, torch.ones_like(std))


def _check_finite(x: Tensor, name: str, origin: str) -> None:
    """Stop on NaN or infinite features, before any normalisation could spread or hide them.

    The raw readers already refuse such files by name; this catches the rest (WikiCS, whose JSON
    PyG parses, or a tampered cache) in one summation over the (stored) values.
    """
    sparse = x.layout == torch.sparse_csr
    bad = readers.count_nonfinite(x.values() if sparse else x)
    if bad:
        stored = " stored" if sparse else ""
        raise DatasetError(
            f"{name}: {bad} of the features'{stored} values are NaN or infinite ({origin}); training on them "
            f"ends in NaN losses: replace the bad file with a good copy (check it against SHA256SUMS if you "
            f"have one), then delete the processed cache under {cache_root()}"
        )


def _finalize(data: Data, name: str, undirected: bool, *, dense_x: bool = True, canonical_edges: bool = False) -> Data:
    """The loaded graph in this project's form. ``canonical_edges``: ``data.edge_index`` is already
    coalesced, symmetric and without self-loops (:func:`make_csbm` guarantees it, tested), so it is
    kept as it is: self-loop removal, symmetrisation and coalescing would return the same edges,
    through copies, a doubled list and a sort: measured at N = 10⁶, degree 10, 10 s and 1.6 GB above
    the 153 MB list (about 16 GB at N = 10⁷)."""
    n = int(data.num_nodes)
    out = Data(num_nodes=n)
    x = data.x
    out.x = x.to_dense().to(torch.float32) if dense_x or x.layout == torch.strided else x
    if canonical_edges:
        out.edge_index = data.edge_index
    else:
        edge_index, _ = remove_self_loops(data.edge_index.long())
        out.edge_index = to_undirected(edge_index, num_nodes=n) if undirected else coalesce(edge_index, num_nodes=n)
    out.y = data.y.long().view(-1)
    labelled = getattr(data, "labelled", None)
    out.labelled = labelled.bool() if isinstance(labelled, Tensor) else torch.ones(n, dtype=torch.bool)
    out.num_classes = int(out.y[out.labelled].max()) + 1 if bool(out.labelled.any()) else 0
    for key in ("train_mask", "val_mask", "test_mask", "stopping_mask"):
        if key in data:
            out[key] = data[key].bool()
    out.name = name
    return out


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    row_normalize: bool = False,
    standardize: bool = False,
    undirected: bool = True,
    download: bool = True,
    csbm: Mapping[str, Any] | None = None,
    sparse_x: bool = False,
) -> Data:
    """Load one graph as a PyG :class:`~torch_geometric.data.Data`.

    Raw files are read from ``<data root>/<group>/<name>`` (see :func:`resolve_data_root`) and
    parsed as PyG's dataset classes parse them, but without unpickling anything that could run code
    (see the module docstring); the processed graph is cached under :func:`cache_root`.

    Args:
        name: one of :data:`DATASET_NAMES` (case-insensitive, ``_`` accepted for ``-``).
        root: data root; overrides ``$BGRL_WERANK_DATA`` and the repository default (default None).
        row_normalize: PyG ``NormalizeFeatures`` semantics: subtract the global minimum of ``x``,
            then divide each row by max(row sum, 1), so non-zero rows of non-negative features sum to
            1 when their sum is >= 1; zero rows stay zero (default False).
        standardize: per-feature zero mean and unit population variance over all nodes; constant
            features become 0. Applied after ``row_normalize`` when both are set. Makes a sparse
            ``x`` dense (default False).
        undirected: symmetrise the graph (default True). With False, the edges are those stored in
            the raw files (Amazon's are directed; the others are symmetric already). The csbm graph
            is always undirected.
        download: when raw files are missing, let PyG download them into the data root if the
            server answers within 3 s and ``$BGRL_WERANK_OFFLINE`` is unset (default True).
        csbm: keyword arguments for :func:`~bgrl_werank.data.make_csbm`, only for ``name="csbm"``
            (default None: its defaults).

        sparse_x: keep features that are stored sparse (the cache's CSR) sparse instead of
            densifying them; row normalisation then works on the CSR values (same values up to
            summation order). The trainer uses it: Coauthor CS's dense features are 500 MB.

    Returns:
        The graph, with ``x``, ``edge_index``, ``y``, ``labelled``, ``num_classes`` (int) and
        ``name`` (canonical); ``train_mask``/``val_mask``/``test_mask`` when the dataset ships them
        (Planetoid public split; WikiCS, also ``stopping_mask``).

    Shapes:
        - **x**: (N, F) float32, dense (a sparse CSR tensor only for csbm with
          ``feature_density < 1`` and no ``standardize``).
        - **edge_index**: (2, E) long, coalesced (sorted by row, then column), no self-loops.
        - **y**: (N,) long (unlabelled nodes hold a placeholder 0); **labelled**: (N,) bool.
        - **train_mask**, **val_mask**: (N,) bool (Planetoid) or (N, 20) bool (WikiCS);
          **test_mask**: (N,) bool.

    Raises:
        DatasetError: unknown name, missing raw files (after a failed or disabled download),
            corrupted raw files, a raw file that could run code when read (refused, never run),
            NaN or infinite features, or ``csbm`` arguments that :func:`make_csbm` does not take.
        ValueError: a csbm argument is outside its accepted range.

    Examples:
        >>> data = load_dataset("csbm", csbm=dict(num_nodes=100, seed=3), standardize=True)
        >>> data.num_classes, data.name
        (4, 'csbm')
    """
    key = _canonical_name(name)
    if csbm is not None and key != "csbm":
        raise DatasetError(f"csbm= arguments only apply to name='csbm', not '{key}'")
    if key == "csbm":
        kwargs = dict(csbm or {})
        accepted = list(inspect.signature(make_csbm).parameters)
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise DatasetError(f"csbm: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
        data = make_csbm(**kwargs)
        origin = "the generated graph"
    else:
        data_root, source = _data_root_and_source(root)
        data = _load_raw(key, data_root, source, undirected, download)
        origin = f"raw files in {data_root / _SPECS[key].subdir}"
    _check_finite(data.x, key, origin)
    data = _finalize(data, key, undirected, dense_x=key != "csbm" and not sparse_x, canonical_edges=key == "csbm")
    if row_normalize:
        data.x = _row_normalize(data.x)
    if standardize:
        data.x = _standardize(data.x)
    return data


# --------------------------------------------------------------------------------------------
# Splits


def _protocols(data: Data) -> list[str]:
    train_mask = getattr(data, "train_mask", None)
    out = ["random"]
    if isinstance(train_mask, Tensor):
        out.insert(0, "public" if train_mask.dim() == 1 else "preset")
    return out


def get_splits(
    data: Data,
    protocol: str,
    num_splits: int = 20,
    split_seed: int = 0,
    *,
    train_frac: float = 0.1,
    val_frac: float = 0.1,
) -> list[Split]:
    """Train/validation/test splits of a loaded graph for the linear probe.

    Protocols:

    * ``public``: the one split shipped with a Planetoid dataset (``num_splits`` is ignored);
    * ``random``: ``num_splits`` random ``train_frac``/``val_frac``/rest splits drawn from
      ``split_seed``, over the labelled nodes only (:func:`random_splits`);
    * ``preset``: the mask columns shipped with the dataset (WikiCS' 20), the first
      ``min(num_splits, S)`` of them.

    Unlabelled nodes are removed from shipped masks too.

    Args:
        data: a graph from :func:`load_dataset` (or any Data with ``num_nodes`` and optional
            ``labelled`` and masks).
        protocol: ``"public"``, ``"random"`` or ``"preset"``.
        num_splits: number of random splits, or maximum number of preset ones (default 20).
        split_seed: seed of the random splits, independent of the model seed (default 0).
        train_frac: training fraction for ``random`` (default 0.1).
        val_frac: validation fraction for ``random`` (default 0.1).

    Returns:
        A list of :class:`Split` (index tensors), identical for identical arguments.

    Raises:
        DatasetError: unknown protocol, or one the dataset does not support (the message lists
            those that apply); or a graph too small for the probe: a split with an empty part, or
            whose training nodes are all of one class (the message gives the sizes and what to
            change, e.g. ``data.csbm.num_nodes``).
    """
    name = getattr(data, "name", "this dataset")
    applicable = _protocols(data)
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown split protocol '{protocol}'; valid: {', '.join(PROTOCOLS)} "
                           f"({name} supports {', '.join(applicable)})")
    if protocol not in applicable:
        what = "public split" if protocol == "public" else "preset split masks"
        raise DatasetError(f"{name} has no {what}; protocols that apply: {', '.join(applicable)}")
    n = int(data.num_nodes)
    labelled = getattr(data, "labelled", None)
    labelled = labelled if isinstance(labelled, Tensor) else torch.ones(n, dtype=torch.bool)
    if protocol == "random":
        try:
            splits = random_splits(n, num_splits, train_frac, val_frac, split_seed, labelled=labelled)
        except DatasetError as exc:
            raise DatasetError(f"{name}: {exc}; {_larger_graph_hint(data)}") from None
    else:
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        masks = [data.train_mask, data.val_mask, data.test_mask]
        if protocol == "preset":  # WikiCS: (N, S) train/val masks with one (N,) test mask for all
            masks = [m.view(-1, 1) if m.dim() == 1 else m for m in masks]
            masks = [m & labelled.view(-1, 1) for m in masks]
        else:
            masks = [m & labelled for m in masks]
        try:
            splits = splits_from_masks(*masks)
        except ValueError as exc:  # a part left empty once unlabelled nodes are removed
            raise DatasetError(f"{name}: the {protocol} split is unusable ({exc}); use eval.protocol=random") from None
        if protocol == "preset":
            splits = splits[:num_splits]
    _check_two_classes(data, splits, protocol, train_frac, int(labelled.sum()))
    return splits


def _larger_graph_hint(data: Data) -> str:
    if getattr(data, "name", None) == "csbm":
        c = int(getattr(data, "num_classes", 0) or 2)
        return (f"use a larger graph (data.csbm.num_nodes, e.g. {100 * c} or more: 100 per class) "
                f"or fewer classes (data.csbm.num_classes)")
    return "use a dataset with more labelled nodes per class"


def _check_two_classes(data: Data, splits: list[Split], protocol: str, train_frac: float, num_labelled: int) -> None:
    """The linear probe needs at least two classes among every split's training nodes; a small
    graph (a tiny csbm) can draw a training set of one class. Stop before training, not after it."""
    y = getattr(data, "y", None)
    if not isinstance(y, Tensor):
        return
    y = y.view(-1)
    for s, split in enumerate(splits):
        classes = torch.unique(y[split.train])
        if classes.numel() < 2:
            name = getattr(data, "name", "this dataset")
            num_classes = getattr(data, "num_classes", None)
            in_classes = f" in {num_classes} classes" if num_classes is not None else ""
            share = f" ({train_frac:.0%} of them)" if protocol == "random" else ""
            raise DatasetError(
                f"{name}: {num_labelled} labelled nodes{in_classes} are too few for the linear probe: "
                f"{protocol} split {s + 1} of {len(splits)} trains it on {split.train.numel()} node(s){share}, "
                f"all of class {int(classes[0])}, and it needs two classes among every split's training nodes; "
                f"{_larger_graph_hint(data)}"
            )
