"""Fast CPU building blocks of the training step; each computes exactly the textbook operation.

* :class:`SparseOperand` — a constant sparse CSR matrix together with its transpose, so that the
  backward pass of ``S @ H`` (which needs ``Sᵀ @ grad``) does not re-sort the matrix on every call,
  as ``torch.sparse.mm``'s own backward does.
* :func:`sparse_matmul` — ``S @ H`` for such an operand, differentiable in ``H``.
* :func:`prelu` / :class:`FastPReLU` — PReLU with a backward pass built from vectorised kernels
  (``leaky_relu_backward`` and a dot product for one slope, ``threshold_backward`` and ``addcmul``
  per channel); PyTorch's own ``_prelu_kernel_backward`` was 3–5× slower
  on CPU at our shapes (2708×512: 7 ms forward+backward vs ~2 ms, measured on this project's 2-core
  machine); where :mod:`bgrl_werank.kernels` is built, the backward is its one compiled pass
  instead. Same values and gradients as ``torch.nn.PReLU`` (tested).
* :func:`batch_norm_prelu` — an encoder layer's BatchNorm and PReLU as one compiled kernel
  (:mod:`bgrl_werank.kernels`) where it can be built, else the two steps above and below.
* :func:`linear` / :class:`FastLinear` — ``x·wᵀ + b`` whose forward product and input gradient run
  through oneDNN, which PyTorch ships but uses for float32 matmuls only under reduced-precision
  settings. On this project's AMD EPYC (Zen 4) VM oneDNN takes its AVX-512 kernels where MKL takes
  its AVX2 ones: 1.15–1.75× faster at our shapes (N×512 by 512×256 and the like, measured
  interleaved with MKL, 2 threads; 1.05–1.26× on 1), in plain IEEE float32 (only the summation order differs). The weight
  gradient, a long reduction over nodes, stays on MKL, which is faster there. Falls back to MKL
  where oneDNN is missing or fails a self-check (:func:`onednn_matmul_enabled`).
* :func:`tune_allocator` — stops glibc from returning large freed blocks to the OS, which made every
  activation of a Coauthor-CS-sized graph (37 MB) cost ~9000 page faults per allocation; applied
  by :func:`keep_heap_if_room` only where the fragmented heap it leads to fits in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import kernels
from .cpu import cache_bytes


def csr_transpose(a: Tensor) -> Tensor:
    """The transpose of a sparse CSR matrix, itself in CSR layout (entries sorted by row, then column)."""
    return a.t().to_sparse_csr() if a.layout == torch.sparse_csr else a.t().contiguous()


@dataclass(frozen=True)
class SparseOperand:
    """A constant sparse CSR matrix ``mat`` and its transpose ``mat_t`` (also CSR)."""

    mat: Tensor
    mat_t: Tensor

    @classmethod
    def of(cls, mat: Tensor) -> "SparseOperand":
        return cls(mat, csr_transpose(mat))

    def size(self, dim: int | None = None):
        return self.mat.size() if dim is None else self.mat.size(dim)

    @property
    def shape(self) -> torch.Size:
        return self.mat.shape

    def to_dense(self) -> Tensor:
        return self.mat.to_dense()


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mat: Tensor, mat_t: Tensor, h: Tensor) -> Tensor:  # type: ignore[override]
        ctx.mat_t = mat_t
        return csr_matmul(mat, h)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad_h = csr_matmul(ctx.mat_t, grad) if ctx.needs_input_grad[2] else None
        return None, None, grad_h


def csr_matmul(mat: Tensor, h: Tensor) -> Tensor:
    """``mat @ h`` for a sparse CSR ``mat`` and a dense ``h`` (no autograd through ``mat``).

    Hand-routed through ``embedding_bag`` (row i of the result is the weighted sum of the rows of
    ``h`` named by row i's column indices), which is measurably faster than ``torch.sparse.mm`` on
    CPU: 2–3× at our shapes (Coauthor CS features × 512 columns: 38 ms vs 77 ms; its adjacency ×
    256 columns: 4.4 ms vs 13.7 ms; 2 threads). Same sums; only the rounding order may differ.
    """
    return torch.nn.functional.embedding_bag(  # gathers rows: h must be row-contiguous to be fast
        mat.col_indices(), h.contiguous(), mat.crow_indices(), mode="sum", per_sample_weights=mat.values(), include_last_offset=True
    )


@functools.lru_cache(maxsize=None)
def last_level_cache_bytes() -> int | None:
    """Size of CPU 0's level-3 cache (:func:`bgrl_werank.cpu.cache_bytes`), else None."""
    return cache_bytes(3)


# csr_matmul_in_column_blocks: a block of h may take this share of the last-level cache, and is
# never narrower than this many columns (narrow rows make embedding_bag's gathers inefficient).
_BLOCK_CACHE_SHARE = 0.6
_MIN_BLOCK_COLUMNS = 64


def csr_matmul_in_column_blocks(mat: Tensor, h: Tensor) -> Tensor:
    """``mat @ h`` like :func:`csr_matmul`, in blocks of ``h``'s columns that fit in the cache.

    For long sparse rows that gather from all over a large ``h`` — the first layer's weight gradient
    Xᵀ·G, whose rows (features) each pick ~160 of Coauthor CS's 18 333 node rows — the gathered rows
    stay in the last-level cache only if ``h`` fits there. Coauthor CS's G (18 333 × 512, 37.5 MB)
    does not fit this VM's 32 MB L3; two 256-column halves do: 39.0 → 27.2 ms per product including
    the copies into and out of the blocks (2 threads), 26.2 → 20.5 ms per call in the training step,
    where X has the view's masked columns dropped. Every entry is the same sum as unblocked,
    bit for bit. Where ``h`` fits, or blocks would be narrower than 64 columns, or the cache size is
    unknown, it is one :func:`csr_matmul`. Not used for the adjacency (short rows): blocks made Â·H
    slower there (9.5 → 15.4 ms).
    """
    cache = last_level_cache_bytes()
    if cache is None:
        return csr_matmul(mat, h)
    cols = h.shape[1]
    column_bytes = h.shape[0] * h.element_size()
    blocks = 1  # halve the blocks while they do not fit and would stay wide enough
    while column_bytes * cols / blocks > _BLOCK_CACHE_SHARE * cache and cols / (2 * blocks) >= _MIN_BLOCK_COLUMNS:
        blocks *= 2
    if blocks == 1 or column_bytes * cols / blocks > _BLOCK_CACHE_SHARE * cache:
        return csr_matmul(mat, h)  # fits as it is, or cannot be made to fit
    edges = [cols * i // blocks for i in range(blocks + 1)]
    return torch.cat([csr_matmul(mat, h[:, lo:hi].contiguous()) for lo, hi in zip(edges[:-1], edges[1:])], dim=1)


def _tracked(*tensors: Tensor | None) -> bool:
    """Whether autograd would record an operation on ``tensors`` here (grad mode on, one needs grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def transposed(weight: Tensor) -> Tensor:
    """``weight.T`` as a row-contiguous tensor (no autograd): free for a feature-major weight.

    The encoder stores its first weight feature-major (:func:`bgrl_werank.encoders.fast_gcn.store_feature_major`),
    so the sparse first layer reads its transpose in place; any other weight is copied.
    """
    return weight.detach().t().contiguous()  # a view, not a copy, when it is contiguous already


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mat: Tensor, mat_t: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        ctx.mat_t = mat_t
        return csr_matmul(mat, transposed(weight))

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad_w = csr_matmul_in_column_blocks(ctx.mat_t, grad).t() if ctx.needs_input_grad[2] else None
        return None, None, grad_w


def sparse_linear(x: SparseOperand, weight: Tensor) -> Tensor:
    """``x @ weight.T`` for constant sparse features ``x`` (N, F) and a weight (out, F), differentiable in the weight.

    The sparse first layer of the encoder: row i of the result sums the rows of ``weight.T`` named
    by row i's non-zeros (:func:`csr_matmul` over the :func:`transposed` weight); the weight's
    gradient is ``(xᵀ @ grad)ᵀ`` from ``x``'s cached transpose, which has a feature-major weight's
    strides.
    """
    if not _tracked(weight):
        return csr_matmul(x.mat, transposed(weight))
    return _SparseLinear.apply(x.mat, x.mat_t, weight)


def sparse_matmul(s: SparseOperand | Tensor, h: Tensor) -> Tensor:
    """``s @ h`` for a constant sparse ``s`` (a :class:`SparseOperand`, or a plain sparse tensor)."""
    if isinstance(s, SparseOperand):
        if not _tracked(h):
            return csr_matmul(s.mat, h)
        return _SparseMatmul.apply(s.mat, s.mat_t, h)
    if s.layout == torch.sparse_csr and not _tracked(h):
        return csr_matmul(s, h)  # no transpose needed without a backward pass
    return torch.sparse.mm(s, h)


class _BatchNormAfterBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, bias, weight, bn_bias, running_mean, running_var, momentum, eps):  # type: ignore[override]
        out, save_mean, save_invstd = torch.native_batch_norm(z, weight, bn_bias, running_mean, running_var, True, momentum, eps)
        if running_mean is not None:
            running_mean.add_(bias, alpha=momentum)  # the batch mean of z + bias is mean(z) + bias
        ctx.save_for_backward(z, weight, save_mean, save_invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        z, weight, save_mean, save_invstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3]]
        grad_z, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), z, weight, None, None, save_mean, save_invstd, True, ctx.eps, mask
        )
        grad_bias = torch.zeros_like(save_mean) if ctx.needs_input_grad[1] else None
        return grad_z, grad_bias, grad_w, grad_b, None, None, None, None


def batch_norm_after_bias(z: Tensor, bias: Tensor | None, norm: nn.BatchNorm1d) -> Tensor:
    """``norm(z + bias)`` for a BatchNorm in training mode, without forming ``z + bias``.

    In training mode BatchNorm subtracts the batch mean, so a bias added just before it cancels
    exactly: the output is ``norm(z)``, the bias's gradient is exactly 0 (autograd through the sum
    returns rounding noise of ~1e-9 instead), and only the running mean sees it, as mean(z) + bias —
    which is added here. This saves a pass over the activation in the forward pass and a reduction
    over it in the backward pass, per layer and view. Eval mode, or a BatchNorm without batch
    statistics, takes the ordinary path.
    """
    if bias is None or not _uses_batch_statistics(z, norm):
        return norm(z if bias is None else z + bias)
    rm, rv = _count_batch(z, norm)
    return _BatchNormAfterBias.apply(z, bias, norm.weight, norm.bias, rm, rv, norm.momentum, norm.eps)


def _uses_batch_statistics(z: Tensor, norm: nn.BatchNorm1d) -> bool:
    """Whether ``norm`` normalises the 2-D ``z`` by its batch statistics with an exponential running
    average (the case the hand-written BatchNorm paths cover; anything else is ``norm`` itself)."""
    return (norm.training or norm.running_mean is None) and norm.momentum is not None and z.dim() == 2


def _count_batch(z: Tensor, norm: nn.BatchNorm1d) -> tuple[Tensor | None, Tensor | None]:
    """What ``nn.BatchNorm1d`` does before normalising by batch statistics: refuse a single row,
    count the batch; returns the running statistics to update (None, None if it keeps none)."""
    if z.size(0) == 1:
        raise ValueError(f"BatchNorm with batch statistics needs more than 1 value per channel, got input of size {tuple(z.shape)}")
    if norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
    return (norm.running_mean, norm.running_var) if norm.track_running_stats else (None, None)


class _BatchNormPReLU(torch.autograd.Function):
    # The compiled kernel of bgrl_werank.kernels; only the BatchNorm input z is kept for backward.
    @staticmethod
    def forward(ctx, z, bias, weight, bn_bias, slope, running_mean, running_var, momentum, eps):  # type: ignore[override]
        out, mean, invstd, var = kernels.forward(z, weight, bn_bias, slope, eps)
        if running_mean is not None:  # as native_batch_norm, plus the bias that BatchNorm cancels
            n = z.shape[0]
            running_mean.mul_(1.0 - momentum).add_(mean, alpha=momentum)
            if bias is not None:
                running_mean.add_(bias, alpha=momentum)
            running_var.mul_(1.0 - momentum).add_(var * (n / (n - 1)), alpha=momentum)
        ctx.save_for_backward(z, weight, bn_bias, slope, mean, invstd)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        z, weight, bn_bias, slope, mean, invstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_z, grad_w, grad_b, grad_a = kernels.backward(grad, z, weight, bn_bias, slope, mean, invstd, need[0])
        return (
            grad_z,
            torch.zeros_like(mean) if need[1] else None,  # the bias cancels in BatchNorm: exactly 0
            grad_w if need[2] else None,
            grad_b if need[3] else None,
            grad_a.reshape(slope.shape) if need[4] else None,
            None, None, None, None,
        )


def batch_norm_prelu(z: Tensor, bias: Tensor | None, norm: nn.BatchNorm1d, act: nn.PReLU) -> Tensor:
    """``act(norm(z + bias))``: an encoder layer's BatchNorm and PReLU, fused where possible.

    With batch statistics (training mode), for a contiguous float32 (N, C) ``z``, an affine
    ``norm`` and a PReLU with one slope or C, this is the compiled kernel of
    :mod:`bgrl_werank.kernels` (when it is available): the same values and gradients as the two
    modules (tested), the bias handled as in :func:`batch_norm_after_bias`. Otherwise it is
    ``act(batch_norm_after_bias(z, bias, norm))``.
    """
    slope = act.weight
    fused = (
        _uses_batch_statistics(z, norm)
        and norm.affine
        and z.dtype == torch.float32
        and z.is_contiguous()
        and slope.numel() in (1, z.size(1))
        and kernels.available()
    )
    if not fused:
        return act(batch_norm_after_bias(z, bias, norm))
    rm, rv = _count_batch(z, norm)
    return _BatchNormPReLU.apply(z, bias, norm.weight, norm.bias, slope, rm, rv, norm.momentum, norm.eps)


class _PReLU(torch.autograd.Function):
    # Forward: PyTorch's own kernel (it is the backward that is slow). Backward from vectorised
    # kernels, each exact: ∂x = grad where x > 0, else a·grad; ∂a = Σ grad·min(x, 0) (per channel
    # for per-channel slopes). Only x is kept for the backward pass.
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return torch.nn.functional.prelu(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        if x.dtype == weight.dtype == grad.dtype == torch.float32 and x.is_contiguous() and kernels.available():
            # the compiled one-pass backward (bgrl_werank.kernels): reads grad and x once, where the
            # operators below make three (one slope) or five passes
            grad_x, grad_w = kernels.prelu_backward(grad, x, weight, ctx.needs_input_grad[0])
            return grad_x, grad_w if ctx.needs_input_grad[1] else None
        if weight.numel() == 1:
            # One slope (BGRL's predictor): ∂x is leaky_relu's gradient for slope a (one pass:
            # x > 0 ? grad : grad·a, the same test and the same single rounding), ∂a one dot product
            # with min(x, 0). Three passes over the activation instead of five: on Coauthor CS
            # (18333 × 512) 5.4 vs 11.6 ms per call, measured in the step.
            grad_x = torch.ops.aten.leaky_relu_backward(grad, x, weight.item(), False) if ctx.needs_input_grad[0] else None
            grad_w = None
            if ctx.needs_input_grad[1]:
                neg = x.clamp(max=0)
                grad_w = torch.dot(grad.reshape(-1), neg.reshape(-1)).reshape(weight.shape)
            return grad_x, grad_w
        # One slope per channel: g⁺ = grad where x > 0 else 0; g⁻ = grad − g⁺ (grad where x ≤ 0,
        # exactly); ∂x = g⁺ + a·g⁻; ∂a = Σ g⁻·x per column.
        a = weight.view(1, -1)
        grad_pos = torch.ops.aten.threshold_backward(grad, x, 0.0)
        grad_neg = grad - grad_pos
        grad_x = torch.addcmul(grad_pos, grad_neg, a) if ctx.needs_input_grad[0] else None
        grad_w = grad_neg.mul_(x).sum(0).reshape(weight.shape) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """PReLU of a 2-D ``x`` (N, C) with one slope or one per channel; same values as ``F.prelu``."""
    if x.dim() != 2 or weight.numel() not in (1, x.size(1)):
        return torch.nn.functional.prelu(x, weight)
    return _PReLU.apply(x, weight)


class FastPReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same state dict) with the faster backward of :func:`prelu`."""

    def forward(self, x: Tensor) -> Tensor:
        return prelu(x, self.weight)


_ONEDNN: bool | None = None


def onednn_matmul_enabled() -> bool:
    """Whether :func:`linear` routes its products through oneDNN (decided once per process).

    Yes when PyTorch has oneDNN's ``_linear_pointwise`` op, it agrees with MKL on a small problem
    (a guard against a broken or changed private op), and ``BGRL_WERANK_ONEDNN`` is not ``0``.
    """
    global _ONEDNN
    if _ONEDNN is None:
        _ONEDNN = False
        if os.environ.get("BGRL_WERANK_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available():
            try:
                op = torch.ops.mkldnn._linear_pointwise
                g = torch.Generator().manual_seed(0)
                x, w, b = (torch.randn(*s, generator=g) for s in ((37, 29), (13, 29), (13,)))
                ok = torch.allclose(op(x, w, b, "none", [], ""), torch.addmm(b, x, w.t()), atol=1e-5)
                ok = ok and torch.allclose(op(x.t().contiguous(), x.t(), None, "none", [], ""), x.t() @ x, atol=1e-4)
                _ONEDNN = bool(ok)
            except (AttributeError, RuntimeError):
                _ONEDNN = False
    return _ONEDNN


def matmul_nt(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``x @ w.T (+ b)`` for 2-D float32 ``x`` (N, K), ``w`` (M, K); oneDNN when enabled.

    Not differentiable through oneDNN (its op has no autograd formula): under autograd with inputs
    that require grad it falls back to MKL; :func:`linear` is the differentiable form.
    """
    if (not _tracked(x, w, b) and x.device.type == "cpu" and onednn_matmul_enabled()
            and x.dtype == torch.float32 and w.dtype == torch.float32):
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
    return torch.addmm(b, x, w.t()) if b is not None else x @ w.t()


def matmul_nn(g: Tensor, w: Tensor) -> Tensor:
    """``g @ w`` for 2-D float32 ``g`` (N, M), ``w`` (M, K) — a linear layer's input gradient."""
    return matmul_nt(g, w.t())


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return matmul_nt(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = matmul_nn(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:  # in the weight's own layout, so that it accumulates without a copy
            grad_w = grad.t() @ x if not weight.t().is_contiguous() else (x.t() @ grad).t()
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` for a 2-D ``x``, with the products of :func:`matmul_nt`."""
    if x.dim() != 2 or x.device.type != "cpu" or not onednn_matmul_enabled():
        return torch.nn.functional.linear(x, weight, bias)
    if not _tracked(x, weight, bias):  # e.g. the target network's passes, under no_grad
        return matmul_nt(x, weight, bias)
    return _Linear.apply(x, weight, bias)


class FastLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) computed by :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


_ALLOCATOR_TUNED = False
# Kept heap memory fragments: a step's tensors, reused from the heap instead of fresh mappings, made
# the process peak 1.4–2.3× the step's own footprint (Coauthor CS: 1.38 vs 0.98 GB; a 3·10⁵-node CSBM
# graph: 7.9 vs 4.0 GB). The heap is kept only where that much is free.
HEAP_GROWTH = 2.5


def _proc_kb(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes(peak: bool = False) -> int | None:
    """This process's resident memory now (VmRSS) or at its peak so far (VmHWM); None off Linux."""
    kb = _proc_kb("/proc/self/status", "VmHWM" if peak else "VmRSS")
    return None if kb is None else kb * 1024


def keep_heap_if_room(step_footprint: int | None) -> bool:
    """Call :func:`tune_allocator` if memory allows it, given one step's measured footprint in bytes.

    Keeping freed memory in the heap makes steps faster (no page faults for fresh activations) but
    lets the heap fragment to up to ~:data:`HEAP_GROWTH` × the step's footprint. It is applied only
    when that fits in 85 % of the memory available now; a 10⁶-node graph on a 24 GB machine keeps
    the default allocator (and trains, more slowly) instead of running out of memory. Without a
    measurement (``None``) the heap is kept, as on small graphs.
    """
    if _ALLOCATOR_TUNED:
        return True
    if step_footprint is not None:
        avail = _proc_kb("/proc/meminfo", "MemAvailable")
        if avail is not None and HEAP_GROWTH * step_footprint > 0.85 * avail * 1024:
            return False
    return tune_allocator()


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` is in effect in this process."""
    return _ALLOCATOR_TUNED


# glibc's mallopt parameters, and the two settings of the heap: glibc's defaults, and kept
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_HEAP_DEFAULT = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}
_HEAP_KEPT = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**30}


def _set_heap(settings: dict[int, int]) -> bool:
    """Apply mallopt ``settings`` and give free memory back (``malloc_trim``); whether glibc took them."""
    libc = ctypes.CDLL("libc.so.6")
    ok = all(libc.mallopt(param, value) == 1 for param, value in settings.items())
    libc.malloc_trim(0)
    return ok


@contextlib.contextmanager
def default_allocator() -> Iterator[None]:
    """glibc's default allocator behaviour inside the block, :func:`tune_allocator`'s again after.

    For work that allocates a few very large blocks once (whole-graph inference at 10⁷ nodes: one
    (N, width) tensor per layer) in a process whose heap keeps freed memory for training's
    repeated activations: inside, such blocks are mmapped and go back to the system when freed,
    instead of fragmenting the kept heap (which ran a 10⁷-node evaluation out of 24 GB).
    """
    if not _ALLOCATOR_TUNED:
        yield
        return
    _set_heap(_HEAP_DEFAULT)
    try:
        yield
    finally:
        _set_heap(_HEAP_KEPT)


def tune_allocator() -> bool:
    """Keep freed memory in the process heap (glibc only); returns whether it was applied.

    Without it glibc serves every allocation above its mmap threshold (at most 32 MB) by a fresh
    ``mmap`` and gives it back on free, so each new activation of a large graph is paid again in page
    faults: a (18333, 512) float tensor costs ~18 ms to allocate and ~3 ms to fill, and a Coauthor CS
    epoch takes 1.3 s instead of 0.92 s. With mmap off and a high trim threshold the blocks are
    reused, at the price of a fragmented heap (see :data:`HEAP_GROWTH`); the process does not shrink
    between steps. The trainer decides through :func:`keep_heap_if_room` after its first step; this
    is process-wide and idempotent. The trim also gives back what loading the data left free.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        ok = _set_heap(_HEAP_KEPT)
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok
