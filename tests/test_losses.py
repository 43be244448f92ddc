"""The shared SSL losses (bgrl_werank.losses: GRACE/InfoNCE, Graph Barlow Twins, CCA-SSG, VICReg).

Each loss is checked against a formula written here independently with numpy and explicit loops
(float64, tiny inputs), following the normalisation of the reference implementation its docstring
names (unbiased std written out as Σ(x − mean)²/(N − 1), divisions by N or N − 1 as there). Then
sign and invariance properties, gradients, the exactness of the chunked InfoNCE and its memory.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import bgrl_werank.toy.losses as toy_losses
from bgrl_werank.losses import (
    barlow_twins_loss,
    barlow_twins_terms,
    cca_ssg_loss,
    cca_ssg_terms,
    grace_loss,
    info_nce_loss,
    vicreg_loss,
    vicreg_terms,
)


def _pair(n, d, seed, noise=0.3, scales=None):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * (np.ones(d) if scales is None else np.asarray(scales))
    return z1, z1 + noise * rng.normal(size=(n, d))


def _t(*arrays, grad=False):
    return [torch.tensor(a, dtype=torch.float64, requires_grad=grad) for a in arrays]


# --------------------------------------------------------------------------------------------------
# Independent references (numpy, loops)
# --------------------------------------------------------------------------------------------------


def _grace_reference(h1, h2, tau):
    """GRACE's notation: ℓ(u_i, v_i) with inter- and intra-view negatives, averaged both ways."""
    u = h1 / np.sqrt((h1 ** 2).sum(axis=1, keepdims=True))
    v = h2 / np.sqrt((h2 ** 2).sum(axis=1, keepdims=True))
    n = len(u)

    def ell(a, b):
        out = []
        for i in range(n):
            pos = math.exp(float(a[i] @ b[i]) / tau)
            inter = sum(math.exp(float(a[i] @ b[k]) / tau) for k in range(n) if k != i)
            intra = sum(math.exp(float(a[i] @ a[k]) / tau) for k in range(n) if k != i)
            out.append(-math.log(pos / (pos + inter + intra)))
        return np.array(out)

    return float(np.mean((ell(u, v) + ell(v, u)) / 2))


def _standardised(z, eps):
    n, d = z.shape
    out = np.empty_like(z)
    for j in range(d):
        mean = sum(z[i, j] for i in range(n)) / n
        std = math.sqrt(sum((z[i, j] - mean) ** 2 for i in range(n)) / (n - 1))  # unbiased
        out[:, j] = (z[:, j] - mean) / (std + eps)
    return out


def _cross(a, b):
    n, d = a.shape
    return np.array([[sum(a[k, i] * b[k, j] for k in range(n)) / n for j in range(d)] for i in range(d)])


def _barlow_twins_reference(z1, z2, lambd, eps):
    d = z1.shape[1]
    c = _cross(_standardised(z1, eps), _standardised(z2, eps))
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on, off, on + (1.0 / d if lambd is None else lambd) * off


def _cca_ssg_reference(z1, z2, lambd):
    d = z1.shape[1]
    a, b = _standardised(z1, 0.0), _standardised(z2, 0.0)
    c, c1, c2 = _cross(a, b), _cross(a, a), _cross(b, b)
    inv = -sum(c[i, i] for i in range(d))
    dec = sum((float(i == j) - c1[i, j]) ** 2 + (float(i == j) - c2[i, j]) ** 2 for i in range(d) for j in range(d))
    return inv, dec, inv + lambd * dec


def _vicreg_reference(z1, z2, sim, std_c, cov_c, eps):
    n, d = z1.shape
    inv = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    var, cov = 0.0, 0.0
    for z in (z1, z2):
        mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        c = np.array([[sum((z[i, a] - mean[a]) * (z[i, b] - mean[b]) for i in range(n)) / (n - 1)
                       for b in range(d)] for a in range(d)])
        var += sum(max(0.0, 1.0 - math.sqrt(c[j, j] + eps)) for j in range(d)) / d / 2
        cov += sum(c[a, b] ** 2 for a in range(d) for b in range(d) if a != b) / d
    return inv, var, cov, sim * inv + std_c * var + cov_c * cov


