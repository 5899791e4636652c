"""Pairs tensors across base, chat and cp and decides what happens to each.

Looks at headers only. The result, a Plan, says for every tensor of cp how
many leading elements get  cp + alpha * (chat - base)  (all of them, the rows
the vocabularies share, or none) and which output shard holds it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field

from .checkpoint import SINGLE_NAME, Checkpoint
from .dtypes import MERGEABLE, nbytes
from .errors import PlanError
from .safetensors_header import TensorInfo
from .units import format_bytes

# What happens to a tensor.
MERGE = "merge"  # every element
SHARED_ROWS = "merge-shared-rows"  # cp has an expanded vocabulary: merge the shared rows, keep cp's extra rows
COPY_SKIPPED = "copy (--skip)"
COPY_VOCAB_SKIPPED = "copy (--vocab-mismatch skip)"
COPY_ONLY_IN_CP = "copy (not in base/chat)"
COPY_NOT_FLOAT = "copy (not a float dtype)"

VOCAB_POLICIES = ("shared-rows", "skip", "error")

# Embedding tensors whose first dimension is the vocabulary (Llama, GPT-2, BLOOM, GPT-NeoX, LLaMA-1).
_EMBED_NAME = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings)\.weight$")

# How many offending names an error lists before "... and N more".
_MAX_LISTED = 5


@dataclass
class MergeOptions:
    alphas: tuple[float, ...] = (1.0,)
    skip: tuple[str, ...] = ()  # regexes (re.search) of tensors to copy from cp
    vocab_mismatch: str = "shared-rows"
    dtype: str | None = None  # output dtype for float tensors; None keeps cp's
    max_shard_size: int | None = None  # bytes; None mirrors cp's sharding

    def __post_init__(self):
        if not self.alphas:
            raise ValueError("need at least one alpha")
        if self.vocab_mismatch not in VOCAB_POLICIES:
            raise ValueError(f"vocab_mismatch must be one of {VOCAB_POLICIES}, got {self.vocab_mismatch!r}")
        if self.max_shard_size is not None and self.max_shard_size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {self.max_shard_size}")


@dataclass
class TensorPlan:
    name: str
    policy: str
    cp: TensorInfo
    base: TensorInfo | None  # set when merged_elements > 0
    chat: TensorInfo | None
    out_dtype: str
    merged_elements: int  # leading elements computed by the formula; the rest come from cp

    @property
    def shape(self) -> tuple[int, ...]:
        return self.cp.shape

    @property
    def out_nbytes(self) -> int:
        return nbytes(self.out_dtype, self.cp.numel)

    @property
    def read_nbytes(self) -> int:
        """Bytes read from the inputs for this tensor (each output byte needs one read of cp)."""
        merged = self.merged_elements
        extra = 0 if merged == 0 else nbytes(self.base.dtype, merged) + nbytes(self.chat.dtype, merged)
        return self.cp.nbytes + extra


@dataclass
class OutputShard:
    filename: str
    tensors: list[TensorPlan]

    @property
    def data_nbytes(self) -> int:
        return sum(t.out_nbytes for t in self.tensors)


@dataclass
class Plan:
    options: MergeOptions
    base: Checkpoint
    chat: Checkpoint
    cp: Checkpoint
    shards: list[OutputShard]
    single_file: bool  # True: write model.safetensors with no index
    dropped: list[str] = field(default_factory=list)  # in base and chat but not in cp
    notes: list[str] = field(default_factory=list)

    @property
    def tensors(self) -> list[TensorPlan]:
        return [t for s in self.shards for t in s.tensors]

    def policy_counts(self) -> Counter:
        return Counter(t.policy for t in self.tensors)

    @property
    def read_nbytes(self) -> int:
        return sum(t.read_nbytes for t in self.tensors)

    @property
    def write_nbytes(self) -> int:
        """Tensor bytes written per output (headers not counted)."""
        return sum(s.data_nbytes for s in self.shards)

    def describe(self) -> str:
        """The --dry-run report."""
        lines = [f"plan: {len(self.tensors)} tensors of cp, alpha {', '.join(map(_fmt_alpha, self.options.alphas))}"]
        for policy, count in sorted(self.policy_counts().items()):
            lines.append(f"  {count:6d}  {policy}")
        if self.dropped:
            lines.append(f"  {len(self.dropped):6d}  left out (in base and chat, not in cp): {_listing(self.dropped)}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        kind = "1 file" if self.single_file else f"{len(self.shards)} shards + index"
        lines.append(f"output: {kind}, {format_bytes(self.write_nbytes)} per alpha")
        for shard in self.shards:
            lines.append(f"  {shard.filename}: {len(shard.tensors)} tensors, {format_bytes(shard.data_nbytes)}")
        lines.append(f"reads {format_bytes(self.read_nbytes)} from the inputs")
        return "\n".join(lines)


def _fmt_alpha(a: float) -> str:
    return repr(float(a))


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def vocab_sizes(ckpt: Checkpoint) -> set[int]:
    """Vocabulary sizes a checkpoint declares (config.json) or shows (embedding rows)."""
    sizes = set()
    for cfg in (ckpt.config, ckpt.config.get("text_config") or {}):
        v = cfg.get("vocab_size") if isinstance(cfg, dict) else None
        if isinstance(v, int):
            sizes.add(v)
    for name, t in ckpt.tensors.items():
        if _EMBED_NAME.search(name) and t.shape:
            sizes.add(t.shape[0])
    return sizes


def _is_expanded_vocab(cp: TensorInfo, base: TensorInfo, base_vocab: set[int]) -> bool:
    return (
        len(cp.shape) >= 1
        and len(cp.shape) == len(base.shape)
        and cp.shape[1:] == base.shape[1:]
        and cp.shape[0] > base.shape[0]
        and base.shape[0] in base_vocab
    )


def make_plan(base: Checkpoint, chat: Checkpoint, cp: Checkpoint, options: MergeOptions) -> Plan:
    """Pairs the tensors and lays out the output. Raises PlanError listing every problem found."""
    skip = [re.compile(p) for p in options.skip]
    base_vocab = vocab_sizes(base) | vocab_sizes(chat)
    problems: dict[str, list[str]] = {}  # kind -> ["name: detail"]

    def problem(kind: str, text: str):
        problems.setdefault(kind, []).append(text)

    plans: dict[str, TensorPlan] = {}
    notes = []
    for name, c in cp.tensors.items():
        b, h = base.tensors.get(name), chat.tensors.get(name)
        out_dtype = options.dtype if (options.dtype and c.dtype in MERGEABLE) else c.dtype

        def plan(policy, merged=0, b=b, h=h, name=name, c=c, out_dtype=out_dtype):
            keep = merged > 0
            plans[name] = TensorPlan(name, policy, c, b if keep else None, h if keep else None, out_dtype, merged)

        if any(p.search(name) for p in skip):
            plan(COPY_SKIPPED)
        elif b is None and h is None:
            plan(COPY_ONLY_IN_CP)
        elif b is None or h is None:
            have, lack = ("chat", "base") if b is None else ("base", "chat")
            problem("only-one", f"{name}: in {have} and cp, missing from {lack}")
        elif b.shape != h.shape:
            problem("shape", f"{name}: base has shape {b.shape}, chat has {h.shape}")
        elif c.dtype not in MERGEABLE or b.dtype not in MERGEABLE or h.dtype not in MERGEABLE:
            if c.dtype not in MERGEABLE and b.dtype == h.dtype == c.dtype:
                plan(COPY_NOT_FLOAT)
            else:
                problem("dtype", f"{name}: dtypes base {b.dtype}, chat {h.dtype}, cp {c.dtype}")
        elif c.shape == b.shape:
            plan(MERGE, c.numel)
        elif _is_expanded_vocab(c, b, base_vocab):
            if options.vocab_mismatch == "shared-rows":
                plan(SHARED_ROWS, b.numel)
            elif options.vocab_mismatch == "skip":
                plan(COPY_VOCAB_SKIPPED)
            else:
                problem("vocab", f"{name}: cp has {c.shape[0]} rows, base and chat {b.shape[0]}")
        else:
            problem("shape", f"{name}: cp has shape {c.shape}, base and chat {b.shape}")

    dropped = [n for n in base.tensors if n in chat.tensors and n not in cp.tensors and not _matches(skip, n)]
    only_base_chat = [
        n for n in {**base.tensors, **chat.tensors}
        if n not in cp.tensors and (n in base.tensors) != (n in chat.tensors)
    ]  # fmt: skip
    if only_base_chat:
        notes.append(
            f"{len(only_base_chat)} tensors in only one of base and chat and not in cp are ignored: "
            f"{_listing(only_base_chat)}"
        )
    lm_head = plans.get("lm_head.weight")
    if lm_head is not None and lm_head.policy == COPY_ONLY_IN_CP:
        notes.append("lm_head.weight: base and chat tie it to the input embedding; cp's is copied unchanged")
    if problems:
        raise PlanError(_problem_message(problems))

    shards, single = _layout(cp, plans, options.max_shard_size)
    return Plan(options, base, chat, cp, shards, single, dropped, notes)


def _matches(patterns, name) -> bool:
    return any(p.search(name) for p in patterns)


_FIXES = {
    "only-one": "base and chat must come from the same architecture; pass --skip REGEX to copy such tensors from cp",
    "shape": "pass --skip REGEX to copy these tensors from cp unchanged, or check that the three models share "
    "an architecture",
    "dtype": "non-float tensors are only copied when base, chat and cp agree on their dtype; pass --skip REGEX "
    "to copy them from cp",
    "vocab": "cp's vocabulary is expanded; choose --vocab-mismatch shared-rows (merge the shared rows, keep cp's "
    "extra rows) or skip (copy these tensors from cp)",
}

_TITLES = {
    "only-one": "tensors present in only one of base and chat",
    "shape": "tensors whose shapes differ",
    "dtype": "tensors whose dtypes cannot be merged",
    "vocab": "vocabulary tensors with more rows in cp (--vocab-mismatch error)",
}


def _problem_message(problems: dict[str, list[str]]) -> str:
    parts = ["cannot pair the three checkpoints:"]
    for kind, items in problems.items():
        parts.append(f"{len(items)} {_TITLES[kind]}:")
        parts.extend(f"  - {item}" for item in items[:_MAX_LISTED])
        if len(items) > _MAX_LISTED:
            parts.append(f"  ... and {len(items) - _MAX_LISTED} more")
        parts.append(f"  fix: {_FIXES[kind]}")
    return "\n".join(parts)


def _layout(cp: Checkpoint, plans: dict[str, TensorPlan], max_shard_size: int | None):
    """Output shards: cp's own (same files, same tensors), or re-packed under max_shard_size."""
    if max_shard_size is None:
        if len(cp.files) == 1:
            return [OutputShard(SINGLE_NAME, list(plans.values()))], True
        shards = [OutputShard(os.path.basename(f.path), [plans[n] for n in f.tensors]) for f in cp.files]
        return shards, False
    groups: list[list[TensorPlan]] = [[]]
    size = 0
    for t in plans.values():
        if groups[-1] and size + t.out_nbytes > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.out_nbytes
    if len(groups) == 1:
        return [OutputShard(SINGLE_NAME, groups[0])], True
    n = len(groups)
    return [OutputShard(f"model-{i + 1:05d}-of-{n:05d}.safetensors", g) for i, g in enumerate(groups)], False
