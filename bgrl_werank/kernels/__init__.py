"""Compiled kernels for the training step, built on first use; optional.

``bn_prelu.c`` holds three kinds, each hand-written because it is measurably faster than the
PyTorch operators it replaces (numbers below and in docs/notes/sessions-1-10.md), each checked against them:

* the encoder layers' BatchNorm → PReLU, forward and backward (:func:`forward`, :func:`backward`);
* the predictor's PReLU backward in one pass (:func:`prelu_backward`): grad and x read once, where
  PyTorch's operators make three passes for one slope (Coauthor CS, two calls a step, timed in the
  step: 29.3 → 13.6 ms);
* the views' feature masking of sparse CSR features (:func:`csr_keep`): the kept columns' entries of
  X and the kept rows of Xᵀ in two passes over the indices, instead of seven PyTorch operators
  (Coauthor CS, one view: 8.6–9.9 → 3.4 ms), the same entries in the same order.

About the BatchNorm → PReLU kernel:

Each encoder layer ends in BatchNorm (batch statistics) and a PReLU (one shared slope, as the BGRL
reference, or one per channel; the kernel takes either). In stock PyTorch
these are two operators whose backward passes read and write the (N, C) activation about 19 times
between them (PReLU's own backward, or this project's five-op replacement in :mod:`bgrl_werank.ops`,
then ``native_batch_norm_backward``), and PReLU keeps its own copy of the normalised activation for
its backward pass. No stock operator fuses them. The kernel in ``bn_prelu.c`` does the forward pass
in two passes over the activation (column statistics; normalise and activate) and the backward pass
in two (column sums; the input gradient), and keeps only the BatchNorm input. It is hand-written
because it is measurably faster (2 threads, this project's VM, the layer alone, median of 30):

* Coauthor CS, 18333 × 512: forward 4.7 → 2.8 ms, forward + backward 20.5 → 13.7 ms; × 256:
  forward + backward 13.4 → 8.2 ms. The kernel's two backward passes then run at about the
  machine's memory bandwidth (17 GB/s on two threads here), so little more is to be had.
* Cora, 2708 × 512: forward + backward 5.0 → 2.9 ms; × 256: 1.2 → 0.5 ms.
* Whole epochs, interleaved with the PyTorch path (``benchmarks.bench_epoch --against``): docs/notes/sessions-1-10.md.

The C file is compiled with the system C compiler (``$CC``, else ``cc``) into a per-user cache
(``kernels/`` under ``$BGRL_WERANK_CACHE``, else under ``~/.cache/bgrl_werank``), keyed by the
source, the flags, the compiler's version and the CPU, and loaded with :mod:`ctypes`; it links the OpenMP runtime that
PyTorch has already loaded. Before it is used it must agree with the PyTorch path on a small
problem. Without a compiler, with ``BGRL_WERANK_KERNELS=0``, or if anything in building, loading or
that check fails, :func:`available` is False and the same layers, gradients and views are computed
with PyTorch operators (one warning says why, unless it was turned off).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("bn_prelu.c")
# -fno-trapping-math lets gcc turn the kernels' PReLU selects (y > 0 ? y : slope * y) into vector
# blends. Without it, only a target with masked vector stores (AVX-512) vectorised those loops; for
# an AVX2-only CPU (AMD EPYC Zen 1 here) gcc 12 left them scalar with a data-dependent branch, and
# the BatchNorm+PReLU forward on Cora's 2708 x 512 took 14 ms instead of ~1 ms (one thread). The
# flag changes no value: it only stops gcc preserving floating-point exception flags, which nothing
# here reads. tests/test_kernels.py checks that every kernel loop is vectorised where gcc reports it.
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared", "-std=c11"]

_LIB: ctypes.CDLL | None = None
_STATE: str | None = None  # None: not tried yet; "ok"; or why it is not available


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _build(cache: Path) -> Path:
    cc = shlex.split(os.environ.get("CC") or "cc")  # $CC may carry flags, e.g. "gcc -m64"
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"no C compiler ('{' '.join(cc)}': {e})") from None
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *cc, *_FLAGS, version, _cpu_id(), platform.machine()]).encode())
    target = cache / f"bn_prelu-{key.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # compile to a temporary name, then rename: concurrent processes never load a half-written file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        done = subprocess.run([*cc, *_FLAGS, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
            raise RuntimeError(f"'{' '.join(cc)}' failed: {first[:200]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> ctypes.CDLL:
    cache = Path(os.environ.get("BGRL_WERANK_CACHE") or Path.home() / ".cache" / "bgrl_werank") / "kernels"
    lib = ctypes.CDLL(str(_build(cache)))
    f, i64, i, d = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    lib.bnp_forward.argtypes = [f, i64, i64, f, f, f, d, i, f, f, f, f]
    lib.bnp_forward.restype = i
    lib.bnp_backward.argtypes = [f, f, i64, i64, f, f, f, i, f, f, i, f, f, f, f]
    lib.bnp_backward.restype = i
    lib.prelu_backward.argtypes = [f, f, i64, i64, f, i, i, f, f]
    lib.prelu_backward.restype = i
    for name in ("csr_keep_columns", "csr_keep_rows"):
        getattr(lib, name).argtypes = [f, f, f, i64, f, i, f, f, f]
        getattr(lib, name).restype = i64
    return lib


def available() -> bool:
    """Whether the compiled kernel is in use in this process (built, loaded and checked once)."""
    global _LIB, _STATE
    if _STATE is None:
        if os.environ.get("BGRL_WERANK_KERNELS", "1") == "0":
            _STATE = "disabled by BGRL_WERANK_KERNELS=0"
        else:
            try:
                _LIB = _load()
                _STATE = "ok"
                with torch.inference_mode(False), torch.enable_grad():  # first use may be under no_grad
                    problem = _self_check()
                if problem:
                    _LIB, _STATE = None, f"it disagrees with PyTorch ({problem})"
            except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as e:
                _LIB, _STATE = None, str(e)
            if _STATE != "ok":
                warnings.warn(
                    f"bgrl_werank: the compiled C kernel is not used ({_STATE}); PyTorch operators "
                    f"compute the same layers, gradients and views, more slowly",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return _STATE == "ok"


def status() -> str:
    """"ok", or why the kernel is not used (after :func:`available` was called)."""
    available()
    return _STATE or ""


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _slopes(slope: torch.Tensor, c: int) -> tuple[torch.Tensor, int]:
    """A PReLU's 1 or c slopes as the kernels read them (c contiguous values), and 1 if its
    gradient is per channel (c sums), 0 if it is one total."""
    return slope.detach().reshape(-1).expand(c).contiguous(), int(slope.numel() == c and c > 1)


def _layer_params(gamma: torch.Tensor, beta: torch.Tensor, slope: torch.Tensor, c: int):
    """The BatchNorm and PReLU parameters as the kernel reads them (contiguous, c slopes), and the
    slope gradient's kind as :func:`_slopes` gives it."""
    return gamma.detach().contiguous(), beta.detach().contiguous(), *_slopes(slope, c)


