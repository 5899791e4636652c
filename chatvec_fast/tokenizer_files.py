"""Tokenizer files, read as JSON: token ids by string, the special tokens, the chat template.

The Chat Vector paper's practice for an expanded vocabulary keeps cp's
tokenizer but takes the chat model's chat template and eos, and the chat
model's embedding rows of the special tokens (its released script takes
those rows from the base model by mistake). Tokens are matched by string,
since cp's ids may differ from chat's.
"""

from __future__ import annotations

import json
import os

from .errors import InputError
from .writer import write_json

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read tokenizer file: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    return doc


def _optional_json(model_dir: str, name: str) -> dict:
    path = os.path.join(model_dir, name)
    return _read_json(path) if os.path.isfile(path) else {}


def token_text(value) -> str | None:
    """A special-token entry as a string: either "</s>" or {"content": "</s>", ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def load_vocab(model_dir: str) -> dict[str, int]:
    """Token string -> id, from tokenizer.json (BPE, WordPiece, WordLevel or Unigram) and its added tokens."""
    path = os.path.join(model_dir, TOKENIZER_JSON)
    if not os.path.isfile(path):
        raise InputError(
            f"{model_dir}: no {TOKENIZER_JSON}; matching special tokens needs a fast tokenizer file "
            "(save one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
        )
    doc = _read_json(path)
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
    config = _optional_json(model_dir, TOKENIZER_CONFIG)
    if config.get("chat_template"):
        return config["chat_template"], TOKENIZER_CONFIG
    jinja = os.path.join(model_dir, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read(), "chat_template.jinja"
    doc = _optional_json(model_dir, "chat_template.json")
    if doc.get("chat_template"):
        return doc["chat_template"], "chat_template.json"
    return None, None


def special_tokens(model_dir: str) -> list[str]:
    """The model's special tokens: bos, eos, pad, unk, additional ones, added tokens marked special, and
    added tokens its chat template uses. In a stable order, without repeats."""
    config = _optional_json(model_dir, TOKENIZER_CONFIG)
    token_map = _optional_json(model_dir, "special_tokens_map.json")
    found: list[str] = []
    for source in (config, token_map):
        for key in _SPECIAL_KEYS:
            found.append(token_text(source.get(key)))
        for extra in source.get("additional_special_tokens") or []:
            found.append(token_text(extra))
    tokenizer = _optional_json(model_dir, TOKENIZER_JSON)
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


def take_chat_template(chat_dir: str, cp_dir: str, out_dir: str) -> dict:
    """Puts the chat model's chat template and eos token into the output's tokenizer files (cp's, already
    copied there). Returns what was done, for the report."""
    template, where = chat_template(chat_dir)
    done: dict = {"from": "chat", "found_in": where}
    if template is None:
        return {"from": "cp", "reason": "the chat model has no chat template"}
    config_path = os.path.join(out_dir, TOKENIZER_CONFIG)
    config = _read_json(config_path) if os.path.isfile(config_path) else {}
    config["chat_template"] = template
    for name in _TEMPLATE_FILES:  # cp's own template files would compete with the new one
        stale = os.path.join(out_dir, name)
        if os.path.isfile(stale):
            os.unlink(stale)
            done.setdefault("removed", []).append(name)
    chat_config = _optional_json(chat_dir, TOKENIZER_CONFIG)
    eos = token_text(chat_config.get("eos_token"))
    if eos is not None:
        cp_vocab = load_vocab(cp_dir) if os.path.isfile(os.path.join(cp_dir, TOKENIZER_JSON)) else {}
        if eos in cp_vocab:
            config["eos_token"] = chat_config["eos_token"]
            done["eos_token"] = {"token": eos, "id": cp_vocab[eos]}
            _set_generation_eos(out_dir, cp_vocab[eos], done)
        else:
            done["eos_token"] = {"token": eos, "kept_cp": True, "reason": "cp's vocabulary lacks it"}
    write_json(config_path, config)
    return done


def _set_generation_eos(out_dir: str, eos_id: int, done: dict):
    path = os.path.join(out_dir, "generation_config.json")
    if not os.path.isfile(path):
        return
    config = _read_json(path)
    current = config.get("eos_token_id")
    ids = current if isinstance(current, list) else ([current] if current is not None else [])
    if eos_id not in ids:
        config["eos_token_id"] = [*ids, eos_id] if ids else eos_id
        write_json(path, config)
        done["generation_eos_token_id"] = config["eos_token_id"]
