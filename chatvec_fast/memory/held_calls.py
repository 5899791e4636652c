"""One output tensor computed from held inputs: the merge's chunks and kernel calls, with no copies in between.

The chunks are the merge's (plan/chunks.py) and each call is the one the pipeline would make (run/chunk_call.py
kernel_call), but a chunk's "slot" is the held inputs themselves (views of the arena at the chunk's elements)
and its output the destination's own bytes: a switch reads base, chat and cp once and writes the model once,
one kernel call per tensor segment. Copied bytes go from the arena to the destination directly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import faults
from ..dtypes import itemsize
from ..plan.chunks import COPY, WRITE_SCALES, plan_chunks
from ..run.chunk_call import gather_scales, kernel_call, operands


class _Slot:
    """What kernel_call reads of a slot: each role's elements, scale rows and the outputs, where they are."""

    def __init__(self, inputs: dict, scales: dict, outs: list, out_scales: list):
        self.inputs, self.scales, self.outs, self.out_scales = inputs, scales, outs, out_scales


def _slot(chunk, held, scales: dict, dest) -> _Slot:
    """The chunk's inputs as views of the held arena (the reads run/chunk_call.reads names), its output as the
    destination's bytes from the chunk's offset."""
    n, first = chunk.count, chunk.source_element
    inputs, rows = {}, {}
    for role, info in operands(chunk):
        size = itemsize(info.dtype)
        inputs[role] = held.view(info, first * size, n * size)
        spec = scales.get(info)
        if spec is not None:
            r0, r1 = spec.scale_rows_of(first, n)
            row_bytes = spec.scale_cols * 4
            rows[role] = held.view(spec.tensor, r0 * row_bytes, (r1 - r0) * row_bytes)
    out_scales = []
    if chunk.tensor.out_scale is not None:  # an FP8 output: its group scales, gathered into the chunk's sink
        o = chunk.tensor.out_scale
        out_scales = [np.empty(-(-n // o.unit) * o.scale_cols * 4, np.uint8)]
    return _Slot(inputs, rows, [dest[chunk.offsets[0] :]], out_scales)


def _copy(dest, src):
    """src's bytes to the start of dest: numpy (or bytes) to numpy on the host, torch to torch on a device."""
    if isinstance(dest, np.ndarray):
        data = np.frombuffer(src, np.uint8)
        dest[: data.size] = data
    else:
        dest[: src.numel()].copy_(src)


def plan_held_chunks(tensors, chunk_elements: int) -> dict:
    """{id(tensor plan): its chunks}, cut as the merge cuts them, with offsets into each tensor's own bytes.
    One pass over all tensors: an FP8 output weight's chunks fill the sink its scales' chunk then writes."""
    by_tensor: dict = {id(t): [] for t in tensors}
    files = [[None] * len(tensors)]
    for chunk in plan_chunks([[t] for t in tensors], files, [[[0]] * len(tensors)], chunk_elements, 8):
        by_tensor[id(chunk.tensor)].append(chunk)
    return by_tensor


def write_tensor(t, chunks, held, scales: dict, dest, backend, alpha_row) -> list:
    """Computes tensor t into dest (its flat uint8 bytes: numpy, or torch on the backend's device) from the held
    inputs, with alpha_row as every merge call's alphas. Returns a device backend's pending calls (wait on them
    before the bytes are read), else []."""
    pending = []
    for chunk in chunks:
        if chunk.kind == COPY:
            _copy(dest[chunk.offsets[0] :], held.view(chunk.segment.source, chunk.first, chunk.count))
            continue
        if chunk.kind == WRITE_SCALES:  # an FP8 output's scales, gathered from its weight's chunks
            _copy(dest[chunk.offsets[0] :], chunk.sink[0])
            continue
        faults.check("compute")
        slot = _slot(chunk, held, scales, dest)
        call = kernel_call(chunk, slot, scales)
        if call.mode in ("merge", "apply"):
            call = replace(call, alphas=[list(alpha_row)])
        if hasattr(backend, "submit") and not slot.out_scales:
            pending.append(backend.submit(call))
        else:
            backend.compute(call)
        if slot.out_scales:
            gather_scales(chunk, slot, 0)
    return pending
