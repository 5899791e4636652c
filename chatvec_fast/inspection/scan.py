"""One read of every compared tensor, in chunks: bytes through the byte reader (read/chunks.py), summed per
tensor (sums.py) from the bytes as read (bf16, f16, f32, f64), or FP8 codes widened to float64 with their
scales by the reference's own code (backends/reference_call.py).

Which elements are compared is the planner's decision: a tensor's "merge" segments, the elements where
merge computes cp + alpha * (chat - base). Those are the rows base, chat and cp share: an expanded
vocabulary's extra cp rows, and rows chat added for new tokens, are not in them. Memory, per thread: one
chunk of each input's bytes (reused buffers) and one block of each in a carry buffer, whatever the model's
size (about 70 MB at the default 1M-element chunks).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..backends.call import Operand, Scale
from ..dtypes import itemsize
from ..plan.chunks import scale_bytes
from ..plan.types import Plan, TensorPlan
from ..read.chunks import InputFiles
from .sums import ExactSum, TensorSums


@dataclass
class Scanned:
    """One compared tensor: its plan, its sums (sums.SUMS, rounded once; and exact, for a layer's sums) and
    counts of NaN/Inf per input role."""

    tensor: TensorPlan
    compared: int  # elements compared
    sums: dict[str, float]
    exact: dict[str, ExactSum]
    non_finite: dict[str, int]
    nbytes: int  # tensor bytes read (an FP8 weight's scale rows not counted)


def compared_segments(t: TensorPlan) -> list:
    """The segments whose elements are compared: those merge computes from all three inputs (or extract's)."""
    return [s for s in t.segments if s.kind in ("merge", "extract")]


def _roles(plan: Plan) -> tuple[str, ...]:
    return ("base", "chat", "cp") if plan.options.kind == "merge" else ("base", "chat")


def compared_nbytes(plan: Plan, t: TensorPlan) -> int:
    """Bytes of tensor t the scan reads (0: not compared)."""
    count = sum(s.count for s in compared_segments(t))
    return count * sum(itemsize(getattr(t, r).dtype) for r in _roles(plan)) if count else 0


def scan_plan(plan: Plan, chunk_elements: int, progress, threads: int = 1) -> list[Scanned]:
    """Every compared tensor of the plan, in plan order, each read once; progress.advance(bytes) as it goes.

    threads > 1: that many tensors at a time, each thread with its own chunk buffers (the native sums and the
    reads release the GIL); every tensor's sums are the same whichever thread computes them."""
    tensors = [t for t in plan.tensors if compared_segments(t)]
    roles = _roles(plan)
    widest = max((itemsize(getattr(t, r).dtype) for t in tensors for r in roles), default=1)
    mine = threading.local()

    def one(t: TensorPlan) -> Scanned:
        if not hasattr(mine, "buffers"):
            mine.buffers = {r: bytearray(chunk_elements * widest) for r in roles}
            mine.scales = {r: bytearray(scale_bytes(plan, chunk_elements)) for r in roles}
        return _scan_tensor(plan, t, roles, files, mine.buffers, mine.scales, chunk_elements, progress)

    with InputFiles() as files:
        if threads <= 1 or len(tensors) <= 1:
            out = [one(t) for t in tensors]
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="chatvec-inspect") as pool:
                futures = [pool.submit(one, t) for t in tensors]
                try:
                    out = [f.result() for f in futures]
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        files.check_unchanged()
    return out


def _scan_tensor(plan: Plan, t: TensorPlan, roles, files, buffers, scale_buffers, chunk_elements: int, progress):
    sums = TensorSums(with_cp=len(roles) == 3)
    inputs = [getattr(t, r) for r in roles]
    for segment in compared_segments(t):
        for first in range(segment.start, segment.end, chunk_elements):
            n = min(chunk_elements, segment.end - first)
            values = [_values(files, info, first, n, buffers[r], scale_buffers[r], plan.scales)
                      for r, info in zip(roles, inputs)]  # fmt: skip
            sums.add(*values)
            progress.advance(sum(itemsize(info.dtype) * n for info in inputs))
    return Scanned(t, sums.elements, sums.finish(), sums.sums, dict(sums.non_finite), compared_nbytes(plan, t))


def _values(files: InputFiles, info, first: int, n: int, buffer: bytearray, scale_buffer: bytearray, scales: dict):
    """Elements [first, first + n) of one input tensor, as TensorSums takes them: a view of the bytes read for
    plain float types (bf16 as uint16 bit patterns), float64 values for an FP8 weight (times its scales)."""
    size = itemsize(info.dtype)
    data = memoryview(buffer)[: n * size]
    files.read(info, first * size, data)
    scale = None
    spec = scales.get(info)
    if spec is not None:  # an FP8 weight: read the scale rows these elements need, as the merge's chunks do
        r0, r1 = spec.scale_rows_of(first, n)
        row_bytes = spec.scale_cols * 4
        rows = memoryview(scale_buffer)[: (r1 - r0) * row_bytes]
        files.read(spec.tensor, r0 * row_bytes, rows)
        scale = Scale(spec.kind, rows, spec.cols, first, spec.block_rows, spec.block_cols, r0)
    if scale is None and info.dtype in _LITTLE_ENDIAN:
        return np.frombuffer(data, dtype=_LITTLE_ENDIAN[info.dtype], count=n)
    # FP8 only: the reference's widening needs torch (1.4 s to import here), which plain dtypes never load
    from ..backends.reference_call import operand_values

    return operand_values(Operand(data, info.dtype, scale), n).numpy()


_LITTLE_ENDIAN = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
