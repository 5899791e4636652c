"""Stage 3, the backends: one kernel call per chunk, one contract for all.

    count = backend.compute(call)     # call: backends/call.py KernelCall

runs one KernelCall (mode merge, apply, extract or convert; its operands, alphas, output buffers and
output dtype; FP8 operands with tensor, row or block scales; an F8_E4M3 output with its group scales) and
returns extract's count of elements the output dtype rounded, else 0. backends/call.py states the exact
rules; every backend gives the same bits, which are those of the float64 oracle
(backends/reference_call.py), except torch-fp32 (float32 math, not exact). backend.max_vectors says how
many vectors one apply call takes.

A device backend (triton) also has

    pending = backend.submit(call)    # returns at once; pending.wait() returns the count

and the pipeline (run/stream.py) calls submit() where a backend has it, so that its writers wait on the
results while the next chunk is read; configure() and allocate_host() size its device and pinned buffers.

get_backend() picks one. "auto" takes triton on a machine with CUDA (and
triton installed), else the native C++ kernel, else the torch reference. A backend asked for by name
raises when unavailable; "auto" falls back quietly. CHATVEC_BACKEND overrides
"auto".
"""

from __future__ import annotations

import os

from .. import _native

NAMES = ("auto", "native", "torch", "torch-fp32", "triton")


def _gpu_available() -> bool:
    """CUDA and triton both usable. Checks for the NVIDIA driver first, so that a machine without one
    never imports torch or triton here (the native path does not need them)."""
    if not (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")):
        return False
    try:
        import torch
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def get_backend(
    name: str = "auto", threads: int | None = None, device: str | None = None, gpu_memory: int | None = None
):
    """Returns a backend instance by name; see the module docstring. device/gpu_memory: triton only."""
    if name == "auto":
        name = os.environ.get("CHATVEC_BACKEND", "auto") or "auto"
    if name == "auto":
        name = "triton" if _gpu_available() else "native" if _native.available else "torch"
    if name == "native":
        from .native import NativeBackend

        return NativeBackend(threads)
    if name in ("torch", "torch-fp32"):
        from .torch import TorchBackend

        return TorchBackend(math="fp32" if name == "torch-fp32" else "fp64", threads=threads)
    if name == "triton":
        from .triton import TritonBackend

        return TritonBackend(device, threads, gpu_memory)
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")
