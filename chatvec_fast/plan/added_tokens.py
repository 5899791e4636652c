"""Chat models that added tokens: a chat vocabulary larger than base's (ChatML's <|im_start|> and <|im_end|>
appended to a 32,000-row Mistral: 32,002 rows).

Base has no rows for those tokens, so there is no chat vector for them: by default (--added-tokens append)
chat's rows are taken as they are, bit for bit, and appended to cp's embedding and lm_head, and the tokens
to cp's tokenizer, where cp's tokenizer lacks them. The shared rows merge as usual; cp's own extra rows (an
expanded vocabulary) follow --vocab-mismatch. Tokens are matched by string, through the tokenizers.

Every vocabulary tensor of the output has the same rows, and the tokenizer's ids fit them: appended rows go
to every vocabulary tensor or to none. A policy that keeps cp's rows in one of them (--skip, --vocab-mismatch
skip, an lm_head only cp has) while tokens are appended stops the run before any work, naming both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..filenames import TOKENIZER_JSON
from ..read.checkpoint import Checkpoint
from ..read.model_files import has_vocab, load_vocab, optional_json, short
from .options import MergeOptions
from .problems import Problems, listing
from .types import ADDED_ROWS, COPY_ONLY_IN_CP, COPY_SKIPPED, COPY_VOCAB_SKIPPED, MERGE, SHARED_ROWS
from .vocab import EMBED_NAME, VOCAB_NAME


@dataclass(frozen=True)
class AddedToken:
    """A token of chat's whose row base does not have: appended to the output at row `row`."""

    token: str
    chat_row: int
    row: int  # in the output's vocabulary tensors (cp's rows, then the appended ones)
    entry: tuple = ()  # chat's added_tokens flags (special, lstrip, ...), as (key, value) pairs


def embedding_rows(ckpt: Checkpoint) -> int | None:
    rows = [t.shape[0] for name, t in ckpt.tensors.items() if EMBED_NAME.search(name) and t.shape]
    return rows[0] if rows else None


def find_added_tokens(base: Checkpoint, chat: Checkpoint, cp: Checkpoint) -> tuple[list[AddedToken], list[str]]:
    """(tokens to append to cp, tokens of chat's added rows that cp's tokenizer already has)."""
    base_rows, chat_rows, cp_rows = embedding_rows(base), embedding_rows(chat), embedding_rows(cp)
    if base_rows is None or chat_rows is None or cp_rows is None or chat_rows <= base_rows:
        return [], []
    if not has_vocab(chat.directory):
        raise InputError(
            f"chat {chat.path} has {chat_rows - base_rows} more vocabulary rows than base ({chat_rows} against "
            f"{base_rows}) but no tokenizer.json to say which tokens they hold; add chat's tokenizer.json, or pass "
            "--added-tokens drop (or --skip the vocabulary tensors)"
        )
    chat_vocab = load_vocab(chat.directory)
    cp_vocab = load_vocab(cp.directory) if has_vocab(cp.directory) else {}
    entries = {e.get("content"): e for e in optional_json(chat.directory, TOKENIZER_JSON).get("added_tokens") or []
               if isinstance(e, dict)}  # fmt: skip
    added = sorted((row, token) for token, row in chat_vocab.items() if base_rows <= row < chat_rows)
    appended, present = [], []
    for row, token in added:
        if token in cp_vocab:
            present.append(token)
            continue
        flags = {k: v for k, v in entries.get(token, {}).items() if k not in ("id", "content")}
        appended.append(AddedToken(token, row, cp_rows + len(appended), tuple(sorted(flags.items()))))
    return appended, present


def added_rows_problem(name: str, rows: int) -> str:
    return (f"{name}: chat has {rows} rows more than base (tokens added to the chat model); --added-tokens append "
            "takes them (the default), drop leaves them out")  # fmt: skip


def added_rows_policy(name: str, base, cp, options: MergeOptions, appended, problems: Problems):
    """(policy, merged elements) of a vocabulary tensor where chat has rows base lacks, or None after recording
    a problem. The rows base has merge; cp's rows past base's (an expanded vocabulary) follow --vocab-mismatch,
    as they do when chat added nothing."""
    if options.added_tokens == "error":
        return None  # recorded for every such tensor, skipped or not (pairing.py)
    if cp.shape[0] > base.shape[0]:
        if options.vocab_mismatch == "error":
            problems.add("vocab", f"{name}: cp has {cp.shape[0]} rows, base {base.shape[0]} (chat "
                                  "added tokens too)")  # fmt: skip
            return None
        if options.vocab_mismatch == "skip":
            return COPY_VOCAB_SKIPPED, 0
        return (ADDED_ROWS if appended else SHARED_ROWS), base.numel
    return (ADDED_ROWS if appended else MERGE), base.numel


def appended_rows_conflicts(plans: dict, appended, skip, problems: Problems):
    """Every vocabulary tensor with cp's embedding rows must take the appended rows: one that keeps cp's rows
    would leave the tokenizer's new ids without a row there (transformers refuses such a model)."""
    if not appended:
        return
    rows, n = appended[0].row, len(appended)
    where = f"row {rows}" if n == 1 else f"rows {rows}-{rows + n - 1}"
    tokens = listing([short(t.token) for t in appended])
    adds = f"--added-tokens append adds {n} token{'s' if n != 1 else ''} ({tokens}) as {where}"
    for name, t in plans.items():
        if not VOCAB_NAME.search(name) or t.cp is None or not t.cp.shape or t.cp.shape[0] != rows:
            continue
        if t.shape[0] == rows + n:
            continue
        if t.policy == COPY_SKIPPED:
            rule = next(p.pattern for p in skip if p.search(name))
            problems.add("appended", f"--skip {rule!r} keeps cp's {rows} rows of {name}, but {adds}: pass "
                                     "--added-tokens drop, or do not skip the vocabulary tensors")  # fmt: skip
        elif t.policy == COPY_VOCAB_SKIPPED:
            problems.add("appended", f"--vocab-mismatch skip copies cp's {rows} rows of {name}, but {adds}: pass "
                                     "--added-tokens drop, or --vocab-mismatch shared-rows")  # fmt: skip
        elif t.policy == COPY_ONLY_IN_CP:
            problems.add("appended", f"{name} is only in cp (base and chat tie it to the input embedding), so it "
                                     f"has no rows of chat's for the added tokens, but {adds}: pass --added-tokens "
                                     "drop")  # fmt: skip
        else:
            problems.add("appended", f"{name} ({t.policy}) keeps cp's {rows} rows, but {adds}: pass --added-tokens "
                                     "drop")  # fmt: skip
