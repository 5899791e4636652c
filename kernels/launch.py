"""Launches the Triton kernels on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1)."""

from __future__ import annotations

import os
import threading

import torch
import triton

from ..kernel_codes import DTYPE_CODES, MODE_CODES, NO_SCALE, SCALE_KIND_CODES
from .merge import META, chatvec_kernel
from .quantize import fp8_quantize_kernel

# Storage views the kernel loads and stores: integer bits of each dtype code.
_BITS = {"F32": torch.int32, "F16": torch.int16, "BF16": torch.int16, "F64": torch.int64, "F8_E4M3": torch.uint8,
         "F8_E5M2": torch.uint8}  # fmt: skip
BITS_DTYPE = {DTYPE_CODES[name]: bits for name, bits in _BITS.items()}
MODES = MODE_CODES
SLOTS = ("base", "chat", "cp", "v1", "v2", "v3")  # apply: vector 0 in "chat", vectors 1..3 in v1..v3
META_WORDS = META.value
F64, F8_E4M3 = DTYPE_CODES["F64"], DTYPE_CODES["F8_E4M3"]

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"
AUTOTUNE = os.environ.get("CHATVEC_TRITON_AUTOTUNE", "1") != "0"
# The interpreter patches triton.language globally while a kernel runs: one launch at a time
# (pipelines for several "devices" run in threads).
_interpreter_lock = threading.Lock()

# The interpreter runs one configuration (it cannot autotune several); on a GPU
# the block size and warps are tuned per (n bucket, K, output dtype).
# At least 8 elements a thread (BLOCK / (32 * warps)): a bf16 thread then loads 16 bytes at once (LDG.E.128);
# 1024 elements on 8 warps is 4 a thread and 8-byte loads (benchmarks/codegen.py checks every configuration).
_GPU_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b, w in ((1024, 4), (2048, 4), (2048, 8), (4096, 4),
                                                                      (4096, 8))]  # fmt: skip
# reset_to_zero: tuning runs the kernel several times, and EXTRACT adds to the count each time.
_tuned = triton.autotune(configs=_GPU_CONFIGS, key=["K", "M", "OUT", "MODE"], reset_to_zero=["count_ptr"])(
    chatvec_kernel
)
INTERPRETER_BLOCK = 1024


def padded(n: int) -> int:
    """Elements an output row takes on the device: n rounded up to 16, so that every row starts 16-byte aligned
    (row k at k * padded(n)) and the kernel's main launch can use 16-byte loads and stores (see launch)."""
    return -(-n // ALIGN) * ALIGN


ALIGN = 16  # elements: 16 bytes of FP8, 32 of bf16; triton specialises an int divisible by 16 (tt.divisibility)


def shared_layout(scales: list, n: int):
    """(SHARED kind code, COLS, BLOCK_ROWS, BLOCK_COLS, col0, row_base, row_mod) when every scaled operand of a
    call has one row or block layout (the usual case: FP8 checkpoints of one architecture), so the kernel
    divides by constants (_shared_index); None otherwise, or when the chunk's 32-bit arithmetic could overflow."""
    if not scales or any(s is None for s in scales):
        return None
    first = scales[0]
    key = lambda s: (s.kind, s.cols, s.first_element, s.block_rows, s.block_cols, s.first_scale_row)  # noqa: E731
    if first.kind == "tensor" or any(key(s) != key(first) for s in scales):
        return None
    row0, col0 = divmod(first.first_element, first.cols)
    if col0 + n >= 2**31:
        return None
    if first.kind == "row":
        return SCALE_KIND_CODES["row"], first.cols, 1, first.cols, col0, row0 - first.first_scale_row, 0
    block_row, row_mod = divmod(row0, first.block_rows)
    layout = (first.cols, first.block_rows, first.block_cols)
    return SCALE_KIND_CODES["block"], *layout, col0, block_row - first.first_scale_row, row_mod


def launch(mode: str, slots: dict, scales, meta, out, alphas, count, n: int, out_code: int, m: int = 1,
           layout=None):  # fmt: skip
    """Runs the element kernel over n elements.

    slots: {slot name: (bits view on the device, dtype code, scale kind)} for the operands the mode reads
    (scale kind -1: none); scales: float32 device tensor (the packed scales, or any); meta: int64 device
    tensor, META_WORDS per slot in SLOTS order; out: K rows of bits of out_code (float64 bits for an FP8
    output), a 2-D view whose row stride padded(n) keeps rows aligned; alphas: K x m float64 on the device;
    count: one int64 on the device (EXTRACT adds to it); layout: shared_layout() of the scaled operands.

    Two launches: elements [0, n - n % 16), whose end is divisible by 16 (triton then proves every 8-element
    group in or out of bounds as a whole and loads 16 bytes at a time: LDG.E.128 for bf16), and the tail of
    up to 15, which takes the scalar path. One launch for n < 16.
    """
    if n == 0:
        return
    any_input = next(iter(slots.values()))[0]
    args = [slots.get(name, (any_input,))[0] for name in SLOTS]
    args += [scales, meta, out, alphas, count]
    shared, cols, block_rows, block_cols, *where = layout or (NO_SCALE, 0, 0, 0, 0, 0, 0)
    meta_args = {name.upper(): slots.get(name, (None, 0))[1] for name in SLOTS}
    meta_args.update({f"S_{name.upper()}": slots[name][2] if name in slots else NO_SCALE for name in SLOTS})
    meta_args.update({"OUT": out_code, "MODE": MODES[mode], "K": out.shape[0], "M": m, "SHARED": shared,
                      "COLS": cols, "BLOCK_ROWS": block_rows, "BLOCK_COLS": block_cols})  # fmt: skip
    stride = out.stride(0) if out.dim() == 2 else n
    body = n - n % ALIGN
    for start, end in ((0, body), (body, n)) if 0 < body < n else ((0, n),):
        _run(chatvec_kernel, _tuned, [*args, start, end, stride, *where], meta_args, end - start)


def _run(kernel, tuned, args, meta_args, n: int):
    if INTERPRETING or not args[8].is_cuda:
        with _interpreter_lock:
            kernel[(triton.cdiv(n, INTERPRETER_BLOCK),)](*args, **meta_args, BLOCK=INTERPRETER_BLOCK)
    elif not AUTOTUNE:  # one configuration: tests on a GPU compile each variant once, not six times
        kernel[(triton.cdiv(n, 1024),)](*args, **meta_args, BLOCK=1024, num_warps=4, enable_fp_fusion=False)
    else:
        # No fused multiply-add: the product is rounded, as in the C++ and torch backends.
        tuned[lambda c: (triton.cdiv(n, c["BLOCK"]),)](*args, **meta_args, enable_fp_fusion=False)


def launch_quantize(results, codes, group_scales, n: int, cols: int, block_rows: int, block_cols: int):
    """Re-quantizes K rows of n float64 results into K rows of n e4m3 codes (both 2-D views with the same row
    stride), one scale per group (K x groups float32)."""
    k, groups = group_scales.shape
    if n == 0 or groups == 0:
        return
    per_row = -(-cols // block_cols)
    block = min(1024, triton.next_power_of_2(block_cols))
    stride = results.stride(0) if results.dim() == 2 else n
    args = (results, codes, group_scales, n, stride, cols, block_rows, block_cols, per_row, groups)
    if INTERPRETING or not results.is_cuda:
        with _interpreter_lock:
            fp8_quantize_kernel[(groups, k)](*args, BLOCK=block)
    else:
        fp8_quantize_kernel[(groups, k)](*args, BLOCK=block, num_warps=4, enable_fp_fusion=False)
