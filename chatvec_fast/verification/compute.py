"""Expected elements of a rule (expected.py), in verify's own float64 arithmetic: numpy, no kernel, no torch.

merge: cp + alpha * (chat - base); apply: acc = cp, then acc = acc + alpha_m * v_m; extract: chat - base.
Each numpy ufunc is one IEEE operation on every element, rounded once (a subtraction, a product, a sum:
numpy never fuses a multiply and an add across calls), in backends/call.py's order; rounding.py then
rounds each result once to the output dtype. Inputs are read through the project's byte reader
(read/chunks.py), a piece at a time, so no tensor is ever whole in memory.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import itemsize
from ..read.chunks import InputFiles
from ..read.header import TensorInfo
from .expected import Rule
from .rounding import quantize_e4m3, round_to_bits
from .scales import ScaleRule
from .values import decode, entry_of


class Deriver:
    """Reads what a rule needs (thread-safe: InputFiles preadv's at offsets) and computes expected elements."""

    def __init__(self, scales: dict[TensorInfo, ScaleRule]):
        self.files = InputFiles()
        self.scales = scales  # every F8 input weight -> its scale rule

    def raw(self, info: TensorInfo, first_byte: int, nbytes: int) -> np.ndarray:
        buf = np.empty(nbytes, dtype=np.uint8)
        if nbytes:
            self.files.read(info, first_byte, buf)
        return buf

    def stored(self, info: TensorInfo, start: int, count: int) -> np.ndarray:
        """Elements [start, start + count) of a tensor as stored: a uint8 array of their bytes."""
        size = itemsize(info.dtype)
        return self.raw(info, start * size, count * size)

    def values(self, info: TensorInfo, start: int, count: int) -> np.ndarray:
        """float64 values of elements [start, start + count): decode(code) * scale for FP8, exactly."""
        values = decode(self.stored(info, start, count), info.dtype)
        rule = self.scales.get(info)
        if rule is not None and count:
            first, end = rule.entries(start, count)
            scales = self.stored(rule.tensor, first, end - first).view(np.float32).astype(np.float64)
            values *= scales[entry_of(rule, start, count) - first]  # <= 4 bits times 24 bits: exact
        return values

    def results(self, rule: Rule, start: int, count: int) -> np.ndarray:
        """The float64 results for elements [start, start + count), before the output's rounding."""
        end, out = start + count, np.empty(count)
        merged_end = min(end, rule.merged)
        if start < merged_end:
            n = merged_end - start
            out[:n] = self._merged(rule, start, n)
        copy_start, copy_end = max(start, rule.merged), min(end, rule.cp.numel if rule.cp is not None else 0)
        if copy_start < copy_end:
            out[copy_start - start : copy_end - start] = self.values(rule.cp, copy_start, copy_end - copy_start)
        out[max(merged_end, copy_end, start) - start :] = np.nan  # appended rows: filled from chat's rows below
        for out_row, chat_row in rule.rows.items():  # special-token rows and appended rows: chat's, as they are
            lo, hi = max(start, out_row * rule.row_size), min(end, (out_row + 1) * rule.row_size)
            if lo < hi:
                source = chat_row * rule.row_size + (lo - out_row * rule.row_size)
                out[lo - start : hi - start] = self.values(rule.row_source, source, hi - lo)
        return out  # elements no rule fills stay NaN: they cannot match a canonical output by accident

    def _merged(self, rule: Rule, start: int, n: int) -> np.ndarray:
        if rule.cp is None:  # extract
            delta = self.values(rule.deltas[0], start, n)
            delta -= self.values(rule.base, start, n)
            return delta
        acc = self.values(rule.cp, start, n)
        if rule.base is None:  # apply: one product and one sum per vector, in order
            for alpha, vector in zip(rule.alphas, rule.deltas):
                product = self.values(vector, start, n)
                product *= alpha
                acc += product
            return acc
        delta = self.values(rule.deltas[0], start, n)
        delta -= self.values(rule.base, start, n)
        delta *= rule.alphas[0]
        acc += delta
        return acc

    def expected_bits(self, rule: Rule, start: int, count: int) -> np.ndarray:
        """The output's bit patterns for elements [start, start + count) (not FP8 output)."""
        return round_to_bits(self.results(rule, start, count), rule.out_dtype)

    def expected_fp8(self, rule: Rule, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(e4m3 codes, float32 group scales) of elements [start, start + count), whole groups of cp's layout."""
        o = rule.out_scale
        element = np.arange(start, start + count, dtype=np.int64)
        row, col = element // o.cols, element % o.cols
        first_row, last_row = start // o.cols, (start + count - 1) // o.cols
        if o.kind == "row":
            group, groups = row - first_row, last_row - first_row + 1
        else:
            first_block, per_row = first_row // o.block_rows, o.scale_cols
            group = (row // o.block_rows - first_block) * per_row + col // o.block_cols
            groups = (last_row // o.block_rows - first_block + 1) * per_row
        return quantize_e4m3(self.results(rule, start, count), group, groups)

    def close(self):
        self.files.close()
