"""The float64 oracle: the result of any kernel call (backends/call.py), the one reference every backend is
tested against, and the `torch` backend (applied to the call's buffers).

    >>> outs, group_scales, count = reference_call(call)   # out_dtype tensors, FP8 scales or None, extract's count
    >>> exact = reference_results(call)                    # float64, before the final rounding

Written apart from the kernels on purpose: FP8 codes decode through a 256-entry table built from the
format's definition with math.ldexp (the kernels use bit tricks), scales are gathered per element with
vectorised index arithmetic (the kernels walk runs), and the roundings are the variable-shift, sticky-bit
ones of backends/reference.py (round_float64, round_bits), not the kernels' magic-number additions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..dtypes import FP8, itemsize
from .call import FP8_MAX, KernelCall, Operand, OutScale, Scale
from .reference import TORCH_DTYPES, count_inexact, round_bits, round_float64

_PIECE = 1 << 16


def _fp8_value(code: int, exp_bits: int, mant_bits: int, bias: int, has_inf: bool) -> float:
    sign = -1.0 if code & 0x80 else 1.0
    e = (code >> mant_bits) & ((1 << exp_bits) - 1)
    m = code & ((1 << mant_bits) - 1)
    if has_inf and e == (1 << exp_bits) - 1:  # e5m2: IEEE-like Inf and NaN
        return math.nan if m else sign * math.inf
    if not has_inf and e == (1 << exp_bits) - 1 and m == (1 << mant_bits) - 1:  # e4m3fn: S.1111.111 is NaN
        return math.nan
    if e == 0:
        return sign * math.ldexp(m, 1 - bias - mant_bits)
    return sign * math.ldexp((1 << mant_bits) + m, e - bias - mant_bits)


# The value of every code, as float64 (exact: at most 4 significant bits).
FP8_VALUES = {
    "F8_E4M3": torch.tensor([_fp8_value(c, 4, 3, 7, False) for c in range(256)], dtype=torch.float64),
    "F8_E5M2": torch.tensor([_fp8_value(c, 5, 2, 15, True) for c in range(256)], dtype=torch.float64),
}


def host_tensor(buf, dtype: str, n: int) -> torch.Tensor:
    """The first n elements of a host buffer as a tensor (FP8 as uint8 codes); a copy, so any alignment."""
    if n == 0:
        return torch.empty(0, dtype=torch.uint8 if dtype in FP8 else TORCH_DTYPES[dtype])
    raw = torch.from_numpy(np.frombuffer(buf, dtype=np.uint8, count=n * itemsize(dtype)).copy())
    return raw if dtype in FP8 else raw.view(TORCH_DTYPES[dtype])


def scale_values(buf, count: int) -> torch.Tensor:
    """The first count float32 scales of a buffer, as float32 (copied)."""
    if count == 0:
        return torch.empty(0, dtype=torch.float32)
    raw = np.frombuffer(buf, dtype=np.uint8, count=4 * count).copy()
    return torch.from_numpy(raw.view(np.float32))


def _rows_cols(first_element: int, cols: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    e = torch.arange(first_element, first_element + n, dtype=torch.int64)
    return e // cols, e % cols


def scale_index(scale: Scale, n: int) -> torch.Tensor:
    """Index into scale.buffer of each of the chunk's n elements (the formula of call.Scale)."""
    if scale.kind == "tensor":
        return torch.zeros(n, dtype=torch.int64)
    row, col = _rows_cols(scale.first_element, scale.cols, n)
    if scale.kind == "row":
        return row - scale.first_scale_row
    per_row = -(-scale.cols // scale.block_cols)
    return (row // scale.block_rows - scale.first_scale_row) * per_row + col // scale.block_cols


def operand_values(op: Operand, n: int) -> torch.Tensor:
    """float64 values of an operand's n elements: decode(code) * float64(scale), exact."""
    t = host_tensor(op.buffer, op.dtype, n)
    values = FP8_VALUES[op.dtype][t.long()] if op.dtype in FP8 else t.double()
    if op.scale is None:
        return values
    index = scale_index(op.scale, n)
    count = int(index.max()) + 1 if n else 0
    return values * scale_values(op.scale.buffer, count).double()[index]


def round_e4m3(x: torch.Tensor) -> torch.Tensor:
    """uint8 e4m3fn codes of float64 x: nearest-even, saturating to +-448 (Inf too), NaN -> 0x7F."""
    flat = x.contiguous().view(-1)
    out = torch.empty(flat.shape, dtype=torch.uint8)
    for start in range(0, flat.numel(), _PIECE):  # pieces keep the int64 temporaries in cache
        piece = flat[start : start + _PIECE]
        out[start : start + _PIECE] = round_bits(piece, 3, -6, 0x7E, 0x7F, 7).to(torch.uint8)
    return out.view(x.shape)


def group_index(o: OutScale, n: int) -> torch.Tensor:
    """Group (slot of out_scale.buffers[k]) of each of the chunk's n elements."""
    first_row = o.first_element // o.cols
    row, col = _rows_cols(o.first_element, o.cols, n)
    if o.kind == "row":
        return row - first_row
    per_row = -(-o.cols // o.block_cols)
    return (row // o.block_rows - first_row // o.block_rows) * per_row + col // o.block_cols


def quantize_e4m3(x: torch.Tensor, o: OutScale) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, group scales) of float64 results x re-quantized per group (call.py's rule 3)."""
    n = x.numel()
    group = group_index(o, n)
    finite_abs = torch.where(torch.isfinite(x), x.abs(), torch.zeros_like(x))
    amax = torch.zeros(o.groups(n), dtype=torch.float64).scatter_reduce(0, group, finite_abs, "amax")
    scales = (amax / FP8_MAX).to(torch.float32)  # one rounding of the float64 quotient
    scales = torch.where((amax == 0) | (scales == 0), torch.ones_like(scales), scales)
    return round_e4m3(x / scales.double()[group]), scales


def reference_results(call: KernelCall) -> list[torch.Tensor]:
    """The float64 result of each output before its final rounding; products and sums each rounded, in the
    order of call.py."""
    n = call.n
    if call.mode == "convert":
        return [operand_values(call.cp, n) for _ in call.outs]
    if call.mode in ("merge", "extract"):
        delta = operand_values(call.chat, n) - operand_values(call.base, n)
        if call.mode == "extract":
            return [delta]
        cp = operand_values(call.cp, n)
        return [cp + torch.tensor(float(row[0]), dtype=torch.float64) * delta for row in call.alphas]
    vectors = [operand_values(v, n) for v in call.vectors]
    results = []
    for row in call.alphas:
        acc = operand_values(call.cp, n)
        for alpha, v in zip(row, vectors):
            acc = acc + torch.tensor(float(alpha), dtype=torch.float64) * v
        results.append(acc)
    return results


def reference_call(call: KernelCall) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, int]:
    """(outputs, FP8 group scales or None, extract's inexact count) of a validated call.

    Outputs are tensors of out_dtype (F8_E4M3 as uint8 codes, with float32 group scales per output).
    """
    exact = reference_results(call)
    if call.out_dtype == "F8_E4M3":
        pairs = [quantize_e4m3(x, call.out_scale) for x in exact]
        return [codes for codes, _ in pairs], [scales for _, scales in pairs], 0
    outs = [round_float64(x, TORCH_DTYPES[call.out_dtype]) for x in exact]
    count = count_inexact(outs[0], exact[0]) if call.mode == "extract" else 0
    return outs, None, count
