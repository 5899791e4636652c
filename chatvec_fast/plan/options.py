"""What the planner is asked to do: the merge options, checked and parsed (job.Job.build makes them from the
user's settings), as every output records them."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MergeOptions:
    """The policies of one planned command, parsed: every field is set by job.Job.build."""

    kind: str  # what each output is: "merge" (a sweep's outputs too), "extract" or "apply"
    alphas: tuple  # one per output: a float, or (apply with several vectors) a tuple of one float per vector
    skip: tuple[str, ...]  # regexes (re.search) of tensors to copy from cp
    vocab_mismatch: str  # shared-rows, skip or error
    dtype: str | None  # output dtype of float tensors (safetensors name); None keeps cp's
    max_shard_size: int | None  # bytes; None mirrors the input's sharding
    alpha_for: tuple[tuple[str, float], ...]  # (regex, alpha): the first match sets the tensor's alpha
    allow_unmatched: bool  # --skip / --alpha-for rules that change nothing are errors unless set
    added_tokens: str  # chat's rows beyond base's: append, drop or error
    special_tokens_from: str  # cp, or chat: the special tokens' rows come from the chat model

    def __post_init__(self):
        if not self.alphas:
            raise ValueError("need at least one alpha")
        for pattern in (*self.skip, *(p for p, _ in self.alpha_for)):
            re.compile(pattern)  # job.Job.build checked them; a bad one here is a bug

    def record(self) -> dict:
        """The options as chatvec_report.json and the shard metadata record them."""
        return {
            "skip": list(self.skip),
            "vocab_mismatch": self.vocab_mismatch,
            "dtype": self.dtype,
            "max_shard_size": self.max_shard_size,
            "alpha_for": [[p, a] for p, a in self.alpha_for],
            "added_tokens": self.added_tokens,
        }


def vector_roles(count: int) -> list[str]:
    """The input roles of apply's vectors: vector, vector2, vector3, ... (the report's inputs use them)."""
    return ["vector", *(f"vector{m}" for m in range(2, count + 1))]