def forward(z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, slope: torch.Tensor, eps: float):
    """``prelu(batch_norm(z))`` in training mode; returns (out, mean, invstd, biased var), all float32.

    ``z`` must be a contiguous 2-D float32 tensor with at least one row; ``slope`` has 1 or C values.
    """
    n, c = z.shape
    out = torch.empty_like(z)
    mean, invstd, var = (torch.empty(c, dtype=z.dtype) for _ in range(3))
    gamma, beta, slope, _ = _layer_params(gamma, beta, slope, c)
    rc = _LIB.bnp_forward(_ptr(z), n, c, _ptr(gamma), _ptr(beta), _ptr(slope), float(eps), torch.get_num_threads(),
                          _ptr(out), _ptr(mean), _ptr(invstd), _ptr(var))
    if rc != 0:
        raise MemoryError("bn_prelu forward: out of memory")
    return out, mean, invstd, var


def backward(grad: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, slope: torch.Tensor,
             mean: torch.Tensor, invstd: torch.Tensor, need_input_grad: bool = True):
    """Gradients (z, gamma, beta, slope) of :func:`forward`'s output, for the output gradient ``grad``."""
    n, c = z.shape
    grad = grad.contiguous()
    grad_z = torch.empty_like(z) if need_input_grad else None
    grad_gamma, grad_beta = torch.empty(c, dtype=z.dtype), torch.empty(c, dtype=z.dtype)
    grad_slope = torch.empty(slope.shape, dtype=z.dtype)
    gamma, beta, slope, per_channel = _layer_params(gamma, beta, slope, c)
    rc = _LIB.bnp_backward(_ptr(grad), _ptr(z), n, c, _ptr(gamma), _ptr(beta), _ptr(slope), per_channel,
                           _ptr(mean), _ptr(invstd), torch.get_num_threads(), _ptr(grad_z), _ptr(grad_gamma),
                           _ptr(grad_beta), _ptr(grad_slope))
    if rc != 0:
        raise MemoryError("bn_prelu backward: out of memory")
    return grad_z, grad_gamma, grad_beta, grad_slope


