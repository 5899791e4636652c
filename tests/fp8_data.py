"""FP8 test data, written from the formats' definitions with numpy and independent of the package.

- fp8_table(): the value of each of the 256 codes, from its sign, exponent and mantissa fields.
- nearest_codes(): round float64 to the nearest code, ties to the even code, saturating, by searching the
  sorted table (the kernels round with bit tricks, the reference with shifts and a sticky bit).
- quantize(): a checkpoint-style quantizer: per group amax / max-finite as float32 (1 for a group of zeros),
  codes = nearest(w / scale), in the "block", "row" and "tensor" layouts.
- chunk_operand(): a chunk of a quantized tensor as a call.Operand, its scales sliced from its first
  (block-)row the way a streaming reader passes them.
"""

from __future__ import annotations

import numpy as np

from chatvec_fast.backends.call import Operand, Scale

FORMATS = {"F8_E4M3": (4, 3, 7), "F8_E5M2": (5, 2, 15)}  # exponent bits, mantissa bits, bias
MAX_FINITE = {"F8_E4M3": 448.0, "F8_E5M2": 57344.0}


def fp8_table(dtype: str) -> np.ndarray:
    """float64 value of every code 0..255."""
    exp_bits, mant_bits, bias = FORMATS[dtype]
    code = np.arange(256)
    sign = np.where(code & 0x80, -1.0, 1.0)
    e = (code >> mant_bits) & ((1 << exp_bits) - 1)
    m = code & ((1 << mant_bits) - 1)
    value = np.where(e == 0, m * 2.0 ** (1 - bias - mant_bits), (1 + m / 2**mant_bits) * 2.0 ** (e - bias))
    value = sign * value
    top = (1 << exp_bits) - 1
    if dtype == "F8_E5M2":
        value = np.where(e == top, np.where(m == 0, sign * np.inf, np.nan), value)
    else:
        value = np.where((e == top) & (m == (1 << mant_bits) - 1), np.nan, value)
    return value


def nearest_codes(x: np.ndarray, dtype: str) -> np.ndarray:
    """uint8 codes of float64 x: nearest value, ties to the even code; beyond the largest finite value
    saturate (Inf too); NaN -> 0x7F; the sign of zero kept."""
    table = fp8_table(dtype)
    positive = np.arange(0x80)
    keep = np.isfinite(table[positive])
    values, codes = table[positive][keep], positive[keep]  # sorted ascending
    mag = np.abs(x)
    hi = np.searchsorted(values, mag, side="left").clip(1, len(values) - 1)
    lo = hi - 1
    mid = (values[lo] + values[hi]) / 2  # exact in float64
    take_hi = (mag > mid) | ((mag == mid) & (codes[hi] % 2 == 0))
    out = np.where(take_hi, codes[hi], codes[lo])
    out = np.where(mag >= values[-1], codes[-1], out)  # saturate
    out = np.where(np.signbit(x), out | 0x80, out)
    return np.where(np.isnan(x), 0x7F, out).astype(np.uint8)


def group_ids(rows: int, cols: int, layout: tuple) -> np.ndarray:
    """(rows, cols) array: the index of each element's scale in the layout's row-major scale array."""
    kind = layout[0]
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    if kind == "tensor":
        return np.zeros((rows, cols), np.int64)
    if kind == "row":
        return r
    br, bc = layout[1], layout[2]
    return (r // br) * (-(-cols // bc)) + c // bc


def group_amax(x: np.ndarray, ids: np.ndarray, groups: int) -> np.ndarray:
    """Largest finite |x| per group (0 for a group with none)."""
    finite = np.where(np.isfinite(x), np.abs(x), 0.0)
    amax = np.zeros(groups)
    np.maximum.at(amax, ids.reshape(-1), finite.reshape(-1))
    return amax


def quantize(w: np.ndarray, dtype: str, layout: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(codes of shape w.shape, float32 scales) of a float64 weight."""
    rows, cols = w.shape
    ids = group_ids(rows, cols, layout)
    amax = group_amax(w, ids, int(ids.max()) + 1)
    scales = (amax / MAX_FINITE[dtype]).astype(np.float32)
    scales[(amax == 0) | (scales == 0)] = 1.0
    return nearest_codes(w / scales.astype(np.float64)[ids], dtype), scales


def dequantize(codes: np.ndarray, scales: np.ndarray, dtype: str, layout: tuple) -> np.ndarray:
    ids = group_ids(*codes.shape, layout)
    return fp8_table(dtype)[codes] * scales.astype(np.float64)[ids]


def chunk_operand(codes, scales, dtype, layout, start, stop, own_scales=True) -> Operand:
    """Elements [start, stop) of a quantized 2-D tensor as an Operand. own_scales: pass the scales from the
    chunk's first (block-)row on (first_scale_row set); else the whole array (first_scale_row 0)."""
    cols = codes.shape[1]
    flat = np.ascontiguousarray(codes.reshape(-1)[start:stop])
    kind = layout[0]
    br, bc = (layout[1], layout[2]) if kind == "block" else (1, 1)
    first = 0
    if own_scales and kind != "tensor":
        first = start // cols // br
    per_row = -(-cols // bc) if kind == "block" else 1
    buf = np.ascontiguousarray(scales[first * per_row :]) if kind != "tensor" else scales[:1].copy()
    return Operand(flat, dtype, Scale(kind, buf, cols, start, br, bc, first))


def plain_operand(values: np.ndarray, dtype: str, start: int, stop: int) -> Operand:
    """Elements [start, stop) of a float64 array stored as a plain dtype (F32, F64; BF16 via truncation of
    float32's low half after rounding to nearest-even with numpy)."""
    flat = values.reshape(-1)[start:stop]
    if dtype == "F32":
        return Operand(flat.astype(np.float32).view(np.uint8).copy(), dtype)
    if dtype == "F64":
        return Operand(flat.astype(np.float64).view(np.uint8).copy(), dtype)
    if dtype == "BF16":
        f = flat.astype(np.float32).view(np.uint32).astype(np.uint64)
        rounded = ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype(np.uint16)
        rounded = np.where(np.isnan(flat), np.uint16(0x7FC0), rounded)
        return Operand(rounded.view(np.uint8).copy(), dtype)
    raise ValueError(dtype)
