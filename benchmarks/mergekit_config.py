"""mergekit configurations that compute the Chat Vector merge, for running mergekit beside chatvec.

task_arithmetic with base_model = base, models chat (weight alpha) and cp
(weight 1.0), normalize false, lambda 1.0 computes
    base + alpha * (chat - base) + 1 * (cp - base) = cp + alpha * (chat - base)
in bf16 arithmetic (mergekit's default dtype).
"""

from __future__ import annotations

import os
import shutil


def config(base: str, chat: str, cp: str, alpha: float, dtype: str = "bfloat16") -> str:
    return "\n".join(
        [
            "merge_method: task_arithmetic",
            f"base_model: {os.path.abspath(base)}",
            "models:",
            f"  - model: {os.path.abspath(chat)}",
            f"    parameters: {{weight: {alpha}}}",
            f"  - model: {os.path.abspath(cp)}",
            "    parameters: {weight: 1.0}",
            "parameters: {normalize: false, lambda: 1.0}",
            f"dtype: {dtype}",
            "",
        ]
    )


def multi_config(base: str, chat: str, cp: str, alphas) -> str:
    """One mergekit-multi YAML: a document per alpha, named alpha-A."""
    return "---\n".join(f"name: alpha-{float(a)!r}\n" + config(base, chat, cp, a) for a in alphas)


def find(tool: str = "mergekit-yaml") -> str | None:
    """The mergekit command: $MERGEKIT_BIN/<tool>, or on PATH. None when not installed."""
    directory = os.environ.get("MERGEKIT_BIN")
    if directory and os.path.exists(os.path.join(directory, tool)):
        return os.path.join(directory, tool)
    return shutil.which(tool)
