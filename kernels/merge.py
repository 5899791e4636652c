"""The Chat Vector kernel in Triton: the modes of csrc/kernel_call.h, with the same bits.

    merge    base, chat, cp       out_k = cp + alpha_k * (chat - base)
    apply    cp, vectors v_0..    acc = cp; acc = acc + alpha_k,m * v_m, m = 0..M-1 (M <= 4)
    extract  base, chat           out   = chat - base     (+ a count of elements the dtype rounded)
    convert  cp                   out   = cp

Every element is widened exactly to float64 (FP8 codes times their float32 scale), combined in float64 in
the fixed order (product rounded, then sum; the launcher passes enable_fp_fusion=False so no FMA) and
rounded once to the output dtype with integer bit operations (kernels/convert.py). An FP8 output is
written here as float64 results and re-quantized per group by kernels/quantize.py.
"""

import triton
import triton.language as tl

from ..kernel_codes import MODE_CODES, NO_SCALE, SCALE_KIND_CODES
from .convert import ABS_MASK, EXP_ALL_ONES, round_bits, widen_bits

# tl.constexpr objects, not annotated ints: see convert.py. Codes from chatvec_fast/kernel_codes.py.
MERGE = tl.constexpr(MODE_CODES["merge"])
APPLY = tl.constexpr(MODE_CODES["apply"])
EXTRACT = tl.constexpr(MODE_CODES["extract"])
CONVERT = tl.constexpr(MODE_CODES["convert"])

# scale kinds; NONE: scale 1
NONE = tl.constexpr(NO_SCALE)
TENSOR = tl.constexpr(SCALE_KIND_CODES["tensor"])
ROW = tl.constexpr(SCALE_KIND_CODES["row"])
BLOCK_SCALE = tl.constexpr(SCALE_KIND_CODES["block"])

META = tl.constexpr(8)  # int64 words per operand slot in meta_ptr (launch.py writes them)


@triton.jit
def _operand(ptr, offs, mask, scales_ptr, meta_ptr, SLOT: tl.constexpr, KIND: tl.constexpr, SCALE: tl.constexpr):
    """float64 values of one operand's elements at offs: decode(code) * float64(scale), exact."""
    value = widen_bits(tl.load(ptr + offs, mask=mask, other=0), KIND)
    if SCALE != NONE:
        meta = meta_ptr + SLOT * META  # scale offset, cols, first_element, block_rows, block_cols,
        first_scale = tl.load(meta)  # first_scale_row, blocks per row
        if SCALE == TENSOR:
            scale = tl.load(scales_ptr + first_scale)
        else:
            e = tl.load(meta + 2) + offs
            cols = tl.load(meta + 1)
            row = e // cols
            if SCALE == ROW:
                index = row - tl.load(meta + 5)
            else:
                col = e - row * cols
                index = (row // tl.load(meta + 3) - tl.load(meta + 5)) * tl.load(meta + 6) + col // tl.load(meta + 4)
            scale = tl.load(scales_ptr + first_scale + index, mask=mask, other=1.0)
        value = value * scale.to(tl.float64)  # float32 -> float64 is exact; the product too (<= 28 bits)
    return value


@triton.jit
def chatvec_kernel(
    base_ptr,  # base's bits (MERGE, EXTRACT)
    chat_ptr,  # chat's bits (MERGE, EXTRACT), or vector 0's (APPLY)
    cp_ptr,  # cp's bits (ignored in EXTRACT)
    v1_ptr,  # vectors 1..3 (APPLY with M > 1; else any pointer)
    v2_ptr,
    v3_ptr,
    scales_ptr,  # float32: the scales of every scaled operand, packed; offsets in meta_ptr
    meta_ptr,  # int64, META words per slot (base, chat, cp, v1, v2, v3): where each operand's scales are
    out_ptr,  # K x n output bits, row k for alphas row k (float64 bits when the output is FP8)
    alphas_ptr,  # K x M float64 alphas (MERGE: M = 1)
    count_ptr,  # one int64: EXTRACT adds the elements the output dtype rounded
    n,  # elements per buffer
    BASE: tl.constexpr,  # dtype codes
    CHAT: tl.constexpr,
    CP: tl.constexpr,
    V1: tl.constexpr,
    V2: tl.constexpr,
    V3: tl.constexpr,
    S_BASE: tl.constexpr,  # scale kinds of the same slots
    S_CHAT: tl.constexpr,
    S_CP: tl.constexpr,
    S_V1: tl.constexpr,
    S_V2: tl.constexpr,
    S_V3: tl.constexpr,
    OUT: tl.constexpr,
    MODE: tl.constexpr,
    K: tl.constexpr,  # number of outputs
    M: tl.constexpr,  # number of vectors (APPLY), 1 to 4
    BLOCK: tl.constexpr,  # elements per program
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)  # 64-bit: a 70B embedding chunk passes 2^31 bytes
    mask = offs < n
    if MODE == CONVERT:
        value = _operand(cp_ptr, offs, mask, scales_ptr, meta_ptr, 2, CP, S_CP)
        for k in tl.static_range(K):
            tl.store(out_ptr + k * n + offs, round_bits(value, OUT), mask=mask)
    elif MODE == APPLY:
        cp = _operand(cp_ptr, offs, mask, scales_ptr, meta_ptr, 2, CP, S_CP)
        v0 = _operand(chat_ptr, offs, mask, scales_ptr, meta_ptr, 1, CHAT, S_CHAT)
        if M > 1:
            v1 = _operand(v1_ptr, offs, mask, scales_ptr, meta_ptr, 3, V1, S_V1)
        if M > 2:
            v2 = _operand(v2_ptr, offs, mask, scales_ptr, meta_ptr, 4, V2, S_V2)
        if M > 3:
            v3 = _operand(v3_ptr, offs, mask, scales_ptr, meta_ptr, 5, V3, S_V3)
        for k in tl.static_range(K):
            acc = cp + tl.load(alphas_ptr + k * M) * v0
            if M > 1:
                acc = acc + tl.load(alphas_ptr + k * M + 1) * v1
            if M > 2:
                acc = acc + tl.load(alphas_ptr + k * M + 2) * v2
            if M > 3:
                acc = acc + tl.load(alphas_ptr + k * M + 3) * v3
            tl.store(out_ptr + k * n + offs, round_bits(acc, OUT), mask=mask)
    else:
        delta = _operand(chat_ptr, offs, mask, scales_ptr, meta_ptr, 1, CHAT, S_CHAT)
        delta = delta - _operand(base_ptr, offs, mask, scales_ptr, meta_ptr, 0, BASE, S_BASE)
        if MODE == EXTRACT:
            stored = round_bits(delta, OUT)
            tl.store(out_ptr + offs, stored, mask=mask)
            back = widen_bits(stored, OUT).to(tl.int64, bitcast=True)
            exact = delta.to(tl.int64, bitcast=True)
            nan = (exact & ABS_MASK) > EXP_ALL_ONES
            inexact = (back != exact) & (nan == 0) & mask
            tl.atomic_add(count_ptr, tl.sum(inexact.to(tl.int64), axis=0))
        else:
            cp = _operand(cp_ptr, offs, mask, scales_ptr, meta_ptr, 2, CP, S_CP)
            for k in tl.static_range(K):
                alpha = tl.load(alphas_ptr + k)
                product = alpha * delta
                tl.store(out_ptr + k * n + offs, round_bits(cp + product, OUT), mask=mask)
