"""The inspection as text: Markdown tables (inspect.md) and a compact table for a terminal."""

from __future__ import annotations

from ..units import plural

RELATIVE = "‖chat−base‖/‖base‖"
CP_RELATIVE = "‖cp−base‖/‖base‖"
COSINE = "cos(chat−base, cp−base)"
_LISTED = 20  # tensors named under "Not compared" before the rest is counted


def _number(x) -> str:
    return "—" if x is None else f"{x:.4g}"


def _cosine(x) -> str:
    return "—" if x is None else f"{x:+.4f}"


def _cells(row, with_cp: bool) -> list[str]:
    cells = [_number(row.relative)]
    if with_cp:
        cells += [_number(row.cp_relative), _cosine(row.cosine)]
    return cells


def _table(title: str, rows, with_cp: bool, total=None) -> list[str]:
    head = [title, "tensors", "elements", RELATIVE, *((CP_RELATIVE, COSINE) if with_cp else ()), "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in [*rows, *((total,) if total is not None else ())]:
        name = f"**{row.name}**" if row is total else f"`{row.name}`"
        cells = [name, str(row.tensors), str(row.elements), *_cells(row, with_cp), "; ".join(row.notes)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(inspection) -> str:
    """inspect.md: inputs, how the figures are made, the per-layer and per-tensor tables, what was left out."""
    with_cp = inspection.with_cp
    lines = ["# Chat vector: chat − base", ""]
    lines += [f"- {role}: `{path}`" for role, path in inspection.inputs.items()]
    lines += [
        "",
        f"{RELATIVE}: the chat vector's size against base's weights"
        + (
            f"; {CP_RELATIVE}: cp's own change; {COSINE}: +1 where cp's training moved the weights the way the chat "
            "vector does, −1 where it pulled the other way, 0 where the two are unrelated"
            if with_cp
            else ""
        )
        + ".",
        "Sums of squares and products in float64, per tensor; a layer's (and **all**'s) figures come from the "
        "sums of its tensors, not from an average of their ratios. inf and nan follow IEEE (notes say why).",
        "",
    ]
    for warning in inspection.warnings:
        lines.append(f"> warning: {warning}")
    lines += ["## By layer", "", *_table("layer", inspection.layers, with_cp, inspection.total), ""]
    lines += ["## By tensor", "", *_table("tensor", inspection.tensors, with_cp), ""]
    if inspection.not_compared:
        lines += ["## Not compared", ""]
        lines += [f"- `{name}`: {why}" for name, why in inspection.not_compared[:_LISTED]]
        more = len(inspection.not_compared) - _LISTED
        if more > 0:
            lines.append(f"- and {plural(more, 'more tensor')} (inspect.json lists them all)")
        lines.append("")
    if inspection.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in inspection.notes), ""]
    return "\n".join(lines)


def compact(inspection) -> str:
    """One line per layer row and the total, fixed width; then what was not compared."""
    with_cp = inspection.with_cp
    rows = [*inspection.layers, *((inspection.total,) if inspection.total else ())]
    width = max([len("layer"), *(len(r.name) for r in rows)])
    head = f"{'layer':<{width}}  {'chat rel':>9}" + (f"  {'cp rel':>9}  {'cosine':>8}" if with_cp else "")
    lines = [head]
    for r in rows:
        line = f"{r.name:<{width}}  {_number(r.relative):>9}"
        if with_cp:
            line += f"  {_number(r.cp_relative):>9}  {_cosine(r.cosine):>8}"
        if r.notes:
            line += "  " + "; ".join(r.notes)
        lines.append(line)
    lines.append("chat rel = ||chat-base||/||base||" + (", cp rel = ||cp-base||/||base||, cosine = "
                                                       "cos(chat-base, cp-base)" if with_cp else ""))  # fmt: skip
    if inspection.not_compared:
        names = ", ".join(f"{name} ({why})" for name, why in inspection.not_compared[:3])
        more = len(inspection.not_compared) - 3
        lines.append(f"not compared: {names}" + (f" and {more} more" if more > 0 else ""))
    return "\n".join(lines)
