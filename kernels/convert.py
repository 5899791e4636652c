"""Exact conversions for the Triton kernels, written with integer bit operations.

Widening is exact; narrowing rounds once, to nearest-even, straight from float64. The rounding and the
FP8 decoding are written out rather than left to `.to()`: triton's interpreter truncates float32 ->
bfloat16 while GPUs round to nearest-even, float64 -> float32 -> bfloat16 would round twice anyway, and
FP8 casts differ between the interpreter and devices. Integer ops give the same bits everywhere.
"""

import triton
import triton.language as tl

from ..kernel_codes import DTYPE_CODES

# Globals a @triton.jit function reads must be tl.constexpr objects: the compiler refuses a plain int
# ("Cannot access global variable"), and `X: tl.constexpr = 3` at module level is a plain int.
# dtype codes, from chatvec_fast/kernel_codes.py (as csrc/dtype_convert.h)
F32 = tl.constexpr(DTYPE_CODES["F32"])
F16 = tl.constexpr(DTYPE_CODES["F16"])
BF16 = tl.constexpr(DTYPE_CODES["BF16"])
F64 = tl.constexpr(DTYPE_CODES["F64"])
F8_E4M3 = tl.constexpr(DTYPE_CODES["F8_E4M3"])
F8_E5M2 = tl.constexpr(DTYPE_CODES["F8_E5M2"])

# float64 bit patterns: the magnitude mask, +Inf (above it: NaN), the canonical quiet NaN
ABS_MASK = tl.constexpr(0x7FFFFFFFFFFFFFFF)
EXP_ALL_ONES = tl.constexpr(0x7FF0000000000000)
F64_QNAN = tl.constexpr(0x7FF8000000000000)


@triton.jit
def _decode_fp8(bits, EXP_BITS: tl.constexpr, MANT_BITS: tl.constexpr, BIAS: tl.constexpr, HAS_INF: tl.constexpr):
    """float64 value of FP8 codes (any integer type holding the byte), from the format's fields."""
    b = bits.to(tl.int32) & 0xFF
    e = (b >> MANT_BITS) & ((1 << EXP_BITS) - 1)
    m = b & ((1 << MANT_BITS) - 1)
    normal = (((e + (1023 - BIAS)).to(tl.int64) << 52) | (m.to(tl.int64) << (52 - MANT_BITS))).to(
        tl.float64, bitcast=True
    )
    subnormal = m.to(tl.float64) * (2.0 ** (1 - BIAS - MANT_BITS))  # small integer times a power of two: exact
    value = tl.where(e == 0, subnormal, normal)
    nan = tl.full(value.shape, F64_QNAN, tl.int64).to(tl.float64, bitcast=True)
    top = (1 << EXP_BITS) - 1
    if HAS_INF:  # e5m2: Inf and NaN as in f16
        inf = tl.full(value.shape, EXP_ALL_ONES, tl.int64).to(tl.float64, bitcast=True)
        value = tl.where(e == top, tl.where(m == 0, inf, nan), value)
    else:  # e4m3fn: only S.1111.111 is NaN
        value = tl.where((e == top) & (m == (1 << MANT_BITS) - 1), nan, value)
    # The sign as a bit, not `-value`: triton 3.6 lowers float negation to 0.0 - x on GPUs, which makes the
    # code 0x80 (-0.0) +0.0 (the interpreter and triton 3.9 negate). Bits give -0.0 everywhere.
    sign = (b >> 7).to(tl.int64) << 63
    return (value.to(tl.int64, bitcast=True) | sign).to(tl.float64, bitcast=True)


@triton.jit
def widen_bits(bits, KIND: tl.constexpr):
    """float64 value of storage bits (int16 for bf16/f16, int32 for f32, int64 for f64, uint8 for FP8)."""
    if KIND == BF16:
        value = ((bits.to(tl.int32) & 0xFFFF) << 16).to(tl.float32, bitcast=True).to(tl.float64)
    elif KIND == F16:
        value = bits.to(tl.float16, bitcast=True).to(tl.float64)
    elif KIND == F32:
        value = bits.to(tl.float32, bitcast=True).to(tl.float64)
    elif KIND == F8_E4M3:
        value = _decode_fp8(bits, 4, 3, 7, False)
    elif KIND == F8_E5M2:
        value = _decode_fp8(bits, 5, 2, 15, True)
    else:
        value = bits.to(tl.float64, bitcast=True)
    return value


