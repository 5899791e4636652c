"""Launches chatvec_kernel on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1)."""

from __future__ import annotations

import os
import threading

import torch
import triton

from .merge import chatvec_kernel

# Storage views the kernel loads and stores: integer bits of each dtype code.
BITS_DTYPE = {0: torch.int32, 1: torch.int16, 2: torch.int16, 3: torch.int64}
MODES = {"merge": 0, "apply": 1, "extract": 2, "convert": 3}

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"
# The interpreter patches triton.language globally while a kernel runs: one launch at a time
# (pipelines for several "devices" run in threads).
_interpreter_lock = threading.Lock()

# The interpreter runs one configuration (it cannot autotune several); on a GPU
# the block size and warps are tuned per (n bucket, K, output dtype).
_GPU_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b in (1024, 2048, 4096) for w in (4, 8)]
# reset_to_zero: tuning runs the kernel several times, and EXTRACT adds to the count each time.
_tuned = triton.autotune(configs=_GPU_CONFIGS, key=["K", "OUT", "MODE"], reset_to_zero=["count_ptr"])(chatvec_kernel)
INTERPRETER_BLOCK = 1024


def launch(mode: str, base, chat, cp, out, alphas, count, n: int, codes: dict):
    """Runs one kernel call.

    base/chat/cp: bit views (BITS_DTYPE) on the device, or None where the mode takes none; out: K x n bits;
    alphas: K float64 on the device; count: one int64 on the device (EXTRACT adds to it); codes: dtype
    codes for "base", "chat", "cp", "out".
    """
    if n == 0:
        return
    any_input = next(t for t in (chat, cp, base) if t is not None)
    args = (
        base if base is not None else any_input,
        chat if chat is not None else any_input,
        cp if cp is not None else any_input,
        out,
        alphas,
        count,
        n,
    )
    meta = {
        "BASE": codes.get("base", 0),
        "CHAT": codes.get("chat", 0),
        "CP": codes.get("cp", 0),
        "OUT": codes["out"],
        "MODE": MODES[mode],
        "K": out.shape[0],
    }
    if INTERPRETING or not out.is_cuda:
        grid = (triton.cdiv(n, INTERPRETER_BLOCK),)
        with _interpreter_lock:
            chatvec_kernel[grid](*args, **meta, BLOCK=INTERPRETER_BLOCK)
    else:
        # No fused multiply-add: the product is rounded, as in the C++ and torch backends.
        _tuned[lambda m: (triton.cdiv(n, m["BLOCK"]),)](*args, **meta, enable_fp_fusion=False)
