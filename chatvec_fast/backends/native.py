"""The native C++ kernel (csrc/), multithreaded, GIL released."""

from __future__ import annotations

from .. import _native
from .call import MAX_VECTORS, KernelCall, validate


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
        """Runs one KernelCall (backends/call.py); returns extract's count of inexact elements, else 0.

        validate() names what is wrong and the fix; _C.run reads the same call by attribute name and checks
        every buffer it touches (csrc/bindings_run.cpp), whoever calls it.
        """
        validate(call, MAX_VECTORS, "native")
        return self._c.run(call, self.threads)
