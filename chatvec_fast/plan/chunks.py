"""Cuts the plan's segments into chunks: the unit the pipeline reads, computes and writes.

A chunk never spans two segments, so each chunk is one kernel mode over one contiguous element range of
each input, and lands at one contiguous byte range of each output file.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dtypes import itemsize, nbytes
from .types import Segment, TensorPlan

MERGE, EXTRACT, CONVERT, COPY = "merge", "extract", "convert", "copy"


@dataclass
class Chunk:
    kind: str  # merge (also apply), extract, convert (a copy that changes dtype), copy (bytes as they are)
    tensor: TensorPlan
    segment: Segment
    first: int  # offset into the segment: elements (merge, extract, convert) or bytes (copy)
    count: int  # elements, or bytes for a copy
    files: list  # the output files, one per output
    offsets: list[int]  # absolute byte offset of this chunk in each output file
    read_nbytes: int = 0
    write_nbytes: int = 0  # per output

    @property
    def element(self) -> int:
        """First element of the chunk in the tensor's element numbering (merge, extract)."""
        return self.segment.start + self.first


def plan_chunks(tensors_by_shard, files_by_output, tensor_offsets, chunk_elements, buffer_itemsize=8):
    """Yields the chunks of every tensor segment, shard by shard, in file order.

    tensors_by_shard[s] lists shard s's TensorPlans; files_by_output[k][s] is
    output k's file for shard s; tensor_offsets[k][s][i] is the absolute
    offset of tensor i of shard s in output k. Copies move up to
    chunk_elements * buffer_itemsize bytes a chunk (one slot buffer).
    """
    outputs = range(len(files_by_output))
    chunk_bytes = chunk_elements * buffer_itemsize
    for s, tensors in enumerate(tensors_by_shard):
        files = [files_by_output[k][s] for k in outputs]
        for i, t in enumerate(tensors):
            starts = [tensor_offsets[k][s][i] for k in outputs]
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
                for first in range(0, seg.count, chunk_elements):
                    n = min(chunk_elements, seg.count - first)
                    offsets = [o + (seg.start + first) * out_size for o in starts]
                    yield Chunk(kind, t, seg, first, n, files, offsets, n * in_size, n * out_size)


def _input_itemsize(t: TensorPlan, seg: Segment) -> int:
    if seg.kind == "copy":
        return itemsize(seg.source.dtype)
    inputs = (t.base, t.chat, t.cp if seg.kind == "merge" else None)
    return sum(itemsize(x.dtype) for x in inputs if x is not None)


def buffer_itemsize(tensors) -> int:
    """Bytes per element the slot buffers need: the widest dtype any chunk reads or writes."""
    widest = 2
    for t in tensors:
        for info in (t.base, t.chat, t.cp):
            if info is not None and info.dtype in ("F32", "F64", "F16", "BF16"):
                widest = max(widest, itemsize(info.dtype))
        if t.out_dtype in ("F32", "F64"):
            widest = max(widest, itemsize(t.out_dtype))
    return widest
