"""The compiled BatchNorm → PReLU kernel against PyTorch's own modules, and its fallback."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from bgrl_werank import kernels
from bgrl_werank.ops import FastPReLU, batch_norm_prelu

from .conftest import ROOT


def need_kernel():
    """Skip where the kernel cannot be built, except where it is required (``.ci/run`` sets
    ``BGRL_WERANK_REQUIRE_KERNELS=1``: its machine has a C compiler, so a failure there is a bug)."""
    if kernels.available():
        return
    reason = f"compiled kernel not available: {kernels.status()}"
    if os.environ.get("BGRL_WERANK_REQUIRE_KERNELS") == "1":
        pytest.fail(reason + " (BGRL_WERANK_REQUIRE_KERNELS=1)")
    pytest.skip(reason)


def _modules(c, slopes, seed):
    g = torch.Generator().manual_seed(seed)
    norm = nn.BatchNorm1d(c, momentum=0.1)
    act = FastPReLU(slopes)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(c, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(c, generator=g))
        norm.running_mean.copy_(torch.randn(c, generator=g))
        norm.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        act.weight.copy_(torch.rand(slopes, generator=g) * 0.5)
    bias = nn.Parameter(torch.randn(c, generator=g))
    return norm, act, bias


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,c,slopes", [(2, 1, 1), (3, 5, 5), (129, 37, 37), (300, 70, 1), (1000, 512, 512)])
def test_fused_layer_matches_batchnorm_then_prelu(n, c, slopes, threads):
    need_kernel()
    torch.set_num_threads(threads)  # put back by conftest's _restore_threads
    g = torch.Generator().manual_seed(n + c)
    z0 = torch.randn(n, c, generator=g) * 2 + 0.5
    grad = torch.randn(n, c, generator=g)
    # reference: PyTorch's modules on z + bias, through autograd
    norm_r, act_r, bias_r = _modules(c, slopes, 7)
    z_r = z0.clone().requires_grad_()
    ref = nn.PReLU(slopes)
    ref.weight = act_r.weight
    out_r = ref(norm_r(z_r + bias_r))
    out_r.backward(grad)
    # fused
    norm_f, act_f, bias_f = _modules(c, slopes, 7)
    z_f = z0.clone().requires_grad_()
    out_f = batch_norm_prelu(z_f, bias_f, norm_f, act_f)
    out_f.backward(grad)
    assert out_f.grad_fn is not None and "BatchNormPReLU" in type(out_f.grad_fn).__name__
    torch.testing.assert_close(out_f, out_r, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(z_f.grad, z_r.grad, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(norm_f.weight.grad, norm_r.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm_f.bias.grad, norm_r.bias.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(act_f.weight.grad, act_r.weight.grad, atol=1e-4, rtol=1e-4)
    assert torch.equal(bias_f.grad, torch.zeros(c))  # BatchNorm cancels the bias exactly
    torch.testing.assert_close(bias_r.grad, torch.zeros(c), atol=1e-4, rtol=0)  # autograd: rounding noise
    torch.testing.assert_close(norm_f.running_mean, norm_r.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(norm_f.running_var, norm_r.running_var, atol=1e-6, rtol=1e-5)
    assert int(norm_f.num_batches_tracked) == int(norm_r.num_batches_tracked) == 1


def test_fused_layer_without_grad_and_in_eval_mode():
    need_kernel()
    norm, act, bias = _modules(16, 16, 3)
    z = torch.randn(50, 16)
    with torch.no_grad():
        expect = act(norm(z + bias))  # training mode: batch statistics
    norm2, act2, bias2 = _modules(16, 16, 3)
    with torch.no_grad():
        got = batch_norm_prelu(z, bias2, norm2, act2)
    torch.testing.assert_close(got, expect, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(norm2.running_mean, norm.running_mean)
    norm.eval(), norm2.eval()
    with torch.no_grad():  # eval mode takes the ordinary path: running statistics
        torch.testing.assert_close(batch_norm_prelu(z, bias2, norm2, act2), act(norm(z + bias)))


def test_one_row_keeps_batchnorms_error():
    norm, act, bias = _modules(4, 4, 0)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_prelu(torch.randn(1, 4), bias, norm, act)


def _run(code, **env):
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=full, timeout=300)


_FALLBACK = """
import torch
from bgrl_werank import kernels
from bgrl_werank.encoders.fast_gcn import FastGCNEncoder
from bgrl_werank.augment import ViewBuilder
torch.manual_seed(0)
enc = FastGCNEncoder(12, [8, 4])
x = torch.randn(30, 12)
ei = torch.randint(0, 30, (2, 90))
feats, adj = ViewBuilder(x, ei).view(0.2, 0.3, torch.Generator().manual_seed(1))
out = enc(feats, adj)
out.square().sum().backward()
print(kernels.status())
torch.save([out.detach(), enc.convs[0].lin.weight.grad, enc.acts[0].weight.grad], {path!r})
"""


def test_without_the_kernel_the_encoder_computes_the_same(tmp_path):
    need_kernel()
    fused = _run(_FALLBACK.format(path=str(tmp_path / "fused.pt")))
    plain = _run(_FALLBACK.format(path=str(tmp_path / "plain.pt")), BGRL_WERANK_KERNELS="0")
    assert fused.returncode == 0 and plain.returncode == 0, fused.stderr + plain.stderr
    assert fused.stdout.strip() == "ok"
    assert plain.stdout.strip() == "disabled by BGRL_WERANK_KERNELS=0"
    assert "kernel is not used" not in plain.stderr  # asked for: no warning
    for a, b in zip(torch.load(tmp_path / "fused.pt"), torch.load(tmp_path / "plain.pt")):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_no_compiler_falls_back_with_one_warning(tmp_path):
    done = _run(_FALLBACK.format(path=str(tmp_path / "x.pt")), CC=str(tmp_path / "no-such-cc"),
                BGRL_WERANK_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("no C compiler")
    assert done.stderr.count("kernel is not used") == 1
    assert not list((tmp_path / "cache").rglob("*.so"))


def test_statistics_stay_accurate_when_the_mean_dwarfs_the_spread():
    need_kernel()
    g = torch.Generator().manual_seed(5)
    z = 1000.0 + 0.01 * torch.randn(4096, 24, generator=g)
    gamma, beta, slope = torch.ones(24), torch.zeros(24), torch.full((24,), 0.25)
    out, mean, _, var = kernels.forward(z, gamma, beta, slope, 1e-5)
    z64 = z.double()
    exact = torch.nn.functional.prelu(
        torch.nn.functional.batch_norm(z64, None, None, gamma.double(), beta.double(), True, 0.0, 1e-5), slope.double())
    torch.testing.assert_close(var.double(), z64.var(0, unbiased=False), rtol=1e-6, atol=0)
    torch.testing.assert_close(mean.double(), z64.mean(0), rtol=1e-7, atol=0)
    # (measured: the kernel's output is off by 0.006 at most, PyTorch's float32 BatchNorm by 0.03)
    torch_err = (torch.nn.functional.prelu(torch.nn.functional.batch_norm(z, None, None, gamma, beta, True, 0.0, 1e-5), slope).double() - exact).abs().max()
    assert (out.double() - exact).abs().max() <= torch_err


def test_first_use_under_no_grad_still_builds_and_checks(tmp_path):
    code = ("import torch\nfrom bgrl_werank import kernels\n"
            "with torch.inference_mode():\n    print(kernels.available(), kernels.status())")
    done = _run(code, BGRL_WERANK_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "ok"] or "no C compiler" in done.stdout


def test_a_failing_build_falls_back_and_names_the_compiler_error(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("no cc on this machine")
    done = _run(_FALLBACK.format(path=str(tmp_path / "x.pt")), CC="cc --no-such-option-here",
                BGRL_WERANK_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("'cc --no-such-option-here' failed:")
    assert done.stderr.count("kernel is not used") == 1
    assert not list((tmp_path / "cache").rglob("*.so"))  # nothing half-written is left to load


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,c,slopes", [(1, 1, 1), (7, 5, 5), (130, 37, 1), (1000, 512, 1), (300, 64, 64)])
def test_prelu_backward_matches_torch(n, c, slopes, threads):
    need_kernel()
    torch.set_num_threads(threads)  # put back by conftest's _restore_threads
    g = torch.Generator().manual_seed(n * c)
    x = torch.randn(n, c, generator=g)
    x[0, : (c + 1) // 2] = 0.0  # the kink: PyTorch takes slope a's branch at x = 0
    a = (torch.rand(slopes, generator=g) - 0.3).requires_grad_()  # some slopes negative
    grad = torch.randn(n, c, generator=g)
    xr = x.clone().requires_grad_()
    torch.nn.functional.prelu(xr, a).backward(grad)
    grad_x, grad_a = kernels.prelu_backward(grad, x, a.detach())
    assert torch.equal(grad_x, xr.grad)  # the same branch and the same single rounding
    assert grad_a.shape == a.shape
    torch.testing.assert_close(grad_a, a.grad, rtol=1e-5, atol=1e-5)
    none_x, grad_a2 = kernels.prelu_backward(grad, x, a.detach(), need_input_grad=False)
    assert none_x is None and torch.equal(grad_a2, grad_a)


def test_prelu_operator_gives_the_same_gradients_with_and_without_the_kernel(monkeypatch):
    need_kernel()
    from bgrl_werank.ops import prelu

    g = torch.Generator().manual_seed(3)
    x = torch.randn(257, 96, generator=g)
    grad = torch.randn(257, 96, generator=g)
    results = []
    for use_kernel in (True, False):
        monkeypatch.setattr(kernels, "available", lambda use=use_kernel: use)
        for slopes in (1, 96):
            xs = x.clone().requires_grad_()
            a = torch.full((slopes,), 0.25).requires_grad_()
            out = prelu(xs, a)
            results.append((out.detach(), *torch.autograd.grad(out, (xs, a), grad)))
    for fused, plain in zip(results[:2], results[2:]):
        assert torch.equal(fused[0], plain[0]) and torch.equal(fused[1], plain[1])
        torch.testing.assert_close(fused[2], plain[2], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kept", ["some", "all", "none"])
def test_feature_mask_compaction_matches_the_torch_path(monkeypatch, threads, kept):
    need_kernel()
    from bgrl_werank.augment import MaskableCSR

    g = torch.Generator().manual_seed(5)
    x = (torch.rand(203, 57, generator=g) < 0.1) * torch.rand(203, 57, generator=g)
    x[17] = 0.0  # an empty row
    features = MaskableCSR(x.to_sparse_csr())
    keep = {"some": torch.rand(57, generator=g) >= 0.4, "all": torch.ones(57, dtype=torch.bool),
            "none": torch.zeros(57, dtype=torch.bool)}[kept]
    torch.set_num_threads(threads)  # put back by conftest's _restore_threads
    fused = features.masked(keep)
    monkeypatch.setattr(kernels, "available", lambda: False)
    plain = features.masked(keep)
    for a, b in ((fused.mat, plain.mat), (fused.mat_t, plain.mat_t)):
        assert a.shape == b.shape
        for get in ("crow_indices", "col_indices", "values"):
            ta, tb = getattr(a, get)(), getattr(b, get)()
            assert ta.dtype == tb.dtype and torch.equal(ta, tb), get
    torch.testing.assert_close(fused.mat.to_dense(), x * keep)


def test_feature_mask_compaction_refuses_other_index_types():
    need_kernel()
    csr = torch.eye(4).to_sparse_csr()  # int64 indices: the C code would misread them
    with pytest.raises(TypeError, match="int32 indices"):
        kernels.csr_keep(csr, torch.ones(4, dtype=torch.bool), "columns")


# The row-major loops over one activation: each must compile to vector code (blends for PReLU's
# select), whatever the CPU. gcc 12 left the selects scalar, with a data-dependent branch, for an
# AVX2-only -march=native until -fno-trapping-math was added: 5x slower on AMD EPYC (Zen 1).
ELEMENT_LOOPS = ("forward_sums", "forward_rows", "backward_sums", "backward_input", "prelu_rows", "prelu_rows_no_input")


@pytest.mark.parametrize("march", ["native", "x86-64-v3"])
def test_every_element_loop_is_vectorised(tmp_path, march):
    """gcc's own vectorisation report, for the build flags in use and for a plain AVX2 target
    (x86-64-v3): every per-element loop is reported vectorised. Needs gcc on x86-64."""
    cc = shutil.which("gcc")
    if cc is None or os.uname().machine != "x86_64":
        pytest.skip("needs gcc on x86-64 (its -fopt-info report)")
    lines = kernels.SOURCE.read_text().splitlines()
    loops = {}
    for name in ELEMENT_LOOPS:
        start = next(i for i, ln in enumerate(lines) if ln.startswith(f"static void {name}("))
        loops[name] = next(i for i in range(start, len(lines)) if "for (int64_t j = 0; j < c; ++j)" in lines[i]) + 1
    flags = [f if f != "-march=native" else f"-march={march}" for f in kernels._FLAGS]
    done = subprocess.run([cc, *flags, "-fopt-info-vec-optimized", str(kernels.SOURCE), "-o", str(tmp_path / "k.so"), "-lm"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    vectorised = {int(ln.split(":")[1]) for ln in done.stderr.splitlines() if "loop vectorized" in ln}
    missed = {name: line for name, line in loops.items() if line not in vectorised}
    assert not missed, f"scalar loops (function: line): {missed}"
