"""Backends: one kernel call per chunk, the same contract for all.

    count = backend.merge(base, base_dtype, chat, chat_dtype, cp, cp_dtype, n, alphas, outs, out_dtype)

writes round(cp + alphas[k] * (chat - base)) for the first n elements into
outs[k]. The other modes of csrc/merge_kernel.h follow from the inputs left
None: base None applies a saved vector (chat), cp None extracts chat - base
into outs[0] and returns how many elements the output dtype rounded, and
base and chat None converts cp. Buffers are contiguous uint8 numpy arrays (or
any buffer); dtypes are safetensors names ("BF16", "F16", "F32", "F64").

get_backend() picks one. "auto" takes the native C++ kernel, and the torch
reference where the native module is missing. A backend asked for by name
raises when unavailable; "auto" falls back quietly. CHATVEC_BACKEND overrides
"auto".
"""

from __future__ import annotations

import os

from .. import _native

NAMES = ("auto", "native", "torch", "torch-fp32", "triton")


def get_backend(name: str = "auto", threads: int | None = None):
    """Returns a backend instance by name; see the module docstring."""
    if name == "auto":
        name = os.environ.get("CHATVEC_BACKEND", "auto") or "auto"
    if name == "auto":
        name = "native" if _native.available else "torch"
    if name == "native":
        from .native import NativeBackend

        return NativeBackend(threads)
    if name in ("torch", "torch-fp32"):
        from .torch_ref import TorchBackend

        return TorchBackend(math="fp32" if name == "torch-fp32" else "fp64", threads=threads)
    if name == "triton":
        raise NotImplementedError(
            "the triton backend is not part of this build yet; use --backend native (CPU) or torch"
        )
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")
