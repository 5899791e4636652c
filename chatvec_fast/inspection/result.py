"""VectorInspection: what `chatvec inspect` found, as rows another report can embed.

>>> inspection = chatvec_fast.inspect("base", "chat", "cp")
>>> inspection.layers[3].relative, inspection.layers[3].cosine   # ||chat-base||/||base||, cos with cp's
>>> print(inspection.markdown())                                  # the tables (inspect.md)
>>> inspection.plot("inspect.png")                                # by layer (needs matplotlib)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..plan.types import COPY_NOT_FLOAT, COPY_ONLY_IN_CP, Plan
from .figures import Row, group_rows
from .scan import Scanned

FORMAT = 1  # inspect.json's layout version


@dataclass
class VectorInspection:
    """The chat vector's figures: `tensors` (one Row per compared tensor, in the checkpoint's order), `layers`
    (one Row per numbered block, then one per tensor outside the blocks), `total` (the whole model), the
    tensors `not_compared` (name, why), and notes and warnings about the inputs."""

    inputs: dict[str, str]
    tensors: list[Row]
    layers: list[Row]
    total: Row | None
    not_compared: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def with_cp(self) -> bool:
        return "cp" in self.inputs

    def to_dict(self) -> dict:
        """Plain JSON types; inf and nan as the strings "inf", "-inf" and "nan" (JSON has no such numbers)."""
        doc = {
            "tool": "chatvec-fast",
            "format": FORMAT,
            "inputs": dict(self.inputs),
            "figures": "relative = ||chat - base|| / ||base||; cp_relative = ||cp - base|| / ||base||; cosine = "
            "cos(chat - base, cp - base); a layer's from the sums of its tensors' squares and products",
            "total": self.total.to_dict() if self.total else None,
            "layers": [r.to_dict() for r in self.layers],
            "tensors": [r.to_dict() for r in self.tensors],
            "not_compared": [{"name": n, "why": why} for n, why in self.not_compared],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "bytes_read": self.bytes_read,
            "seconds": self.seconds,
        }
        return _plain(doc)

    def markdown(self) -> str:
        """The tables (per layer, per tensor) and notes, as Markdown (inspect.md)."""
        from .tables import markdown

        return markdown(self)

    def table(self) -> str:
        """A compact per-layer table for a terminal."""
        from .tables import compact

        return compact(self)

    def plot(self, path: str):
        """Writes the by-layer plot (PNG) to path; needs matplotlib (pip install 'chatvec-fast[tune]')."""
        from .plot import plot_layers

        plot_layers(self, path)


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build(plan: Plan, scanned: list[Scanned], inputs: dict[str, str]) -> VectorInspection:
    """The inspection of a plan's scanned tensors; inputs: the inputs as the caller named them."""
    rows, exact = [], {}
    for s in scanned:
        row = Row(s.tensor.name, 1, s.compared, s.sums, s.non_finite)
        shared = _shared_rows_note(s)
        if shared:
            row.notes.append(shared)
        row.explain()
        rows.append(row)
        exact[row.name] = s.exact
    layers, total = group_rows(rows, exact)
    inspection = VectorInspection(dict(inputs), rows, layers, total, _not_compared(plan, scanned))
    inspection.warnings = list(plan.warnings)
    inspection.bytes_read = sum(s.nbytes for s in scanned)
    if any(_shared_rows_note(s) for s in scanned):
        inspection.notes.append(
            "vocabulary tensors whose row counts differ are compared on the rows base has (and cp shares): cp's "
            "extra rows and rows chat added for new tokens have no base to differ from"
        )
    return inspection


def _shared_rows_note(s: Scanned) -> str | None:
    """Says which rows a vocabulary tensor was compared on, when the inputs' row counts differ."""
    t = s.tensor
    shapes = {role: info.shape for role, info in (("base", t.base), ("chat", t.chat), ("cp", t.cp)) if info}
    if len({shape for shape in shapes.values()}) == 1:
        return None
    rows = shapes["base"][0]
    others = ", ".join(f"{role} {shape[0]}" for role, shape in shapes.items() if role != "base")
    return f"compared on base's {rows} rows ({others})"


# The merge planner's policies, as inspect says them (nothing is copied here)
_WHY = {COPY_ONLY_IN_CP: "only in cp", COPY_NOT_FLOAT: "not a float dtype"}


def _not_compared(plan: Plan, scanned: list[Scanned]) -> list[tuple[str, str]]:
    """Every tensor of the inputs without figures, and why (the planner's policy, or where it is missing)."""
    done = {s.tensor.name for s in scanned}
    out = [(t.name, _WHY.get(t.policy, t.policy)) for t in plan.tensors if t.name not in done]
    listed = done | {n for n, _ in out}
    base, chat = plan.inputs["base"], plan.inputs["chat"]
    for name in [*base.tensors, *(n for n in chat.tensors if n not in base.tensors)]:
        if name in listed:
            continue
        if name not in chat.tensors or name not in base.tensors:
            out.append((name, "only in " + ("base" if name in base.tensors else "chat")))
        elif name in plan.dropped:
            out.append((name, "in base and chat, not in cp"))
        else:
            out.append((name, "not a float dtype"))
    return out
