"""verify's own rounding: float64 results to the output's bit patterns, once, to nearest-even, in numpy.

Written apart from the kernels (magic-number additions), the oracle (variable shifts with a sticky bit) and
torch (whose float64 -> bf16/f16 casts go through float32 and round twice):

- F32: numpy's astype, the C cast double -> float, one IEEE rounding (nearest-even);
- F16: numpy's astype, npy_double_to_half, which rounds from the float64 bits directly (tests/
  test_verify_rounding.py checks it against exact rationals on subnormals, ties and overflow);
- BF16: integer arithmetic on the float64 bits (the round-half-even increment at bit 45, then the exponent
  rebiased); the few results below bf16's smallest normal are rounded by np.rint of the value scaled to
  units of 2^-133, exact;
- F8_E4M3: np.rint of the magnitude scaled to units of its own ulp (frexp gives the exponent), saturating.

NaN becomes the format's positive quiet NaN (call.py rule 2: what every kernel writes), so outputs are
compared bit for bit.
"""

from __future__ import annotations

import numpy as np

# The positive quiet NaN each output format gets, as the kernels write it.
CANONICAL_NAN = {"BF16": 0x7FC0, "F16": 0x7E00, "F32": 0x7FC0_0000, "F64": 0x7FF8_0000_0000_0000, "F8_E4M3": 0x7F}
BITS_DTYPE = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32, "F64": np.uint64, "F8_E4M3": np.uint8}
E4M3_MAX = 448.0

_BF16_SHIFT = 52 - 7  # float64 mantissa bits dropped
_BF16_REBIAS = (1023 - 127) << 7  # float64's exponent bias -> bf16's, in bf16's bit positions
_BF16_MIN_NORMAL_BITS = (1023 - 126) << 52  # magnitude bits of 2^-126
_ABS64 = np.uint64(0x7FFF_FFFF_FFFF_FFFF)


def round_to_bits(x: np.ndarray, dtype: str) -> np.ndarray:
    """Bit patterns (uint16/32/64) of float64 x rounded once to `dtype` ("BF16", "F16", "F32", "F64").

    >>> hex(int(round_to_bits(np.array([1.00390625]), "BF16")[0]))  # a tie: to even
    '0x3f80'
    """
    x = np.ascontiguousarray(x, dtype=np.float64)  # the bit views below need contiguous float64
    if dtype == "F64":
        out = x.view(np.uint64).copy()
    elif dtype in ("F32", "F16"):
        with np.errstate(over="ignore", invalid="ignore"):  # past the largest finite value: Inf, as IEEE says
            out = x.astype(np.float32 if dtype == "F32" else np.float16).view(BITS_DTYPE[dtype])
    elif dtype == "BF16":
        out = _bf16_bits(x)
    else:
        raise ValueError(f"no rounding to {dtype}")
    nan = np.isnan(x)
    if nan.any():
        out[nan] = CANONICAL_NAN[dtype]
    return out


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    # In place on one uint64 temporary: 2.3x faster than with int64 copies and np.clip (15 against 35 ns an
    # element on 32K pieces here).
    magnitude = x.view(np.uint64) & _ABS64
    tiny = magnitude < np.uint64(_BF16_MIN_NORMAL_BITS)
    # Nearest-even at bit 45: add half an ulp less one, plus the kept lowest bit; a carry moves into the exponent.
    kept_low = magnitude >> np.uint64(_BF16_SHIFT)
    kept_low &= np.uint64(1)
    magnitude += np.uint64((1 << (_BF16_SHIFT - 1)) - 1)
    magnitude += kept_low
    magnitude >>= np.uint64(_BF16_SHIFT)
    magnitude -= np.uint64(_BF16_REBIAS)  # wraps around below 2^-126: those are replaced below
    np.minimum(magnitude, np.uint64(0x7F80), out=magnitude)  # past bf16's largest finite value (and Inf): Inf
    out = magnitude.astype(np.uint16)
    if tiny.any():
        scaled = np.ldexp(np.abs(x[tiny]), 133)  # units of bf16's subnormal step 2^-133: exact
        out[tiny] = np.rint(scaled).astype(np.uint16)  # nearest-even; 128 is the smallest normal's bits
    out |= x.view(np.uint16)[3::4] & np.uint16(0x8000)  # the sign: top bit of each float64's last (little-endian)
    return out


def round_e4m3(x: np.ndarray) -> np.ndarray:
    """uint8 e4m3fn codes of float64 x: nearest-even, saturating to +-448 (Inf too), NaN -> 0x7F."""
    magnitude = np.abs(x)
    finite = np.isfinite(magnitude)
    clipped = np.where(finite, np.minimum(magnitude, 2 * E4M3_MAX), 2 * E4M3_MAX)
    _, exponent = np.frexp(clipped)  # clipped = m * 2^exponent, m in [0.5, 1)
    unbiased = np.maximum(exponent.astype(np.int64) - 1, -6)  # e4m3's smallest normal exponent is -6
    steps = np.rint(np.ldexp(clipped, 3 - unbiased)).astype(np.int64)  # in units of the ulp: 8..16 (0..8 below)
    codes = np.minimum(((unbiased + 6) << 3) + steps, 0x7E)  # 0x7E is 448; 0x7F would be NaN
    codes = np.where(clipped == 0, 0, codes)
    codes |= np.signbit(x).astype(np.int64) << 7
    codes = np.where(np.isnan(x), 0x7F, codes)
    return codes.astype(np.uint8)


def quantize_e4m3(x: np.ndarray, group: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes, float32 group scales) of float64 results x, element i in group group[i] (call.py rule 3)."""
    finite_abs = np.where(np.isfinite(x), np.abs(x), 0.0)
    amax = np.zeros(groups, dtype=np.float64)
    np.maximum.at(amax, group, finite_abs)
    with np.errstate(over="ignore"):
        scales = (amax / E4M3_MAX).astype(np.float32)  # one rounding of the float64 quotient
    scales[(amax == 0) | (scales == 0)] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return round_e4m3(x / scales.astype(np.float64)[group]), scales


def ordered(bits: np.ndarray) -> np.ndarray:
    """int64 keys in the order of the values the sign-magnitude bit patterns hold: key differences are ulps."""
    width = bits.dtype.itemsize * 8
    b = bits.astype(np.uint64)
    sign = np.uint64(1 << (width - 1))
    magnitude = (b & (sign - np.uint64(1))).astype(np.int64)
    return np.where((b & sign) != 0, -magnitude, magnitude)