def _orthonormal_standardised(n, d, seed):
    """(N, D) with centred, mutually orthogonal columns of unbiased std 1: QR of a centred matrix."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    q, _ = np.linalg.qr(x - x.mean(axis=0))
    return q * math.sqrt(n - 1)


# --------------------------------------------------------------------------------------------------
# Values against the references
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.1, 0.4, 2.0])
@pytest.mark.parametrize("n,d", [(1, 3), (5, 3), (8, 4)])
def test_grace_matches_reference(tau, n, d):
    h1, h2 = _pair(n, d, seed=n + d, noise=0.5)
    expected = _grace_reference(h1, h2, tau)
    assert float(grace_loss(*_t(h1, h2), tau=tau)) == pytest.approx(expected, rel=1e-10)
    assert float(info_nce_loss(*_t(h1, h2), temperature=tau)) == pytest.approx(expected, rel=1e-10)
    # symmetric in the two views
    assert float(grace_loss(*_t(h2, h1), tau=tau)) == pytest.approx(expected, rel=1e-10)


def test_grace_small_temperatures_take_the_row_max_path_and_stay_exact():
    h1, h2 = _pair(6, 3, seed=2, noise=0.5)
    # float64, τ = 0.002: 2/τ = 1000 > 708, so the constant shift alone would underflow; the direct
    # exponentials of the reference (up to e^500) are still finite in float64
    assert float(grace_loss(*_t(h1, h2), tau=0.002)) == pytest.approx(_grace_reference(h1, h2, 0.002), rel=1e-10)
    # float32, τ = 0.02 (2/τ = 100 > 87): finite, and the float64 value to float32 precision
    got = grace_loss(torch.tensor(h1, dtype=torch.float32), torch.tensor(h2, dtype=torch.float32), tau=0.02)
    assert math.isfinite(float(got))
    assert float(got) == pytest.approx(_grace_reference(h1, h2, 0.02), rel=1e-4)


@pytest.mark.parametrize("lambd", [None, 0.5])
def test_barlow_twins_matches_reference(lambd):
    z1, z2 = _pair(7, 4, seed=3, scales=[0.2, 1.0, 3.0, 10.0])
    on, off, loss = _barlow_twins_reference(z1, z2, lambd, 1e-15)
    terms = barlow_twins_terms(*_t(z1, z2), lambd=lambd)
    assert set(terms) == {"on_diagonal", "off_diagonal", "loss"}
    assert float(terms["on_diagonal"]) == pytest.approx(on, rel=1e-10)
    assert float(terms["off_diagonal"]) == pytest.approx(off, rel=1e-10)
    assert float(terms["loss"]) == pytest.approx(loss, rel=1e-10)
    assert float(barlow_twins_loss(*_t(z1, z2), lambd=lambd)) == float(terms["loss"])


@pytest.mark.parametrize("lambd", [1e-3, 0.5])
def test_cca_ssg_matches_reference(lambd):
    z1, z2 = _pair(9, 3, seed=4, scales=[0.5, 2.0, 7.0])
    inv, dec, loss = _cca_ssg_reference(z1, z2, lambd)
    terms = cca_ssg_terms(*_t(z1, z2), lambd=lambd)
    assert set(terms) == {"invariance", "decorrelation", "loss"}
    assert float(terms["invariance"]) == pytest.approx(inv, rel=1e-10)
    assert float(terms["decorrelation"]) == pytest.approx(dec, rel=1e-10)
    assert float(terms["loss"]) == pytest.approx(loss, rel=1e-10)
    assert float(cca_ssg_loss(*_t(z1, z2), lambd=lambd)) == float(terms["loss"])


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (10.0, 10.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_matches_reference(coeffs):
    # dimensions of very different scale, so that the hinge is active on some only
    z1, z2 = _pair(7, 4, seed=5, scales=[0.2, 0.7, 1.5, 3.0])
    inv, var, cov, loss = _vicreg_reference(z1, z2, *coeffs, 1e-4)
    terms = vicreg_terms(*_t(z1, z2), *coeffs)
    assert set(terms) == {"invariance", "variance", "covariance", "loss"}
    for key, value in (("invariance", inv), ("variance", var), ("covariance", cov), ("loss", loss)):
        assert float(terms[key]) == pytest.approx(value, rel=1e-10), key
    assert float(vicreg_loss(*_t(z1, z2), *coeffs)) == float(terms["loss"])


def test_defaults_are_the_references():
    z1, z2 = _pair(6, 3, seed=6)
    assert float(grace_loss(*_t(z1, z2))) == pytest.approx(_grace_reference(z1, z2, 0.4), rel=1e-10)
    assert float(barlow_twins_loss(*_t(z1, z2))) == pytest.approx(_barlow_twins_reference(z1, z2, 1 / 3, 1e-15)[2], rel=1e-10)
    assert float(cca_ssg_loss(*_t(z1, z2))) == pytest.approx(_cca_ssg_reference(z1, z2, 1e-3)[2], rel=1e-10)
    assert float(vicreg_loss(*_t(z1, z2))) == pytest.approx(_vicreg_reference(z1, z2, 25.0, 25.0, 1.0, 1e-4)[3], rel=1e-10)


def test_toy_uses_the_shared_losses():
    assert toy_losses.info_nce_loss is info_nce_loss
    z1, z2 = _t(*_pair(8, 3, seed=7))
    loss, stats = toy_losses.vicreg_loss(z1, z2, 10.0, 10.0, 1.0)
    terms = vicreg_terms(z1, z2, sim_coeff=10.0, std_coeff=10.0, cov_coeff=1.0)
    assert float(loss) == float(terms["loss"])
    assert stats == {k: float(terms[k]) for k in ("invariance", "variance", "covariance")}


# --------------------------------------------------------------------------------------------------
# Signs and invariances
# --------------------------------------------------------------------------------------------------


def test_info_nce_is_lower_for_aligned_views_than_for_random_ones():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(64, 16))
    aligned = float(grace_loss(*_t(z, z + 0.05 * rng.normal(size=z.shape))))
    random = float(grace_loss(*_t(z, rng.normal(size=z.shape))))
    assert aligned < random - 0.5


def test_info_nce_is_invariant_to_positive_rescaling_of_rows():
    rng = np.random.default_rng(9)
    z1, z2 = _pair(10, 4, seed=9)
    s1, s2 = rng.uniform(0.01, 100.0, size=(10, 1)), rng.uniform(0.01, 100.0, size=(10, 1))
    assert float(grace_loss(*_t(z1 * s1, z2 * s2))) == pytest.approx(float(grace_loss(*_t(z1, z2))), rel=1e-12)


def test_barlow_twins_reaches_its_minimum_at_orthonormal_standardised_columns():
    n, d = 50, 6
    z = _orthonormal_standardised(n, d, seed=10)
    terms = barlow_twins_terms(*_t(z, z))
    # G-BT's convention (unbiased std, then C = Z̃ᵀZ̃/N) makes C = (N − 1)/N · I here, not I: the off-
    # diagonal vanishes and the on-diagonal term is its floor D/N², the least the loss can be
    assert float(terms["off_diagonal"]) == pytest.approx(0.0, abs=1e-24)
    assert float(terms["on_diagonal"]) == pytest.approx(d / n ** 2, rel=1e-9)
    # a per-dimension positive scale and shift is standardised away
    scale, shift = np.linspace(0.1, 10.0, d), np.linspace(-5.0, 5.0, d)
    assert float(barlow_twins_loss(*_t(z * scale + shift, z))) == pytest.approx(float(terms["loss"]), rel=1e-9)


def test_cca_ssg_decorrelation_vanishes_up_to_the_convention_at_orthonormal_columns():
    n, d = 40, 5
    z = _orthonormal_standardised(n, d, seed=11)
    other = _orthonormal_standardised(n, d, seed=12)
    terms = cca_ssg_terms(*_t(z, other))
    # Z̃ᵀZ̃/N = (N − 1)/N · I: each of the two views contributes D/N², all off-diagonal
    assert float(terms["decorrelation"]) == pytest.approx(2 * d / n ** 2, rel=1e-9)
    # identical views: invariance −tr(Z̃ᵀZ̃)/N = −D(N − 1)/N, its minimum
    assert float(cca_ssg_terms(*_t(z, z))["invariance"]) == pytest.approx(-d * (n - 1) / n, rel=1e-12)


def test_vicreg_terms_vanish_where_they_should():
    rng = np.random.default_rng(13)
    wide = rng.normal(size=(200, 5)) * 3.0  # every std far above 1
    assert float(vicreg_terms(*_t(wide, wide + rng.normal(size=wide.shape)))["variance"]) == 0.0
    uncorrelated = _orthonormal_standardised(30, 4, seed=14) * np.array([0.5, 1.0, 2.0, 4.0])
    assert float(vicreg_terms(*_t(uncorrelated, uncorrelated))["covariance"]) == pytest.approx(0.0, abs=1e-24)
    assert float(vicreg_terms(*_t(wide, wide))["invariance"]) == 0.0


# --------------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fn", [
    ("grace", lambda a, b: grace_loss(a, b, tau=0.5)),
    ("grace chunked", lambda a, b: grace_loss(a, b, tau=0.5, chunk_size=3)),
    ("grace sampled", lambda a, b: grace_loss(a, b, tau=0.5, num_negatives=3, generator=torch.Generator().manual_seed(0))),
    ("barlow twins", barlow_twins_loss),
    ("cca-ssg", cca_ssg_loss),
    ("vicreg", vicreg_loss),
])
def test_losses_are_finite_and_differentiable(name, fn):
    # dimension scales away from 1, so that VICReg's hinge is not at its kink
    z1, z2 = _t(*_pair(6, 3, seed=15, scales=[0.3, 2.0, 5.0]), grad=True)
    value = fn(z1, z2)
    assert value.shape == () and torch.isfinite(value)
    assert torch.autograd.gradcheck(fn, (z1, z2))


# --------------------------------------------------------------------------------------------------
# Chunked InfoNCE: exact, and memory-bounded
# --------------------------------------------------------------------------------------------------


def _grace_full_matrix(h1, h2, tau):
    """The 2N × 2N NT-Xent through plain autograd: the gradient reference for the blocked loss."""
    w = torch.cat([h1 / h1.norm(dim=1, keepdim=True), h2 / h2.norm(dim=1, keepdim=True)])
    n = h1.shape[0]
    s = (w @ w.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return (torch.logsumexp(s, dim=1) - s[torch.arange(2 * n), partner]).mean()


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 13, 23, 24, 60, None])
def test_chunked_info_nce_equals_unchunked_in_value_and_gradient(chunk_size):
    n = 12  # 2N = 24 anchors: 7, 13 and 23 do not divide it
    h1, h2 = _t(*_pair(n, 5, seed=16, noise=0.7), grad=True)
    expected = _grace_full_matrix(h1, h2, 0.3)
    got = grace_loss(h1, h2, tau=0.3, chunk_size=chunk_size)
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    g_expected = torch.autograd.grad(expected, (h1, h2))
    g_got = torch.autograd.grad(got, (h1, h2))
    for a, b in zip(g_got, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_info_nce_without_grad_gives_the_same_value():
    h1, h2 = _t(*_pair(9, 4, seed=17), grad=True)
    with torch.no_grad():
        value = grace_loss(h1, h2, chunk_size=4)
    assert float(value) == pytest.approx(float(grace_loss(h1, h2, chunk_size=4).detach()), rel=1e-14)


def test_info_nce_at_20000_nodes_runs_in_bounded_memory():
    # Forward + backward at N = 20000, D = 64 (float32) in a fresh process; its peak RSS growth is
    # the memory the loss used. The full 2N × 2N matrix alone would be 6.1 GiB; measured on the
    # project's 2-core VM: 131 MiB (one 64 MiB block of 419 × 40000 similarities, a few (2N, D)
    # tensors and autograd's copies of the inputs) in about 4 s.
    script = textwrap.dedent("""
        import resource, torch
        from bgrl_werank.losses import grace_loss
        g = torch.Generator().manual_seed(0)
        h1 = torch.randn(20000, 64, generator=g, requires_grad=True)
        h2 = torch.randn(20000, 64, generator=g, requires_grad=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loss = grace_loss(h1, h2, tau=0.4)
        loss.backward()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ok = bool(torch.isfinite(loss)) and bool(torch.isfinite(h1.grad).all()) and bool(torch.isfinite(h2.grad).all())
        print(ok, (after - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    ok, growth_mib = out.stdout.split()
    assert ok == "True"
    assert float(growth_mib) < 512, f"peak RSS grew by {growth_mib} MiB"


# --------------------------------------------------------------------------------------------------
# Sampled negatives (an approximation, off by default)
# --------------------------------------------------------------------------------------------------


def test_sampled_negatives_never_draw_the_anchor_or_its_positive():
    # u_i = v_i = e_i: every negative has similarity 0, the anchor itself and its positive 1; so any
    # draw of k negatives estimates the negatives' sum exactly, unless it hits one of those two
    z = np.eye(5)
    h1, h2 = _t(z, z)
    exact = float(grace_loss(h1, h2, tau=0.5))
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        assert float(grace_loss(h1, h2, tau=0.5, num_negatives=1, generator=g)) == pytest.approx(exact, rel=1e-12)


def test_sampled_negatives_are_reproducible_and_approach_the_exact_loss():
    h1, h2 = _t(*_pair(40, 8, seed=18, noise=0.5))

    def sampled(k, seed):
        return float(grace_loss(h1, h2, tau=0.5, num_negatives=k, generator=torch.Generator().manual_seed(seed)))

    assert sampled(5, 0) == sampled(5, 0)
    assert sampled(5, 0) != sampled(5, 1)
    exact = float(grace_loss(h1, h2, tau=0.5))
    assert sampled(78, 0) == pytest.approx(exact, rel=1e-12)  # k ≥ 2N − 2: the exact loss
    assert sampled(4000, 0) == pytest.approx(exact, rel=2e-3)


# --------------------------------------------------------------------------------------------------
# Input errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: grace_loss(torch.zeros(3, 2), torch.zeros(4, 2)),
    lambda: grace_loss(torch.zeros(0, 2), torch.zeros(0, 2)),
    lambda: grace_loss(torch.ones(3, 2), torch.ones(3, 2), tau=0.0),
    lambda: grace_loss(torch.ones(3, 2), torch.ones(3, 2), chunk_size=0),
    lambda: grace_loss(torch.ones(3, 2), torch.ones(3, 2), num_negatives=0),
    lambda: barlow_twins_loss(torch.ones(1, 2), torch.ones(1, 2)),
    lambda: cca_ssg_loss(torch.ones(3), torch.ones(3)),
    lambda: vicreg_loss(torch.ones(3, 2), torch.ones(3, 3)),
])
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
