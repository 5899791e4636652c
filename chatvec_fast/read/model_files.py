"""A model directory's other files, read as JSON: which to carry over, token ids, special tokens, the chat
template.

The Chat Vector paper's practice for an expanded vocabulary keeps cp's
tokenizer but takes the chat model's chat template and eos, and the chat
model's embedding rows of the special tokens (its released script takes
those rows from the base model by mistake). Tokens are matched by string,
since cp's ids may differ from chat's.
"""

from __future__ import annotations

import fnmatch
import json
import os

from ..errors import InputError
from ..filenames import CHAT_TEMPLATE_FILES, TOKENIZER_CONFIG, TOKENIZER_JSON

# Config, generation config, tokenizer (SentencePiece, BPE, tiktoken), chat
# templates, processors, and custom modeling code for trust_remote_code models.
AUX_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.tiktoken",
    "chat_template*",
    "preprocessor_config.json",
    "processor_config.json",
    "*.py",
)
_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


def aux_files(model_dir: str) -> list[str]:
    """Names of the files in model_dir to carry into the output."""
    if not os.path.isdir(model_dir):
        return []
    names = []
    for name in sorted(os.listdir(model_dir)):
        if os.path.isfile(os.path.join(model_dir, name)) and any(fnmatch.fnmatch(name, p) for p in AUX_PATTERNS):
            names.append(name)
    return names


def read_json(path: str) -> dict:
    """A JSON object from a tokenizer or config file; InputError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read tokenizer file: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    return doc


def optional_json(model_dir: str, name: str) -> dict:
    path = os.path.join(model_dir, name)
    return read_json(path) if os.path.isfile(path) else {}


def token_text(value) -> str | None:
    """A special-token entry as a string: either "</s>" or {"content": "</s>", ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def has_vocab(model_dir: str) -> bool:
    return os.path.isfile(os.path.join(model_dir, TOKENIZER_JSON))


def load_vocab(model_dir: str) -> dict[str, int]:
    """Token string -> id, from tokenizer.json (BPE, WordPiece, WordLevel or Unigram) and its added tokens."""
    path = os.path.join(model_dir, TOKENIZER_JSON)
    if not os.path.isfile(path):
        raise InputError(
            f"{model_dir}: no {TOKENIZER_JSON}; matching special tokens needs a fast tokenizer file "
            "(save one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
        )
    doc = read_json(path)
    vocab = (doc.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        tokens = {str(k): int(v) for k, v in vocab.items()}
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
        tokens = {entry[0]: i for i, entry in enumerate(vocab) if isinstance(entry, list) and entry}
    else:
        raise InputError(f"{path}: model.vocab is missing or not a map or list")
    for added in doc.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("content"), str) and isinstance(added.get("id"), int):
            tokens[added["content"]] = added["id"]
    return tokens


def chat_template(model_dir: str):
    """(template, where it was found) or (None, None). A template is a string or a list of named templates."""
    config = optional_json(model_dir, TOKENIZER_CONFIG)
    if config.get("chat_template"):
        return config["chat_template"], TOKENIZER_CONFIG
    jinja = os.path.join(model_dir, CHAT_TEMPLATE_FILES[0])
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read(), CHAT_TEMPLATE_FILES[0]
    doc = optional_json(model_dir, CHAT_TEMPLATE_FILES[1])
    if doc.get("chat_template"):
        return doc["chat_template"], CHAT_TEMPLATE_FILES[1]
    return None, None


def eos_token(model_dir: str):
    """The eos entry of tokenizer_config.json as written there (a string or an AddedToken dict), or None."""
    return optional_json(model_dir, TOKENIZER_CONFIG).get("eos_token")


def special_tokens(model_dir: str) -> list[str]:
    """The model's special tokens: bos, eos, pad, unk, additional ones, added tokens marked special, and
    added tokens its chat template uses. In a stable order, without repeats."""
    config = optional_json(model_dir, TOKENIZER_CONFIG)
    token_map = optional_json(model_dir, "special_tokens_map.json")
    found: list[str] = []
    for source in (config, token_map):
        for key in _SPECIAL_KEYS:
            found.append(token_text(source.get(key)))
        for extra in source.get("additional_special_tokens") or []:
            found.append(token_text(extra))
    tokenizer = optional_json(model_dir, TOKENIZER_JSON)
    template, _ = chat_template(model_dir)
    template_text = json.dumps(template) if template is not None else ""
    for added in tokenizer.get("added_tokens") or []:
        content = added.get("content") if isinstance(added, dict) else None
        if isinstance(content, str) and (added.get("special") or (content and content in template_text)):
            found.append(content)
    return list(dict.fromkeys(t for t in found if t))


def special_rows(chat_dir: str, cp_dir: str) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(token, chat id, cp id) for each special token of the chat model that cp's vocabulary also has,
    and the special tokens cp lacks."""
    chat_vocab, cp_vocab = load_vocab(chat_dir), load_vocab(cp_dir)
    rows, missing = [], []
    for token in special_tokens(chat_dir):
        if token in chat_vocab and token in cp_vocab:
            rows.append((token, chat_vocab[token], cp_vocab[token]))
        elif token in chat_vocab:
            missing.append(token)
    return rows, missing
