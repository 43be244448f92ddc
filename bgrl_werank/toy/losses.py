"""The toy experiments' names for the shared SSL losses (kept for callers of the old module).

The toy models train with the shared functions of :mod:`bgrl_werank.losses`: VICReg is
:func:`~bgrl_werank.losses.vicreg_loss`, InfoNCE is :func:`~bgrl_werank.losses.info_nce_loss`
(= :func:`~bgrl_werank.losses.grace_loss`), the EMA model :func:`~bgrl_werank.losses.bgrl_loss`.
"""

from __future__ import annotations

from torch import Tensor

from ..losses import info_nce_loss, vicreg_terms

__all__ = ["info_nce_loss", "vicreg_loss"]


def vicreg_loss(z1: Tensor, z2: Tensor, invariance: float = 10.0, variance: float = 10.0,
                covariance: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, dict[str, float]]:
    """:func:`bgrl_werank.losses.vicreg_loss` with the toy config's names and the paper's toy values.

    ``invariance``, ``variance``, ``covariance`` are ``sim_coeff``, ``std_coeff``, ``cov_coeff``
    (the paper's 10, 10, 1 by default).

    Returns:
        ``(loss, stats)`` with the three unweighted terms as floats in ``stats``.
    """
    terms = vicreg_terms(z1, z2, sim_coeff=invariance, std_coeff=variance, cov_coeff=covariance, eps=eps)
    loss = terms.pop("loss")
    return loss, {k: float(t.detach()) for k, t in terms.items()}
