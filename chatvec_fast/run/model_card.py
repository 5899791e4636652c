"""The output's README.md: a Hugging Face model card, so that a merged model can be uploaded as it is.

YAML front matter (base_model, tags, library_name) for the Hub, then what was merged and how: the
formula, the alphas, the inputs with their revisions, the command, the version, and the exactness
statement. Deterministic, like everything in the output: the same command writes the same card.

The front matter is written by a YAML library, so no input name (a path holding ': ', '#' or a newline) can
change its structure, and base_model lists Hub ids only: llama.cpp's converter and the Hub turn each entry
into a Hub URL, so a local path there would become https://huggingface.co//path/to/cp. Local inputs are
named in the body.
"""

from __future__ import annotations

import json
import os
import re

from ..errors import ChatvecError
from ..filenames import CONFIG_NAME
from ..plan.types import Plan
from ..read.json_file import load_json_object
from ..report import FORMULAS

PAPER = "https://arxiv.org/abs/2310.04799"
_HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*/[\w.-]*[A-Za-z0-9_]")
_ROLES = {
    "base": "base (the pretrained model)",
    "chat": "chat (its chat-tuned sibling)",
    "cp": "cp (continually pretrained on another language)",
    "vector": "vector (a saved chat vector)",
}
_FENCE = "`" * 3


def _version() -> str:
    from .. import __version__

    return __version__


def hub_id(sources: dict, role: str, directory: str) -> str | None:
    """The input's Hugging Face id where it is known: given as an id, or, for a local directory, recorded by
    transformers in its config.json as _name_or_path (when that is an id, not a path). None otherwise."""
    if role in sources:
        return sources[role]["id"]
    try:  # the one bounded reader: a named pipe or a hostile config.json costs nothing here
        name = load_json_object(os.path.join(directory, CONFIG_NAME), "config").get("_name_or_path")
    except ChatvecError:
        name = None
    if isinstance(name, str) and _HUB_ID.fullmatch(name) and not os.path.exists(name):
        return name
    return None


def _cell(text: str) -> str:
    """Text for a Markdown table cell or heading: one line (newlines escaped as JSON does), no bar or backtick
    to end a cell or a code span early."""
    return json.dumps(str(text), ensure_ascii=False)[1:-1].replace("|", "\\|").replace("`", "'")


def model_card(plan: Plan, output: int, sources: dict, command: str, has_cp_card: bool) -> str:
    """The README.md of output `output`. sources: the inputs given as Hub ids, by role; command: the command
    line that makes this output (job.Job.command_line)."""
    import yaml  # PyYAML, a dependency: only the model card writes YAML

    ids = {role: hub_id(sources, role, ckpt.directory) for role, ckpt in plan.inputs.items()}
    where = {role: ids[role] or os.path.abspath(ckpt.directory) for role, ckpt in plan.inputs.items()}
    alpha = plan.options.alphas[output]
    vectors = [r for r in ids if r.startswith("vector")]
    meta = {"base_model": [ids[r] for r in ("cp", "chat", "base", *vectors) if ids.get(r)],
            "tags": ["merge", "chat-vector"], "library_name": "transformers"}  # fmt: skip
    if not meta["base_model"]:
        del meta["base_model"]
    front = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    formula = FORMULAS[plan.options.kind]
    if len(vectors) > 1:
        formula = " + ".join(["cp", *(f"alpha{m} * vector{m}" for m in range(1, len(vectors) + 1))])
    name = os.path.basename(where["cp"].rstrip(os.sep)) or where["cp"]
    lines = [
        f"# Chat Vector merge of {_cell(name)}",
        "",
        f"A Chat Vector merge ([Huang et al., 2023]({PAPER})) made with chatvec-fast {_version()}: every tensor is",
        "",
        f"    {formula}        alpha = {alpha!r}",
        "",
        "| role | model | revision |",
        "|---|---|---|",
    ]
    for role, model in where.items():
        source = sources.get(role)
        revision = f"{_cell(source['revision'])} ({source['commit']})" if source else "local files"
        what = _ROLES.get(role) or f"{role} (a saved chat vector)"
        lines.append(f"| {what} | `{_cell(model)}` | {revision} |")
    groups = plan.alpha_groups(output)
    if any(a != alpha for a in groups):
        lines += ["", "Alphas by tensor:", ""]
        lines += [f"- {a!r}: {len(names)} tensors" for a, names in groups.items()]
    lines += ["", "Made with:", "", _FENCE + "bash", command.replace(_FENCE, "'''"), _FENCE, "",
              "Every element was computed in float64 (the product, then the sum; no fused multiply-add) and rounded",
              "once, to nearest-even, to its output dtype: it is the correctly rounded value of the formula.",
              "`chatvec verify` re-derives every element from the inputs; `chatvec_report.json` records every",
              "choice made and the size and sha256 of every file."]  # fmt: skip
    if has_cp_card:
        lines += ["", "cp's own model card is kept as README.cp.md."]
    return "\n".join(front + lines) + "\n"
