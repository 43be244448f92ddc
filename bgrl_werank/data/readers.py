"""Raw-file readers that cannot run code from a file, and that check what they read.

**Planetoid** (Cora, CiteSeer, PubMed). The ``ind.<name>.{x,tx,allx,y,ty,ally,graph}`` files are
Python-2 pickles, and unpickling can call any importable function (``os.system`` included). PyG
reads them with plain ``pickle.load``. Here :class:`PlanetoidUnpickler` resolves only the globals
these files are made of (:data:`PLANETOID_GLOBALS`) and refuses any other before anything is called;
the objects read are then checked (a numeric matrix, or a dict of node id -> list of node ids) and
the graph is assembled the way PyG's ``read_planetoid_data`` assembles it (:func:`read_planetoid`;
the test suite holds the two equal tensor for tensor on the real Cora and CiteSeer files).

**Amazon / Coauthor** ``.npz`` archives. :func:`read_npz` reads them with
``np.load(allow_pickle=False)``, only the nine arrays PyG's ``parse_npz`` uses (Coauthor's files also
hold a ``class_names`` *object* array, which nobody reads), and refuses a file that is not a zip
archive at all (``np.load`` would try to unpickle it).

Both readers reject NaN and infinite values in the features (:class:`NonFiniteError`, counted with
:func:`count_nonfinite`): PyG would pass them on (and ``read_npz``'s ``x[x > 0] = 1`` would silently
turn ``+inf`` into 1), and training on them ends in NaN losses that look like a learning-rate problem.

The errors raised here describe a file's content without naming it; ``datasets.py`` turns them into
one-line :class:`~bgrl_werank.data.DatasetError` messages that name the dataset and the file.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.io import parse_npz, read_txt_array
from torch_geometric.io.planetoid import edge_index_from_dict
from torch_geometric.utils import index_to_mask

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

__all__ = [
    "NPZ_KEYS",
    "PLANETOID_GLOBALS",
    "PLANETOID_ITEMS",
    "InconsistentFilesError",
    "NonFiniteError",
    "PlanetoidUnpickler",
    "RawFileError",
    "UnsafeContentError",
    "assemble_planetoid",
    "check_planetoid",
    "count_nonfinite",
    "read_npz",
    "read_planetoid",
    "read_planetoid_item",
]


class RawFileError(ValueError):
    """A raw file can be read but does not hold what its format promises; ``str()`` says what it holds."""


class UnsafeContentError(RawFileError):
    """Reading the file would mean unpickling something that could run code; nothing was run."""


class NonFiniteError(RawFileError):
    """The file holds ``count`` NaN or infinite values where numbers belong."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} NaN or infinite value(s)")
        self.count = count


class InconsistentFilesError(RawFileError):
    """The files of one dataset do not fit together (a truncated file, or one from another dataset)."""


# ------------------------------------------------------------------------------------------------
# Non-finite values


def count_nonfinite(values: np.ndarray | Tensor) -> int:
    """The number of NaN and ±inf entries of a numpy array or a dense torch tensor.

    For sparse features pass the stored values (``csr.data``, ``csr_tensor.values()``): implicit
    zeros are finite. Cheap: one summation, which is finite exactly when every entry is (a NaN or
    an infinity makes it non-finite); only then, or when a float32 sum overflows, are the entries
    counted one by one. Integer and boolean arrays are always finite.
    """
    if isinstance(values, Tensor):
        if not (values.is_floating_point() or values.is_complex()) or values.numel() == 0:
            return 0
        if bool(torch.isfinite(values.sum())):
            return 0
        return int(values.numel() - int(torch.isfinite(values).sum()))
    values = np.asarray(values)
    if values.dtype.kind not in "fc" or values.size == 0:
        return 0
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(values.sum()):
            return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))


# ------------------------------------------------------------------------------------------------
# Planetoid pickles

