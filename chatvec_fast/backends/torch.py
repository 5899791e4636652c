"""The plain PyTorch backend: the float64 reference (backends/reference.py) applied chunk by chunk."""

from __future__ import annotations

import numpy as np
import torch

from ..dtypes import itemsize
from .call import MAX_VECTORS, KernelCall, validate
from .reference import TORCH_DTYPES, count_inexact, merge_reference


def _as_tensor(buf, dtype: str, n: int) -> torch.Tensor:
    if n == 0:  # numpy's empty views have stride 0, which torch cannot reinterpret
        return torch.empty(0, dtype=TORCH_DTYPES[dtype])
    raw = np.frombuffer(buf, dtype=np.uint8, count=n * itemsize(dtype))
    return torch.from_numpy(raw).view(TORCH_DTYPES[dtype])


class TorchBackend:
    max_vectors = MAX_VECTORS

    def __init__(self, math: str = "fp64", threads: int | None = None):
        self.math = math
        self.name = "torch" if math == "fp64" else "torch-fp32"
        self.exact = math == "fp64"
        self.threads = threads
        if threads:
            torch.set_num_threads(threads)

    def describe(self) -> str:
        return f"{self.name} ({self.math} math, {torch.get_num_threads()} threads)"

    def compute(self, base, base_dtype, chat, chat_dtype, cp, cp_dtype, n, alphas, outs, out_dtype) -> int:
        b = None if base is None else _as_tensor(base, base_dtype, n)
        c = None if chat is None else _as_tensor(chat, chat_dtype, n)
        p = None if cp is None else _as_tensor(cp, cp_dtype, n)
        results = merge_reference(b, c, p, alphas, TORCH_DTYPES[out_dtype], self.math)
        for out, result in zip(outs, results):
            _as_tensor(out, out_dtype, n).copy_(result)
        if p is None and b is not None:  # extract: how many differences the output dtype rounded
            return count_inexact(results[0], c.double() - b.double())
        return 0

    def compute_call(self, call: KernelCall) -> int:
        """Runs one KernelCall (backends/call.py) with the float64 reference; returns extract's count."""
        from .reference_call import reference_call

        if self.math != "fp64":
            raise ValueError("torch-fp32 runs only compute(); the general call is exact: use --backend torch")
        validate(call, MAX_VECTORS, self.name)
        results, scales, count = reference_call(call)
        for out, result in zip(call.outs, results):
            if call.n:
                _as_bytes(out, result.numel() * result.element_size()).copy_(result.view(-1).view(torch.uint8))
        for buf, s in zip(call.out_scale.buffers if scales is not None else (), scales or ()):
            if s.numel():
                _as_bytes(buf, 4 * s.numel()).copy_(s.view(torch.uint8))
        return count


def _as_bytes(buf, nbytes: int) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(buf, dtype=np.uint8, count=nbytes))
