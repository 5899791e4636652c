"""What one chunk reads into its slot, and the kernel call that computes it.

Every computed chunk is one KernelCall (backends/call.py): its operands are views of the slot's input
buffers, FP8 inputs carry the scale rows read beside their codes, an FP8 output writes its group scales
to the slot (gathered in the chunk's sink), and several saved vectors are apply's vectors.
"""

from __future__ import annotations

import numpy as np

from ..backends.call import KernelCall, Operand, OutScale, Scale
from ..dtypes import itemsize
from ..plan.chunks import CONVERT, EXTRACT, MERGE, Chunk


def operands(chunk: Chunk) -> list[tuple[str, object]]:
    """(slot role, input TensorInfo) of every tensor the chunk reads, in the order the kernel takes them."""
    t = chunk.tensor
    if chunk.kind == CONVERT:
        return [("cp", chunk.segment.source)]
    roles = [("base", t.base)] if t.base is not None else []
    roles += [("chat", d) if m == 0 else (f"v{m}", d) for m, d in enumerate(t.deltas)]
    if chunk.kind == MERGE:
        roles.append(("cp", t.cp))
    return roles


def scale_of(info, scales: dict):
    return scales.get(info)


def reads(chunk: Chunk, slot, scales: dict) -> list[tuple]:
    """(TensorInfo, first byte, buffer) for every read the chunk needs: elements, then any scale rows."""
    n, first = chunk.count, chunk.source_element
    out = []
    for role, info in operands(chunk):
        size = itemsize(info.dtype)
        out.append((info, first * size, slot.inputs[role][: n * size]))
        spec = scales.get(info)
        if spec is not None:
            r0, r1 = spec.scale_rows_of(first, n)
            row_bytes = spec.scale_cols * 4
            out.append((spec.tensor, r0 * row_bytes, slot.scales[role][: (r1 - r0) * row_bytes]))
    return out


def kernel_call(chunk: Chunk, slot, scales: dict) -> KernelCall:
    """The KernelCall that computes a chunk (any kind but COPY and WRITE_SCALES) in its slot."""
    t, n, first = chunk.tensor, chunk.count, chunk.source_element
    ops = {}
    for role, info in operands(chunk):
        spec = scales.get(info)
        scale = None
        if spec is not None:
            r0, _ = spec.scale_rows_of(first, n)
            scale = Scale(spec.kind, slot.scales[role], spec.cols, first, spec.block_rows, spec.block_cols, r0)
        ops[role] = Operand(slot.inputs[role][: n * itemsize(info.dtype)], info.dtype, scale)
    outs = [o[: n * itemsize(t.out_dtype)] for o in slot.outs]
    if chunk.kind == CONVERT:
        mode, outs = "convert", outs[:1]
    elif chunk.kind == EXTRACT:
        mode = "extract"
    else:
        mode = "merge" if t.base is not None else "apply"
    out_scale = None
    if t.out_scale is not None:
        o = t.out_scale
        out_scale = OutScale(o.kind, slot.out_scales[: len(outs)], o.cols, chunk.element, o.block_rows,
                             o.block_cols, rows=o.rows)  # fmt: skip
    if mode == "apply":
        vectors = tuple(ops["chat" if m == 0 else f"v{m}"] for m in range(len(t.deltas)))
        alphas = [list(a) if isinstance(a, tuple) else [a] for a in t.alphas[: len(outs)]]
        return KernelCall(n, mode, outs, t.out_dtype, alphas, cp=ops["cp"], vectors=vectors, out_scale=out_scale)
    alphas = [[a] for a in t.alphas[: len(outs)]] if mode == "merge" else [[1.0]] * len(outs)
    return KernelCall(n, mode, outs, t.out_dtype, alphas, base=ops.get("base"), chat=ops.get("chat"),
                      cp=ops.get("cp"), out_scale=out_scale)  # fmt: skip


def gather_scales(chunk: Chunk, slot, k: int):
    """Copies output k's group scales of an FP8 output chunk into the weight's sink."""
    o = chunk.tensor.out_scale
    groups = -(-chunk.count // o.unit) * o.scale_cols
    data = np.asarray(slot.out_scales[k][: groups * 4])
    chunk.sink[k][chunk.sink_offset : chunk.sink_offset + groups * 4] = data.tobytes()
