"""Stage 3, the backends: one kernel call per chunk, one contract for all.

    count = backend.compute(call)     # call: backends/call.py KernelCall

runs one KernelCall (mode merge, apply, extract or convert; its operands, alphas, output buffers and
output dtype; FP8 operands with tensor, row or block scales; an F8_E4M3 output with its group scales) and
returns extract's count of elements the output dtype rounded, else 0. backends/call.py states the exact
rules; every backend gives the same bits, which are those of the float64 oracle
(backends/reference_call.py), except torch-fp32 (float32 math, not exact). backend.max_vectors says how
many vectors one apply call takes.

cuda (the CUDA C++ kernel, backends/cuda.py) is a device backend too, synchronous: compute() only.

A device backend (triton) also has

    pending = backend.submit(call)    # returns at once; pending.wait() returns the count

and the pipeline (run/stream.py) calls submit() where a backend has it, so that its writers wait on the
results while the next chunk is read; configure() and allocate_host() size its device and pinned buffers.

get_backend() picks one. "auto" picks only what has been measured where it runs (docs/PERFORMANCE.md): for
file-to-file work the native C++ kernel, on a GPU machine too (the work is disk-bound: 16+ cores of native
keep up with NVMe, and no GPU measurement of the device backends says otherwise yet), else the torch
reference; for merged weights whose destination is GPU memory (destination="device"), triton, the one way
to compute into device memory. Device backends otherwise run when asked for by name. A backend asked for by
name raises when unavailable; "auto" falls back quietly. CHATVEC_BACKEND overrides "auto".
"""

from __future__ import annotations

import os

from .. import _native

NAMES = ("auto", "native", "torch", "torch-fp32", "triton", "cuda")
# Backends that compute on a GPU (--devices). "auto" picks triton for a device destination, never cuda: it has
# not run on a GPU yet (docs/PERFORMANCE.md); it runs when asked for by name.
DEVICE_BACKENDS = ("triton", "cuda")  # backends that compute on a GPU (--devices)


def resolve(name: str = "auto", destination: str = "files") -> str:
    """The backend `name` means: itself, or for "auto" (CHATVEC_BACKEND overrides it) the measured choice for
    the destination ("files", or "device": merged weights into GPU memory). See the module docstring."""
    if name == "auto":
        name = os.environ.get("CHATVEC_BACKEND", "auto") or "auto"
    if name != "auto":
        return name
    if destination == "device":
        return "triton"
    return "native" if _native.available else "torch"


def get_backend(name: str = "auto", threads: int | None = None, device: str | None = None,
                gpu_memory: int | None = None, destination: str = "files"):  # fmt: skip
    """Returns a backend instance by name; see the module docstring. device/gpu_memory: device backends only."""
    name = resolve(name, destination)
    if name == "native":
        from .native import NativeBackend

        return NativeBackend(threads)
    if name in ("torch", "torch-fp32"):
        from .torch import TorchBackend

        return TorchBackend(math="fp32" if name == "torch-fp32" else "fp64", threads=threads)
    if name == "triton":
        from .triton import TritonBackend

        return TritonBackend(device, threads, gpu_memory)
    if name == "cuda":
        from .cuda import CudaBackend

        return CudaBackend(device, threads, gpu_memory)
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")
