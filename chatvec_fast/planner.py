"""Pairs tensors across the inputs and decides what each output element holds.

Looks at headers only. A Plan lists, for every output tensor, its segments:
element ranges computed by the formula ("merge": cp + alpha * (chat - base),
or cp + alpha * vector), copied from another tensor ("copy": cp's own rows, or
the chat model's rows of a special token), or, for `extract`, chat - base.
It also lays the tensors out in output shards.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field

from .checkpoint import SINGLE_NAME, Checkpoint
from .dtypes import MERGEABLE, VECTOR_DTYPES, nbytes
from .errors import PlanError
from .safetensors_header import TensorInfo
from .units import format_bytes

# What happens to a tensor (the plan's policy names).
MERGE = "merge"  # every element
SHARED_ROWS = "merge-shared-rows"  # cp has an expanded vocabulary: merge the shared rows, keep cp's extra rows
COPY_SKIPPED = "copy (--skip)"
COPY_VOCAB_SKIPPED = "copy (--vocab-mismatch skip)"
COPY_ONLY_IN_CP = "copy (not in base/chat)"
COPY_NOT_FLOAT = "copy (not a float dtype)"
EXTRACT = "extract"  # chat - base, for a saved chat vector

VOCAB_POLICIES = ("shared-rows", "skip", "error")

# Tensors whose first dimension is the vocabulary (Llama, GPT-2, BLOOM, GPT-NeoX, LLaMA-1, Mistral...).
_EMBED_NAME = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings)\.weight$")
_VOCAB_NAME = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings|lm_head|embed_out)\.weight$")

# How many offending names an error lists before "... and N more".
_MAX_LISTED = 5


@dataclass
class MergeOptions:
    alphas: tuple[float, ...] = (1.0,)
    skip: tuple[str, ...] = ()  # regexes (re.search) of tensors to copy from cp
    vocab_mismatch: str = "shared-rows"
    dtype: str | None = None  # output dtype for float tensors; None keeps cp's (F32 for extract)
    max_shard_size: int | None = None  # bytes; None mirrors the input's sharding
    alpha_for: tuple[tuple[str, float], ...] = ()  # (regex, alpha): first match sets the tensor's alpha
    # Rows copied from the chat model into every vocabulary tensor: (token, chat row, cp row).
    special_rows: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self):
        if not self.alphas:
            raise ValueError("need at least one alpha")
        if self.vocab_mismatch not in VOCAB_POLICIES:
            raise ValueError(f"vocab_mismatch must be one of {VOCAB_POLICIES}, got {self.vocab_mismatch!r}")
        if self.max_shard_size is not None and self.max_shard_size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {self.max_shard_size}")
        for pattern in (*self.skip, *(p for p, _ in self.alpha_for)):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None


@dataclass(frozen=True)
class Segment:
    """Elements [start, start + count) of an output tensor.

    kind "merge": the formula over the plan's base/chat/cp at the same elements.
    kind "copy": `source`'s elements from `source_start` (converted if its dtype differs).
    kind "extract": chat - base at the same elements.
    """

    kind: str
    start: int
    count: int
    source: TensorInfo | None = None
    source_start: int = 0

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass
class TensorPlan:
    name: str
    policy: str
    shape: tuple[int, ...]
    out_dtype: str
    cp: TensorInfo | None  # None when extracting
    base: TensorInfo | None  # None for a saved vector (apply) or a copied tensor
    chat: TensorInfo | None  # the chat model's tensor, or the saved vector
    alphas: tuple[float, ...]
    segments: list[Segment]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def out_nbytes(self) -> int:
        return nbytes(self.out_dtype, self.numel)

    @property
    def merged_elements(self) -> int:
        return sum(s.count for s in self.segments if s.kind == "merge")

    @property
    def read_nbytes(self) -> int:
        """Bytes this tensor reads from the inputs."""
        total = 0
        for s in self.segments:
            if s.kind == "copy":
                total += nbytes(s.source.dtype, s.count)
            else:
                inputs = [t for t in (self.base, self.chat, self.cp if s.kind == "merge" else None) if t is not None]
                total += sum(nbytes(t.dtype, s.count) for t in inputs)
        return total


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
    inputs: dict[str, Checkpoint]  # by role: base, chat, cp, vector
    shards: list[OutputShard]
    single_file: bool  # True: write model.safetensors with no index
    dropped: list[str] = field(default_factory=list)  # in base and chat (or the vector) but not in cp
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

    def alpha_groups(self, output: int | None = None) -> dict:
        """Merged tensors by the alphas they get: all K of them, or those of one output."""
        groups: dict = {}
        for t in self.tensors:
            if t.merged_elements:
                key = t.alphas if output is None else t.alphas[output]
                groups.setdefault(key, []).append(t.name)
        return groups

    def describe(self) -> str:
        """The --dry-run report."""
        alphas = ", ".join(map(_fmt_alpha, self.options.alphas))
        lines = [f"plan: {len(self.tensors)} tensors, alpha {alphas}"]
        for policy, count in sorted(self.policy_counts().items()):
            lines.append(f"  {count:6d}  {policy}")
        if self.dropped:
            lines.append(f"  {len(self.dropped):6d}  left out (not in cp): {_listing(self.dropped)}")
        groups = self.alpha_groups()
        if len(groups) > 1 or (groups and next(iter(groups)) != tuple(self.options.alphas)):
            lines.append("alphas by tensor:")
            for a, names in groups.items():
                lines.append(f"  {', '.join(map(_fmt_alpha, a))}: {len(names)} tensors ({_listing(names)})")
        for token, chat_row, cp_row in self.options.special_rows:
            lines.append(
                f"  special token {token!r}: row {cp_row} of the vocabulary tensors from chat's row {chat_row}"
            )
        for note in self.notes:
            lines.append(f"  note: {note}")
        kind = "1 file" if self.single_file else f"{len(self.shards)} shards + index"
        lines.append(f"output: {kind}, {format_bytes(self.write_nbytes)} per output")
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


def _is_expanded_vocab(cp: TensorInfo, delta: TensorInfo, delta_vocab: set[int]) -> bool:
    return (
        len(cp.shape) >= 1
        and len(cp.shape) == len(delta.shape)
        and cp.shape[1:] == delta.shape[1:]
        and cp.shape[0] > delta.shape[0]
        and delta.shape[0] in delta_vocab
    )


def _alphas_for(name: str, options: MergeOptions, rules) -> tuple[float, ...]:
    for pattern, alpha in rules:
        if pattern.search(name):
            return (float(alpha),) * len(options.alphas)
    return tuple(float(a) for a in options.alphas)


def _slice(segments: list[Segment], begin: int, end: int) -> list[Segment]:
    """The parts of `segments` inside [begin, end), with copy sources shifted to match."""
    out = []
    for s in segments:
        a, b = max(begin, s.start), min(end, s.end)
        if a < b:
            out.append(Segment(s.kind, a, b - a, s.source, s.source_start + (a - s.start)))
    return out


def _with_rows(segments: list[Segment], rows: dict[int, int], row_size: int, source: TensorInfo) -> list[Segment]:
    """Replaces whole rows (cp row -> source row) by copies from `source`."""
    out, pos = [], 0
    for cp_row, src_row in sorted(rows.items()):
        start = cp_row * row_size
        out += _slice(segments, pos, start)
        out.append(Segment("copy", start, row_size, source, src_row * row_size))
        pos = start + row_size
    return out + _slice(segments, pos, segments[-1].end if segments else 0)


def make_plan(base: Checkpoint | None, chat: Checkpoint, cp: Checkpoint, options: MergeOptions) -> Plan:
    """Plans cp + alpha * (chat - base); with base None, `chat` is a saved chat vector (cp + alpha * vector).

    Raises PlanError listing every problem found.
    """
    apply = base is None
    delta_roles = "the vector" if apply else "base/chat"
    skip = [re.compile(p) for p in options.skip]
    rules = [(re.compile(p), a) for p, a in options.alpha_for]
    delta_vocab = vocab_sizes(chat) | (set() if apply else vocab_sizes(base))
    cp_vocab = vocab_sizes(cp)
    special = {cp_row: chat_row for _, chat_row, cp_row in options.special_rows}
    delta_dtypes = VECTOR_DTYPES if apply else MERGEABLE
    problems: dict[str, list[str]] = {}
    plans: dict[str, TensorPlan] = {}

    for name, c in cp.tensors.items():
        b = None if apply else base.tensors.get(name)
        h = chat.tensors.get(name)
        out_dtype = options.dtype if (options.dtype and c.dtype in MERGEABLE) else c.dtype
        alphas = _alphas_for(name, options, rules)
        whole_cp = [Segment("copy", 0, c.numel, c, 0)]

        def plan(policy, merged=0, name=name, c=c, b=b, h=h, out_dtype=out_dtype, alphas=alphas, whole_cp=whole_cp):
            segments = whole_cp if merged == 0 else [Segment("merge", 0, merged)] + _slice(whole_cp, merged, c.numel)
            plans[name] = TensorPlan(name, policy, c.shape, out_dtype, c, b, h, alphas, segments)

        if any(p.search(name) for p in skip):
            plan(COPY_SKIPPED)
        elif h is None and (apply or b is None):
            plan(COPY_ONLY_IN_CP)
        elif not apply and (b is None or h is None):
            have, lack = ("chat", "base") if b is None else ("base", "chat")
            _problem(problems, "only-one", f"{name}: in {have} and cp, missing from {lack}")
        elif not apply and b.shape != h.shape:
            _problem(problems, "shape", f"{name}: base has shape {b.shape}, chat has {h.shape}")
        elif c.dtype not in MERGEABLE or h.dtype not in delta_dtypes or (b is not None and b.dtype not in MERGEABLE):
            if c.dtype not in MERGEABLE and h.dtype == c.dtype and (b is None or b.dtype == c.dtype):
                plan(COPY_NOT_FLOAT)
            else:
                _problem(problems, "dtype", f"{name}: dtypes {_dtypes(b, h, c, apply)}")
        elif c.shape == h.shape:
            plan(MERGE, c.numel)
        elif _is_expanded_vocab(c, h, delta_vocab):
            if options.vocab_mismatch == "shared-rows":
                plan(SHARED_ROWS, h.numel)
            elif options.vocab_mismatch == "skip":
                plan(COPY_VOCAB_SKIPPED)
            else:
                _problem(problems, "vocab", f"{name}: cp has {c.shape[0]} rows, {delta_roles} {h.shape[0]}")
        else:
            _problem(problems, "shape", f"{name}: cp has shape {c.shape}, {delta_roles} {h.shape}")

    notes = []
    if special:
        _transplant_rows(plans, special, chat, cp_vocab, skip, problems, notes)
    if problems:
        raise PlanError(_problem_message(problems))
    delta_names = chat.tensors if apply else [n for n in base.tensors if n in chat.tensors]
    dropped = [n for n in delta_names if n not in cp.tensors and not _matches(skip, n)]
    if not apply:
        lonely = [
            n
            for n in {**base.tensors, **chat.tensors}
            if n not in cp.tensors and (n in base.tensors) != (n in chat.tensors)
        ]
        if lonely:
            notes.append(
                f"{len(lonely)} tensors in only one of base and chat and not in cp are ignored: {_listing(lonely)}"
            )
    lm_head = plans.get("lm_head.weight")
    if lm_head is not None and lm_head.policy == COPY_ONLY_IN_CP:
        notes.append(f"lm_head.weight: {delta_roles} tie it to the input embedding; cp's is copied unchanged")
    shards, single = _layout(cp, plans, options.max_shard_size)
    inputs = {"vector": chat, "cp": cp} if apply else {"base": base, "chat": chat, "cp": cp}
    return Plan(options, inputs, shards, single, dropped, notes)


def _dtypes(b, h, c, apply) -> str:
    if apply:
        return f"vector {h.dtype}, cp {c.dtype}"
    return f"base {b.dtype}, chat {h.dtype}, cp {c.dtype}"


def _transplant_rows(plans, special, chat: Checkpoint, cp_vocab, skip, problems, notes):
    """--special-tokens-from chat: rows of the vocabulary tensors come from the chat model."""
    touched = []
    for name, t in plans.items():
        if not _VOCAB_NAME.search(name) or not t.shape or t.shape[0] not in cp_vocab or _matches(skip, name):
            continue
        source = chat.tensors.get(name)
        if source is None or source.dtype not in MERGEABLE or source.shape[1:] != t.shape[1:]:
            _problem(problems, "special", f"{name}: the chat model has no matching tensor to take token rows from")
            continue
        bad = [r for r in special.items() if r[0] >= t.shape[0] or r[1] >= source.shape[0]]
        if bad:
            _problem(problems, "special", f"{name}: token row {bad[0]} is outside cp's or chat's {t.shape[0]} rows")
            continue
        row_size = t.numel // t.shape[0]
        t.segments = _with_rows(t.segments, special, row_size, source)
        touched.append(name)
    if not touched and not problems.get("special"):
        notes.append("--special-tokens-from chat found no vocabulary tensor to change")


def make_extract_plan(base: Checkpoint, chat: Checkpoint, options: MergeOptions) -> Plan:
    """Plans the chat vector chat - base, laid out like chat's shards (or --max-shard-size)."""
    skip = [re.compile(p) for p in options.skip]
    out_dtype = options.dtype or "F32"
    problems: dict[str, list[str]] = {}
    plans: dict[str, TensorPlan] = {}
    notes = []
    not_float = []
    for name, h in chat.tensors.items():
        b = base.tensors.get(name)
        if _matches(skip, name):
            continue
        if b is None:
            _problem(problems, "only-one", f"{name}: in chat, missing from base")
        elif b.shape != h.shape:
            _problem(problems, "shape", f"{name}: base has shape {b.shape}, chat has {h.shape}")
        elif b.dtype not in MERGEABLE or h.dtype not in MERGEABLE:
            not_float.append(name)
        else:
            plans[name] = TensorPlan(
                name, EXTRACT, h.shape, out_dtype, None, b, h, (1.0,), [Segment("extract", 0, h.numel)]
            )
    missing = [n for n in base.tensors if n not in chat.tensors and not _matches(skip, n)]
    for name in missing:
        _problem(problems, "only-one", f"{name}: in base, missing from chat")
    if problems:
        raise PlanError(_problem_message(problems))
    if not_float:
        notes.append(f"{len(not_float)} non-float tensors have no chat vector and are left out: {_listing(not_float)}")
    shards, single = _layout(chat, plans, options.max_shard_size)
    return Plan(options, {"base": base, "chat": chat}, shards, single, [], notes)


