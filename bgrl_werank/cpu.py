"""What kind of CPU this process runs on: vendor and model, vector ISA, usable cores, last-level cache.

The fast backend's speed depends on the CPU more than on anything in the code: the dense products
run at the GEMM rate of the widest vector unit MKL and oneDNN find (AVX-512 or AVX2), the compiled
kernels are built for ``-march=native``, and the sparse first layer's column blocks are sized to the
last-level cache (:func:`bgrl_werank.ops.csr_matmul_in_column_blocks`). Benchmarks record
:func:`cpu_info` with every row and group their tables by :func:`cpu_kind`, so a number is never read
without the CPU that produced it. Nothing here changes what is computed.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

# Widest first: the label names the widest vector extension the CPU reports.
_ISA_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"), ("asimd", "NEON"))


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux), else {}."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block ends at the first blank line
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cache_bytes(level: int = 3) -> int | None:
    """Size of CPU 0's unified cache of this level from sysfs (Linux), else None."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            with open(os.path.join(path, "level")) as f:
                if int(f.read()) != level:
                    continue
            with open(os.path.join(path, "type")) as f:
                if f.read().strip() not in ("Unified", "Data"):
                    continue
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip().upper()
            return int(text.rstrip("KMG")) * {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    except (OSError, ValueError):
        return None
    return None


# Environment variables that hold the libraries below the CPU's widest ISA (to emulate a narrower CPU,
# e.g. an AVX2-only one on an AVX-512 machine): PyTorch's own operators, oneDNN, MKL, and the compiled
# kernels (built with $CC, so CC="cc -mno-avx512f" builds them without AVX-512).
_LIMIT_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def isa_limit() -> str | None:
    """The ISA every library is held to through :data:`_LIMIT_VARS` and ``$CC`` ("AVX2" where all three
    variables name AVX2 and ``$CC`` carries ``-mno-avx512f``), "partial: …" where only some are, None
    where none is."""
    held = {v: os.environ[v] for v in _LIMIT_VARS if os.environ.get(v)}
    cc_avx2 = "-mno-avx512f" in (os.environ.get("CC") or "").split()
    if not held and not cc_avx2:
        return None
    if len(held) == len(_LIMIT_VARS) and cc_avx2 and all(val.upper() == "AVX2" for val in held.values()):
        return "AVX2"
    parts = [f"{k}={v}" for k, v in held.items()] + (["CC without AVX-512"] if cc_avx2 else [])
    return "partial: " + ", ".join(parts)


@functools.lru_cache(maxsize=None)
def cpu_info() -> dict[str, Any]:
    """This machine's CPU: ``model`` (the model name), ``vendor``, ``family``/``model_number``
    (x86), ``isa`` (the widest vector extension it reports), ``cores`` (usable by this process),
    ``l2_kb``/``l3_mb`` and ``torch_capability`` (the kernels PyTorch's own operators dispatch to)."""
    fields = _cpuinfo()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    isa = next((label for flag, label in _ISA_FLAGS if flag in flags), platform.machine() or "unknown")
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError, RuntimeError):
        capability = None
    l2, l3 = cache_bytes(2), cache_bytes(3)
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "vendor": fields.get("vendor_id"),
        "family": int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None,
        "model_number": int(fields["model"]) if fields.get("model", "").isdigit() else None,
        "isa": isa,
        "cores": usable_cores(),
        "l2_kb": l2 // 1024 if l2 else None,
        "l3_mb": round(l3 / 1024**2, 1) if l3 else None,
        "torch_capability": capability,
        "isa_limit": isa_limit(),
    }


def cpu_kind(info: dict[str, Any] | None = None) -> str:
    """A short label of a CPU as benchmarks group it, e.g. ``"AMD EPYC, AVX2, 2 cores"``, or
    ``"Intel Xeon …, AVX-512 held to AVX2, 2 cores"`` under :func:`isa_limit`."""
    info = info or cpu_info()
    isa = info["isa"] if not info.get("isa_limit") else f"{info['isa']} held to {info['isa_limit']}"
    return f"{info['model']}, {isa}, {info['cores']} cores"
