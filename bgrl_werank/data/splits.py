"""Train/validation/test node splits used by the linear probe.

Three protocols exist (config key ``eval.protocol``):

* ``public``: the split shipped with the Planetoid files (20 labelled nodes per class, 500
  validation, 1000 test), one split;
* ``random``: ``num_splits`` random splits of 10% / 10% / 80% (train / val / test), drawn from
  ``split_seed`` so every method sees the same splits;
* ``preset``: the masks stored with a dataset (e.g. WikiCS' 20 splits), one split per mask column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import DatasetError


@dataclass(frozen=True)
class Split:
    """One split: three disjoint 1-D ``long`` tensors of node indices."""

    train: Tensor
    val: Tensor
    test: Tensor

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            t = getattr(self, name)
            if t.dim() != 1 or t.dtype != torch.long:
                raise ValueError(f"Split.{name} must be a 1-D long tensor, got {t.dtype} of shape {tuple(t.shape)}")
            if t.numel() == 0:
                raise ValueError(f"Split.{name} is empty")


def random_splits(
    num_nodes: int,
    num_splits: int = 20,
    train_frac: float = 0.1,
    val_frac: float = 0.1,
    seed: int = 0,
    labelled: Tensor | None = None,
) -> list[Split]:
    """``num_splits`` random train/val/test splits; the rest after train and val is test.

    Args:
        num_nodes: number of nodes N.
        num_splits: how many independent splits (default 20).
        train_frac: fraction of the candidate nodes used for training (default 0.1).
        val_frac: fraction used for validation (default 0.1).
        seed: seed of the split generator (independent of the model seed).
        labelled: optional boolean mask (N,); only these nodes are split (unlabelled nodes, such as
            CiteSeer's 15 isolated ones, are left out of every part).

    Returns:
        A list of :class:`Split`, identical for identical arguments.

    Raises:
        ValueError: ``num_splits`` or a fraction out of range.
        DatasetError: too few candidate nodes for a training, a validation and a test node
            (fewer than 3 at the default fractions).
    """
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    if not (0 < train_frac < 1 and 0 < val_frac < 1 and train_frac + val_frac < 1):
        raise ValueError(f"need 0 < train_frac, val_frac and train_frac + val_frac < 1; got {train_frac}, {val_frac}")
    candidates = torch.arange(num_nodes) if labelled is None else labelled.nonzero().view(-1)
    n = candidates.numel()
    n_train, n_val = max(1, round(train_frac * n)), max(1, round(val_frac * n))
    if n_train + n_val >= n:
        raise DatasetError(f"{n} labelled node(s) are too few for a random split into {n_train} training, "
                           f"{n_val} validation and at least one test node")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_splits):
        perm = candidates[torch.randperm(n, generator=gen)]
        out.append(Split(perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]))
    return out


def splits_from_masks(train_mask: Tensor, val_mask: Tensor, test_mask: Tensor) -> list[Split]:
    """Splits from boolean masks of shape (N,) (one split) or (N, S) (S splits)."""
    # Each mask may be (N,) or (N, S); WikiCS ships (N, 20) train/val masks with one (N,) test mask.
    train_mask, val_mask, test_mask = (m.view(-1, 1) if m.dim() == 1 else m for m in (train_mask, val_mask, test_mask))
    s = max(m.shape[1] for m in (train_mask, val_mask, test_mask))
    train_mask, val_mask, test_mask = (m.expand(-1, s) if m.shape[1] == 1 else m for m in (train_mask, val_mask, test_mask))
    return [
        Split(train_mask[:, s].nonzero().view(-1), val_mask[:, s].nonzero().view(-1), test_mask[:, s].nonzero().view(-1))
        for s in range(train_mask.shape[1])
    ]
