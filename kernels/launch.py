"""Launches the Triton kernels on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1)."""

from __future__ import annotations

import os
import threading

import torch
import triton

from ..kernel_codes import DTYPE_CODES, MODE_CODES, NO_SCALE
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
# The interpreter patches triton.language globally while a kernel runs: one launch at a time
# (pipelines for several "devices" run in threads).
_interpreter_lock = threading.Lock()

# The interpreter runs one configuration (it cannot autotune several); on a GPU
# the block size and warps are tuned per (n bucket, K, output dtype).
_GPU_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b in (1024, 2048, 4096) for w in (4, 8)]
# reset_to_zero: tuning runs the kernel several times, and EXTRACT adds to the count each time.
_tuned = triton.autotune(configs=_GPU_CONFIGS, key=["K", "M", "OUT", "MODE"], reset_to_zero=["count_ptr"])(
    chatvec_kernel
)
INTERPRETER_BLOCK = 1024


def launch(mode: str, slots: dict, scales, meta, out, alphas, count, n: int, out_code: int, m: int = 1):
    """Runs the element kernel once.

    slots: {slot name: (bits view on the device, dtype code, scale kind)} for the operands the mode reads
    (scale kind -1: none); scales: float32 device tensor (the packed scales, or any); meta: int64 device
    tensor, META_WORDS per slot in SLOTS order; out: K x n bits of out_code (float64 bits for an FP8
    output); alphas: K x m float64 on the device; count: one int64 on the device (EXTRACT adds to it).
    """
    if n == 0:
        return
    any_input = next(iter(slots.values()))[0]
    args = [slots.get(name, (any_input,))[0] for name in SLOTS]
    args += [scales, meta, out, alphas, count, n]
    meta_args = {name.upper(): slots.get(name, (None, 0))[1] for name in SLOTS}
    meta_args.update({f"S_{name.upper()}": slots[name][2] if name in slots else NO_SCALE for name in SLOTS})
    meta_args.update({"OUT": out_code, "MODE": MODES[mode], "K": out.shape[0], "M": m})
    if INTERPRETING or not out.is_cuda:
        with _interpreter_lock:
            chatvec_kernel[(triton.cdiv(n, INTERPRETER_BLOCK),)](*args, **meta_args, BLOCK=INTERPRETER_BLOCK)
    else:
        # No fused multiply-add: the product is rounded, as in the C++ and torch backends.
        _tuned[lambda c: (triton.cdiv(n, c["BLOCK"]),)](*args, **meta_args, enable_fp_fusion=False)


def launch_quantize(results, codes, group_scales, n: int, cols: int, block_rows: int, block_cols: int):
    """Re-quantizes K x n float64 results into K x n e4m3 codes, one scale per group (K x groups float32)."""
    k, groups = group_scales.shape
    if n == 0 or groups == 0:
        return
    per_row = -(-cols // block_cols)
    block = min(1024, triton.next_power_of_2(block_cols))
    args = (results, codes, group_scales, n, cols, block_rows, block_cols, per_row, groups)
    if INTERPRETING or not results.is_cuda:
        with _interpreter_lock:
            fp8_quantize_kernel[(groups, k)](*args, BLOCK=block)
    else:
        fp8_quantize_kernel[(groups, k)](*args, BLOCK=block, num_warps=4, enable_fp_fusion=False)