def _problem(problems, kind, text):
    problems.setdefault(kind, []).append(text)


def _matches(patterns, name) -> bool:
    return any(p.search(name) for p in patterns)


_FIXES = {
    "only-one": "base and chat must come from the same architecture; pass --skip REGEX to copy such tensors from cp",
    "shape": "pass --skip REGEX to copy these tensors from cp unchanged, or check that the models share "
    "an architecture",
    "dtype": "non-float tensors are only copied when all inputs agree on their dtype; pass --skip REGEX "
    "to copy them from cp",
    "vocab": "cp's vocabulary is expanded; choose --vocab-mismatch shared-rows (merge the shared rows, keep cp's "
    "extra rows) or skip (copy these tensors from cp)",
    "special": "check that --chat is the chat model whose tokenizer was read, or drop --special-tokens-from",
}

_TITLES = {
    "only-one": "tensors present in only one of base and chat",
    "shape": "tensors whose shapes differ",
    "dtype": "tensors whose dtypes cannot be merged",
    "vocab": "vocabulary tensors with more rows in cp (--vocab-mismatch error)",
    "special": "vocabulary tensors that cannot take special-token rows from chat",
}


def _problem_message(problems: dict[str, list[str]]) -> str:
    parts = ["cannot pair the checkpoints:"]
    for kind, items in problems.items():
        parts.append(f"{len(items)} {_TITLES[kind]}:")
        parts.extend(f"  - {item}" for item in items[:_MAX_LISTED])
        if len(items) > _MAX_LISTED:
            parts.append(f"  ... and {len(items) - _MAX_LISTED} more")
        parts.append(f"  fix: {_FIXES[kind]}")
    return "\n".join(parts)


def _layout(source: Checkpoint, plans: dict[str, TensorPlan], max_shard_size: int | None):
    """Output shards: the source's own files (same tensors), or re-packed under max_shard_size."""
    if max_shard_size is not None:
        return _pack(list(plans.values()), max_shard_size)
    groups = [[plans[n] for n in f.tensors if n in plans] for f in source.files]
    names = [os.path.basename(f.path) for f in source.files]
    if not all(groups):  # a shard lost all its tensors (extract leaves non-float ones out): renumber
        groups = [g for g in groups if g]
        names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    if len(groups) <= 1:
        return [OutputShard(SINGLE_NAME, groups[0] if groups else [])], True
    return [OutputShard(n, g) for n, g in zip(names, groups)], False


def _pack(tensors: list[TensorPlan], max_shard_size: int):
    groups: list[list[TensorPlan]] = [[]]
    size = 0
    for t in tensors:
        if groups[-1] and size + t.out_nbytes > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.out_nbytes
    if len(groups) == 1:
        return [OutputShard(SINGLE_NAME, groups[0])], True
    n = len(groups)
    return [OutputShard(f"model-{i + 1:05d}-of-{n:05d}.safetensors", g) for i, g in enumerate(groups)], False
