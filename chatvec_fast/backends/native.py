"""The native C++ kernel (csrc/), multithreaded, GIL released."""

from __future__ import annotations

from .. import _native
from ..dtypes import KERNEL_CODES
from .call import MAX_VECTORS, MODES, SCALE_KINDS, KernelCall, Operand, OutScale, validate


class NativeBackend:
    name = "native"
    exact = True  # bit-identical to the float64 reference
    max_vectors = MAX_VECTORS

    def __init__(self, threads: int | None = None):
        self._c = _native.require()
        self.threads = threads or self._c.available_cpus()

    def describe(self) -> str:
        return f"native ({self._c.active_isa()}, {self.threads} threads)"

    def compute(self, call: KernelCall) -> int:
        """Runs one KernelCall (backends/call.py); returns extract's count of inexact elements, else 0."""
        validate(call, MAX_VECTORS, "native")
        alphas = [[float(a) for a in row] for row in call.alphas] if call.mode in ("merge", "apply") else []
        return self._c.run(
            MODES[call.mode],
            call.n,
            _operand(call.base),
            _operand(call.chat),
            _operand(call.cp),
            [_operand(v) for v in call.vectors],
            alphas,
            list(call.outs),
            KERNEL_CODES[call.out_dtype],
            _out_scale(call.out_scale),
            self.threads,
        )


def _operand(op: Operand | None):
    if op is None:
        return None
    s = op.scale
    scale = None
    if s is not None:
        scale = (SCALE_KINDS[s.kind], s.buffer, s.cols, s.first_element, s.block_rows, s.block_cols, s.first_scale_row)
    return (op.buffer, KERNEL_CODES[op.dtype], scale)


def _out_scale(o: OutScale | None):
    if o is None:
        return None
    return (SCALE_KINDS[o.kind], list(o.buffers), o.cols, o.first_element, o.block_rows, o.block_cols)
