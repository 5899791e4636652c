"""Stored elements as float64 values, in numpy: widening is exact, FP8 codes times their scales exactly.

Decoding follows backends/call.py's rule 1 by verify's own means: bf16 is the top half of an f32 (a shift),
F8_E5M2 the top byte of an f16 (a shift), F8_E4M3 (e4m3fn) a 256-entry table built here from the format's
fields with Python integers and exact powers of two.
"""

from __future__ import annotations

import numpy as np

from .scales import ScaleRule

NUMPY_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
FP8_IN = frozenset({"F8_E4M3", "F8_E5M2"})


def _e4m3_values() -> np.ndarray:
    values = []
    for code in range(256):
        exponent, mantissa, negative = (code >> 3) & 0xF, code & 0x7, code >= 0x80
        if exponent == 0xF and mantissa == 0x7:  # e4m3fn: S.1111.111 is its only NaN, there is no Inf
            values.append(float("nan"))
            continue
        # subnormal: mantissa * 2^-9; normal: (8 + mantissa) * 2^(exponent - 7 - 3)
        magnitude = mantissa / 512 if exponent == 0 else (8 + mantissa) * 2.0 ** (exponent - 10)
        values.append(-magnitude if negative else magnitude)
    return np.array(values, dtype=np.float64)


E4M3_VALUES = _e4m3_values()


def decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    """float64 values of raw little-endian bytes (a uint8 array) holding elements of `dtype`, exactly."""
    with np.errstate(invalid="ignore"):  # signalling NaNs widen to quiet ones; the output's NaN is canonical anyway
        return _decode(raw, dtype)


def _decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    if dtype == "F8_E5M2":
        return (raw.astype(np.uint16) << np.uint16(8)).view(np.float16).astype(np.float64)
    if dtype == "F8_E4M3":
        return E4M3_VALUES[raw]
    return raw.view(NUMPY_DTYPES[dtype]).astype(np.float64)


def entry_of(rule: ScaleRule, first: int, count: int) -> np.ndarray:
    """Index, into the scale tensor (row-major), of each element [first, first + count) of its weight."""
    if rule.kind == "tensor":
        return np.zeros(count, dtype=np.int64)
    element = np.arange(first, first + count, dtype=np.int64)
    row = element // rule.cols
    if rule.kind == "row":
        return row
    return (row // rule.block_rows) * rule.scale_cols + (element % rule.cols) // rule.block_cols
