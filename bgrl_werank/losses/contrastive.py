"""GRACE's contrastive objective (Zhu et al., 2020), written as a pure, memory-bounded function.

The loss takes the two views' *projected* embeddings; GRACE's projection head is part of the
method, not of the loss.

With u_i, v_i the L2-normalised embeddings of node i in views 1 and 2, θ the cosine similarity and τ
the temperature, GRACE's per-anchor term is

.. math::

    \\ell(u_i, v_i) = -\\log \\frac{e^{\\theta(u_i, v_i)/\\tau}}
        {e^{\\theta(u_i, v_i)/\\tau} + \\sum_{k \\ne i} e^{\\theta(u_i, v_k)/\\tau}
         + \\sum_{k \\ne i} e^{\\theta(u_i, u_k)/\\tau}}

and the loss is :math:`\\frac{1}{N} \\sum_i \\tfrac12 (\\ell(u_i, v_i) + \\ell(v_i, u_i))`.
Stacking W = [U; V] (2N rows), this is exactly SimCLR's NT-Xent over the 2N embeddings: every row
a of W is an anchor whose positive is its other view p(a) and whose denominator runs over all
b ≠ a, and the loss is the mean of ℓ_a over the 2N anchors. :func:`info_nce_loss` is this same
function under the toy experiments' name.

Reference convention (CRIPAC-DIG/GRACE, ``model.py``: ``sim`` = ``F.normalize`` then ``mm``;
``semi_loss`` = −log(between.diag() / (refl.sum(1) + between.sum(1) − refl.diag())), the two
directions averaged with ``(l1 + l2) * 0.5`` then ``.mean()``): the normalisation is
``F.normalize``'s (each norm clamped to ≥ 1e-12), the mean is over N nodes of the two directions'
average. The reference exponentiates the similarities directly; here each row's log-sum-exp is
shifted (by the constant 1/τ, plus the row maximum when τ is tiny; see ``_BlockedLogSumExp``), which
gives the same value up to rounding wherever the reference is finite: it overflows in float32 once
1/τ + log(2N) > 88.7 (τ < 0.013 at N = 20000). Checked in ``tests/test_losses.py`` against the formula
above written with numpy loops, and against the toy experiments' former ``F.cross_entropy`` NT-Xent
(float64, to 1e-14 in value and gradient).

Memory. The 2N × 2N similarity matrix is never held, in the forward or the backward pass (GRACE's
own ``batched_semi_loss`` bounds the forward only: autograd keeps every block for backward). The
anchors are processed in blocks of ``chunk_size`` rows, each a (chunk_size, 2N) block of
similarities. As w_a·w_b is symmetric in a and b, the gradient of Σ_a logsumexp_{b≠a}(w_a·w_b/τ)
with respect to W is (P + Pᵀ)W/τ with P the row-wise softmax; a block of rows of P gives both its
rows of P·W and its share of Pᵀ·W, so the gradient is accumulated in the same sweep as the value
(three block matmuls per block, nothing recomputed in backward) and saved as one (2N, D) tensor.
Peak extra memory is one block plus a few (2N, D) tensors: measured (peak RSS growth, float32,
2 threads) 131 MiB for N = 20000, D = 64 forward + backward in 3.9 s, where the full 2N × 2N matrix
alone would be 6.1 GiB (``tests/test_losses.py`` repeats the measurement).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Automatic block size: the (rows, 2N) similarity block holds at most this many entries
# (2**24 ≈ 16.8M: 64 MiB in float32, 128 MiB in float64), so rows = max(1, 2**24 // (2N)).
# Up to N = 2048 nodes the whole 2N × 2N matrix is one block.
BLOCK_ENTRIES = 1 << 24

_NORM_EPS = 1e-12  # F.normalize's default, as in GRACE's ``sim``


def grace_loss(h1: Tensor, h2: Tensor, tau: float = 0.4, chunk_size: int | None = None,
               num_negatives: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """GRACE's symmetric InfoNCE with inter- and intra-view negatives, exact and memory-bounded.

    Each row of ``h1``, ``h2`` is L2-normalised (``F.normalize``, norms clamped to ≥ 1e-12); the
    positive of node i in one view is node i in the other view, its negatives are all other nodes
    of *both* views (2N − 2 of them). With W = [U; V] (2N, D), s_ab = w_a·w_b/τ and p(a) the other
    view of anchor a:

    .. math::

        \\mathcal{L} = \\frac{1}{2N} \\sum_{a=1}^{2N}
            \\Big( -s_{a,p(a)} + \\log \\sum_{b \\ne a} e^{s_{ab}} \\Big)

    which is the mean over the N nodes of (ℓ(u_i, v_i) + ℓ(v_i, u_i))/2 (see the module docstring
    for GRACE's notation and the reference this follows). The log-sum-exp is shifted: same value
    as the reference's direct exponentials, up to rounding, wherever those do not overflow.

    Args:
        h1: (projected) embeddings of view 1; row i is node i.
        h2: (projected) embeddings of view 2.
        tau: the temperature τ > 0 (GRACE's Cora value 0.4).
        chunk_size: anchors (rows of W) per block; each block is a (chunk_size, 2N) matrix of
            similarities. ``None``: max(1, 2**24 // (2N)) (:data:`BLOCK_ENTRIES`), i.e. one block up
            to N = 2048. Any value ≥ 1 gives the same loss and gradient up to rounding.
        num_negatives: ``None`` (default): the exact loss over all 2N − 2 negatives. An int k:
            an *approximation* that draws, for every anchor, k negatives uniformly with replacement
            from its 2N − 2 (with ``generator``), and estimates the negatives' sum of exponentials
            by (2N − 2)/k times their sum (an unbiased estimate of the sum; its log, hence the
            loss, is biased low for small k and consistent as k grows). Memory is then
            O(N·k·D) and ``chunk_size`` is unused. k ≥ 2N − 2 falls back to the exact loss.
        generator: the random generator for ``num_negatives`` (on the embeddings' device).

    Returns:
        A scalar tensor, differentiable with respect to ``h1`` and ``h2`` (first order only on the
        exact path: its backward is a precomputed gradient).

    Raises:
        ValueError: if the shapes differ or are not 2-D, N = 0, τ ≤ 0, or chunk_size /
            num_negatives < 1.

    Shapes:
        - h1, h2: (num_nodes, dim)
        - output: ()
    """
    if h1.dim() != 2 or h1.shape != h2.shape:
        raise ValueError(f"grace_loss expects two (N, D) tensors of one shape, got {tuple(h1.shape)} and {tuple(h2.shape)}")
    n = h1.shape[0]
    if n == 0:
        raise ValueError("grace_loss needs at least one node")
    if not tau > 0 or not math.isfinite(tau):
        raise ValueError(f"tau must be a finite number > 0, got {tau}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if num_negatives is not None and num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    u = F.normalize(h1, dim=1, eps=_NORM_EPS)
    v = F.normalize(h2, dim=1, eps=_NORM_EPS)
    # Σ_a s_{a,p(a)}: each node's positive pair appears twice among the 2N anchors
    positives = 2.0 * torch.linalg.vecdot(u, v, dim=1).sum() / tau
    w = torch.cat([u, v], dim=0)
    if num_negatives is not None and num_negatives < 2 * n - 2:
        lse = _sampled_lse_sum(w, tau, num_negatives, generator)
    else:
        rows = chunk_size if chunk_size is not None else max(1, BLOCK_ENTRIES // (2 * n))
        want_grad = torch.is_grad_enabled() and w.requires_grad
        lse = _BlockedLogSumExp.apply(w, tau, min(rows, 2 * n), want_grad)
    return (lse - positives) / (2 * n)


def info_nce_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """Symmetric InfoNCE / NT-Xent (SimCLR) over the 2N embeddings of a batch: :func:`grace_loss`.

    SimCLR's NT-Xent (each of the 2N L2-normalised embeddings an anchor, its positive the other
    view of the same sample, its negatives the other 2N − 2, averaged over the 2N anchors) is
    term for term GRACE's loss, so this is ``grace_loss(z1, z2, tau=temperature)``.

    Args:
        z1, z2: embeddings of the two views (row i of each is the same sample).
        temperature: τ > 0.

    Returns:
        A scalar tensor.

    Shapes:
        - z1, z2: (N, d)
        - output: ()
    """
    return grace_loss(z1, z2, tau=temperature)


class _BlockedLogSumExp(torch.autograd.Function):
    """Σ_a log Σ_{b≠a} exp(w_a·w_b/τ) over the rows of W, one (rows, 2N) block at a time.

    With E_ab = exp(w_a·w_b/τ − shift) (E_aa = 0), den_a = Σ_b E_ab and P = E/den row-wise, the
    gradient is (P + Pᵀ)W/τ. Block R of rows gives its rows of P·W, (E_R·W)/den_R, and its share
    of Pᵀ·W, E_Rᵀ·(W_R/den_R); both are accumulated in the forward sweep when ``want_grad`` and
    the backward pass only scales the sum. W is augmented with a column of ones, so that one
    matmul gives s/τ − shift (the query side carries −shift in that column) and another gives
    E_R·W together with den_R.

    The shift: rows of W have norm ≤ 1, so s/τ ∈ [−1/τ, 1/τ] and the constant shift 1/τ keeps
    every entry of E in [e^{−2/τ}, 1]: neither overflow nor underflow while 2/τ is below
    −log(smallest normal) (87 in float32, i.e. τ > 0.023; 708 in float64), which is then the
    stable log-sum-exp without a per-row max. For smaller τ the row max is subtracted as well.

    One block buffer is allocated once and reused (a fresh multi-MB allocation per block costs
    more in page faults than the matmul: 8.3 vs 3.0 s for N = 20000 on this project's VM).
    """

    @staticmethod
    def forward(ctx, w: Tensor, tau: float, rows: int, want_grad: bool) -> Tensor:  # type: ignore[override]
        m, d = w.shape
        shift = 1.0 / tau
        per_row_max = 2.0 * shift >= -math.log(torch.finfo(w.dtype).tiny)
        keys = torch.cat([w, w.new_ones(m, 1)], dim=1)  # [W, 1]
        buf = w.new_empty(rows, m)
        lse = w.new_empty(m)
        grad = torch.zeros_like(w) if want_grad else None
        grad_t = w.new_zeros(d, m) if want_grad else None  # (Pᵀ W)ᵀ, accumulated row-major
        for lo in range(0, m, rows):
            hi = min(lo + rows, m)
            e = buf[: hi - lo]
            queries = torch.cat([w[lo:hi] / tau, w.new_full((hi - lo, 1), -shift)], dim=1)  # [W_R/τ, −shift]
            torch.mm(queries, keys.t(), out=e)  # s/τ − shift
            e[:, lo:hi].diagonal().fill_(float("-inf"))  # b ≠ a: exp gives exactly 0
            if per_row_max:
                peak = e.amax(dim=1, keepdim=True)
                e.sub_(peak)
            e.exp_()
            if grad is not None:
                both = torch.mm(e, keys)  # [E_R W, den_R]
                den = both[:, d:]
                grad[lo:hi] = both[:, :d] / den  # (P W)_R
                grad_t.addmm_((w[lo:hi] / den).t(), e)  # + (E_Rᵀ (W_R / den_R))ᵀ
            else:
                den = e.sum(dim=1, keepdim=True)
            row_lse = den.log().squeeze(1) + shift
            lse[lo:hi] = row_lse + peak.squeeze(1) if per_row_max else row_lse
        if grad is not None:
            grad += grad_t.t()
            ctx.save_for_backward(grad)
        ctx.tau = tau
        return lse.sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * (g / ctx.tau), None, None, None


def _sampled_lse_sum(w: Tensor, tau: float, k: int, generator: torch.Generator | None) -> Tensor:
    """Σ_a log(e^{s_{a,p(a)}} + (2N − 2)/k · Σ_{j≤k} e^{s_{a,n_j}}), n_j uniform on b ∉ {a, p(a)}."""
    m = w.shape[0]
    n = m // 2
    anchors = torch.arange(m, device=w.device)
    partner = torch.where(anchors < n, anchors + n, anchors - n)
    lo, hi = torch.minimum(anchors, partner).unsqueeze(1), torch.maximum(anchors, partner).unsqueeze(1)
    # uniform on [0, m − 2), shifted past the two excluded indices lo < hi: uniform on [0, m) \ {lo, hi}
    idx = torch.randint(0, m - 2, (m, k), generator=generator, device=w.device)
    idx = idx + (idx >= lo)
    idx = idx + (idx >= hi)
    neg = torch.linalg.vecdot(w.unsqueeze(1), w[idx], dim=2) / tau + math.log((m - 2) / k)  # (m, k)
    pos = torch.linalg.vecdot(w, w[partner], dim=1).unsqueeze(1) / tau
    return torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1).sum()
