"""Cuts the plan's segments into chunks: the unit the pipeline reads, computes and writes.

A chunk never spans two segments, so each chunk is one kernel mode over one contiguous element range of
each input, and lands at one contiguous byte range of each output file. An FP8 output weight is cut at
whole rows of its scale groups (the kernel re-quantizes a group from all its results), and its new scales,
gathered chunk by chunk in a small per-output buffer (the sink), are written by one last chunk at the
scale tensor's place, right after the weight.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dtypes import KERNEL_CODES, itemsize, nbytes
from .types import SCALES, Segment, TensorPlan

MERGE, EXTRACT, CONVERT, COPY, WRITE_SCALES = "merge", "extract", "convert", "copy", "scales"


@dataclass
class Chunk:
    kind: str  # merge (also apply), extract, convert (a copy that changes dtype), copy (bytes), scales
    tensor: TensorPlan
    segment: Segment
    first: int  # offset into the segment: elements (merge, extract, convert) or bytes (copy)
    count: int  # elements, or bytes for a copy or the scales
    files: list  # the output files, one per output
    offsets: list[int]  # absolute byte offset of this chunk in each output file
    read_nbytes: int = 0
    write_nbytes: int = 0  # per output
    sink: list | None = None  # FP8 output: one bytearray per output receiving the chunk's group scales
    sink_offset: int = 0  # where in the sink

    @property
    def element(self) -> int:
        """First element of the chunk in the tensor's element numbering (merge, extract)."""
        return self.segment.start + self.first

    @property
    def source_element(self) -> int:
        """First element of the chunk in its inputs' numbering (a copy reads from its source's start)."""
        return self.segment.source_start + self.first if self.kind == CONVERT else self.element


def chunk_elements_for(tensors, chunk_elements: int) -> int:
    """Elements a slot must hold: chunk_elements, or one whole row of groups of an FP8 output if larger."""
    units = [t.out_scale.unit for t in tensors if t.out_scale is not None]
    return max([chunk_elements, *units])


def plan_chunks(tensors_by_shard, files_by_output, tensor_offsets, chunk_elements, buffer_itemsize=8):
    """Yields the chunks of every tensor segment, shard by shard, in file order.

    tensors_by_shard[s] lists shard s's TensorPlans; files_by_output[k][s] is
    output k's file for shard s; tensor_offsets[k][s][i] is the absolute
    offset of tensor i of shard s in output k. Copies move up to
    chunk_elements * buffer_itemsize bytes a chunk (one slot buffer).
    """
    outputs = range(len(files_by_output))
    chunk_bytes = chunk_elements * buffer_itemsize
    sinks: dict[int, list] = {}  # id(FP8 output weight) -> its scales, per output
    for s, tensors in enumerate(tensors_by_shard):
        files = [files_by_output[k][s] for k in outputs]
        for i, t in enumerate(tensors):
            starts = [tensor_offsets[k][s][i] for k in outputs]
            if t.policy == SCALES:  # the weight before it filled the sink: write it here
                sink = sinks.pop(id(t.scales_of))
                size = t.out_nbytes
                yield Chunk(WRITE_SCALES, t, t.segments[0], 0, size, files, starts, 0, size, sink=sink)
                continue
            step = chunk_elements
            if t.out_scale is not None:  # whole rows of groups: the kernel re-quantizes each group at once
                unit = t.out_scale.unit
                step = max(1, chunk_elements // unit) * unit
                sinks[id(t)] = [bytearray(t.out_scale.scale_bytes) for _ in outputs]
            for seg in t.segments:
                if seg.kind == "copy" and seg.source.dtype == t.out_dtype:  # bytes as they are
                    src = nbytes(t.out_dtype, seg.source_start)
                    dst = nbytes(t.out_dtype, seg.start)
                    total = nbytes(t.out_dtype, seg.count)
                    for first in range(0, total, chunk_bytes):
                        n = min(chunk_bytes, total - first)
                        yield Chunk(COPY, t, seg, src + first, n, files, [o + dst + first for o in starts], n, n)
                    continue
                kind = CONVERT if seg.kind == "copy" else seg.kind
                out_size = itemsize(t.out_dtype)
                in_size = _input_itemsize(t, seg)
                for first in range(0, seg.count, step):
                    n = min(step, seg.count - first)
                    offsets = [o + (seg.start + first) * out_size for o in starts]
                    chunk = Chunk(kind, t, seg, first, n, files, offsets, n * in_size, n * out_size)
                    if t.out_scale is not None:
                        chunk.sink = sinks[id(t)]
                        chunk.sink_offset = (seg.start + first) // t.out_scale.unit * t.out_scale.scale_cols * 4
                    yield chunk


def _input_itemsize(t: TensorPlan, seg: Segment) -> int:
    if seg.kind == "copy":
        return itemsize(seg.source.dtype)
    inputs = (t.base, *t.deltas, t.cp if seg.kind == "merge" else None)
    return sum(itemsize(x.dtype) for x in inputs if x is not None)


def buffer_itemsize(tensors) -> int:
    """Bytes per element the slot buffers need: the widest dtype any kernel chunk reads or writes (copies
    of other dtypes move chunk_elements * this many bytes at a time)."""
    widest = 2
    for t in tensors:
        for info in (t.base, *t.deltas, t.cp):
            if info is not None and info.dtype in KERNEL_CODES:
                widest = max(widest, itemsize(info.dtype))
        if t.out_dtype in ("F32", "F64") and t.policy != SCALES:
            widest = max(widest, itemsize(t.out_dtype))
    return widest


def scale_bytes(plan, chunk_elements: int) -> int:
    """The most bytes of FP8 scales one chunk of up to chunk_elements reads per operand or writes per output."""
    most = 0
    for spec in [*plan.scales.values(), *(t.out_scale for t in plan.tensors if t.out_scale is not None)]:
        if getattr(spec, "kind", "tensor") == "tensor":
            most = max(most, 4)
            continue
        unit = spec.cols * (spec.block_rows if spec.kind == "block" else 1)
        most = max(most, (chunk_elements // max(unit, 1) + 2) * spec.scale_cols * 4)
    return most
