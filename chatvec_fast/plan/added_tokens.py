"""Chat models that added tokens: a chat vocabulary larger than base's (ChatML's <|im_start|> and <|im_end|>
appended to a 32,000-row Mistral: 32,002 rows).

Base has no rows for those tokens, so there is no chat vector for them: by default (--added-tokens append)
chat's rows are taken as they are, bit for bit, and appended to cp's embedding and lm_head, and the tokens
to cp's tokenizer, where cp's tokenizer lacks them. The shared rows merge as usual; cp's own extra rows (an
expanded vocabulary) stay cp's. Tokens are matched by string, through the tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..filenames import TOKENIZER_JSON
from ..read.checkpoint import Checkpoint
from ..read.model_files import has_vocab, load_vocab, optional_json
from .vocab import EMBED_NAME


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
