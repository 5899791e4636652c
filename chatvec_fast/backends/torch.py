"""The plain PyTorch backends, chunk by chunk.

`torch` is the float64 oracle (backends/reference_call.py) applied to the call's buffers: exact, slow.
`torch-fp32` computes in float32 and rounds with torch's own casts, the common "exact enough" script (up to
hundreds of ulp off near cancellation); it reads and writes no FP8, whose scales need the float64 rules.
"""

from __future__ import annotations

import numpy as np
import torch

from ..dtypes import FP8, itemsize
from .call import MAX_VECTORS, KernelCall, operands, validate
from .reference import TORCH_DTYPES, count_inexact
from .reference_call import host_tensor, reference_call


class TorchBackend:
    max_vectors = MAX_VECTORS

    def __init__(self, math: str = "fp64", threads: int | None = None):
        if math not in ("fp64", "fp32"):
            raise ValueError(f"math must be 'fp64' or 'fp32', got {math!r}")
        self.math = math
        self.name = "torch" if math == "fp64" else "torch-fp32"
        self.exact = math == "fp64"
        self.threads = threads
        if threads:
            torch.set_num_threads(threads)

    def describe(self) -> str:
        return f"{self.name} ({self.math} math, {torch.get_num_threads()} threads)"

    def compute(self, call: KernelCall) -> int:
        """Runs one KernelCall (backends/call.py); returns extract's count of inexact elements, else 0."""
        validate(call, MAX_VECTORS, self.name)
        if self.math == "fp32":
            results, scales, count = _fp32_call(call), None, 0
            if call.mode == "extract":  # against the float64 difference, as every backend counts
                chat, base = (host_tensor(op.buffer, op.dtype, call.n).double() for op in (call.chat, call.base))
                count = count_inexact(results[0], chat - base)
        else:
            results, scales, count = reference_call(call)
        for out, result in zip(call.outs, results):
            if call.n:
                _as_bytes(out, result.numel() * result.element_size()).copy_(result.view(-1).view(torch.uint8))
        for buf, s in zip(call.out_scale.buffers if scales is not None else (), scales or ()):
            if s.numel():
                _as_bytes(buf, 4 * s.numel()).copy_(s.view(torch.uint8))
        return count


def _fp32_call(call: KernelCall) -> list[torch.Tensor]:
    """The outputs in float32 arithmetic, each op rounded to float32, then torch's cast to out_dtype."""
    fp8 = [name for name, op in operands(call) if op.dtype in FP8] + (["out_dtype"] if call.out_dtype in FP8 else [])
    if fp8:
        raise ValueError(
            f"the torch-fp32 backend reads and writes no FP8 ({', '.join(fp8)} is FP8): FP8 scales follow the "
            "float64 rules of backends/call.py; use --backend torch (the float64 reference) or native"
        )
    n, out = call.n, TORCH_DTYPES[call.out_dtype]

    def value(op):  # a view of the buffer (no copy: a 256M-element benchmark has 1.5 GB of inputs), widened
        if n == 0:  # numpy's empty views have stride 0, which torch cannot reinterpret
            return torch.empty(0, dtype=torch.float32)
        raw = np.frombuffer(op.buffer, dtype=np.uint8, count=n * itemsize(op.dtype))
        return torch.from_numpy(raw).view(TORCH_DTYPES[op.dtype]).to(torch.float32)

    if call.mode == "convert":
        return [value(call.cp).to(out)] * len(call.outs)
    if call.mode in ("merge", "extract"):
        delta = value(call.chat) - value(call.base)
        if call.mode == "extract":
            return [delta.to(out)]
        cp = value(call.cp)
        return [(cp + torch.tensor(float(row[0]), dtype=torch.float32) * delta).to(out) for row in call.alphas]
    vectors = [value(v) for v in call.vectors]
    results = []
    for row in call.alphas:
        acc = value(call.cp)
        for alpha, v in zip(row, vectors):
            acc = acc + torch.tensor(float(alpha), dtype=torch.float32) * v
        results.append(acc.to(out))
    return results


def _as_bytes(buf, nbytes: int) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(buf, dtype=np.uint8, count=nbytes))