@triton.jit
def _split(x):
    """float64 x as (high, low) 32-bit halves of its bits: the high half holds the sign, the exponent and the
    top 20 fraction bits. A GPU does 64-bit integer work as pairs of 32-bit instructions (an add is two with a
    carry, a compare three), so rounding on the high half plus one test of the low one halves it."""
    bits = x.to(tl.int64, bitcast=True)
    return (bits >> 32).to(tl.int32), bits.to(tl.int32)


@triton.jit
def _round_narrow(x, MANT: tl.constexpr, EMIN: tl.constexpr, TOP: tl.constexpr, NAN: tl.constexpr,
                  SIGN: tl.constexpr):  # fmt: skip
    """int32 bits of float64 x rounded once, to nearest-even, to a binary format with MANT stored fraction bits,
    smallest normal exponent EMIN and fewer than 21 fraction bits kept (bf16 7, f16 10, e4m3 3); magnitudes past
    its largest finite value become TOP (Inf, or the largest finite value of a saturating format), NaN becomes
    NAN, the sign goes to bit SIGN. The method of csrc/dtype_convert.h, on 32-bit halves:

    Normal results: round the double's bit pattern at fraction bit 52 - MANT and re-bias the exponent (a fraction
    carry moves into the exponent by itself, up to TOP). The discarded bits straddle the halves: the round bit and
    those above the low half are in the high half; the low half only adds to the sticky bit (carry: lo != 0).
    Subnormal results: adding 2^(EMIN - MANT + 52) makes the FPU round |x| to the subnormal spacing; the low
    half of the sum's bits is the result (the high half is the constant's).
    """
    HI_SHIFT: tl.constexpr = 20 - MANT  # the rounding position, counted in the high half
    HALF_MINUS_ONE: tl.constexpr = (1 << (HI_SHIFT - 1)) - 1
    REBIAS: tl.constexpr = (1023 + EMIN - 1) << MANT
    SMALLEST_NORMAL_HI: tl.constexpr = (1023 + EMIN) << 20
    MAGIC: tl.constexpr = (1023 + EMIN - MANT + 52) << 52
    INF_HI: tl.constexpr = 0x7FF00000
    hi, lo = _split(x)
    mag_hi = tl.minimum(hi & 0x7FFFFFFF, INF_HI)  # Inf and NaN: their own results below; no overflow
    carry = ((lo != 0) | (((mag_hi >> HI_SHIFT) & 1) == 1)).to(tl.int32)  # sticky bits, or the odd bit of a tie
    normal = ((mag_hi + HALF_MINUS_ONE + carry) >> HI_SHIFT) - REBIAS
    magic = tl.full(x.shape, MAGIC, tl.int64).to(tl.float64, bitcast=True)
    _, subnormal = _split(tl.abs(x) + magic)
    out = tl.minimum(tl.where(mag_hi < SMALLEST_NORMAL_HI, subnormal, normal), TOP)
    sign = (hi >> (31 - SIGN)) & (1 << SIGN)  # arithmetic shift: the sign bit lands at SIGN, ones above it
    return tl.where(x != x, NAN, out | sign)  # NaN: one float64 compare (on the FP64 pipe, not the integer one)


@triton.jit
def round_e4m3(x):
    """int32 e4m3fn code of float64 x: nearest-even (subnormals are multiples of 2^-9), saturating to
    +-448 beyond it and for +-Inf, NaN -> 0x7F, -0.0 -> 0x80 (csrc/dtype_convert.h double_to_e4m3)."""
    return _round_narrow(x, 3, -6, 0x7E, 0x7F, 7)


@triton.jit
def round_bits(x, KIND: tl.constexpr):
    """Storage bits of x rounded once to KIND; NaN becomes the canonical positive quiet NaN."""
    if KIND == BF16:
        out = _round_narrow(x, 7, -126, 0x7F80, 0x7FC0, 15).to(tl.int16)
    elif KIND == F16:
        out = _round_narrow(x, 10, -14, 0x7C00, 0x7E00, 15).to(tl.int16)
    elif KIND == F32:
        f = x.to(tl.float32).to(tl.int32, bitcast=True)  # one hardware rounding, nearest-even
        out = tl.where((f & 0x7FFFFFFF) > 0x7F800000, 0x7FC00000, f)
    else:
        b = x.to(tl.int64, bitcast=True)
        out = tl.where((b & ABS_MASK) > EXP_ALL_ONES, F64_QNAN, b)
    return out
