"""Vocabulary tensors: expanded vocabularies (cp with more rows than base and chat) and the rows of special
tokens taken from the chat model."""

from __future__ import annotations

import re

from ..dtypes import MERGEABLE
from ..read.checkpoint import Checkpoint
from ..read.header import TensorInfo
from .problems import Problems
from .types import Segment

# Tensors whose first dimension is the vocabulary (Llama, GPT-2, BLOOM, GPT-NeoX, LLaMA-1, Mistral...).
EMBED_NAME = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings)\.weight$")
VOCAB_NAME = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings|lm_head|embed_out)\.weight$")


def vocab_sizes(ckpt: Checkpoint) -> set[int]:
    """Vocabulary sizes a checkpoint declares (config.json) or shows (embedding rows)."""
    sizes = set()
    for cfg in (ckpt.config, ckpt.config.get("text_config") or {}):
        v = cfg.get("vocab_size") if isinstance(cfg, dict) else None
        if isinstance(v, int):
            sizes.add(v)
    for name, t in ckpt.tensors.items():
        if EMBED_NAME.search(name) and t.shape:
            sizes.add(t.shape[0])
    return sizes


def is_expanded_vocab(cp: TensorInfo, delta: TensorInfo, delta_vocab: set[int]) -> bool:
    """cp's tensor has the delta's rows and more, and the delta's row count is a vocabulary size."""
    return (
        len(cp.shape) >= 1
        and len(cp.shape) == len(delta.shape)
        and cp.shape[1:] == delta.shape[1:]
        and cp.shape[0] > delta.shape[0]
        and delta.shape[0] in delta_vocab
    )


def slice_segments(segments: list[Segment], begin: int, end: int) -> list[Segment]:
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
        out += slice_segments(segments, pos, start)
        out.append(Segment("copy", start, row_size, source, src_row * row_size))
        pos = start + row_size
    return out + slice_segments(segments, pos, segments[-1].end if segments else 0)


def transplant_rows(plans, special: dict[int, int], chat: Checkpoint, cp_vocab, skip, problems: Problems, notes):
    """--special-tokens-from chat: rows of the vocabulary tensors come from the chat model."""
    touched = []
    for name, t in plans.items():
        rows = t.cp.shape[0] if t.cp is not None and t.cp.shape else None  # cp's rows (appended ones come after)
        if not VOCAB_NAME.search(name) or rows not in cp_vocab or any(p.search(name) for p in skip):
            continue
        source = chat.tensors.get(name)
        if source is None or source.dtype not in MERGEABLE or source.shape[1:] != t.shape[1:]:
            problems.add("special", f"{name}: the chat model has no matching tensor to take token rows from")
            continue
        bad = [r for r in special.items() if not (0 <= r[0] < rows and 0 <= r[1] < source.shape[0])]
        if bad:
            problems.add("special", f"{name}: token row {bad[0]} is outside cp's or chat's {rows} rows")
            continue
        row_size = t.numel // t.shape[0]
        t.segments = _with_rows(t.segments, special, row_size, source)
        touched.append(name)
    if not touched and not problems.has("special"):
        notes.append("--special-tokens-from chat found no vocabulary tensor to change")


def is_added_rows(name: str, base: TensorInfo, chat: TensorInfo, cp: TensorInfo) -> bool:
    """A vocabulary tensor where chat has rows base lacks (added tokens), and cp has at least base's rows."""
    return (
        bool(VOCAB_NAME.search(name))
        and len(base.shape) >= 1
        and base.shape[1:] == chat.shape[1:] == cp.shape[1:]
        and chat.shape[0] > base.shape[0]
        and cp.shape[0] >= base.shape[0]
    )


def append_rows(t, appended):
    """Grows a vocabulary tensor's plan by chat's rows of the appended tokens, copied as they are."""
    if not appended:
        return
    rows = t.shape[0]
    row_size = t.numel // rows if rows else 0
    if appended[0].row != rows:  # the tokens' ids start right after cp's embedding rows
        raise ValueError(f"{t.name}: cp's vocabulary tensors disagree on their rows ({rows} against the embedding's "
                         f"{appended[0].row}); cannot append the chat model's added tokens")  # fmt: skip
    t.shape = (rows + len(appended), *t.shape[1:])
    for i, token in enumerate(appended):
        t.segments.append(Segment("copy", (rows + i) * row_size, row_size, t.chat, token.chat_row * row_size))
