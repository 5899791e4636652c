"""The figures of a chat vector: per tensor, per layer and for the whole model, from the exact sums.

    relative      ||chat - base|| / ||base||
    cp_relative   ||cp - base|| / ||base||
    cosine        (chat - base) . (cp - base) / (||chat - base|| ||cp - base||)

A layer's (and the model's) figures come from the sums of its tensors' squares and products, not from an
average of their ratios: a layer's relative size weighs each tensor by its norm. Division follows IEEE:
||base|| = 0 gives inf (nan where chat equals base there), a zero vector gives a nan cosine, NaN/Inf in an
input give nan or inf; each such row says why in its `notes`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..plan.vocab import EMBED_NAME
from .sums import SUMS, ExactSum

# Transformer blocks: Llama/Mistral/Qwen "model.layers.N.", GPT-2/Falcon "transformer.h.N.", others "blocks.N."
LAYER = re.compile(r"^(?P<stem>(?:.*\.)?(?:layers|h|blocks))\.(?P<index>\d+)\.")


def layer_of(name: str) -> tuple[str, int] | None:
    """(stem, index) of a tensor inside a numbered block, e.g. ("model.layers", 3); None outside any."""
    m = LAYER.match(name)
    return (m["stem"], int(m["index"])) if m else None


def _ratio(top: float, bottom: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return float(np.float64(top) / np.float64(bottom))


def _root(x: float) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.sqrt(np.float64(x)))


@dataclass
class Row:
    """One tensor, one layer, or the whole model: elements compared, the sums and the figures from them."""

    name: str
    tensors: int
    elements: int
    sums: dict[str, float]
    non_finite: dict[str, int]
    notes: list[str] = field(default_factory=list)
    layer: int | None = None  # the block's index, for a layer's row and its tensors' rows

    @property
    def relative(self) -> float:
        return _ratio(_root(self.sums["delta.delta"]), _root(self.sums["base.base"]))

    @property
    def cp_relative(self) -> float | None:
        if "cp_delta.cp_delta" not in self.sums:
            return None
        return _ratio(_root(self.sums["cp_delta.cp_delta"]), _root(self.sums["base.base"]))

    @property
    def cosine(self) -> float | None:
        if "delta.cp_delta" not in self.sums:
            return None
        norms = _root(self.sums["delta.delta"]) * _root(self.sums["cp_delta.cp_delta"])
        return _ratio(self.sums["delta.cp_delta"], norms)

    def explain(self):
        """Adds plain notes for figures that are not ordinary numbers."""
        bad = [f"{role} {n}" for role, n in self.non_finite.items() if n]
        if bad:
            self.notes.append(f"NaN/Inf in the inputs ({', '.join(bad)} elements)")
        elif self.sums["base.base"] == 0:
            self.notes.append("||base|| = 0: the relative size is " + ("nan (chat equals base)" if
                              self.sums["delta.delta"] == 0 else "inf"))  # fmt: skip
        elif self.cosine is not None and math.isnan(self.cosine):
            self.notes.append("chat - base or cp - base is zero: no cosine")

    def to_dict(self) -> dict:
        out = {"name": self.name, "tensors": self.tensors, "elements": self.elements, "relative": self.relative}
        if self.cosine is not None:
            out.update(cp_relative=self.cp_relative, cosine=self.cosine)
        if self.layer is not None:
            out["layer"] = self.layer
        out.update(sums=dict(self.sums), non_finite=dict(self.non_finite), notes=list(self.notes))
        return out


def combine(name: str, rows: list[Row], exact: dict[str, dict[str, ExactSum]], layer: int | None = None) -> Row:
    """The row of several tensors: their sums added exactly (exact: each tensor's ExactSums by name)."""
    keys = [k for k in SUMS if k in rows[0].sums]
    sums = {}
    for key in keys:
        total = ExactSum()
        for r in rows:
            total.add_sum(exact[r.name][key])
        sums[key] = total.value
    roles = rows[0].non_finite
    non_finite = {role: sum(r.non_finite[role] for r in rows) for role in roles}
    row = Row(name, len(rows), sum(r.elements for r in rows), sums, non_finite, layer=layer)
    row.explain()
    return row


def group_rows(tensors: list[Row], exact) -> tuple[list[Row], Row]:
    """(the per-layer rows, the whole model's row): the input embeddings' rows, one row per numbered block in
    block order, then one per other tensor outside every block (final norm, lm_head) in name order."""
    blocks: dict[tuple[str, int], list[Row]] = {}
    others = []
    for r in tensors:
        key = layer_of(r.name)
        if key is None:
            others.append(r)
        else:
            blocks.setdefault(key, []).append(r)
    first = [r for r in others if EMBED_NAME.search(r.name)]
    rows = [combine(r.name, [r], exact) for r in first]
    rows += [combine(f"{stem}.{index}", blocks[(stem, index)], exact, index) for stem, index in sorted(blocks)]
    rows += [combine(r.name, [r], exact) for r in sorted(others, key=lambda r: r.name) if r not in first]
    return rows, combine("all", tensors, exact) if tensors else None
