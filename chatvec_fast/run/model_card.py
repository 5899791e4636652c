"""The output's README.md: a Hugging Face model card, so that a merged model can be uploaded as it is.

YAML front matter (base_model, tags, library_name) for the Hub, then what was merged and how: the
formula, the alphas, the inputs with their revisions, the command, the version, and the exactness
statement. Deterministic, like everything in the output: the same command writes the same card.
"""

from __future__ import annotations

import json
import os
import re

from ..filenames import CONFIG_NAME
from ..plan.types import Plan
from ..report import FORMULAS

PAPER = "https://arxiv.org/abs/2310.04799"
_HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*/[\w.-]*[A-Za-z0-9_]")
_ROLES = {
    "base": "base (the pretrained model)",
    "chat": "chat (its chat-tuned sibling)",
    "cp": "cp (continually pretrained on another language)",
    "vector": "vector (a saved chat vector)",
}


def _version() -> str:
    from .. import __version__

    return __version__


def model_id(sources: dict, role: str, directory: str) -> str:
    """The input's Hugging Face id where it is known (given as an id, or recorded by transformers in its
    config.json as _name_or_path), else its path."""
    if role in sources:
        return sources[role]["id"]
    try:
        with open(os.path.join(directory, CONFIG_NAME), encoding="utf-8") as f:
            name = json.load(f).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and _HUB_ID.fullmatch(name) and not os.path.exists(name):
        return name
    return os.path.abspath(directory)


def model_card(plan: Plan, output: int, sources: dict, command: str, has_cp_card: bool) -> str:
    """The README.md of output `output`. sources: the inputs given as Hub ids, by role; command: the command
    line that makes this output (job.Job.command_line)."""
    ids = {role: model_id(sources, role, ckpt.directory) for role, ckpt in plan.inputs.items()}
    alpha = plan.options.alphas[output]
    vectors = [r for r in ids if r.startswith("vector")]
    front = ["---", "base_model:", *(f"- {ids[r]}" for r in ("cp", "chat", "base", *vectors) if r in ids)]
    front += ["tags:", "- merge", "- chat-vector", "library_name: transformers", "---", ""]
    formula = FORMULAS[plan.options.kind]
    if len(vectors) > 1:
        formula = " + ".join(["cp", *(f"alpha{m} * vector{m}" for m in range(1, len(vectors) + 1))])
    lines = [
        f"# Chat Vector merge of {ids['cp']}",
        "",
        f"A Chat Vector merge ([Huang et al., 2023]({PAPER})) made with chatvec-fast {_version()}: every tensor is",
        "",
        f"    {formula}        alpha = {alpha!r}",
        "",
        "| role | model | revision |",
        "|---|---|---|",
    ]
    for role, model in ids.items():
        source = sources.get(role)
        revision = f"{source['revision']} ({source['commit']})" if source else "local files"
        what = _ROLES.get(role) or f"{role} (a saved chat vector)"
        lines.append(f"| {what} | `{model}` | {revision} |")
    groups = plan.alpha_groups(output)
    if any(a != alpha for a in groups):
        lines += ["", "Alphas by tensor:", ""]
        lines += [f"- {a!r}: {len(names)} tensors" for a, names in groups.items()]
    lines += ["", "Made with:", "", "```bash", command, "```", "",
              "Every element was computed in float64 (the product, then the sum; no fused multiply-add) and rounded",
              "once, to nearest-even, to its output dtype: it is the correctly rounded value of the formula.",
              "`chatvec verify` re-derives every element from the inputs; `chatvec_report.json` records every",
              "choice made and the size and sha256 of every file."]  # fmt: skip
    if has_cp_card:
        lines += ["", "cp's own model card is kept as README.cp.md."]
    return "\n".join(front + lines) + "\n"
