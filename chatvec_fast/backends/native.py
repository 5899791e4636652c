"""The native C++ kernel (csrc/), multithreaded, GIL released."""

from __future__ import annotations

from .. import _native
from ..dtypes import KERNEL_CODES


class NativeBackend:
    name = "native"
    exact = True  # bit-identical to the float64 reference

    def __init__(self, threads: int | None = None):
        self._c = _native.require()
        self.threads = threads or self._c.available_cpus()

    def describe(self) -> str:
        return f"native ({self._c.active_isa()}, {self.threads} threads)"

    def compute(self, base, base_dtype, chat, chat_dtype, cp, cp_dtype, n, alphas, outs, out_dtype) -> int:
        codes = KERNEL_CODES
        return self._c.merge(
            base,
            codes.get(base_dtype, 0),
            chat,
            codes.get(chat_dtype, 0),
            cp,
            codes.get(cp_dtype, 0),
            n,
            list(alphas),
            list(outs),
            codes[out_dtype],
            self.threads,
        )
