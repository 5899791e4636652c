"""FP8 (e4m3fn) output in Triton: each group of each output re-quantized with its own scale.

One program per (group, output). A group is a row (block_rows = 1, block_cols = cols) or a block of
block_rows x block_cols elements clipped to the tensor; the chunk starts at a row of groups, so group g
covers local rows (g // per_row) * block_rows + r and columns (g % per_row) * block_cols + c. Two loops
over the group: the largest finite |x|, then the codes. The same rule as csrc/merge_driver.cpp:

    s = float32(amax / 448.0), or 1.0 when amax == 0 or s == 0;   code = e4m3(x / float64(s))

float64 `/` is IEEE division on GPUs (div.rn.f64; only float32 division has a fast approximate form).
"""

import triton
import triton.language as tl

from .convert import ABS_MASK, EXP_ALL_ONES, round_e4m3


@triton.jit
def fp8_quantize_kernel(
    x_ptr,  # K rows of n float64 results, `stride` elements apart
    out_ptr,  # K rows of n uint8 codes, as far apart
    scales_ptr,  # K x groups float32 group scales (written)
    n,  # elements per output
    stride,  # elements between rows (x and out)
    cols,  # tensor row length
    block_rows,  # rows per group (1 for row scales)
    block_cols,  # columns per group (cols for row scales)
    per_row,  # groups per row of groups
    groups,  # groups per output
    BLOCK: tl.constexpr,  # columns per step (a power of two)
):
    g = tl.program_id(0).to(tl.int64)
    k = tl.program_id(1).to(tl.int64)
    first_row = (g // per_row) * block_rows
    c0 = (g % per_row) * block_cols
    c1 = tl.minimum(c0 + block_cols, cols)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    amax = tl.zeros([BLOCK], dtype=tl.float64)
    for r in range(0, block_rows):
        for c in range(c0, c1, BLOCK):
            idx = (first_row + r) * cols + c + lanes
            mask = (c + lanes < c1) & (idx < n)
            bits = tl.load(x_ptr + k * stride + idx, mask=mask, other=0.0).to(tl.int64, bitcast=True) & ABS_MASK
            finite = tl.where(bits < EXP_ALL_ONES, bits, 0)  # NaN and Inf do not count
            amax = tl.maximum(amax, finite.to(tl.float64, bitcast=True))
    top = tl.max(amax, axis=0)
    scale = (top / 448.0).to(tl.float32)  # one rounding of the float64 quotient
    scale = tl.where((top == 0.0) | (scale == 0.0), 1.0, scale)
    tl.store(scales_ptr + k * groups + g, scale)
    divisor = scale.to(tl.float64)
    for r in range(0, block_rows):
        for c in range(c0, c1, BLOCK):
            idx = (first_row + r) * cols + c + lanes
            mask = (c + lanes < c1) & (idx < n)
            x = tl.load(x_ptr + k * stride + idx, mask=mask, other=0.0)
            tl.store(out_ptr + k * stride + idx, round_e4m3(x / divisor).to(tl.uint8), mask=mask)
