"""Benchmark of the linear probe: torch (batched L-BFGS) against the sklearn reference.

For each dataset, prints one JSON line with the seconds and mean ± std test accuracy (over 20
random 10/10/80 splits, split seed 0, the default C grid) of both backends and their difference.

Embeddings are a fixed, training-free featurisation, so that the numbers only measure the probe:
row-normalised node features X, propagated twice with the GCN operator
Â = D^-1/2 (A + I) D^-1/2 (SGC, Wu et al. 2019), then projected to 256 dimensions by a fixed
Gaussian matrix (seed 0, entries N(0, 1/256)).

Usage::

    BGRL_WERANK_DATA=../shared/datasets python -m benchmarks.bench_probe [--datasets cora photo]

The torch backend runs with ``--threads`` (default 2) intra-op threads. On a machine shared with
other jobs, OpenMP's default spin-waiting made 2-thread runs up to 10x slower, so this script sets
``OMP_WAIT_POLICY=PASSIVE`` unless it is already set. The sklearn backend runs with one BLAS
thread (see ``bgrl_werank.eval.probe``). Each line also records the 1-minute load average.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the OpenMP runtime's start

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torch_geometric.data import Data  # noqa: E402

from bgrl_werank.data.splits import random_splits  # noqa: E402
from bgrl_werank.eval import DEFAULT_C_GRID, linear_probe  # noqa: E402

# Where each dataset's raw files lie under the data root, and how PyG's loader wants them.
_RAW = {
    "cora": ("planetoid/cora", "Cora/raw"),
    "photo": ("amazon/photo", "Photo/raw"),
}


def load_dataset(name: str, root: str | Path) -> Data:
    """Parse a raw dataset with PyG from a temporary folder of symlinks (nothing is copied).

    Args:
        name: ``"cora"`` or ``"photo"``.
        root: the data root (layout of ``datasets/README.md``).
    """
    from torch_geometric.datasets import Amazon, Planetoid

    src, raw = _RAW[name]
    src_dir = Path(root) / src
    if not src_dir.is_dir():
        raise FileNotFoundError(f"{src_dir} not found (data root {root})")
    with tempfile.TemporaryDirectory() as tmp:
        raw_dir = Path(tmp) / raw
        raw_dir.mkdir(parents=True)
        for f in src_dir.iterdir():
            (raw_dir / f.name).symlink_to(f.resolve())
        return Planetoid(tmp, "Cora")[0] if name == "cora" else Amazon(tmp, "Photo")[0]


def sgc_features(data: Data, hops: int = 2, dim: int | None = 256, seed: int = 0) -> Tensor:
    """Row-normalised features propagated ``hops`` times by Â, optionally randomly projected.

    Args:
        data: a graph with ``x`` (N, F) and ``edge_index``.
        hops: number of propagations (default 2).
        dim: output dimension of the Gaussian projection N(0, 1/dim) (default 256); None keeps F.
        seed: seed of the projection (default 0).

    Returns:
        (N, dim) float64 embeddings.
    """
    from torch_geometric.utils import add_self_loops, degree

    x = data.x.to(torch.float64)
    x = x / x.sum(1, keepdim=True).clamp_min(1e-12)
    n = x.shape[0]
    edge_index, _ = add_self_loops(data.edge_index, num_nodes=n)
    deg = degree(edge_index[0], n, dtype=torch.float64)
    weight = deg[edge_index[0]].rsqrt() * deg[edge_index[1]].rsqrt()
    adj = torch.sparse_coo_tensor(edge_index, weight, (n, n)).coalesce()
    for _ in range(hops):
        x = torch.sparse.mm(adj, x)
    if dim is None:
        return x
    gen = torch.Generator().manual_seed(seed)
    return x @ (torch.randn(x.shape[1], dim, generator=gen, dtype=torch.float64) / dim**0.5)


def bench(name: str, root: str | Path, backends: list[str], num_splits: int, dim: int) -> dict[str, object]:
    data = load_dataset(name, root)
    z = sgc_features(data, dim=dim)
    splits = random_splits(z.shape[0], num_splits=num_splits, seed=0)
    out: dict[str, object] = {
        "dataset": name,
        "embeddings": f"SGC A^2 X (row-normalised X), Gaussian projection to {dim} dims, seed 0",
        "num_nodes": z.shape[0],
        "num_classes": int(data.y.max()) + 1,
        "num_splits": num_splits,
        "c_grid": "2^-10..2^10 (21)" if len(DEFAULT_C_GRID) == 21 else list(DEFAULT_C_GRID),
        "torch_threads": torch.get_num_threads(),
    }
    results = {}
    for backend in backends:
        res = linear_probe(z, data.y, splits, backend=backend)
        results[backend] = res
        out[backend] = {"seconds": round(res.seconds, 3), "mean": res.mean, "std": res.std}
    if len(results) == 2:
        t, s = results["torch"], results["sklearn"]
        out["diff_mean_points"] = round(100 * (t.mean - s.mean), 4)
        out["max_abs_split_diff_points"] = round(100 * max(abs(a - b) for a, b in zip(t.test_acc, s.test_acc)), 4)
        out["same_best_c"] = sum(a == b for a, b in zip(t.best_c, s.best_c))
        out["speedup"] = round(s.seconds / t.seconds, 2)
    out["loadavg_1min"] = os.getloadavg()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=os.environ.get("BGRL_WERANK_DATA"), help="data root (default $BGRL_WERANK_DATA)"
    )
    parser.add_argument("--datasets", nargs="+", default=["cora", "photo"], choices=sorted(_RAW))
    parser.add_argument("--backends", nargs="+", default=["torch", "sklearn"], choices=["torch", "sklearn"])
    parser.add_argument("--num-splits", type=int, default=20, help="random 10/10/80 splits (default 20)")
    parser.add_argument("--dim", type=int, default=256, help="projection dimension (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = parser.parse_args(argv)
    if not args.root:
        parser.error("no data root: pass --root or set BGRL_WERANK_DATA")
    torch.set_num_threads(args.threads)
    for name in args.datasets:
        print(json.dumps(bench(name, args.root, args.backends, args.num_splits, args.dim)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
