"""Linear evaluation of frozen node embeddings: multinomial logistic regression on each split.

The probe fits, for every split and every C of a grid, the minimiser of

.. math::

    F(W, b) = C \\sum_{i \\in \\text{train}} \\mathrm{CE}\\big(\\mathrm{softmax}(W^\\top x_i + b), y_i\\big)
              + \\tfrac12 \\lVert W \\rVert_F^2

(the bias b is not penalised), which is exactly the objective of
``sklearn.linear_model.LogisticRegression(C=C)`` (lbfgs, multinomial, one weight vector per class).
The C with the best validation accuracy is selected per split and its test accuracy reported.

Two backends compute the same thing:

* ``"sklearn"``: the reference, one ``LogisticRegression`` (lbfgs) per split and C;
* ``"torch"``: all (split × C) problems at once, by one vectorised L-BFGS in which each
  problem keeps its own memory and step length (see :func:`_lbfgs`). Both stop on the same
  criterion (sklearn's ``gtol``), so they find the same optimum to the same tolerance. The solver
  state is float64; its matrix products are float32 unless ``tol`` < 1e-7.

Why L-BFGS and not Newton: on these problems (d ≈ 256, a few hundred train nodes, C up to 2^10)
the Hessian's condition number reaches ~10^4 at large C, so every Newton step needs 50-100
conjugate-gradient products; a batched Newton-CG that we tried needed 2-3x more matrix products
than L-BFGS in total for the default tolerance. L-BFGS costs two batched matrix products per
iteration (the line search is free, see :func:`_lbfgs`) and converges in ≤ ~60 iterations at
``tol=1e-4``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.splits import Split
from .rank import all_finite

#: Default grid of inverse regularisation strengths C: 2^-10, 2^-9, …, 2^10 (21 values; the grid of
#: the reference BGRL linear evaluation; the selected C stays inside it, 2^1-2^8, on the Cora and
#: Photo featurisations of ``benchmarks/bench_probe.py``).
DEFAULT_C_GRID: tuple[float, ...] = tuple(float(2.0**k) for k in range(-10, 11))

BACKENDS = ("torch", "sklearn")

_HISTORY = 10  # L-BFGS memory (pairs); 5-30 change the iteration count by < 20%
_MAX_HALVINGS = 50  # backtracking steps before a problem's line search is declared stalled
# The torch backend's two matrix products per iteration run in float32 when tol >= this (20% faster;
# the exact float64 gradient of the result still met tol down to 1e-7 on Photo), else in float64.
_FLOAT32_TOL = 1e-7


@dataclass
class ProbeResult:
    """Per-split outcome of :func:`linear_probe`; accuracies are fractions in [0, 1].

    Attributes:
        test_acc: test accuracy of each split at its selected C.
        val_acc: validation accuracy of each split at its selected C.
        best_c: the selected C of each split.
        mean: mean of ``test_acc`` over splits.
        std: population standard deviation (numpy's default ``ddof=0``) of ``test_acc``.
        backend: ``"torch"`` or ``"sklearn"``.
        seconds: wall-clock time of the whole probe (normalisation, fits, selection).
    """

    test_acc: list[float]
    val_acc: list[float]
    best_c: list[float]
    mean: float
    std: float
    backend: str
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict of all fields."""
        return asdict(self)


def linear_probe(
    embeddings: Tensor,
    labels: Tensor,
    splits: Sequence[Split],
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    normalize: bool = True,
    backend: str = "torch",
    max_iter: int = 1000,
    tol: float = 1e-4,
) -> ProbeResult:
    """Linear-probe accuracy of frozen embeddings, C chosen per split on the validation nodes.

    For each split and each C in ``c_grid`` a multinomial logistic regression is fitted on the train
    nodes by minimising

    .. math::

        F(W, b) = C \\sum_{i \\in \\text{train}} \\Big( \\log \\sum_k e^{w_k^\\top x_i + b_k}
                  - (w_{y_i}^\\top x_i + b_{y_i}) \\Big) + \\tfrac12 \\lVert W \\rVert_F^2 ,

    the objective of ``sklearn.linear_model.LogisticRegression(C=C)``; the bias is not penalised.
    The C with the highest validation accuracy is selected; ties go to the *smallest* such C (the
    most regularised model). The split's test accuracy at that C is reported. Only the classes that
    occur among a split's train nodes can be predicted for that split (as in sklearn).

    Args:
        embeddings: frozen node embeddings.
        labels: integer class of every node (any integer values; they are re-indexed).
        splits: the train/val/test splits (see :mod:`bgrl_werank.data.splits`).
        c_grid: inverse regularisation strengths to try (default :data:`DEFAULT_C_GRID`,
            2^-10 … 2^10); all must be positive and finite.
        normalize: L2-normalise every embedding row before fitting (default True).
        backend: ``"torch"`` (default; one batched L-BFGS over all splits × C) or ``"sklearn"``
            (the reference: ``LogisticRegression``, lbfgs, one fit per split and C).
        max_iter: L-BFGS iteration cap per problem, both backends (default 1000; sklearn's own
            default of 100 is too few at C = 2^10, the torch backend needs ≤ ~60 at tol=1e-4).
        tol: a problem is solved when max |∇F| / (C · n_train) ≤ ``tol``: sklearn's ``gtol``
            criterion, used by both backends (default 1e-4, sklearn's default). Test accuracies
            move by ~0.01 points between 1e-4 and 1e-6. The torch backend does its matrix
            products in float32 when tol ≥ 1e-7 and in float64 below.

    Returns:
        A :class:`ProbeResult`.

    Raises:
        ValueError: on malformed inputs (shapes, an empty or non-positive grid, split indices out
            of range, non-finite embeddings, a train set with fewer than two classes, an unknown
            backend).

    Shapes:
        - embeddings: (N, d), any floating dtype (solver state in float64, see ``tol``).
        - labels: (N,), integer.

    Examples:
        >>> import torch
        >>> from bgrl_werank.data.splits import random_splits
        >>> z, y = torch.randn(300, 8), torch.randint(0, 3, (300,))
        >>> res = linear_probe(z, y, random_splits(300, num_splits=2), c_grid=[0.1, 1.0])
        >>> len(res.test_acc)
        2
    """
    start = time.perf_counter()
    x, y, num_classes = _validate(embeddings, labels, splits, c_grid, backend, max_iter, tol)
    x = _Rows(x, normalize)
    c_values = torch.tensor([float(c) for c in c_grid], dtype=torch.float64)
    if backend == "torch":
        test_acc, val_acc, best_g = _probe_torch(x, y, num_classes, splits, c_values, max_iter, tol)
    else:
        test_acc, val_acc, best_g = _probe_sklearn(x, y, splits, c_values, max_iter, tol)
    accs = np.asarray(test_acc, dtype=np.float64)
    return ProbeResult(
        test_acc=[float(a) for a in test_acc],
        val_acc=[float(a) for a in val_acc],
        best_c=[float(c_values[g]) for g in best_g],
        mean=float(accs.mean()),
        std=float(accs.std()),
        backend=backend,
        seconds=time.perf_counter() - start,
    )


def fit_logistic_regression(
    x: Tensor,
    y: Tensor,
    c_grid: Sequence[float],
    *,
    num_classes: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Fit the multinomial logistic regression of :func:`linear_probe` for every C of a grid.

    Minimises, for each C, ``C * sum_i CE(softmax(x_i @ W + b), y_i) + ||W||^2 / 2`` by the batched
    L-BFGS of the torch backend, to the gradient tolerance ``tol`` (float32 matrix products when
    tol ≥ 1e-7). No normalisation is applied to ``x``. The bias is defined up to a common constant;
    the returned one has zero mean over the classes present in ``y``. Classes absent from ``y`` get
    zero weights and bias and must be excluded at prediction.

    Args:
        x: training features.
        y: training labels in ``[0, num_classes)``.
        c_grid: inverse regularisation strengths (positive).
        num_classes: number of classes c (default ``y.max() + 1``).
        max_iter: L-BFGS iteration cap (default 1000).
        tol: gradient tolerance as in :func:`linear_probe` (default 1e-4).

    Returns:
        ``(weight, bias)`` of shapes (G, d, c) and (G, c), float64.

    Shapes:
        - x: (n, d); y: (n,) long.
    """
    if x.dim() != 2 or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"need x of shape (n, d) and y of shape (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not all_finite(x):
        raise ValueError("x contains NaN/inf")
    c = int(y.max()) + 1 if num_classes is None else num_classes
    if int(y.min()) < 0 or int(y.max()) >= c or torch.unique(y).numel() < 2:
        raise ValueError(f"y must take at least two distinct values in [0, {c})")
    _check_solver_args(c_grid, max_iter, tol)
    c_values = torch.tensor([float(v) for v in c_grid], dtype=torch.float64)
    x = x.to(torch.float64)
    idx = torch.arange(x.shape[0]).view(1, -1)
    mask = torch.ones_like(idx, dtype=torch.bool)
    weight, bias, _ = _fit_splits(x, y.long(), c, idx, mask, c_values, max_iter, tol)
    return weight[0], bias[0]


# --------------------------------------------------------------------------------------------------
# validation


def _validate(
    embeddings: Tensor,
    labels: Tensor,
    splits: Sequence[Split],
    c_grid: Sequence[float],
    backend: str,
    max_iter: int,
    tol: float,
) -> tuple[Tensor, Tensor, int]:
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be 2-D (N, d), got shape {tuple(embeddings.shape)}")
    n = embeddings.shape[0]
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match embeddings (N={n}), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _check_solver_args(c_grid, max_iter, tol)
    if len(splits) == 0:
        raise ValueError("splits is empty; give at least one Split")
    x = embeddings.detach().cpu()
    if not x.is_floating_point():
        x = x.to(torch.float64)
    if not all_finite(x):
        raise ValueError("embeddings contain NaN/inf")
    _, y = torch.unique(labels.detach().cpu(), return_inverse=True)
    num_classes = int(y.max()) + 1
    for s, split in enumerate(splits):
        for part in ("train", "val", "test"):
            idx = getattr(split, part)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ValueError(f"split {s}: {part} indices out of range [0, {n})")
        if torch.unique(y[split.train]).numel() < 2:
            raise ValueError(f"split {s}: the train nodes cover fewer than two classes")
    return x, y, num_classes


def _check_solver_args(c_grid: Sequence[float], max_iter: int, tol: float) -> None:
    if len(c_grid) == 0:
        raise ValueError("c_grid is empty; give at least one C > 0")
    bad = [c for c in c_grid if not (math.isfinite(float(c)) and float(c) > 0)]
    if bad:
        raise ValueError(f"every C in c_grid must be positive and finite, got {bad}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")


# --------------------------------------------------------------------------------------------------
# selection shared by both backends


def _select(val_correct: np.ndarray, c_values: Tensor) -> np.ndarray:
    """Per split (row), the grid index with most correct validation nodes; ties -> smallest C."""
    c = c_values.numpy()
    best = val_correct == val_correct.max(axis=1, keepdims=True)
    return np.where(best, c[None, :], np.inf).argmin(axis=1)


# --------------------------------------------------------------------------------------------------
# sklearn reference


def _probe_sklearn(
    x: Tensor, y: Tensor, splits: Sequence[Split], c_values: Tensor, max_iter: int, tol: float
) -> tuple[list[float], list[float], list[int]]:
    """One ``LogisticRegression(C=C)`` (lbfgs) per split and C, with BLAS limited to one thread.

    The single thread is deliberate: each fit is small, and on a 2-core machine shared with other
    jobs a threaded BLAS made scipy's L-BFGS-B ~10x slower (3-8 ms instead of 0.3 ms per iteration).
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    xn, yn = x[torch.arange(x.shape[0])].numpy(), y.numpy()
    val_correct = np.zeros((len(splits), len(c_values)), dtype=np.int64)
    test_acc, val_acc, best_g = [], [], []
    with threadpool_limits(limits=1):
        for s, split in enumerate(splits):
            tr, va, te = split.train.numpy(), split.val.numpy(), split.test.numpy()
            models = []
            for g, c in enumerate(c_values.tolist()):
                models.append(LogisticRegression(C=c, max_iter=max_iter, tol=tol).fit(xn[tr], yn[tr]))
                val_correct[s, g] = int((models[-1].predict(xn[va]) == yn[va]).sum())
            g = int(_select(val_correct[s : s + 1], c_values)[0])
            test_acc.append(float((models[g].predict(xn[te]) == yn[te]).mean()))
            val_acc.append(val_correct[s, g] / va.size)
            best_g.append(g)
    return test_acc, val_acc, best_g


# --------------------------------------------------------------------------------------------------
# batched torch backend


def _probe_torch(
    x: Tensor, y: Tensor, num_classes: int, splits: Sequence[Split], c_values: Tensor, max_iter: int, tol: float
) -> tuple[list[float], list[float], list[int]]:
    idx, mask = _pad([s.train for s in splits])
    weight, bias, present = _fit_splits(x, y, num_classes, idx, mask, c_values, max_iter, tol)
    num_s, d, num_g = len(splits), x.shape[1], len(c_values)
    val_correct = np.zeros((num_s, num_g), dtype=np.int64)
    for s, split in enumerate(splits):
        w = weight[s].permute(1, 0, 2).reshape(d, -1)
        for part in _chunks(split.val, PREDICT_ROWS // max(1, num_g)):
            logits = (x[part] @ w).view(-1, num_g, num_classes)
            pred = (logits + bias[s]).masked_fill(~present[s], -math.inf).argmax(-1)
            val_correct[s] += (pred == y[part, None]).sum(0).numpy()
    best = _select(val_correct, c_values)
    test_acc, val_acc = [], []
    for s, split in enumerate(splits):
        g = int(best[s])
        correct = 0
        for part in _chunks(split.test, PREDICT_ROWS):
            logits = x[part] @ weight[s, g] + bias[s, g]
            pred = logits.masked_fill(~present[s], -math.inf).argmax(-1)
            correct += int((pred == y[part]).sum())
        test_acc.append(correct / split.test.numel())
        val_acc.append(val_correct[s, g] / split.val.numel())
    return test_acc, val_acc, best.tolist()


# Validation and test predictions are made this many rows at a time (over the C grid: this many
# (node, C) pairs), so a graph's 8·10⁶ test nodes never need their embeddings in float64 at once.
PREDICT_ROWS = 1 << 16


def _chunks(index: Tensor, size: int) -> list[Tensor]:
    return [index[a:a + size] for a in range(0, index.numel(), max(1, size))]


class _Rows:
    """The probe's view of the embeddings: rows gathered on demand, in float64, L2-normalised when
    asked. The embeddings are never copied to float64 whole (5 GB for 10⁷ × 64); a gathered row is
    the one a whole float64 copy (normalised row by row) would hold, bit for bit."""

    def __init__(self, x: Tensor, normalize: bool) -> None:
        self.x, self.normalize = x, normalize
        self.shape, self.dtype = x.shape, torch.float64

    def __getitem__(self, index: Tensor) -> Tensor:
        rows = self.x[index].to(torch.float64)
        return F.normalize(rows, dim=-1) if self.normalize else rows


def _pad(index_lists: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack 1-D index tensors into (S, n_max), padded with 0, and the (S, n_max) validity mask."""
    n_max = max(t.numel() for t in index_lists)
    idx = torch.zeros(len(index_lists), n_max, dtype=torch.long)
    mask = torch.zeros(len(index_lists), n_max, dtype=torch.bool)
    for s, t in enumerate(index_lists):
        idx[s, : t.numel()] = t
        mask[s, : t.numel()] = True
    return idx, mask


def _fit_splits(
    x: Tensor, y: Tensor, num_classes: int, idx: Tensor, mask: Tensor, c_values: Tensor, max_iter: int, tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Fit every (split, C) problem; returns weight (S, G, d, c), bias (S, G, c), present (S, c).

    Each split's train features are centred (the bias absorbs the mean) and rotated onto their
    principal axes: x_c = z Qᵀ with Q (d, k) orthonormal, k = min(n_train, d), zᵀz diagonal. The
    optimal W lies in the row space of x_c, so W = Q B with ‖W‖ = ‖B‖ and the problem in z is the
    same problem; its data covariance is diagonal, which makes a diagonal initial inverse Hessian
    effective, and when n_train < d it is also smaller.
    """
    xs = x[idx] * mask[..., None]  # (S, n, d); padding rows are zero
    m = mask.to(x.dtype)
    mean = (xs.sum(1) / m.sum(1, keepdim=True)).unsqueeze(1)  # (S, 1, d)
    xc = (xs - mean) * m[..., None]
    if xc.shape[1] < xc.shape[2]:  # fewer train rows than features: x_c = Rᵀ Qᵀ
        basis, r = torch.linalg.qr(xc.transpose(1, 2))
        z = r.transpose(1, 2)
    else:
        basis, z = None, xc
    _, rot = torch.linalg.eigh(z.transpose(1, 2) @ z)  # principal axes
    z = z @ rot
    basis = rot if basis is None else basis @ rot  # (S, d, k)
    ys = y[idx]
    present = (F.one_hot(ys, num_classes) * mask[..., None]).sum(1) > 0
    product_dtype = torch.float32 if tol >= _FLOAT32_TOL else torch.float64
    theta, converged = _lbfgs(z, ys, m, present, c_values, max_iter, tol, product_dtype)
    if not bool(converged.all()):
        warnings.warn(
            f"linear probe: {int((~converged).sum())} of {converged.numel()} (split, C) problems did not reach "
            f"tol={tol} within max_iter={max_iter} L-BFGS iterations",
            RuntimeWarning,
            stacklevel=2,
        )
    w = basis[:, None] @ theta[:, :, :-1]  # (S, G, d, c)
    b = theta[:, :, -1] - (mean[:, None] @ w).squeeze(2)
    pres = present[:, None].to(b.dtype)  # restate the gauge exactly (float32 products blur it)
    b = (b - (b * pres).sum(-1, keepdim=True) / pres.sum(-1, keepdim=True)) * pres
    return w, b, present


def _lbfgs(
    z: Tensor,
    y: Tensor,
    m: Tensor,
    present: Tensor,
    c_values: Tensor,
    max_iter: int,
    tol: float,
    product_dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """Minimise F_sg(W, b) = C_g Σ_i m_si CE_i + ½‖W‖² for all splits s and grid points g at once.

    Every (s, g) problem runs its own L-BFGS (own memory, own step), vectorised over the batch:

    * the bias is the weight of a constant feature (the last column of ``[z, 1]``), not penalised,
      and kept in the gauge Σ_k b_k = 0 (F is invariant to a common shift of b);
    * the initial inverse Hessian is γ · D⁻¹ with D = C·λ_j/4 + 1 per principal axis j (λ_j its
      sum of squares, 1/4 a bound on the softmax curvature; D = C·n/4 for the bias) and γ the usual
      sᵀy / yᵀD⁻¹y of the last pair; the first step is thus a scaled diagonal Newton step;
    * the step length backtracks on the Armijo condition from 1; the logits are linear in the
      step, so each trial costs a log-sum-exp and no matrix product (two batched matrix products per
      iteration in all: the direction's logits and the new gradient);
    * the two matrix products per iteration run in ``product_dtype`` (their results are used in
      float64); everything else is float64;
    * a problem stops when max |∇F| / (C·n_train) ≤ tol (sklearn's gtol criterion), or, reported
      as not converged, when 50 halvings find no decrease; grid points where every split has
      stopped leave the batch.

    Shapes: z (S, n, k), y (S, n) long, m (S, n) row weights in {0, 1}, present (S, c) bool,
    c_values (G,). Returns theta (S, G, k + 1, c) (weights, then the bias row) and converged (S, G).
    """
    num_s, n, k = z.shape
    c = present.shape[1]
    zb = torch.cat([z, m[..., None]], -1)  # (S, n, K)
    curvature = zb.square().sum(1)[:, None, :, None] / 4  # (S, 1, K, 1)
    zb = zb.to(product_dtype)
    zbt = zb.transpose(1, 2)
    penalised = torch.ones(k + 1, 1, dtype=z.dtype)
    penalised[-1] = 0
    target = y[:, :, None, None]  # (S, n, 1, 1)
    onehot = F.one_hot(y, c).to(z.dtype).unsqueeze(2)  # (S, n, 1, c)
    all_present = bool(present.all())
    absent = ~present[:, None, None, :]
    pres_b = present[:, None, :].to(z.dtype)  # (S, 1, c)
    rows = m[..., None]  # (S, n, 1)
    n_train = m.sum(1, keepdim=True)  # (S, 1)

    # Parameters and L-BFGS vectors are laid out (S, G, K, c), so that each problem's vector is
    # contiguous (fast per-problem dot products); logits are (S, n, G, c).
    def dot(a: Tensor, b: Tensor) -> Tensor:  # (S, G, K, c) x2 -> (S, G)
        return torch.linalg.vecdot(a.flatten(2), b.flatten(2))

    def logits_of(v: Tensor) -> Tensor:  # [z, 1] v: (S, G, K, c) -> (S, n, G, c)
        lg = zb @ v.transpose(1, 2).reshape(num_s, k + 1, -1).to(product_dtype)
        return lg.to(z.dtype).view(num_s, n, v.shape[1], c)

    def fit_terms(lg: Tensor) -> tuple[Tensor, Tensor]:  # Σ_i CE_i (S, G) and log-sum-exp (S, n, G)
        lse = torch.logsumexp(lg if all_present else lg.masked_fill(absent, -math.inf), -1)
        picked = lg.gather(-1, target.expand(-1, -1, lg.shape[2], -1)).squeeze(-1)
        return ((lse - picked) * rows).sum(1), lse

    def gradient(lg: Tensor, lse: Tensor, th: Tensor, cs: Tensor) -> Tensor:
        resid = torch.exp(lg - lse[..., None])
        if not all_present:
            resid.masked_fill_(absent, 0.0)
        resid.sub_(onehot).mul_(rows[..., None] * cs[:, None])
        grad = (zbt @ resid.view(num_s, n, -1).to(product_dtype)).to(z.dtype)
        return grad.view(num_s, k + 1, -1, c).transpose(1, 2).contiguous().addcmul_(th, penalised)

    def center_bias_(v: Tensor) -> Tensor:  # in place: bias row onto Σ_k b_k = 0 over present classes
        b = v[:, :, -1]
        b.sub_((b * pres_b).sum(-1, keepdim=True) / pres_b.sum(-1, keepdim=True)).mul_(pres_b)
        return v

    num_g = c_values.numel()
    theta = z.new_zeros(num_s, num_g, k + 1, c)
    converged = torch.zeros(num_s, num_g, dtype=torch.bool)
    stalled = torch.zeros_like(converged)  # line search failed: stop, reported as not converged
    cols, cs, th = torch.arange(num_g), c_values, theta.clone()
    lg = z.new_zeros(num_s, n, num_g, c)
    fit, lse = fit_terms(lg)
    grad = gradient(lg, lse, th, cs)
    mem: list[tuple[Tensor, Tensor, Tensor]] = []  # (s, y, 1/sᵀy) pairs, oldest first
    gamma = torch.ones(num_s, num_g, dtype=z.dtype)
    for it in range(max_iter + 1):  # the last pass only checks convergence
        converged[:, cols] |= grad.abs().amax((2, 3)) / (cs * n_train) <= tol
        done = converged[:, cols] | stalled[:, cols]
        keep = ~done.all(0)
        if not bool(keep.all()):  # drop grid points where every split has converged
            theta[:, cols] = th
            cols, cs, done, gamma, fit = cols[keep], cs[keep], done[:, keep], gamma[:, keep], fit[:, keep]
            th, lg, lse, grad = th[:, keep], lg[:, :, keep], lse[:, :, keep], grad[:, keep]
            mem = [(s[:, keep], yv[:, keep], r[:, keep]) for s, yv, r in mem]
        if cols.numel() == 0 or it == max_iter:
            break
        dinv = (cs[:, None, None] * curvature + penalised).reciprocal_()  # (S, Ga, K, 1)

        # Two-loop recursion: d = −H g.
        q = grad.clone()
        alphas = []
        for s, yv, rho in reversed(mem):
            a = rho * dot(s, q)
            q.addcmul_(a[..., None, None], yv, value=-1)
            alphas.append(a)
        q = center_bias_(q.mul_(dinv).mul_(gamma[..., None, None]))
        for (s, yv, rho), a in zip(mem, reversed(alphas)):
            q.addcmul_((a - rho * dot(yv, q))[..., None, None], s)
        d = q.neg_().mul_((~done)[..., None, None])

        # Armijo backtracking; ½‖W + t d‖² from three per-problem scalars.
        dlg = logits_of(d)
        slope = dot(grad, d)
        ww, wd, dd = (0.5 * (dot(a, b) - (a[:, :, -1] * b[:, :, -1]).sum(-1)) for a, b in ((th, th), (th, d), (d, d)))
        f0 = cs * fit + ww
        step = (~done).to(z.dtype)
        accepted = done.clone()
        new_fit, new_lse = fit.clone(), lse.clone()
        for trial in range(_MAX_HALVINGS):
            t_lg = lg + step[:, None, :, None] * dlg
            t_fit, t_lse = fit_terms(t_lg)
            f_t = cs * t_fit + ww + 2 * step * wd + step**2 * dd
            ok = ~accepted & (f_t <= f0 + 1e-4 * step * slope + 1e-13 * f0.abs())
            new_fit = torch.where(ok, t_fit, new_fit)
            new_lse = torch.where(ok[:, None], t_lse, new_lse)
            accepted |= ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step / 2)
        stalled[:, cols] |= ~accepted
        step = torch.where(accepted, step, 0.0)
        s = d.mul_(step[..., None, None])
        th = th + s
        lg = t_lg if trial == 0 else lg.addcmul_(step[:, None, :, None], dlg)
        fit, lse = new_fit, new_lse
        new_grad = gradient(lg, lse, th, cs)
        yv = new_grad - grad
        grad = new_grad
        sy = dot(s, yv)
        valid = sy > 1e-10 * (dot(s, s) * dot(yv, yv)).sqrt()
        gamma = torch.where(valid, sy / dot(yv, yv * dinv), gamma)
        mem.append((s, yv, torch.where(valid, 1.0 / torch.where(valid, sy, 1.0), 0.0)))
        if len(mem) > _HISTORY:
            mem.pop(0)
    theta[:, cols] = th
    return theta, converged
