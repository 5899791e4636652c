"""A tensor's sums of squares and dot products in float64, the same whatever the chunk size.

Elements are summed in fixed blocks of BLOCK elements counted from the tensor's first element (by the
native kernel, compensated; numpy's pairwise sum where it is not built), and the block sums are added
exactly (Shewchuk's partials, rounded once by math.fsum). The chunks the reader hands over are cut wherever
its buffers end: a block split across two chunks is completed in a carry buffer first, so the figures are
bit-identical for any chunk size, and a layer's sums are the exact sums of its tensors' blocks (never an
average of ratios).

    >>> sums = TensorSums(with_cp=True)
    >>> sums.add(base, chat, cp)       # arrays of one length (float64, or as stored), any number of times
    >>> sums.finish()["base.base"]     # sum of base * base
"""

from __future__ import annotations

import math

import numpy as np

# 64 Ki elements a block: the Python-side exact addition costs ~1 us a block sum, 4 sums a block, so a 7B
# model's ~107 K blocks add well under a second; the carry buffer is 3 x 512 KiB.
BLOCK = 1 << 16

# The sums each tensor keeps: chat - base (d) and cp - base (e) against base (b).
SUMS = ("base.base", "delta.delta", "cp_delta.cp_delta", "delta.cp_delta")
ROLES = ("base", "chat", "cp")


class ExactSum:
    """The exact sum of the float64 values added (non-overlapping partials, Shewchuk 1997); NaN and Inf
    are summed apart, so they come out as IEEE addition gives them."""

    __slots__ = ("partials", "special")

    def __init__(self):
        self.partials: list[float] = []
        self.special = 0.0  # the sum of every non-finite value added (0.0 while there is none)

    def add(self, x: float):
        if not math.isfinite(x):
            self.special += x
            return
        kept = []
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            if math.isinf(high):  # beyond float64's range (F64 inputs only): inf, as IEEE addition gives
                self.special += high
                self.partials = []
                return
            low = y - (high - x)
            if low:
                kept.append(low)
            x = high
        kept.append(x)
        self.partials = kept

    def add_sum(self, other: ExactSum):
        """Adds another exact sum (a tensor's into its layer's) without rounding it first."""
        for p in other.partials:
            self.add(p)
        self.special += other.special

    @property
    def value(self) -> float:
        """The exact sum rounded once to float64 (or the IEEE sum of the non-finite values)."""
        if self.special != 0.0 or math.isnan(self.special):
            return self.special
        return math.fsum(self.partials)


class TensorSums:
    """Sums of one tensor's elements, block by block (see the module's docstring); counts of NaN and Inf per
    input role.

    Values come as each input stores them: numpy arrays of float64, float32 or float16 values, or uint16 arrays
    of bf16 bit patterns (FP8 inputs arrive widened, with their scales, as float64). The native kernel
    (csrc/block_sums.cpp) sums them in one pass over those bytes, each block compensated (TwoSum): 2.8 ns an
    element for a bf16 triple here, against ~39 for numpy's widening and pairwise sums (which stay, as the
    fallback where the native module is not built; the two agree to float64 rounding, not bit for bit)."""

    def __init__(self, with_cp: bool, native: bool | None = None):
        """native: use the native kernel (default: when it is built)."""
        self.with_cp = with_cp
        self.roles = ROLES if with_cp else ROLES[:2]
        self.sums = {k: ExactSum() for k in (SUMS if with_cp else SUMS[:2])}
        self.non_finite = dict.fromkeys(self.roles, 0)
        self.elements = 0
        self._kernel = native_block_sums() if native is None or native else None
        if native and self._kernel is None:
            raise RuntimeError("the native block sums are not built (chatvec_fast._C.block_sums)")
        self._carry: list[np.ndarray] | None = None  # one block of each role, in its own element type
        self._filled = 0

    def add(self, *values: np.ndarray):
        """The next elements of each role (base, chat and, with cp, cp): arrays of equal length, each role's
        element type the same in every call."""
        n = len(values[0])
        if self._carry is None:
            self._carry = [np.empty(BLOCK, dtype=v.dtype) for v in values]
        self.elements += n
        pos = 0
        if self._filled:
            pos = min(BLOCK - self._filled, n)
            for row, v in zip(self._carry, values):
                row[self._filled : self._filled + pos] = v[:pos]
            self._filled += pos
            if self._filled == BLOCK:
                self._blocks(*self._carry)
                self._filled = 0
        whole = (n - pos) // BLOCK * BLOCK
        if whole:
            self._blocks(*(v[pos : pos + whole] for v in values))
        rest = n - pos - whole
        if rest:
            for row, v in zip(self._carry, values):
                row[:rest] = v[pos + whole :]
            self._filled = rest

    def finish(self) -> dict[str, float]:
        """The sums (the last, partial block added), rounded once each."""
        if self._filled:
            self._blocks(*(row[: self._filled] for row in self._carry))
            self._filled = 0
        return {k: s.value for k, s in self.sums.items()}

    def _blocks(self, *values: np.ndarray):
        """Adds the sums of the blocks of equal-length arrays: whole blocks, or the tensor's last, partial one."""
        n = len(values[0])
        if self._kernel is not None:
            block_sums = np.empty(((n + BLOCK - 1) // BLOCK, len(self.sums)), dtype=np.float64)
            cp = values[2] if self.with_cp else None
            self._kernel(n, BLOCK, values[0], DTYPE_NAMES[values[0].dtype], values[1], DTYPE_NAMES[values[1].dtype],
                         cp, None if cp is None else DTYPE_NAMES[cp.dtype], block_sums)  # fmt: skip
        else:
            wide = [widen(v) for v in values]
            rows = [w.reshape(-1, BLOCK) if n % BLOCK == 0 else w.reshape(1, n) for w in wide]
            with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf as IEEE gives them: counted below
                block_sums = _numpy_block_sums(*rows)
        for total, column in zip(self.sums.values(), block_sums.T):
            for value in column.tolist():
                total.add(value)
        if not np.isfinite(block_sums).all():  # a square that overflowed, or NaN/Inf in an input: count its own
            for role, v in zip(self.roles, values):
                self.non_finite[role] += int(v.size - np.count_nonzero(np.isfinite(widen(v))))


def native_block_sums():
    """_C.block_sums, or None where the native module is not built (or predates it)."""
    from .. import _native

    return getattr(_native.module, "block_sums", None) if _native.available else None


# the element types TensorSums takes, by the names the native kernel knows them by (uint16: bf16 bit patterns)
DTYPE_NAMES = {np.dtype("<u2"): "BF16", np.dtype("<f2"): "F16", np.dtype("<f4"): "F32", np.dtype("<f8"): "F64"}


def widen(values: np.ndarray) -> np.ndarray:
    """float64 values, exact. bf16 (uint16 bit patterns) is float32's high half: shifted into place."""
    if values.dtype == np.uint16:
        return (values.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return values.astype(np.float64, copy=False)


def _numpy_block_sums(base: np.ndarray, chat: np.ndarray, cp: np.ndarray | None = None) -> np.ndarray:
    """The sums of each row of the 2-D float64 arrays (one row a block), as a (rows, sums) array: numpy's
    pairwise sum of each row, the same for a row of a (k, BLOCK) array whatever k is (einsum's is not:
    tests/test_inspect.py feeds one tensor in several chunkings)."""
    delta = chat - base
    products = [base * base, delta * delta]
    if cp is not None:
        cp_delta = cp - base
        products += [cp_delta * cp_delta, delta * cp_delta]
    return np.stack([p.sum(axis=1) for p in products], axis=1)