def prelu_backward(grad: torch.Tensor, x: torch.Tensor, slope: torch.Tensor, need_input_grad: bool = True):
    """Gradients (x, slope) of ``F.prelu(x, slope)`` for a contiguous 2-D float32 ``x``, in one pass.

    ``slope`` has 1 or C values; its gradient has ``slope``'s shape. The input gradient is None when
    not needed.
    """
    n, c = x.shape
    grad = grad.contiguous()
    grad_x = torch.empty_like(x) if need_input_grad else None
    grad_slope = torch.empty(slope.shape, dtype=x.dtype)
    rate, per_channel = _slopes(slope, c)
    rc = _LIB.prelu_backward(_ptr(grad), _ptr(x), n, c, _ptr(rate), per_channel, torch.get_num_threads(),
                             _ptr(grad_x), _ptr(grad_slope))
    if rc != 0:
        raise MemoryError("prelu backward: out of memory")
    return grad_x, grad_slope


def csr_keep(mat: torch.Tensor, keep: torch.Tensor, along: str) -> torch.Tensor:
    """``mat`` (sparse CSR, int32 indices) with only the entries whose column (``along="columns"``)
    or row (``"rows"``) is kept by the bool ``keep``; the same entries in the same order as
    selecting them with ``nonzero`` and ``index_select``, in two passes over the indices."""
    rows = mat.size(0)
    crow, col, val = mat.crow_indices(), mat.col_indices(), mat.values()
    if crow.dtype != torch.int32 or col.dtype != torch.int32 or val.dtype != torch.float32:
        # the C code reads int32 indices and float32 values; anything else would be read as garbage
        raise TypeError(f"csr_keep needs int32 indices and float32 values, got {col.dtype} and {val.dtype}")
    keep8 = keep.to(torch.uint8).contiguous()
    crow_out = torch.empty(rows + 1, dtype=torch.int32)
    col_out, val_out = torch.empty_like(col), torch.empty_like(val)
    fn = _LIB.csr_keep_columns if along == "columns" else _LIB.csr_keep_rows
    kept = fn(_ptr(crow), _ptr(col), _ptr(val), rows, _ptr(keep8), torch.get_num_threads(),
              _ptr(crow_out), _ptr(col_out), _ptr(val_out))
    if kept < 0:
        raise MemoryError("csr_keep: out of memory")
    return torch.sparse_csr_tensor(crow_out, col_out[:kept], val_out[:kept], size=mat.shape)


def _reference(z, gamma, beta, slope, eps):
    y = torch.nn.functional.batch_norm(z, None, None, gamma, beta, True, 0.0, eps)
    return torch.nn.functional.prelu(y, slope)


def _self_check() -> str:
    """'' if the kernel matches PyTorch's BatchNorm + PReLU (values and gradients) on small problems."""
    g = torch.Generator().manual_seed(0)
    for c, per_channel in ((37, True), (19, False)):
        z = torch.randn(53, c, generator=g) * 3 + 1
        gamma, beta = torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)
        slope = torch.rand(c if per_channel else 1, generator=g) * 0.5
        grad = torch.randn(53, c, generator=g)
        out, mean, invstd, _ = forward(z, gamma, beta, slope, 1e-5)
        leaves = [t.clone().requires_grad_() for t in (z, gamma, beta, slope)]
        ref = _reference(*leaves, 1e-5)
        ref.backward(grad)
        if not torch.allclose(out, ref.detach(), atol=1e-4):
            return "forward values"
        got = backward(grad, z, gamma, beta, slope, mean, invstd)
        for name, a, leaf in zip(("z", "gamma", "beta", "slope"), got, leaves):
            if not torch.allclose(a, leaf.grad, atol=1e-3, rtol=1e-4):
                return f"gradient of {name}"
        x, a = leaves[0].detach().clone().requires_grad_(), slope.clone().requires_grad_()
        torch.nn.functional.prelu(x, a).backward(grad)
        for name, got_, want in zip(("x", "slope"), prelu_backward(grad, x.detach(), a.detach()), (x.grad, a.grad)):
            if not torch.allclose(got_, want, atol=1e-3, rtol=1e-4):
                return f"PReLU gradient of {name}"
    dense = (torch.rand(23, 11, generator=g) < 0.3) * torch.rand(23, 11, generator=g)
    keep = torch.rand(11, generator=g) < 0.5
    csr = dense.to_sparse_csr()
    csr = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), size=csr.shape)
    if not (torch.equal(csr_keep(csr, keep, "columns").to_dense(), dense * keep)
            and torch.equal(csr_keep(csr.t().to_sparse_csr(), keep, "rows").to_dense(), (dense * keep).t())):
        return "feature masking"
    return ""
