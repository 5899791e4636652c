"""A tensor's bytes as the pipeline's writers see an output file: write(data, offset), into a torch tensor.

The pipeline (run/stream.py) hands each chunk's result to `chunk.files[k].write(data, offset)`; a TensorSink
takes the same calls into the bytes of a tensor in memory: a fresh one, a slice of a model's parameter, or a
staging tensor. Where the backend's kernel can write the tensor's memory (a CPU tensor for the native kernel, one
on the device for the triton kernel), it offers it (`output_buffer`): the kernel computes straight into it.
"""

from __future__ import annotations

import threading

import numpy as np

# safetensors dtype -> the torch dtype's attribute name (sub-byte F4/F6 have none: refused by name)
TORCH_NAMES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
               "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16", "BF16": "bfloat16",
               "F32": "float32", "F64": "float64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
               "F8_E8M0": "float8_e8m0fnu"}  # fmt: skip


def torch_dtype(dtype: str, name: str = ""):
    """The torch dtype of a safetensors dtype; ValueError naming the tensor when torch has none."""
    import torch

    found = getattr(torch, TORCH_NAMES.get(dtype, "-"), None)
    if found is None:
        raise ValueError(f"{name}: dtype {dtype} has no torch dtype here (torch {torch.__version__}); "
                         "merge to files instead, or skip the tensor")  # fmt: skip
    return found


def as_bytes(t):
    """A contiguous tensor's bytes: a flat uint8 view of the same memory (detached: parameters too)."""
    import torch

    return t.detach().reshape(-1).view(torch.uint8)


def new_tensor(dtype: str, shape, device):
    """A fresh contiguous tensor of a safetensors dtype. On the CPU its memory comes from numpy, which asks for
    transparent huge pages on large allocations: first touch ran at 3.2-6.6 GB/s here against 1.5-1.7 GB/s
    for torch.empty's 4 KiB pages (256 MiB, THP 'madvise')."""
    import torch

    nbytes = int(np.prod(shape, dtype=np.int64)) * torch_dtype(dtype).itemsize
    if torch.device(device).type == "cpu":
        flat = torch.from_numpy(np.empty(nbytes, np.uint8))
    else:
        flat = torch.empty(nbytes, dtype=torch.uint8, device=device)
    return flat.view(torch_dtype(dtype)).reshape(shape)


class TensorSink:
    """One tensor's bytes, written chunk by chunk at their offsets by the pipeline's writer thread; `done` once
    every byte has arrived. target: a flat uint8 tensor (as_bytes of the destination)."""

    def __init__(self, target, on_done=None, offer: str | None = None):
        """offer: give the kernel the target's memory as "numpy" (a host kernel, a CPU target) or "tensor" (a
        device kernel, a target on its device), or not (None)."""
        self.target = target
        self.nbytes = target.numel()
        self.host = target.numpy() if target.device.type == "cpu" else None
        self.offer = offer
        self.inexact = 0  # the pipeline's extract count (never used here: no extract in memory)
        self._by_kernel: set[int] = set()  # offsets the kernel wrote itself
        self._written = 0
        self._lock = threading.Lock()
        self._on_done = on_done
        self.done = self.nbytes == 0

    def output_buffer(self, offset: int, nbytes: int):
        """The target's bytes at offset, for the kernel to write (run/stream.py asks), or None."""
        if self.offer is None:
            return None
        with self._lock:
            self._by_kernel.add(offset)
        memory = self.host if self.offer == "numpy" else self.target
        return memory[offset : offset + nbytes]

    def write(self, data, offset: int):
        """data: a numpy uint8 array (a pipeline slot) or bytes (an FP8 output's scales), landing at offset."""
        src = np.frombuffer(data, np.uint8)
        with self._lock:
            by_kernel = offset in self._by_kernel
            self._by_kernel.discard(offset)
        if by_kernel:
            pass  # the kernel wrote it there, and the writer waited for it
        elif self.host is not None:
            self.host[offset : offset + src.size] = src
        else:  # to the device: a synchronous copy, so the slot is free again once it returns
            import torch

            self.target[offset : offset + src.size].copy_(torch.from_numpy(src))
        with self._lock:
            self._written += src.size
            if self._written > self.nbytes:
                raise RuntimeError(f"{self._written} bytes written into a tensor of {self.nbytes}; this is a bug, "
                                   "please report it")  # fmt: skip
            self.done = self._written == self.nbytes
        if self.done and self._on_done is not None:
            self._on_done()
