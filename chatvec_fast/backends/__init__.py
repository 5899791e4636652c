"""Stage 3, the backends: one kernel call per chunk, the same contract for all.

    count = backend.compute(base, base_dtype, chat, chat_dtype, cp, cp_dtype, n, alphas, outs, out_dtype)

writes round(cp + alphas[k] * (chat - base)) for the first n elements into
outs[k]. The other modes of csrc/merge_kernel.h follow from the inputs left
None: base None applies a saved vector (chat), cp None extracts chat - base
into outs[0] and returns how many elements the output dtype rounded, and
base and chat None converts cp. Buffers are contiguous uint8 numpy arrays (or
any buffer); dtypes are safetensors names ("BF16", "F16", "F32", "F64").

The general call, on every backend (native, torch, triton):

    count = backend.compute_call(call)     # call: backends/call.py KernelCall

adds FP8 operands (F8_E4M3, F8_E5M2) with tensor, row or block scales, an
F8_E4M3 output re-quantized per row or block (its scales written beside it),
and apply with several vectors at once; backends/call.py documents the exact
rules. backend.max_vectors says how many vectors one apply call takes.

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
