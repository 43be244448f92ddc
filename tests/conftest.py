import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A tiny synthetic graph and model: the whole pipeline runs in a few seconds.
TINY = [
    "data.name=csbm", "data.csbm.num_nodes=240", "data.csbm.num_features=24", "data.csbm.num_classes=3",
    "data.csbm.avg_degree=6", "data.csbm.signal=1.5", "data.row_normalize=false",
    "model.layer_sizes=[32, 16]", "method.bgrl.predictor_hidden=32",
    "train.epochs=12", "train.progress=none", "optim.warmup_epochs=2", "optim.lr=0.01",
    "eval.protocol=random", "eval.num_splits=3", "checkpoint.every=4", "threads=1", "diagnostics.every=0",
]


@pytest.fixture(autouse=True)
def _restore_threads():
    """Tests may set torch's thread count freely; it is put back after each one."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Processed dataset caches go to a per-session temp folder, never into ~ or the data root."""
    cache = os.environ.get("BGRL_WERANK_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    monkeypatch.setenv("BGRL_WERANK_CACHE", cache)
    monkeypatch.setenv("BGRL_WERANK_OFFLINE", "1")


def missing_data(reason: str):
    """Skip a real-data test whose files are absent, except where the data is required (CI sets
    ``BGRL_WERANK_REQUIRE_DATA=1``: there a missing dataset is a failure, never a silent skip)."""
    if os.environ.get("BGRL_WERANK_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} (BGRL_WERANK_REQUIRE_DATA=1: real data is required here)")
    pytest.skip(reason)


def sets(overrides):
    out = []
    for o in overrides:
        out += ["--set", o]
    return out
