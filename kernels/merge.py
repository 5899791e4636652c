"""The Chat Vector kernel in Triton: the four modes of csrc/merge_kernel.h, with the same bits.

    merge    base, chat, cp   out_k = cp + alpha_k * (chat - base)
    apply    chat, cp         out_k = cp + alpha_k * chat
    extract  base, chat       out   = chat - base     (+ a count of elements the dtype rounded)
    convert  cp               out   = cp

Every element is widened exactly to float64, combined in float64 in the fixed
order (product rounded, then sum; the launcher passes enable_fp_fusion=False so
no FMA) and rounded once to the output dtype with integer bit operations. The
rounding is written out rather than left to `.to()`: triton's interpreter
truncates float32 -> bfloat16 while GPUs round to nearest-even, and float64 ->
float32 -> bfloat16 would round twice anyway.
"""

import triton
import triton.language as tl

# dtype codes, as chatvec_fast.dtypes.KERNEL_CODES and csrc/dtype_convert.h
F32: tl.constexpr = 0
F16: tl.constexpr = 1
BF16: tl.constexpr = 2
F64: tl.constexpr = 3

MERGE: tl.constexpr = 0
APPLY: tl.constexpr = 1
EXTRACT: tl.constexpr = 2
CONVERT: tl.constexpr = 3

_ABS: tl.constexpr = 0x7FFFFFFFFFFFFFFF
_EXP_ALL_ONES: tl.constexpr = 0x7FF0000000000000


@triton.jit
def _widen_bits(bits, KIND: tl.constexpr):
    """float64 value of storage bits (int16 for bf16/f16, int32 for f32, int64 for f64): always exact."""
    if KIND == BF16:
        value = ((bits.to(tl.int32) & 0xFFFF) << 16).to(tl.float32, bitcast=True).to(tl.float64)
    elif KIND == F16:
        value = bits.to(tl.float16, bitcast=True).to(tl.float64)
    elif KIND == F32:
        value = bits.to(tl.float32, bitcast=True).to(tl.float64)
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
    mag = bits & _ABS
    normal = ((mag + HALF_MINUS_ONE + ((mag >> SHIFT) & 1)) >> SHIFT) - REBIAS
    magic = tl.full(x.shape, MAGIC, tl.int64).to(tl.float64, bitcast=True)
    subnormal = (mag.to(tl.float64, bitcast=True) + magic).to(tl.int64, bitcast=True) - MAGIC
    out = tl.where(mag < SMALLEST_NORMAL, subnormal, normal)
    out = tl.minimum(out, INF)  # overflow, and Inf itself
    sign = (bits >> 48) & 0x8000
    return tl.where(mag > _EXP_ALL_ONES, QNAN, out | sign)


@triton.jit
def _round_bits(x, KIND: tl.constexpr):
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
        out = tl.where((b & _ABS) > _EXP_ALL_ONES, 0x7FF8000000000000, b)
    return out


@triton.jit
def chatvec_kernel(
    base_ptr,  # base's bits (ignored unless MODE is MERGE or EXTRACT)
    chat_ptr,  # chat's bits, or the saved vector's (APPLY)
    cp_ptr,  # cp's bits (ignored in EXTRACT)
    out_ptr,  # K x n output bits, row k for alphas[k]
    alphas_ptr,  # K float64 alphas
    count_ptr,  # one int64: EXTRACT adds the elements the output dtype rounded
    n,  # elements per buffer
    BASE: tl.constexpr,  # dtype codes
    CHAT: tl.constexpr,
    CP: tl.constexpr,
    OUT: tl.constexpr,
    MODE: tl.constexpr,
    K: tl.constexpr,  # number of outputs (alphas)
    BLOCK: tl.constexpr,  # elements per program
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)  # 64-bit: a 70B embedding chunk passes 2^31 bytes
    mask = offs < n
    if MODE == CONVERT:
        value = _widen_bits(tl.load(cp_ptr + offs, mask=mask, other=0), CP)
        for k in tl.static_range(K):
            tl.store(out_ptr + k * n + offs, _round_bits(value, OUT), mask=mask)
    else:
        delta = _widen_bits(tl.load(chat_ptr + offs, mask=mask, other=0), CHAT)
        if MODE == MERGE or MODE == EXTRACT:
            delta = delta - _widen_bits(tl.load(base_ptr + offs, mask=mask, other=0), BASE)
        if MODE == EXTRACT:
            stored = _round_bits(delta, OUT)
            tl.store(out_ptr + offs, stored, mask=mask)
            back = _widen_bits(stored, OUT).to(tl.int64, bitcast=True)
            exact = delta.to(tl.int64, bitcast=True)
            nan = (exact & _ABS) > _EXP_ALL_ONES
            inexact = (back != exact) & (nan == 0) & mask
            tl.atomic_add(count_ptr, tl.sum(inexact.to(tl.int64), axis=0))
        else:
            cp = _widen_bits(tl.load(cp_ptr + offs, mask=mask, other=0), CP)
            for k in tl.static_range(K):
                alpha = tl.load(alphas_ptr + k)
                product = alpha * delta
                tl.store(out_ptr + k * n + offs, _round_bits(cp + product, OUT), mask=mask)
