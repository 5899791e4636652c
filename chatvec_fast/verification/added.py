"""verify's own rule for the tokens a chat model added (not plan/added_tokens.py's code).

chat's embedding has rows base's lacks; the tokens chat's tokenizer gives those ids are appended after cp's
rows, in the order of their chat ids, unless cp's tokenizer already has them (README, "Added tokens").
--added-tokens drop (or error) appends nothing.
"""

from __future__ import annotations

import re

from ..read.checkpoint import Checkpoint
from ..read.model_files import has_vocab, load_vocab

# The input embedding, by the names of the architectures the merge knows (Llama, GPT-2, BLOOM, NeoX, LLaMA-1).
EMBEDDING = re.compile(r"(?:^|\.)(?:embed_tokens|wte|word_embeddings|embed_in|tok_embeddings)\.weight$")
# Every tensor whose rows are the vocabulary: the embedding and the output head.
VOCABULARY = re.compile(
    r"(?:^|\.)(?:embed_tokens|wte|word_embeddings|embed_in|tok_embeddings|lm_head|embed_out)\.weight$"
)


def embedding_rows(ckpt: Checkpoint) -> int | None:
    for name in sorted(ckpt.tensors):
        info = ckpt.tensors[name]
        if EMBEDDING.search(name) and info.shape:
            return info.shape[0]
    return None


def added_tokens(ckpts: dict[str, Checkpoint], policy: str) -> list[tuple[str, int, int]]:
    """(token, chat row, output row) of each token appended to cp's vocabulary tensors."""
    if policy != "append" or not {"base", "chat", "cp"} <= set(ckpts):
        return []
    base, chat, cp = (embedding_rows(ckpts[r]) for r in ("base", "chat", "cp"))
    if base is None or chat is None or cp is None or chat <= base or not has_vocab(ckpts["chat"].directory):
        return []
    cp_tokens = load_vocab(ckpts["cp"].directory) if has_vocab(ckpts["cp"].directory) else {}
    by_row = sorted((row, token) for token, row in load_vocab(ckpts["chat"].directory).items() if base <= row < chat)
    new = [(token, row) for row, token in by_row if token not in cp_tokens]
    return [(token, row, cp + i) for i, (token, row) in enumerate(new)]
