"""Rank metrics against known answers."""

import math

import pytest
import torch

from bgrl_werank.eval.rank import count_above, covariance, covariance_spectrum, rankme, singular_values


def test_rankme_isotropic_is_dimension():
    z = torch.randn(20000, 32, generator=torch.Generator().manual_seed(0))
    assert rankme(z) == pytest.approx(32, rel=0.02)


def test_rankme_low_rank_is_rank():
    g = torch.Generator().manual_seed(1)
    basis, _ = torch.linalg.qr(torch.randn(64, 5, generator=g, dtype=torch.float64))
    z = torch.randn(20000, 5, generator=g, dtype=torch.float64) @ basis.T  # rank 5 in 64 dims
    assert rankme(z) == pytest.approx(5, rel=0.03)


def test_rankme_by_hand():
    z = torch.diag(torch.tensor([3.0, 1.0]))
    p = torch.tensor([0.75, 0.25]) + 1e-7
    assert rankme(z) == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-6)


def test_spectra_of_known_matrix():
    g = torch.Generator().manual_seed(2)
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    s = torch.tensor([5.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    m = u[:, :4] @ torch.diag(s) @ v.T
    assert torch.allclose(singular_values(m), s, atol=1e-10)
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])  # mean 0; C = diag(0.5, 2)
    assert torch.allclose(covariance(z), torch.diag(torch.tensor([0.5, 2.0], dtype=torch.float64)))
    assert torch.allclose(covariance_spectrum(z), torch.tensor([2.0, 0.5], dtype=torch.float64))


def test_count_above():
    assert count_above(torch.tensor([1.0, 0.5, 1e-4, 0.0]), 1e-3) == 2
    assert count_above(torch.tensor([]), 0.1) == 0
