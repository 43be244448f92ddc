"""WERank: a weight regularizer that keeps every layer's map full rank.

For a network with weight matrices W_1 … W_L the paper (Section 2.1) adds

.. math::

    \\mathcal{L}_{reg} = \\sum_{l=1}^{L} \\alpha_l \\, \\lVert G_l - I \\rVert_F

where the norm is the plain (not squared) Frobenius norm and G_l is the Gram matrix of the *smaller*
side of W_l, so that the identity is reachable (a d×d Gram of rank r < d can never equal I_d).

Layout convention. PyTorch stores ``nn.Linear.weight`` and ``GCNConv.lin.weight`` as ``w`` of shape
(out, in); the paper writes W = wᵀ ∈ R^{in×out}. With ``w`` of shape (out, in):

* out ≤ in (a narrowing layer): G = w wᵀ (out×out), which is WᵀW in the paper's notation;
* out > in (a widening layer):  G = wᵀ w (in×in), which is WWᵀ in the paper's notation.

Either way G = I exactly when the rows (narrowing) or the columns (widening) of ``w`` are
orthonormal, i.e. when every singular value of ``w`` is 1.

Gradient. ‖G − I‖_F is not differentiable where G = I (its gradient there is 0/0). With
D = G − I and n = ‖D‖_F, the gradient with respect to w is 2·D·w / n for the narrowing case and
2·w·D / n for the widening case. We compute n as sqrt(‖D‖² + ε²) − ε with a tiny ε, which equals
‖D‖_F to within floating-point error away from 0, is exactly 0 at G = I, and has gradient 0 there
(the minimum) instead of NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..ops import matmul_nt

# Smoothing of the norm at its kink. 1e-12 is far below float32 resolution of any norm we see in
# practice (‖D‖ of an untrained 16×16 layer is ~1), so values are unchanged; only the gradient at
# exactly D = 0 changes, from NaN to 0.
_EPS = 1e-12


def gram(weight: Tensor) -> Tensor:
    """The Gram matrix of the smaller side of a torch-layout (out, in) weight.

    Args:
        weight: a 2-D tensor of shape (out, in).

    Returns:
        ``weight @ weight.T`` (out×out) when out ≤ in, else ``weight.T @ weight`` (in×in).
    """
    out_features, in_features = weight.shape
    return weight @ weight.T if out_features <= in_features else weight.T @ weight


# Gram matrices are formed in this many row blocks, upper triangle only (see _symmetric_gram).
_GRAM_BLOCKS = 4


def _symmetric_gram(r: Tensor) -> Tensor:
    """``r @ r.T`` for a (k, m) ``r``, from the block upper triangle only, mirrored.

    r·rᵀ is symmetric, so of its B×B blocks only the B(B+1)/2 on and above the diagonal need a
    product: 10/16 of the multiply-adds for B = 4 (a hand-written SYRK; PyTorch has none). Each
    entry on and above the diagonal is the same dot product as in the full product (bit for bit the
    same in our check); the lower triangle is their mirror, so the result is exactly symmetric, as
    the closed-form gradient assumes (a full product is not, by rounding).

    A row-contiguous ``r`` goes through :func:`matmul_nt` (oneDNN); a column-contiguous one (the
    feature-major first weight) through MKL, which reads the transposed blocks in place (oneDNN
    took seconds on such strided blocks). Measured on this project's VM, 2 threads, 512 × 6805
    (Coauthor CS's first layer): row-major 17.9 → 11.2 ms; feature-major 24.5 ms (oneDNN's full
    product on the strided view) → 15.3 ms. 512 × 1433 (Cora's), row-major: 3.9 → 2.5 ms.
    """
    k = r.shape[0]
    blocks = _GRAM_BLOCKS if k >= 4 * _GRAM_BLOCKS else 1
    edges = [k * i // blocks for i in range(blocks + 1)]
    g = r.new_zeros(k, k)
    for lo, hi in zip(edges[:-1], edges[1:]):
        g[lo:hi, lo:] = matmul_nt(r[lo:hi], r[lo:]) if r.is_contiguous() else r[lo:hi] @ r[lo:].t()
    return g.triu() + g.triu(1).t()  # the upper triangle, mirrored (diagonal blocks included)


class _DistanceToIdentity(torch.autograd.Function):
    """n(w) = sqrt(‖G − I‖²_F + ε²) − ε with its closed-form gradient.

    Autograd through ``w @ w.T`` would spend two Gram-sized matmuls on the backward pass
    (``D @ w`` and ``Dᵀ @ w``); D is symmetric, so one is enough: ∂n/∂w = 2·D·w / sqrt(‖D‖² + ε²)
    (narrowing) or 2·w·D / sqrt(‖D‖² + ε²) (widening). Checked against autograd and finite
    differences in the tests.

    Both cases are written for r, the (k, m) side with k ≤ m whose Gram r·rᵀ is G (r = w narrowing,
    r = wᵀ widening), and the gradient is formed in w's own memory layout (row- or feature-major), so
    that it adds to w's other gradients without a transposing copy.
    """

    @staticmethod
    def forward(ctx, weight: Tensor) -> Tensor:  # type: ignore[override]
        narrowing = weight.shape[0] <= weight.shape[1]
        r = weight if narrowing else weight.t()
        g = _symmetric_gram(r)
        d = g - torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
        root = torch.sqrt((d * d).sum() + _EPS * _EPS)
        ctx.save_for_backward(weight, d, root)
        return root - _EPS

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weight, d, root = ctx.saved_tensors
        narrowing = weight.shape[0] <= weight.shape[1]
        r = weight if narrowing else weight.t()
        # ∂n/∂r = 2·D·r / root; (D = Dᵀ) through matmul_nt (oneDNN where available: 1.5-1.9x MKL for
        # D·w at Cora's and Coauthor CS's first layers on this project's VM; docs/notes/sessions-1-10.md)
        dr = matmul_nt(d, r.t()) if r.is_contiguous() else matmul_nt(r.t(), d).t()  # D·r, or (rᵀ·D)ᵀ
        dr.mul_(2.0 * grad / root)
        return dr if narrowing else dr.t()


def _frobenius_distance_to_identity(weight: Tensor) -> Tensor:
    return _DistanceToIdentity.apply(weight)


def _frobenius_distance_to_identity_autograd(weight: Tensor) -> Tensor:
    """The same value through plain autograd; the tests' reference for the closed-form gradient."""
    g = gram(weight)
    d = g - torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    return torch.sqrt((d * d).sum() + _EPS * _EPS) - _EPS


def _alphas(alpha: float | Sequence[float], n: int) -> list[float]:
    if isinstance(alpha, (int, float)):
        alphas = [float(alpha)] * n
    else:
        alphas = [float(a) for a in alpha]
        if len(alphas) != n:
            raise ValueError(
                f"werank alpha has {len(alphas)} values but there are {n} weight matrices; "
                f"give one alpha per weight matrix or a single float"
            )
    for i, a in enumerate(alphas):
        if not (a >= 0.0) or a != a or a == float("inf"):
            raise ValueError(f"werank alpha[{i}] = {a} is invalid; alpha must be a finite number >= 0")
    return alphas


def werank_penalty(weights: Sequence[Tensor], alpha: float | Sequence[float] = 1.0) -> Tensor:
    """WERank penalty Σ_l α_l ‖G_l − I‖_F over a sequence of weight matrices.

    Args:
        weights: 2-D tensors in torch layout (out, in), e.g. from :func:`encoder_weights`.
        alpha: one float for all matrices, or one float per matrix (default ``1.0``). Must be ≥ 0.
            An alpha of exactly 0 contributes exactly 0 (the Gram is not even formed).

    Returns:
        A scalar tensor (on the device and dtype of the first weight), differentiable with respect to
        every weight with a non-zero alpha.

    Raises:
        ValueError: if a weight is not 2-D, if an alpha is negative or not finite, or if the number of
            alphas does not match the number of weights.

    Shapes:
        - weights[l]: (out_l, in_l)
        - output: () scalar

    Examples:
        >>> import torch
        >>> q, _ = torch.linalg.qr(torch.randn(8, 8))
        >>> float(werank_penalty([q[:4]], alpha=0.5)) < 1e-5   # orthonormal rows: no penalty
        True
        >>> float(werank_penalty([2 * torch.eye(3)], alpha=1.0))  # G = 4I, ‖3I‖_F = 3·sqrt(3)
        5.196152210235596
    """
    weights = list(weights)
    if not weights:
        raise ValueError("werank_penalty needs at least one weight matrix")
    for i, w in enumerate(weights):
        if w.dim() != 2:
            raise ValueError(
                f"werank weight {i} has shape {tuple(w.shape)}; WERank applies to 2-D weight matrices only"
            )
    alphas = _alphas(alpha, len(weights))
    total = weights[0].new_zeros(())
    for a, w in zip(alphas, weights):
        if a == 0.0:
            continue
        total = total + a * _frobenius_distance_to_identity(w)
    return total


class WERank(nn.Module):
    """Module form of :func:`werank_penalty` with validated, fixed alphas.

    Args:
        alpha: a float for every matrix or one float per matrix (default ``1.0``).

    Raises:
        ValueError: at construction, if any alpha is negative or not finite.
    """

    def __init__(self, alpha: float | Sequence[float] = 1.0) -> None:
        super().__init__()
        n = 1 if isinstance(alpha, (int, float)) else len(alpha)
        _alphas(alpha, n)  # validate now, not an hour into training
        self.alpha = alpha

    def forward(self, weights: Sequence[Tensor]) -> Tensor:
        return werank_penalty(weights, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def encoder_weights(module: nn.Module) -> list[Tensor]:
    """The 2-D weight matrices of a network's linear maps, in layer order.

    Collects the ``weight`` of every ``nn.Linear`` and of every PyG ``Linear`` (which is what
    ``GCNConv.lin`` is), in the order :meth:`nn.Module.modules` visits them, i.e. the order they
    were registered. BatchNorm and PReLU parameters are not weight matrices and are skipped.

    Args:
        module: an encoder, a predictor, or any module built from linear maps.

    Returns:
        A list of (out, in) parameter tensors (the parameters themselves, so gradients flow).
    """
    from torch_geometric.nn.dense.linear import Linear as PygLinear

    out = []
    for m in module.modules():
        if isinstance(m, (nn.Linear, PygLinear)):
            w = m.weight
            if isinstance(w, nn.parameter.UninitializedParameter):
                raise ValueError("encoder_weights: a layer is still lazily uninitialised; run a forward pass first")
            out.append(w)
    return out
