"""A tensor's sums of squares and dot products in float64, the same whatever the chunk size.

Elements are summed in fixed blocks of BLOCK elements counted from the tensor's first element (numpy's
pairwise sum over each block), and the block sums are added exactly (Shewchuk's partials, rounded once by
math.fsum). The chunks the reader hands over are cut wherever its buffers end: a block split across two
chunks is completed in a carry buffer first, so the figures are bit-identical for any chunk size, and a
layer's sums are the exact sums of its tensors' blocks (never an average of ratios).

    >>> sums = TensorSums(with_cp=True)
    >>> sums.add(base, chat, cp)       # float64 arrays of the same length, any number of times
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
    input role."""

    def __init__(self, with_cp: bool):
        self.with_cp = with_cp
        self.roles = ROLES if with_cp else ROLES[:2]
        self.sums = {k: ExactSum() for k in (SUMS if with_cp else SUMS[:2])}
        self.non_finite = dict.fromkeys(self.roles, 0)
        self.elements = 0
        self._carry = np.empty((len(self.roles), BLOCK), dtype=np.float64)
        self._filled = 0

    def add(self, *values: np.ndarray):
        """The next elements of each role (base, chat and, with cp, cp), as float64 arrays of equal length."""
        n = len(values[0])
        self.elements += n
        pos = 0
        if self._filled:
            pos = min(BLOCK - self._filled, n)
            for row, v in zip(self._carry, values):
                row[self._filled : self._filled + pos] = v[:pos]
            self._filled += pos
            if self._filled == BLOCK:
                self._blocks(*(row.reshape(1, BLOCK) for row in self._carry))
                self._filled = 0
        whole = (n - pos) // BLOCK * BLOCK
        if whole:
            self._blocks(*(v[pos : pos + whole].reshape(-1, BLOCK) for v in values))
        rest = n - pos - whole
        if rest:
            for row, v in zip(self._carry, values):
                row[:rest] = v[pos + whole :]
            self._filled = rest

    def finish(self) -> dict[str, float]:
        """The sums (the last, partial block added), rounded once each."""
        if self._filled:
            self._blocks(*(row[: self._filled].reshape(1, self._filled) for row in self._carry))
            self._filled = 0
        return {k: s.value for k, s in self.sums.items()}

    def _blocks(self, base: np.ndarray, chat: np.ndarray, cp: np.ndarray | None = None):
        """Adds the sums of whole blocks: rows of the 2-D arrays, each one block."""
        with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf as IEEE gives them: counted below
            self._add_blocks(base, chat, cp)

    def _add_blocks(self, base: np.ndarray, chat: np.ndarray, cp: np.ndarray | None):
        delta = chat - base
        pairs = {"base.base": (base, base), "delta.delta": (delta, delta)}
        if cp is not None:
            cp_delta = cp - base
            pairs["cp_delta.cp_delta"] = (cp_delta, cp_delta)
            pairs["delta.cp_delta"] = (delta, cp_delta)
        finite = True
        for key, (x, y) in pairs.items():
            # numpy's pairwise sum of each row: the same for a row of a (k, BLOCK) array whatever k is (einsum's
            # is not: tests/test_inspect.py feeds one tensor in several chunkings)
            block_sums = (x * y).sum(axis=1)
            finite = finite and bool(np.isfinite(block_sums).all())
            total = self.sums[key]
            for value in block_sums.tolist():
                total.add(value)
        if not finite:  # a square that overflowed, or NaN/Inf in an input: count the inputs' own
            for role, v in zip(self.roles, (base, chat, cp)):
                self.non_finite[role] += int(v.size - np.count_nonzero(np.isfinite(v)))