#: The only globals a Planetoid pickle may ask for, each mapped straight to the object it names.
#: Inspected with ``pickletools``, the Cora, CiteSeer and PubMed files (kimiyoung/planetoid, written
#: by Python 2 with numpy 1 and scipy < 1.8; for PubMed all but ``ind.pubmed.allx``, which no copy at
#: hand had, a CSR matrix like ``x`` and ``tx``) hold exactly the Python-2 names below: the
#: feature matrices are ``csr_matrix`` objects whose ``data``/``indices``/``indptr`` are numpy arrays
#: (``ndarray`` + ``dtype`` + ``_reconstruct``), the label matrices are numpy arrays, and ``graph`` is
#: a ``defaultdict(list)``. A file written today by Python 3 spells the same objects
#: ``numpy._core.multiarray``, ``scipy.sparse._csr`` and ``builtins``; those spellings are admitted
#: too (and nothing else), so such a copy loads as well. None of these can reach the file system,
#: run a command or import a module: at most they build arrays, dtypes, sparse matrices and lists.
PLANETOID_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,  # numpy 1 (the shipped files)
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,  # numpy 2
    ("scipy.sparse.csr", "csr_matrix"): sp.csr_matrix,  # scipy < 1.8 (the shipped files)
    ("scipy.sparse._csr", "csr_matrix"): sp.csr_matrix,  # scipy >= 1.8
    ("collections", "defaultdict"): collections.defaultdict,
    ("__builtin__", "list"): list,  # Python 2 (the shipped files)
    ("builtins", "list"): list,  # Python 3
}

#: The eight files of a Planetoid dataset, ``ind.<name>.<item>``, in PyG's order.
PLANETOID_ITEMS: tuple[str, ...] = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


class PlanetoidUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`PLANETOID_GLOBALS`.

    Every global a pickle refers to passes through :meth:`find_class` (also those reached through
    the copyreg extension registry), before it can be called; any other is refused with an
    :class:`UnsafeContentError` naming it. Since the default ``find_class`` is bypassed, the names
    arrive as written in the file (Python 2's ``__builtin__``, not ``builtins``).
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return PLANETOID_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeContentError(
                f"asks to unpickle the global {module}.{name}, which is none of the numpy, scipy and "
                f"list types Planetoid files are made of"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeContentError("holds a persistent id, which no Planetoid file has")


def _load_pickle(fh: BinaryIO) -> Any:
    # latin1 decodes Python 2 ``str`` payloads (numpy's raw array bytes) byte for byte, as PyG does
    return PlanetoidUnpickler(fh, encoding="latin1").load()


_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def _matrix(obj: Any) -> Tensor:
    """A feature or label matrix (scipy CSR or a 2-D numpy array of numbers) as float32, as PyG's
    ``read_file`` converts it; anything else is a :class:`RawFileError`."""
    if isinstance(obj, sp.csr_matrix):
        if obj.dtype.kind not in _NUMERIC_KINDS:
            raise RawFileError(f"holds a sparse matrix of dtype {obj.dtype}, not of numbers")
        try:  # indices in range, indptr monotone: densifying a malformed matrix could write out of bounds
            obj.check_format(full_check=True)
        except Exception as exc:
            raise RawFileError(f"holds a malformed sparse matrix ({exc})") from None
        values = obj.data
    elif type(obj) is np.ndarray:
        if obj.dtype.kind not in _NUMERIC_KINDS:
            raise RawFileError(f"holds an array of dtype {obj.dtype}, not of numbers")
        if obj.ndim != 2:
            raise RawFileError(f"holds a {obj.ndim}-D array where a matrix belongs")
        values = obj
    else:
        raise RawFileError(f"holds a {type(obj).__name__} where a numeric matrix belongs")
    bad = count_nonfinite(values)
    if bad:
        raise NonFiniteError(bad)
    dense = obj.toarray() if isinstance(obj, sp.csr_matrix) else obj
    if not dense.dtype.isnative:  # torch.from_numpy takes native byte order only
        dense = dense.astype(dense.dtype.newbyteorder("="))
    return torch.from_numpy(dense).to(torch.float)


def _graph(obj: Any) -> dict[int, list[int]]:
    """The adjacency lists: a dict (``defaultdict``) of non-negative int -> list of non-negative ints."""
    if not isinstance(obj, dict):
        raise RawFileError(f"holds a {type(obj).__name__} where the adjacency dict belongs")
    for key, value in obj.items():
        if not (type(key) is int and key >= 0 and type(value) is list
                and all(type(v) is int and v >= 0 for v in value)):
            raise RawFileError(f"maps {key!r} to a {type(value).__name__}; a dict of node id -> list of "
                               f"node ids belongs here")
    return dict(obj)


def read_planetoid_item(path: str | Path, item: str) -> Tensor | dict[int, list[int]]:
    """Read one Planetoid file safely.

    Args:
        path: the file, ``ind.<name>.<item>``.
        item: one of :data:`PLANETOID_ITEMS`.

    Returns:
        ``test.index``: the (T,) long test ids (a text file: no unpickling). ``graph``: a plain
        dict of node id -> list of node ids. The others: the matrix as an (R, C) float32 tensor
        (dense, as PyG's ``read_file`` returns it).

    Raises:
        UnsafeContentError: the pickle asks for a global outside :data:`PLANETOID_GLOBALS`.
        NonFiniteError: a matrix holds NaN or infinite values.
        RawFileError: the file holds something else than its item should.
        Exception: whatever ``pickle`` raises on a truncated or garbled file.
    """
    if item not in PLANETOID_ITEMS:
        raise ValueError(f"unknown Planetoid item {item!r}; valid: {', '.join(PLANETOID_ITEMS)}")
    if item == "test.index":
        return read_txt_array(str(path), dtype=torch.long).view(-1)
    with open(path, "rb") as fh:
        obj = _load_pickle(fh)
    return _graph(obj) if item == "graph" else _matrix(obj)


def check_planetoid(items: Mapping[str, Any], prefix: str) -> None:
    """Check that the eight items of one dataset fit together.

    A truncated text file (``test.index``) would otherwise load "successfully", and a file from
    another dataset would be assembled into nonsense. The test ids must be distinct and follow the
    ``allx`` rows (the layout the Planetoid files have and :func:`assemble_planetoid` relies on);
    the graph may only name nodes ``0 .. N - 1``.

    Raises:
        InconsistentFilesError: what does not fit, naming the files.
    """
    p = f"ind.{prefix.lower()}"
    test_index, tx, ty = items["test.index"], items["tx"], items["ty"]
    allx, ally, x, y = items["allx"], items["ally"], items["x"], items["y"]
    checks = [
        (test_index.numel() == tx.shape[0] == ty.shape[0],
         f"{p}.test.index has {test_index.numel()} ids, {p}.tx {tx.shape[0]} rows, {p}.ty {ty.shape[0]} rows"),
        (allx.shape[0] == ally.shape[0], f"{p}.allx has {allx.shape[0]} rows, {p}.ally {ally.shape[0]}"),
        (x.shape[0] == y.shape[0], f"{p}.x has {x.shape[0]} rows, {p}.y {y.shape[0]}"),
        (bool((test_index >= allx.shape[0]).all()), f"{p}.test.index has ids below {allx.shape[0]}"),
    ]
    for ok, what in checks:
        if not ok:
            raise InconsistentFilesError(what)
    further = [
        (x.shape[1] == tx.shape[1] == allx.shape[1], f"{p}.x, {p}.tx and {p}.allx have {x.shape[1]}, "
         f"{tx.shape[1]} and {allx.shape[1]} columns"),
        (y.shape[1] == ty.shape[1] == ally.shape[1], f"{p}.y, {p}.ty and {p}.ally have {y.shape[1]}, "
         f"{ty.shape[1]} and {ally.shape[1]} columns"),
        (test_index.numel() > 0 and int(test_index.min()) == allx.shape[0],
         f"{p}.test.index does not start at {allx.shape[0]}, the row after {p}.allx"),
        (int(torch.unique(test_index).numel()) == test_index.numel(), f"{p}.test.index repeats ids"),
        (allx.shape[0] >= y.shape[0] + 500, f"{p}.allx has {allx.shape[0]} rows, fewer than the "
         f"{y.shape[0]} training and 500 validation nodes"),
    ]
    for ok, what in further:
        if not ok:
            raise InconsistentFilesError(what)
    num_nodes = int(test_index.max()) + 1
    graph = items["graph"]
    top = max(max(graph, default=-1), max((max(v) for v in graph.values() if v), default=-1))
    if top >= num_nodes:
        raise InconsistentFilesError(f"{p}.graph names node {top}, but the other files describe {num_nodes} nodes")


def assemble_planetoid(items: Mapping[str, Any]) -> Data:
    """The graph from the items that :func:`read_planetoid_item` read (checked by
    :func:`check_planetoid`), equal to what PyG's ``read_planetoid_data`` builds from the same files.

    Nodes ``0 .. len(allx) - 1`` take the ``allx``/``ally`` rows; test node ``test.index[i]`` takes
    row i of ``tx``/``ty``. Ids between the first and the last test id that ``test.index`` lacks
    (CiteSeer's 15 isolated nodes) get zero features and label 0; PyG pads them only for CiteSeer,
    but Cora's and PubMed's test ids have no gaps, so padding always gives the same result.
    Labels are the arg-max of the one-hot rows (the first maximum, as ``Tensor.max`` picks it).
    Training nodes: the first ``len(y)``; validation: the 500 after them; test: ``test.index``.
    Edges: PyG's ``edge_index_from_dict`` (self-loops removed, duplicates merged).
    """
    tx, allx, ty, ally = items["tx"], items["allx"], items["ty"], items["ally"]
    test_index = items["test.index"]
    num_train, num_all = items["y"].shape[0], allx.shape[0]
    num_nodes = int(test_index.max()) + 1

    x = allx.new_zeros(num_nodes, allx.shape[1])
    x[:num_all], x[test_index] = allx, tx
    onehot = ally.new_zeros(num_nodes, ally.shape[1])
    onehot[:num_all], onehot[test_index] = ally, ty
    y = onehot.max(dim=1).indices

    data = Data(x=x, edge_index=edge_index_from_dict(items["graph"], num_nodes=num_nodes), y=y)
    data.train_mask = index_to_mask(torch.arange(num_train), size=num_nodes)
    data.val_mask = index_to_mask(torch.arange(num_train, num_train + 500), size=num_nodes)
    data.test_mask = index_to_mask(test_index, size=num_nodes)
    return data


def read_planetoid(folder: str | Path, prefix: str) -> Data:
    """PyG's ``read_planetoid_data(folder, prefix)`` for Cora, CiteSeer and PubMed, read safely.

    Args:
        folder: the folder of the ``ind.<prefix>.*`` files.
        prefix: the dataset's name in the file names (case-insensitive): ``cora``, ``citeseer``,
            ``pubmed``.

    Returns:
        ``Data(x, edge_index, y, train_mask, val_mask, test_mask)``, tensor for tensor what PyG's
        function returns.

    Raises:
        RawFileError: see :func:`read_planetoid_item` and :func:`check_planetoid`.
    """
    folder = Path(folder)
    items = {item: read_planetoid_item(folder / f"ind.{prefix.lower()}.{item}", item) for item in PLANETOID_ITEMS}
    check_planetoid(items, prefix)
    return assemble_planetoid(items)


# ------------------------------------------------------------------------------------------------
# Amazon / Coauthor npz archives

#: The arrays of the Amazon/Coauthor format that PyG's ``parse_npz`` reads (the only ones read here).
NPZ_KEYS: tuple[str, ...] = (
    "attr_data", "attr_indices", "attr_indptr", "attr_shape",
    "adj_data", "adj_indices", "adj_indptr", "adj_shape",
    "labels",
)


def _csr(arrays: Mapping[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    try:
        shape = tuple(int(s) for s in arrays[f"{prefix}_shape"].reshape(-1))
        if len(shape) != 2:
            raise ValueError(f"{prefix}_shape has {len(shape)} entries, not 2")
        m = sp.csr_matrix((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape)
        m.check_format(full_check=True)
    except Exception as exc:
        raise RawFileError(f"its {prefix}_* arrays do not form a sparse matrix ({exc})") from None
    return m


def read_npz(path: str | Path, to_undirected: bool = True) -> Data:
    """PyG's ``read_npz`` for the Amazon and Coauthor archives, read safely.

    Only :data:`NPZ_KEYS` are read, with ``allow_pickle=False``; each must be a numeric array, the
    two sparse matrices must be well formed (attributes N × F, adjacency N × N, N labels), and the
    attribute values finite, checked before ``parse_npz`` binarises them (which would turn ``+inf``
    into 1 and keep NaN).

    Raises:
        UnsafeContentError: the file is not a zip archive (``np.load`` would unpickle it), or one of
            the arrays read is an object array (it would have to be unpickled).
        NonFiniteError: NaN or infinite attribute values.
        RawFileError: a missing or non-numeric array, or malformed matrices.
        Exception: whatever ``np.load`` raises on a truncated or garbled archive.
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] != b"PK":  # zip archives start with "PK"; anything else np.load may try to unpickle
        raise UnsafeContentError("is not an .npz (zip) archive, so np.load would try to unpickle it")
    arrays: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise RawFileError(f"lacks the array(s) {', '.join(missing)} of the Amazon/Coauthor format")
        for key in NPZ_KEYS:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise
                raise UnsafeContentError(f"stores '{key}' as an array of pickled Python objects") from None
    for key, value in arrays.items():
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise RawFileError(f"stores '{key}' as dtype {value.dtype}, not as numbers")
    attr, adj = _csr(arrays, "attr"), _csr(arrays, "adj")
    n = attr.shape[0]
    if adj.shape != (n, n) or arrays["labels"].shape != (n,):
        raise RawFileError(f"has {n} attribute rows, a {adj.shape[0]} x {adj.shape[1]} adjacency matrix "
                           f"and labels of shape {arrays['labels'].shape}")
    bad = count_nonfinite(arrays["attr_data"])
    if bad:
        raise NonFiniteError(bad)
    return parse_npz(arrays, to_undirected=to_undirected)
