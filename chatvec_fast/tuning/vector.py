"""The chat vector in tune's report: `chatvec inspect`'s figures for the same inputs, in the same --out.

Per layer, ||chat - base|| / ||base|| and the cosine of chat - base with cp's own change: where the chat skills
live and where cp's training pulled the other way, next to what each alpha did to the model. It costs one more
read of the inputs (inspection/, streamed), done once: --resume keeps it.
"""

from __future__ import annotations

import os

from ..job import Job
from ..settings import INSPECT, Settings

VECTOR_DIR = "vector"  # inspect.json, inspect.md, inspect.png, as `chatvec inspect --out` writes them
_HEADS = ("layer", "tensors", "||chat - base|| / ||base||", "||cp - base|| / ||base||", "cos(chat - base, cp - base)")


def inspect_inputs(inputs: dict, out: str, quiet: bool) -> dict:
    """Runs inspect on the tune's (resolved) inputs into out/vector/; returns what results.json keeps: the
    per-layer rows and the total (the per-tensor rows stay in vector/inspect.json)."""
    from ..inspection import run_inspection

    settings = Settings.build(INSPECT, {"progress": not quiet})
    where = os.path.join(out, VECTOR_DIR)
    job = Job.build(INSPECT, {r: inputs[r] for r in ("base", "chat", "cp")}, where, [1.0], settings, sweep=False)
    doc = run_inspection(job).to_dict()
    return {"files": VECTOR_DIR, "figures": doc["figures"], "layers": doc["layers"], "total": doc["total"]}


def _cell(value) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else f"{value:.4g}"


def markdown(vector: dict | None) -> list[str]:
    """results.md's section: the by-layer table of the chat vector (inspect.md in vector/ has every tensor)."""
    if not vector:
        return []
    lines = ["", "## The chat vector by layer", "", vector["figures"] + f" (every tensor: {VECTOR_DIR}/inspect.md).",
             "", "| " + " | ".join(_HEADS) + " |", "|" + "---|" * len(_HEADS)]  # fmt: skip
    for row in [*vector["layers"], *([vector["total"]] if vector.get("total") else [])]:
        cells = [f"`{row['name']}`", str(row["tensors"]), _cell(row["relative"]), _cell(row.get("cp_relative")),
                 _cell(row.get("cosine"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines
