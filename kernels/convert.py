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
    return tl.where(b >= 0x80, -value, value)


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
def _round_half_like(x, MANT: tl.constexpr, EMIN: tl.constexpr, INF: tl.constexpr, QNAN: tl.constexpr):
    """Bits (int64) of x rounded to nearest-even in a 16-bit float format; the method of csrc/dtype_convert.h.

    Normal results: round the double's bit pattern at bit 52 - MANT and re-bias the exponent (a mantissa
    carry moves into the exponent by itself, up to Inf). Subnormal results: adding 2^(EMIN - MANT + 52)
    makes the FPU round |x| to the subnormal spacing; the difference of bit patterns is the mantissa.
    """
    SHIFT: tl.constexpr = 52 - MANT
    HALF_MINUS_ONE: tl.constexpr = (1 << (SHIFT - 1)) - 1
    REBIAS: tl.constexpr = (1023 + EMIN - 1) << MANT
    SMALLEST_NORMAL: tl.constexpr = (1023 + EMIN) << 52
    MAGIC: tl.constexpr = (1023 + EMIN - MANT + 52) << 52
    bits = x.to(tl.int64, bitcast=True)
    mag = bits & ABS_MASK
    normal = ((mag + HALF_MINUS_ONE + ((mag >> SHIFT) & 1)) >> SHIFT) - REBIAS
    magic = tl.full(x.shape, MAGIC, tl.int64).to(tl.float64, bitcast=True)
    subnormal = (mag.to(tl.float64, bitcast=True) + magic).to(tl.int64, bitcast=True) - MAGIC
    out = tl.where(mag < SMALLEST_NORMAL, subnormal, normal)
    out = tl.minimum(out, INF)  # overflow, and Inf itself
    sign = (bits >> 48) & 0x8000
    return tl.where(mag > EXP_ALL_ONES, QNAN, out | sign)


@triton.jit
def round_e4m3(x):
    """int32 e4m3fn code of float64 x: nearest-even (subnormals are multiples of 2^-9), saturating to
    +-448 beyond it and for +-Inf, NaN -> 0x7F, -0.0 -> 0x80 (csrc/dtype_convert.h double_to_e4m3)."""
    bits = x.to(tl.int64, bitcast=True)
    mag = bits & ABS_MASK
    normal = ((mag + ((1 << 48) - 1) + ((mag >> 49) & 1)) >> 49) - ((1023 - 6 - 1) << 3)
    MAGIC: tl.constexpr = (1023 - 6 - 3 + 52) << 52
    magic = tl.full(x.shape, MAGIC, tl.int64).to(tl.float64, bitcast=True)
    subnormal = (mag.to(tl.float64, bitcast=True) + magic).to(tl.int64, bitcast=True) - MAGIC
    out = tl.where(mag < ((1023 - 6) << 52), subnormal, normal)
    out = tl.minimum(out, 0x7E)  # saturate
    sign = (bits >> 56) & 0x80
    return tl.where(mag > EXP_ALL_ONES, 0x7F, out | sign).to(tl.int32)


@triton.jit
def round_bits(x, KIND: tl.constexpr):
    """Storage bits of x rounded once to KIND; NaN becomes the canonical positive quiet NaN."""
    if KIND == BF16:
        out = _round_half_like(x, 7, -126, 0x7F80, 0x7FC0).to(tl.int16)
    elif KIND == F16:
        out = _round_half_like(x, 10, -14, 0x7C00, 0x7E00).to(tl.int16)
    elif KIND == F32:
        f = x.to(tl.float32).to(tl.int32, bitcast=True)  # one hardware rounding, nearest-even
        out = tl.where((f & 0x7FFFFFFF) > 0x7F800000, 0x7FC00000, f)
    else:
        b = x.to(tl.int64, bitcast=True)
        out = tl.where((b & ABS_MASK) > EXP_ALL_ONES, F64_QNAN, b)
    return out
