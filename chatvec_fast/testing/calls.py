"""Kernel calls on torch tensors, for the tests and the benchmarks: the one contract (backends/call.py) with
CPU tensors as operands, and the outputs read back as tensors.

    >>> call = tensor_call(base, chat, cp, [0.5, 1.0], "BF16")   # merge, two outputs
    >>> get_backend("native").compute(call)
    >>> merged_half, merged_one = call_outputs(call, cp.shape)
    >>> want_half, want_one = oracle_outputs(call, cp.shape)    # the float64 oracle's
"""

from __future__ import annotations

import numpy as np
import torch

from ..backends.call import KernelCall, Operand
from ..backends.reference import TORCH_DTYPES
from ..backends.reference_call import reference_call

DTYPE_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def as_buffer(t: torch.Tensor) -> np.ndarray:
    """A tensor's bytes as a uint8 array (a view of it where it is contiguous)."""
    return t.contiguous().view(_BITS[t.element_size()]).reshape(-1).numpy().view(np.uint8)


def tensor_operand(t: torch.Tensor | None) -> Operand | None:
    """A float tensor (BF16, F16, F32, F64) as an unscaled operand."""
    return None if t is None else Operand(as_buffer(t), DTYPE_NAMES[t.dtype])


def tensor_call(base, chat, cp, alphas, out_dtype: str, outs=None) -> KernelCall:
    """The KernelCall of same-sized tensors, its mode from those given (None where absent): base, chat and cp
    merge; chat and cp apply chat as one saved vector; base and chat extract; cp alone converts. outs:
    output buffers, one per alpha (extract: one); fresh zeroed ones when None."""
    n = next(t for t in (cp, chat, base) if t is not None).numel()
    k = 1 if cp is None else len(alphas)
    if outs is None:
        width = torch.empty((), dtype=TORCH_DTYPES[out_dtype]).element_size()
        outs = [np.zeros(n * width, np.uint8) for _ in range(k)]
    outs = list(outs)[:k]
    rows = [[float(a)] for a in alphas[:k]]
    b, c, p = tensor_operand(base), tensor_operand(chat), tensor_operand(cp)
    if cp is None:
        return KernelCall(n, "extract", outs, out_dtype, [[1.0]], base=b, chat=c)
    if chat is None:
        return KernelCall(n, "convert", outs, out_dtype, [[1.0]] * k, cp=p)
    if base is None:
        return KernelCall(n, "apply", outs, out_dtype, rows, cp=p, vectors=(c,))
    return KernelCall(n, "merge", outs, out_dtype, rows, base=b, chat=c, cp=p)


def call_outputs(call: KernelCall, shape) -> list[torch.Tensor]:
    """A call's output buffers (F32/F16/BF16/F64) as tensors of the given shape, viewing the buffers."""
    dtype = TORCH_DTYPES[call.out_dtype]
    if call.n == 0:  # numpy's empty views have stride 0, which torch cannot reinterpret
        return [torch.empty(shape, dtype=dtype) for _ in call.outs]
    width = torch.empty((), dtype=dtype).element_size()
    return [torch.from_numpy(np.frombuffer(o, np.uint8, call.n * width)).view(dtype).reshape(shape) for o in call.outs]


def oracle_outputs(call: KernelCall, shape) -> list[torch.Tensor]:
    """The float64 oracle's outputs of a call (backends/reference_call.py), as tensors of the given shape."""
    return [t.reshape(shape) for t in reference_call(call)[0]]
