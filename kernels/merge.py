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
def _scale_index(offs, meta, SCALE: tl.constexpr):
    """Index into the packed scales of a ROW or BLOCK scaled operand's elements at offs, from its layout in
    meta (first_element, cols, block sizes at run time): 64-bit divisions, each a subroutine of ~70 instructions
    on a GPU. The generic path, for operands whose layouts differ (see _shared_index)."""
    e = tl.load(meta + 2) + offs
    cols = tl.load(meta + 1)
    row = e // cols
    if SCALE == ROW:
        index = row - tl.load(meta + 5)
    else:
        col = e - row * cols
        index = (row // tl.load(meta + 3) - tl.load(meta + 5)) * tl.load(meta + 6) + col // tl.load(meta + 4)
    return index


@triton.jit
def _shared_index(offs, col0, row_base, row_mod, SCALE: tl.constexpr, COLS: tl.constexpr, BLOCK_ROWS: tl.constexpr,
                  BLOCK_COLS: tl.constexpr):  # fmt: skip
    """The same index when every scaled operand shares one layout, with the tensor's row length and block sizes
    compile-time constants: divisions by constants are multiplications (no subroutine), on 32-bit values (the
    launcher checks col0 + end < 2^31). col0: the chunk's first column; row_base, row_mod: its first row as
    (row - first_scale_row) for ROW, as (row // BLOCK_ROWS - first_scale_row, row % BLOCK_ROWS) for BLOCK."""
    local = (offs + col0).to(tl.int32)  # from the start of the chunk's first row
    row = local // COLS
    if SCALE == ROW:
        index = row_base + row
    else:
        PER_ROW: tl.constexpr = (COLS + BLOCK_COLS - 1) // BLOCK_COLS
        col = local - row * COLS
        index = (row_base + (row_mod + row) // BLOCK_ROWS) * PER_ROW + col // BLOCK_COLS
    return index


@triton.jit
def _operand(ptr, offs, mask, scales_ptr, meta_ptr, shared, SLOT: tl.constexpr, KIND: tl.constexpr,
             SCALE: tl.constexpr, SHARED: tl.constexpr):  # fmt: skip
    """float64 values of one operand's elements at offs: decode(code) * float64(scale), exact. shared: the
    scale index of each element when the scaled operands share a layout (SHARED is its kind), else unused."""
    value = widen_bits(tl.load(ptr + offs, mask=mask, other=0), KIND)
    if SCALE != NONE:
        meta = meta_ptr + SLOT * META  # scale offset, cols, first_element, block_rows, block_cols,
        first_scale = tl.load(meta)  # first_scale_row, blocks per row
        if SCALE == TENSOR:
            scale = tl.load(scales_ptr + first_scale)
        else:
            if SHARED != NONE:
                index = shared
            else:
                index = _scale_index(offs, meta, SCALE)
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
    out_ptr,  # K rows of output bits, `stride` elements apart, row k for alphas row k (float64 bits: FP8 output)
    alphas_ptr,  # K x M float64 alphas (MERGE: M = 1)
    count_ptr,  # one int64: EXTRACT adds the elements the output dtype rounded
    start,  # the first element this launch computes: 0, or where a chunk's tail starts (see launch.py)
    end,  # one past its last element
    stride,  # elements between the output's rows (a multiple of 16 where the chunk allows: rows stay aligned)
    col0,  # SHARED: the chunk's first column, and its first row as _shared_index takes it
    row_base,
    row_mod,
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
    SHARED: tl.constexpr,  # ROW or BLOCK: every scaled operand has this layout (COLS and block sizes); NONE: not
    COLS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
    BLOCK: tl.constexpr,  # elements per program
):
    pid = tl.program_id(0).to(tl.int64)
    offs = start + pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)  # 64-bit: a 70B embedding chunk passes 2^31 bytes
    mask = offs < end
    shared = offs
    if SHARED != NONE:
        shared = _shared_index(offs, col0, row_base, row_mod, SHARED, COLS, BLOCK_ROWS, BLOCK_COLS)
    if MODE == CONVERT:
        value = _operand(cp_ptr, offs, mask, scales_ptr, meta_ptr, shared, 2, CP, S_CP, SHARED)
        for k in tl.static_range(K):
            tl.store(out_ptr + k * stride + offs, round_bits(value, OUT), mask=mask)
    elif MODE == APPLY:
        cp = _operand(cp_ptr, offs, mask, scales_ptr, meta_ptr, shared, 2, CP, S_CP, SHARED)
        v0 = _operand(chat_ptr, offs, mask, scales_ptr, meta_ptr, shared, 1, CHAT, S_CHAT, SHARED)
        if M > 1:
            v1 = _operand(v1_ptr, offs, mask, scales_ptr, meta_ptr, shared, 3, V1, S_V1, SHARED)
        if M > 2:
            v2 = _operand(v2_ptr, offs, mask, scales_ptr, meta_ptr, shared, 4, V2, S_V2, SHARED)
        if M > 3:
            v3 = _operand(v3_ptr, offs, mask, scales_ptr, meta_ptr, shared, 5, V3, S_V3, SHARED)
        for k in tl.static_range(K):
            acc = cp + tl.load(alphas_ptr + k * M) * v0
            if M > 1:
                acc = acc + tl.load(alphas_ptr + k * M + 1) * v1
            if M > 2:
                acc = acc + tl.load(alphas_ptr + k * M + 2) * v2
            if M > 3:
                acc = acc + tl.load(alphas_ptr + k * M + 3) * v3
            tl.store(out_ptr + k * stride + offs, round_bits(acc, OUT), mask=mask)
    else:
        delta = _operand(chat_ptr, offs, mask, scales_ptr, meta_ptr, shared, 1, CHAT, S_CHAT, SHARED)
        delta = delta - _operand(base_ptr, offs, mask, scales_ptr, meta_ptr, shared, 0, BASE, S_BASE, SHARED)
        if MODE == EXTRACT:
            stored = round_bits(delta, OUT)
            tl.store(out_ptr + offs, stored, mask=mask)
            back = widen_bits(stored, OUT).to(tl.int64, bitcast=True)
            exact = delta.to(tl.int64, bitcast=True)
            nan = (exact & ABS_MASK) > EXP_ALL_ONES
            inexact = (back != exact) & (nan == 0) & mask
            tl.atomic_add(count_ptr, tl.sum(inexact.to(tl.int64), axis=0))
        else:
            cp = _operand(cp_ptr, offs, mask, scales_ptr, meta_ptr, shared, 2, CP, S_CP, SHARED)
            for k in tl.static_range(K):
                alpha = tl.load(alphas_ptr + k)
                product = alpha * delta
                tl.store(out_ptr + k * stride + offs, round_bits(cp + product, OUT), mask=mask)
