"""Rank diagnostics against closed forms: constructed spectra, isotropic and low-rank samples."""

import math

import pytest
import torch

from bgrl_werank.eval import count_above, covariance, covariance_spectrum, rankme, singular_values


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_singular_values_of_constructed_matrix():
    # A = U diag(s) Vᵀ with orthonormal U (6×4 block of a 6×6) and V (4×4): its spectrum is s.
    s = torch.tensor([0.5, 3.0, 0.0, 1.25], dtype=torch.float64)
    a = _orthogonal(6, 0)[:, :4] @ torch.diag(s) @ _orthogonal(4, 1).T
    sv = singular_values(a)
    assert sv.dtype == torch.float64
    assert torch.allclose(sv, torch.tensor([3.0, 1.25, 0.5, 0.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(singular_values(a.T), sv, atol=1e-12)  # wide input: same values


def test_singular_values_of_diagonal_float32():
    sv = singular_values(torch.diag(torch.tensor([-2.0, 5.0, 1.0])))
    assert sv.tolist() == [5.0, 2.0, 1.0]


def test_covariance_matches_hand_formula_and_numpy():
    z = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0], [-1.0, 2.0]])
    # mean (2, 2); deviations (-1,0), (1,-2), (3,2), (-3,0)
    expected = torch.tensor([[(1 + 1 + 9 + 9) / 4, (0 - 2 + 6 + 0) / 4], [(0 - 2 + 6 + 0) / 4, (0 + 4 + 4 + 0) / 4]])
    cov = covariance(z)
    assert torch.allclose(cov, expected.double(), atol=1e-12)
    assert torch.allclose(cov, torch.cov(z.T.double(), correction=0), atol=1e-12)


def test_covariance_spectrum_of_known_covariance():
    # Rows ±sqrt(N)·(scaled axes) rotated by Q: covariance Q diag(λ) Qᵀ exactly, mean 0.
    lam = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)
    q = _orthogonal(3, 2)
    base = torch.cat([torch.diag(lam.sqrt()), -torch.diag(lam.sqrt())]) * math.sqrt(3)  # 6 rows, cov diag(λ)
    z = base @ q.T
    assert torch.allclose(covariance(z), q @ torch.diag(lam) @ q.T, atol=1e-12)
    assert torch.allclose(covariance_spectrum(z), lam, atol=1e-12)


def test_covariance_is_shift_invariant():
    z = torch.randn(50, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(covariance(z + 7.0), covariance(z), atol=1e-10)


def _rankme_reference(sigma: list[float], eps: float) -> float:
    total = sum(sigma)
    p = [s / total + eps for s in sigma]
    return math.exp(-sum(pk * math.log(pk) for pk in p))


def test_rankme_equals_formula_on_known_spectrum():
    s = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    a = _orthogonal(5, 4)[:, :4] @ torch.diag(s) @ _orthogonal(4, 5).T
    assert rankme(a) == pytest.approx(_rankme_reference([3.0, 2.0, 1.0, 0.5], 1e-7), rel=1e-10)
    assert rankme(a, eps=0.0) == pytest.approx(_rankme_reference([3.0, 2.0, 1.0, 0.5], 0.0), rel=1e-10)


def test_rankme_of_equal_spectrum_is_its_size():
    assert rankme(3.0 * torch.eye(7), eps=0.0) == pytest.approx(7.0, rel=1e-12)


def test_rankme_isotropic_gaussian_is_full_dimension():
    z = torch.randn(10_000, 32, generator=torch.Generator().manual_seed(0))
    assert rankme(z) == pytest.approx(32.0, rel=0.02)


def test_rankme_rank_five_sample_is_five():
    # An isotropic sample in a random 5-dim subspace of R^32: five σ ≈ sqrt(N), 27 zeros (~ε terms).
    g = torch.Generator().manual_seed(1)
    basis = _orthogonal(32, 6)[:5].float()
    z = torch.randn(10_000, 5, generator=g) @ basis
    assert rankme(z) == pytest.approx(5.0, rel=0.02)
    assert count_above(singular_values(z), 1e-4) == 5


def test_rankme_is_scale_invariant_and_zero_for_zero_matrix():
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(2))
    assert rankme(1e3 * z) == pytest.approx(rankme(z), rel=1e-9)
    assert rankme(torch.zeros(10, 4)) == 0.0


def test_count_above():
    v = torch.tensor([10.0, 5.0, 1.0, 0.1, 0.0])
    assert count_above(v, 0.05) == 3  # > 0.5
    assert count_above(v, 0.5) == 1  # 5.0 is not strictly above 5.0
    assert count_above(v, 0.0) == 4  # zero is not above zero
    assert count_above(torch.tensor([2.0]), 0.9) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda: singular_values(torch.ones(3)),
        lambda: covariance(torch.ones(2, 3, 4)),
        lambda: rankme(torch.tensor([[1.0, float("nan")]])),
        lambda: rankme(torch.eye(2), eps=-1.0),
        lambda: count_above(torch.ones(2, 2), 0.1),
        lambda: count_above(torch.ones(0), 0.1),
    ],
)
def test_invalid_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


def test_chunked_gram_path_of_a_tall_matrix_equals_the_whole_float64_one(monkeypatch):
    # the path 10⁷-node embeddings take (no whole float64 copy), forced here on a small matrix
    from bgrl_werank.eval import rank as rank_mod

    g = torch.Generator().manual_seed(0)
    z = (torch.randn(3000, 16, generator=g) * torch.logspace(0, -3, 16)).float() + 5.0  # a spread spectrum, off-centre
    exact_sv, exact_cov, exact_rm = singular_values(z), covariance(z), rankme(z)
    monkeypatch.setattr(rank_mod, "TALL_ENTRIES", 100)
    monkeypatch.setattr(rank_mod, "CHUNK_ROWS", 257)  # chunks that do not divide the rows
    assert torch.allclose(singular_values(z), exact_sv, rtol=1e-9, atol=1e-9 * float(exact_sv[0]))
    assert torch.allclose(covariance(z), exact_cov, rtol=1e-10, atol=1e-14)
    assert rankme(z) == pytest.approx(exact_rm, rel=1e-9)
