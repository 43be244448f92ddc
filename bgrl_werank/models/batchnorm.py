"""BatchNorm statistics for evaluation: the conventions, and re-estimating them ("precise BatchNorm").

In training mode a ``BatchNorm1d`` normalises by the batch's own statistics and updates its running
statistics; in eval mode (every probe, every RankMe) it normalises by those running statistics. Their
meaning therefore decides what the frozen encoder computes:

* PyTorch's ``momentum`` is the weight of the **new** batch: running ← (1 − m)·running + m·batch.
  TensorFlow's and some papers' momentum is the weight of the **old** statistics (m ↔ 1 − m). The
  BGRL reference passes 0.99 to PyG's ``BatchNorm``, which hands it to PyTorch unchanged, so its
  eval-mode statistics are 0.99 of the last training view's plus 0.01 of the rest: this project's
  default (``model.batchnorm_momentum``).
* :func:`reestimate_batchnorm` replaces them by the plain average over K given forward passes
  (PyTorch's ``momentum=None``, a cumulative average): ``eval.batchnorm: views`` does this over K
  fresh training views before the probe. It is how old checkpoints trained with a tiny momentum can be
  evaluated fairly, and the check that the default statistics are not stale.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``module`` that keep running statistics, in module order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_batchnorm(module: nn.Module, inputs: Iterable[tuple]) -> int:
    """Set every BatchNorm's running mean and variance of ``module`` to their average over the forward
    passes ``module(*args)`` for ``args`` in ``inputs`` (in training mode, without gradients).

    Each pass contributes its batch mean and unbiased batch variance with equal weight (PyTorch's
    cumulative average, ``momentum=None``). The momenta, ``num_batches_tracked`` and the training flag
    are restored afterwards; the parameters are untouched. Returns the number of passes. Raises
    ValueError when ``inputs`` is empty (the statistics would be reset to 0 and 1).
    """
    norms = batchnorms(module)
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    was_training = module.training
    count = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        module.train()
        for args in inputs:
            module(*args)
            count += 1
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
        module.train(was_training)
    if count == 0 and norms:
        raise ValueError("reestimate_batchnorm needs at least one forward pass")
    return count
