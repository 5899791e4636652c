"""Windows of output elements compared with the expected ones, on a small pool of threads.

A window is at most STREAM_WINDOW elements of one tensor; it is computed in PIECE-element pieces, so that
every float64 temporary stays in the core's cache. numpy's ufuncs and the byte reader's preadv release the
GIL, so threads run in parallel; at most 2 windows per thread are in flight, so memory stays flat whatever
the model's size.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .._native import usable_cpus
from ..dtypes import itemsize
from ..read.header import TensorInfo
from .compute import Deriver
from .expected import Rule
from .rounding import BITS_DTYPE, ordered

STREAM_WINDOW = 1 << 20  # elements per window with --all: one task of the pool
# 32K elements: 8.5 ns an element for a bf16 merge on one core here, against 10 at 16K and 33 at 1M
# (the temporaries fall out of the 1 MB L2); see docs/NOTES.md.
PIECE = 1 << 15
MAX_THREADS = 8


@dataclass
class Window:
    """Elements [start, start + count) of output tensor `info`, made by `rule` (with its FP8 scales)."""

    rule: Rule
    info: TensorInfo
    start: int
    count: int
    scale_info: TensorInfo | None = None


@dataclass
class Outcome:
    checked: int = 0
    equal: int = 0
    max_ulp: int = 0
    problem: str | None = None


def check_window(deriver: Deriver, w: Window) -> Outcome:
    """Compares one window; a raw (copied, not float) tensor's window is of bytes, compared as they are."""
    rule, out = w.rule, Outcome()
    if rule.raw:  # start and count are bytes here
        same = np.array_equal(deriver.raw(w.info, w.start, w.count), deriver.raw(rule.cp, w.start, w.count))
        out.problem = None if same else f"differs from {rule.cp.path}"
        return out
    if rule.out_scale is not None:
        return _check_fp8(deriver, w)
    bits = BITS_DTYPE[rule.out_dtype]
    for start in range(w.start, w.start + w.count, PIECE):
        n = min(PIECE, w.start + w.count - start)
        want = deriver.expected_bits(rule, start, n)
        have = deriver.stored(w.info, start, n).view(bits)
        differ = int(np.count_nonzero(have != want))
        out.checked += n
        out.equal += n - differ
        if differ:  # bit patterns differ: the distance in ulps (a NaN other than the canonical one counts too)
            out.max_ulp = max(out.max_ulp, int(np.abs(ordered(have) - ordered(want)).max()))
    return out


def _check_fp8(deriver: Deriver, w: Window) -> Outcome:
    """An FP8 output window: its codes and its group scales, bit for bit."""
    codes, scales = deriver.expected_fp8(w.rule, w.start, w.count)
    o = w.rule.out_scale
    first, end = o.entries(w.start, w.count)
    have = deriver.stored(w.info, w.start, w.count)
    same = int(np.count_nonzero(have == codes))
    out = Outcome(w.count, same)
    if w.scale_info is None or end - first != scales.size:
        out.problem = "its scale tensor is missing or has the wrong size"
    elif not np.array_equal(deriver.stored(w.scale_info, first, end - first).view(np.uint32), scales.view(np.uint32)):
        out.problem = "its scales differ from the re-quantization of the float64 results"
    elif same != w.count:
        out.max_ulp = 1  # codes are compared exactly; any difference fails
    return out


def thread_count() -> int:
    return max(1, min(MAX_THREADS, usable_cpus()))


def run_windows(deriver: Deriver, windows, done, threads: int | None = None):
    """Checks every window on a pool of threads; done(window, outcome) is called in the windows' order, in this
    thread. An error in a window (an input that changed, a read that failed) stops the run and is raised."""
    threads = threads or thread_count()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chatvec-verify") as pool:
        pending: deque = deque()
        try:
            for w in windows:
                pending.append((w, pool.submit(check_window, deriver, w)))
                if len(pending) >= 2 * threads:
                    w0, future = pending.popleft()
                    done(w0, future.result())
            while pending:
                w0, future = pending.popleft()
                done(w0, future.result())
        finally:
            for _, future in pending:
                future.cancel()


def window_bytes(w: Window) -> int:
    return w.count if w.rule.raw else w.count * itemsize(w.info.dtype)
