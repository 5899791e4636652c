"""A tokenizer in Llama's layout for the synthetic models: BPE with byte fallback, as Llama 2 ships it.

    ids 0-2      <unk> <s> </s>
    ids 3-258    <0x00> ... <0xFF>   (byte fallback: any text encodes, nothing maps to <unk>)
    ids 259-     pieces ("▁", "e", ..., "▁t", "▁th", "▁the", ...), each piece after 259 one BPE merge

Words start with Metaspace's "▁". The ChatML tokens <|im_start|> and <|im_end|> are either reserved at the
end of every model's vocabulary (as Llama 3 reserves special tokens: layout "reserved"), or added by the chat
model after base's rows (layout "added": the chat model has two rows more). A vocabulary expanded past base's
rows (cp) keeps base's ids and continues the pieces after them, as Chinese-LLaMA extends Llama.

Written as plain JSON in the form the tokenizers library writes (so writing one needs no tokenizers
install); transformers' LlamaTokenizerFast loads it, and encodes and decodes real text.
"""

from __future__ import annotations

import itertools
import json
import os

SPECIALS = ("<unk>", "<s>", "</s>")
CHATML = ("<|im_start|>", "<|im_end|>")
FIRST_PIECE = len(SPECIALS) + 256
# ChatML as most chat models write it (OpenHermes, Qwen): a turn ends with <|im_end|> and a newline
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_SPACE = "\u2581"  # Metaspace's "▁", which stands for the space before a word
# Letters roughly by English frequency first, so that the pieces of a small vocabulary are the common ones
_CHARS = _SPACE + "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,!?'-:;()"
_WORDS = ("the", "of", "and", "to", "in", "is", "that", "it", "for", "you", "was", "on", "are", "with", "as", "be",
          "at", "this", "have", "from", "or", "by", "not", "what", "all", "we", "can", "there", "an", "which", "do",
          "how", "if", "will", "about", "then", "so", "would", "like", "time", "hello", "world", "model", "chat",
          "language", "user", "assistant", "system", "merge", "vector")  # fmt: skip
_FLAGS = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}


def _pieces():
    """Every piece in order, with the merge that makes it (None for a single character): characters, the
    prefixes of common words, then every extension of a piece by one letter, shortest first, without end."""
    seen = set()
    for ch in _CHARS:
        seen.add(ch)
        yield ch, None
    for word in _WORDS:
        text = _SPACE + word
        for k in range(2, len(text) + 1):
            if text[:k] not in seen:
                seen.add(text[:k])
                yield text[:k], (text[: k - 1], text[k - 1])
    for length in itertools.count(2):
        for prefix in sorted((p for p in seen if len(p) == length - 1), key=_order):
            for ch in _CHARS[1:]:
                if prefix + ch not in seen:
                    seen.add(prefix + ch)
                    yield prefix + ch, (prefix, ch)


def _order(piece: str) -> tuple:
    return tuple(_CHARS.index(c) for c in piece)


def llama_vocabulary(rows: int, base_rows: int | None = None, chatml: str | None = "reserved"):
    """(vocab: token -> id, merges, added: [(id, token)]) of a tokenizer for `rows` embedding rows.

    base_rows: the rows base has (a chat model with added tokens, or an expanded cp, has more); chatml:
    "reserved" (the ChatML tokens are base's last two ids), "added" (they follow base's rows) or None."""
    base_rows = base_rows or rows
    if base_rows < FIRST_PIECE + len(_CHARS) + len(CHATML):
        raise ValueError(f"a Llama-layout vocabulary needs at least {FIRST_PIECE + len(_CHARS) + len(CHATML)} rows "
                         f"(specials, 256 byte tokens, {len(_CHARS)} characters), got {base_rows}")  # fmt: skip
    ids = {t: i for i, t in enumerate(SPECIALS)}
    ids.update({f"<0x{b:02X}>": len(SPECIALS) + b for b in range(256)})
    chatml_at = {"reserved": base_rows - len(CHATML), "added": base_rows}.get(chatml)
    added = [(i, t) for i, t in enumerate(SPECIALS)]
    if chatml_at is not None:
        added += [(chatml_at + k, t) for k, t in enumerate(CHATML)]
    taken = {i for i, _ in added}
    merges, stream = [], _pieces()
    for i in range(FIRST_PIECE, rows):
        if i in taken:
            continue
        piece, merge = next(stream)
        ids[piece] = i
        if merge is not None:
            merges.append(f"{merge[0]} {merge[1]}")
    for i, t in added:
        if i < rows:
            ids[t] = i
    return ids, merges, [(i, t) for i, t in added if i < rows]


def tokenizer_json(rows: int, base_rows: int | None = None, chatml: str | None = "reserved") -> dict:
    """tokenizer.json of Llama 2 as transformers converts it (legacy=False): Metaspace, byte fallback, <s>
    prepended. Special tokens are in the model's vocabulary and among the added tokens, as Llama's <s> is
    (transformers 5 renumbers added tokens that leave a gap in the model's ids)."""
    vocab, merges, added = llama_vocabulary(rows, base_rows, chatml)
    bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
    seq = {"Sequence": {"id": "A", "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, **_FLAGS} for i, t in added],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": _SPACE, "prepend_scheme": "first", "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, seq],
            "pair": [bos, seq, bos, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": _SPACE}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },  # fmt: skip
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },  # fmt: skip
    }


def write_llama_tokenizer(directory: str, rows: int, *, base_rows: int | None = None, chatml: str | None = "reserved",
                          chat: bool = False):  # fmt: skip
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json of a Llama tokenizer for `rows`
    embedding rows; the chat model's (chat=True) has a ChatML chat template and <|im_end|> as its eos."""
    doc = tokenizer_json(rows, base_rows, chatml)
    with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
    eos = "<|im_end|>" if chat else "</s>"
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(e["id"]): {k: v for k, v in e.items() if k != "id"} for e in doc["added_tokens"]},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "legacy": False,
        "model_max_length": 2048,
        "pad_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "unk_token": "<unk>",
    }
    if chat:
        config["chat_template"] = CHAT_TEMPLATE
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, ensure_ascii=False)
    entry = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    special = {key: {"content": token, **entry} for key, token in (("bos_token", "<s>"), ("eos_token", eos),
                                                                    ("unk_token", "<unk>"))}  # fmt: skip
    with open(os.path.join(directory, "special_tokens_map.json"), "w", encoding="utf-8") as fh:
        json.dump(special, fh, indent=2, ensure_ascii=False)
    return doc
