"""Decorrelation objectives as pure functions: Graph Barlow Twins, CCA-SSG and VICReg.

Each takes the two views' embeddings (N, D) and returns a scalar; each ``*_terms`` variant returns
the unweighted terms and the weighted ``"loss"`` (the plain function's value) for logging. Every
function follows one reference implementation's normalisation exactly (named in its docstring);
these differ in which standard deviation they use and in what they divide by:

=================  =====================  ===========================  ==========================
loss               standardisation         correlation / covariance     reference
=================  =====================  ===========================  ==========================
Barlow Twins       (h − mean)/(std + ε),  Z₁ᵀZ₂ / N                    pbielak/graph-barlow-twins
                   unbiased std, ε=1e-15                                 ``gssl/loss.py``
CCA-SSG            (h − mean)/std,         Z₁ᵀZ₂ / N, ZᵀZ / N           hengruizhang98/CCA-SSG
                   unbiased std, no ε                                    ``model.py``, ``main.py``
VICReg             centred only            ZᵀZ / (N − 1) (unbiased)     facebookresearch/vicreg
                                                                         ``main_vicreg.py``
=================  =====================  ===========================  ==========================

Consequence of the first two conventions (unbiased std, then a division by N): a standardised
column has squared norm N − 1, so the diagonal of Z₁ᵀZ₂/N is at most (N − 1)/N, not 1, and
neither Barlow Twins' on-diagonal term nor CCA-SSG's decorrelation term can reach 0 (their minima
are D/N² and 2D/N²). Kept as in the references, since their hyper-parameters were tuned with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_BT_EPS = 1e-15  # added to the std in G-BT's ``gssl/loss.py`` (its ``EPS``)


def _check_pair(name: str, z1: Tensor, z2: Tensor) -> None:
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"{name} expects two (N, D) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (an unbiased std or covariance over N = {z1.shape[0]})")


def _standardise(z: Tensor, eps: float) -> Tensor:
    """(z − mean)/(std + eps) per column, std the unbiased (N − 1) one, as in G-BT and CCA-SSG."""
    return (z - z.mean(dim=0)) / (z.std(dim=0) + eps)


def _off_diagonal_sq_sum(c: Tensor) -> Tensor:
    """Σ_{i≠j} c_ij², with the diagonal zeroed exactly (no subtraction of two large sums)."""
    return (c - torch.diag_embed(torch.diagonal(c))).pow(2).sum()


# --------------------------------------------------------------------------------------------------
# Graph Barlow Twins
# --------------------------------------------------------------------------------------------------


def barlow_twins_terms(z1: Tensor, z2: Tensor, lambd: float | None = None, eps: float = _BT_EPS) -> dict[str, Tensor]:
    """The terms of :func:`barlow_twins_loss`: ``{"on_diagonal", "off_diagonal", "loss"}``.

    ``on_diagonal`` = Σ_i (1 − C_ii)², ``off_diagonal`` = Σ_{i≠j} C_ij² (unweighted), and
    ``loss`` = on_diagonal + λ·off_diagonal.
    """
    _check_pair("barlow_twins_loss", z1, z2)
    n, d = z1.shape
    lambd = 1.0 / d if lambd is None else lambd
    c = _standardise(z1, eps).T @ _standardise(z2, eps) / n
    on = (1.0 - torch.diagonal(c)).pow(2).sum()
    off = _off_diagonal_sq_sum(c)
    return {"on_diagonal": on, "off_diagonal": off, "loss": on + lambd * off}


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float | None = None, eps: float = _BT_EPS) -> Tensor:
    """Graph Barlow Twins (Bielak et al., 2022): Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij².

    .. math::

        \\tilde Z_b = \\frac{Z_b - \\bar Z_b}{\\sigma(Z_b) + \\epsilon}, \\qquad
        C = \\frac{1}{N} \\tilde Z_1^\\top \\tilde Z_2, \\qquad
        \\mathcal{L} = \\sum_i (1 - C_{ii})^2 + \\lambda \\sum_{i \\ne j} C_{ij}^2

    with the mean and σ per dimension over the N nodes, σ the *unbiased* (N − 1) standard deviation
    and ε added to σ (not under a square root). This is the convention of G-BT's reference,
    pbielak/graph-barlow-twins ``gssl/loss.py`` (``(z - z.mean(dim=0)) / (z.std(dim=0) + EPS)``
    with ``EPS = 1e-15``, ``c = z_a_norm.T @ z_b_norm / batch_size``, ``_lambda = 1 / feature_dim``);
    read there and checked in ``tests/test_losses.py`` against numpy with ``ddof=1``. Note that
    C_ii ≤ (N − 1)/N under this convention (module docstring).

    Args:
        z1, z2: embeddings of the two views; row i is node i.
        lambd: weight λ of the off-diagonal term; ``None``: 1/D (G-BT's default).
        eps: added to each dimension's std (G-BT's 1e-15). It only keeps the division defined: a
            (nearly) constant dimension still standardises to rounding noise over ~eps.

    Returns:
        A scalar tensor, equal to ``barlow_twins_terms(...)["loss"]``.

    Shapes:
        - z1, z2: (num_nodes, dim), num_nodes ≥ 2
        - output: ()
    """
    return barlow_twins_terms(z1, z2, lambd, eps)["loss"]


# --------------------------------------------------------------------------------------------------
# CCA-SSG
# --------------------------------------------------------------------------------------------------


def cca_ssg_terms(z1: Tensor, z2: Tensor, lambd: float = 1e-3, eps: float = 0.0) -> dict[str, Tensor]:
    """The terms of :func:`cca_ssg_loss`: ``{"invariance", "decorrelation", "loss"}``.

    ``invariance`` = −tr(Z̃₁ᵀZ̃₂)/N, ``decorrelation`` = ‖I − Z̃₁ᵀZ̃₁/N‖²_F + ‖I − Z̃₂ᵀZ̃₂/N‖²_F
    (unweighted), ``loss`` = invariance + λ·decorrelation.
    """
    _check_pair("cca_ssg_loss", z1, z2)
    n, d = z1.shape
    a, b = _standardise(z1, eps), _standardise(z2, eps)
    eye = torch.eye(d, dtype=a.dtype, device=a.device)
    inv = -torch.linalg.vecdot(a, b, dim=0).sum() / n  # −tr(aᵀb)/N without forming aᵀb
    dec = (eye - a.T @ a / n).pow(2).sum() + (eye - b.T @ b / n).pow(2).sum()
    return {"invariance": inv, "decorrelation": dec, "loss": inv + lambd * dec}


def cca_ssg_loss(z1: Tensor, z2: Tensor, lambd: float = 1e-3, eps: float = 0.0) -> Tensor:
    """CCA-SSG (Zhang et al., 2021): −tr(Z̃₁ᵀZ̃₂)/N + λ (‖I − Z̃₁ᵀZ̃₁/N‖²_F + ‖I − Z̃₂ᵀZ̃₂/N‖²_F).

    .. math::

        \\tilde Z_b = \\frac{Z_b - \\bar Z_b}{\\sigma(Z_b) + \\epsilon}, \\qquad
        \\mathcal{L} = -\\frac{1}{N}\\operatorname{tr}(\\tilde Z_1^\\top \\tilde Z_2)
          + \\lambda \\sum_{b=1}^{2} \\Big\\lVert I - \\frac{1}{N}\\tilde Z_b^\\top \\tilde Z_b \\Big\\rVert_F^2

    with the mean and σ per dimension over the N nodes, σ the *unbiased* (N − 1) standard deviation
    and, by default, no ε. This is the reference's convention, hengruizhang98/CCA-SSG: ``model.py``
    standardises with ``(h - h.mean(0)) / h.std(0)``; ``main.py`` forms ``c = z1.T @ z2 / N``,
    ``c1 = z1.T @ z1 / N``, ``c2`` likewise, ``loss_inv = -diagonal(c).sum()``,
    ``loss_dec = (I - c1).pow(2).sum() + (I - c2).pow(2).sum()``, ``loss = loss_inv + lambd * loss_dec``
    (default ``--lambd 1e-3``); read there and checked in ``tests/test_losses.py`` against numpy
    with ``ddof=1``. The paper writes the invariance as ‖Z̃₁ − Z̃₂‖²_F, which is 2N times the
    code's −tr(Z̃₁ᵀZ̃₂)/N plus the constant 2D(N − 1): the code's scale is the one λ was tuned for.

    Args:
        z1, z2: embeddings of the two views; row i is node i.
        lambd: weight λ of the decorrelation term (the reference's default 1e-3).
        eps: added to each dimension's std; 0 (the reference's) gives NaN for a constant dimension.

    Returns:
        A scalar tensor, equal to ``cca_ssg_terms(...)["loss"]``.

    Shapes:
        - z1, z2: (num_nodes, dim), num_nodes ≥ 2
        - output: ()
    """
    return cca_ssg_terms(z1, z2, lambd, eps)["loss"]


# --------------------------------------------------------------------------------------------------
# VICReg
# --------------------------------------------------------------------------------------------------


def vicreg_terms(z1: Tensor, z2: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                 cov_coeff: float = 1.0, eps: float = 1e-4) -> dict[str, Tensor]:
    """The terms of :func:`vicreg_loss`: ``{"invariance", "variance", "covariance", "loss"}``.

    The three terms are unweighted (``variance`` already averaged over the two views, ``covariance``
    summed over them); ``loss`` = sim_coeff·invariance + std_coeff·variance + cov_coeff·covariance.
    """
    _check_pair("vicreg_loss", z1, z2)
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    var = z1.new_zeros(())
    cov = z1.new_zeros(())
    for z in (z1, z2):
        zc = z - z.mean(dim=0)
        std = torch.sqrt(zc.var(dim=0) + eps)  # unbiased variance
        var = var + F.relu(1.0 - std).mean() / 2
        cov = cov + _off_diagonal_sq_sum(zc.T @ zc / (n - 1)) / d
    return {"invariance": inv, "variance": var, "covariance": cov,
            "loss": sim_coeff * inv + std_coeff * var + cov_coeff * cov}


def vicreg_loss(z1: Tensor, z2: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg (Bardes et al., 2022): invariance + variance hinge + covariance penalty.

    .. math::

        \\mathcal{L} = \\lambda \\frac{1}{ND}\\lVert Z_1 - Z_2\\rVert_F^2
          + \\mu \\frac12 \\sum_{b=1}^{2} \\frac1D \\sum_j \\max\\big(0, 1 - \\sqrt{\\mathrm{Var}(Z_b)_j + \\epsilon}\\big)
          + \\nu \\sum_{b=1}^{2} \\frac1D \\sum_{i \\ne j} C(Z_b)_{ij}^2

    with Var and C the *unbiased* (N − 1) per-dimension variance and covariance over the N rows, ε
    under the square root. This is the reference's convention, facebookresearch/vicreg
    ``main_vicreg.py`` ``VICReg.forward``: ``F.mse_loss(x, y)``; ``std = sqrt(x.var(dim=0) + 0.0001)``
    after centring; ``std_loss = mean(relu(1 - std_x))/2 + mean(relu(1 - std_y))/2``;
    ``cov = x.T @ x / (batch_size - 1)``; ``off_diagonal(cov).pow(2).sum() / num_features`` summed
    over the two views; coefficients 25/25/1 by default. Read there and checked in
    ``tests/test_losses.py`` against numpy with ``ddof=1``; the toy experiments' former private copy
    gave the same values (float64, to 1e-10).

    Args:
        z1, z2: embeddings of the two views.
        sim_coeff, std_coeff, cov_coeff: λ, μ, ν (the reference's 25, 25, 1; the paper's toy
            experiments use 10, 10, 1).
        eps: added to the variance under the square root.

    Returns:
        A scalar tensor, equal to ``vicreg_terms(...)["loss"]``.

    Shapes:
        - z1, z2: (N, D), N ≥ 2
        - output: ()
    """
    return vicreg_terms(z1, z2, sim_coeff, std_coeff, cov_coeff, eps)["loss"]
