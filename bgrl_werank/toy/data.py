"""Synthetic data of the controlled experiments: a whitened Gaussian and two noisy views of it.

The paper (Section 3, following Jing et al., 2022) samples N = 1000 points from a 16-dimensional
isotropic Gaussian with empirical covariance exactly I, and makes two views x + n with additive
Gaussian noise n whose covariance is block-diag(0, k·I₈): the first 8 coordinates are left alone,
the last 8 are perturbed with variance k.

Choices made here (both switchable in the config):

* ``whiten_noise``: the paper writes the noise covariance as an empirical sum,
  Σᵢ nᵢnᵢᵀ/N = block-diag(0, k·I), so each noise draw is centred and whitened so that its empirical
  second moment is *exactly* k·I₈ on the noisy block (default). Off, the draw is plain N(0, k·I₈).
* ``resample_noise`` (in :mod:`bgrl_werank.toy.train`): fresh noise for both views every epoch,
  as any SSL method draws fresh augmentations every step (default). Off, the two views are drawn
  once and reused, which turns the problem into fitting a fixed pair of data sets.
"""

from __future__ import annotations

import torch
from torch import Tensor


def whiten(x: Tensor, scale: float = 1.0) -> Tensor:
    """Centre ``x`` and transform it so that ``xᵀx / N == scale · I`` exactly (to float precision).

    Uses the symmetric (ZCA) inverse square root of the empirical covariance, computed in float64.

    Args:
        x: (N, d) samples, N > d.
        scale: target variance of every coordinate.

    Returns:
        (N, d) tensor of ``x``'s dtype.
    """
    n, d = x.shape
    if n <= d:
        raise ValueError(f"whiten needs more samples than dimensions, got N={n}, d={d}")
    x64 = x.to(torch.float64)
    x64 = x64 - x64.mean(dim=0, keepdim=True)
    cov = x64.T @ x64 / n
    evals, evecs = torch.linalg.eigh(cov)
    inv_sqrt = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    return (x64 @ inv_sqrt * scale**0.5).to(x.dtype)


def gaussian_data(num_points: int, dim: int, generator: torch.Generator) -> Tensor:
    """``num_points`` samples of an isotropic Gaussian in ``dim`` dimensions, whitened to covariance I.

    Shapes:
        - output: (num_points, dim), float32, zero mean, ``xᵀx / N = I``.
    """
    x = torch.randn(num_points, dim, generator=generator, dtype=torch.float64)
    return whiten(x).to(torch.float32)


def view_noise(num_points: int, dim: int, noise_dims: int, k: float, generator: torch.Generator,
               exact: bool = True) -> Tensor:
    """Additive noise for one view: zero on the first ``dim - noise_dims`` coordinates, variance k on the rest.

    Args:
        num_points: N.
        dim: total dimension d.
        noise_dims: how many trailing coordinates get noise (8 in the paper).
        k: noise variance (the augmentation strength).
        generator: the random stream.
        exact: whiten the draw so that its empirical second moment is exactly block-diag(0, k·I)
            (and its mean exactly 0). Otherwise a plain Gaussian draw.

    Shapes:
        - output: (num_points, dim), float32.
    """
    noise = torch.zeros(num_points, dim, dtype=torch.float32)
    if noise_dims == 0 or k == 0.0:
        return noise
    block = torch.randn(num_points, noise_dims, generator=generator, dtype=torch.float64)
    block = whiten(block, scale=k) if exact else block * k**0.5
    noise[:, dim - noise_dims:] = block.to(torch.float32)
    return noise


def empirical_second_moment(x: Tensor) -> Tensor:
    """``xᵀx / N`` in float64 (the paper's Σᵢ xᵢxᵢᵀ / N); for centred data this is the covariance."""
    x64 = x.to(torch.float64)
    return x64.T @ x64 / x.shape[0]
