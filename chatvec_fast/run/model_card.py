"""The output's README.md: a Hugging Face model card, so that a merged model can be uploaded as it is.

YAML front matter (base_model, tags, library_name) for the Hub, then what was merged and how: the
formula, the alphas, the inputs with their revisions, the command, the version, and the exactness
statement. Deterministic, like everything in the output: the same command writes the same card.
"""

from __future__ import annotations

import json
import os
import re
import shlex

from ..job import Job
from ..plan.types import Plan

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


def model_id(job: Job, role: str, directory: str) -> str:
    """The input's Hugging Face id where it is known (given as an id, or recorded by transformers in its
    config.json as _name_or_path), else its path."""
    if role in job.sources:
        return job.sources[role]["id"]
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            name = json.load(f).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and _HUB_ID.fullmatch(name) and not os.path.exists(name):
        return name
    return os.path.abspath(directory)


def command_line(job: Job, output: int) -> str:
    """The command that makes this output, in the CLI's spelling."""
    s, command = job.settings, job.command
    args = ["chatvec", "apply" if command == "apply" else "merge"]
    # Hub ids as given; local paths made absolute (the card must not depend on the cwd). Roles vector2,
    # vector3... are --vector again, in order.
    for role, ref in job.given.items():
        flag = "--vector" if role.startswith("vector") else f"--{role}"
        args += [flag, ref if role in job.sources else os.path.abspath(ref)]
    # The output's own path is left out: the same command writes the same bytes wherever its output goes.
    alpha = job.alphas[output]
    args += ["--out", "OUT"]
    for value in alpha if isinstance(alpha, tuple) else (alpha,):
        args += ["--alpha", repr(value)]
    for rule in s.alpha_for:
        args += ["--alpha-for", rule if isinstance(rule, str) else f"{rule[0]}={rule[1]}"]
    for pattern in s.skip:
        args += ["--skip", pattern]
    for flag, value, default in (("--vocab-mismatch", s.vocab_mismatch, "shared-rows"), ("--dtype", s.dtype, None),
                                 ("--max-shard-size", s.max_shard_size, None), ("--revision", s.revision, None),
                                 ("--special-tokens-from", s.special_tokens_from, "cp"),
                                 ("--chat-template-from", s.chat_template_from, None),
                                 ("--tokenizer-from", s.tokenizer_from, None)):  # fmt: skip
        if value != default:
            args += [flag, str(value)]
    return shlex.join(args)


def model_card(job: Job, plan: Plan, output: int, has_cp_card: bool) -> str:
    """The README.md of output `output`."""
    ids = {role: model_id(job, role, ckpt.directory) for role, ckpt in plan.inputs.items()}
    alpha = job.alphas[output]
    vectors = [r for r in ids if r.startswith("vector")]
    front = ["---", "base_model:", *(f"- {ids[r]}" for r in ("cp", "chat", "base", *vectors) if r in ids)]
    front += ["tags:", "- merge", "- chat-vector", "library_name: transformers", "---", ""]
    formula = "cp + alpha * vector" if job.command == "apply" else "cp + alpha * (chat - base)"
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
        source = job.sources.get(role)
        revision = f"{source['revision']} ({source['commit']})" if source else "local files"
        what = _ROLES.get(role) or f"{role} (a saved chat vector)"
        lines.append(f"| {what} | `{model}` | {revision} |")
    groups = plan.alpha_groups(output)
    if any(a != alpha for a in groups):
        lines += ["", "Alphas by tensor:", ""]
        lines += [f"- {a!r}: {len(names)} tensors" for a, names in groups.items()]
    lines += ["", "Made with:", "", "```bash", command_line(job, output), "```", "",
              "Every element was computed in float64 (the product, then the sum; no fused multiply-add) and rounded",
              "once, to nearest-even, to its output dtype: it is the correctly rounded value of the formula.",
              "`chatvec verify` re-derives every element from the inputs; `chatvec_report.json` records every",
              "choice made and the size and sha256 of every file."]  # fmt: skip
    if has_cp_card:
        lines += ["", "cp's own model card is kept as README.cp.md."]
    return "\n".join(front + lines) + "\n"
