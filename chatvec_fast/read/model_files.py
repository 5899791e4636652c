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
import reprlib

from ..errors import InputError
from ..filenames import (
    CHAT_TEMPLATE_FILES,
    CONFIG_NAME,
    REPORT_NAME,
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    VOCABULARY_FILES,
)
from ..regular_files import refuse_special_files, same_contents
from .json_file import load_json, load_json_object
from .text_file import read_utf8

_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")
MAX_TEMPLATE_BYTES = 16 << 20  # chat_template.jinja: real ones are a few KB (the largest seen ~20 KB)
MAX_TOKEN_ID = 1 << 31  # the largest vocabularies have ~260,000 tokens; an id past 2^31 indexes nothing real
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
short = _repr.repr  # a bounded repr of a value the file controls


def model_files(model_dir: str, patterns, exclude=()) -> list[str]:
    """Names of the regular files in model_dir matching `patterns`, minus `exclude` (a checkpoint's own weight
    files: a shard may be named like anything, tokenizer.json included)."""
    if not os.path.isdir(model_dir):
        return []
    refuse_special_files(model_dir)  # dirs no checkpoint opening checked (a vector's chat/ folder)
    names = []
    for name in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, name)
        if name in exclude or os.path.islink(path) and not os.path.isfile(path):
            continue
        if os.path.isfile(path) and any(fnmatch.fnmatch(name, p) for p in patterns):
            names.append(name)
    return names


def has_tokenizer(model_dir: str, exclude=()) -> bool:
    """Whether model_dir holds a tokenizer that can load (not just a tokenizer_config.json)."""
    return bool(model_files(model_dir, VOCABULARY_FILES, exclude))


def read_json(path: str) -> dict:
    """A JSON object from a tokenizer or config file; InputError naming the file otherwise."""
    return load_json_object(path, "tokenizer or config file")


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


def _token_id(path: str, token, value, where: str) -> int:
    """A token id from a tokenizer file, which is input like any other: a non-negative integer, else an error
    naming the file and the token (a negative id would otherwise address the bytes before a tensor)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_TOKEN_ID:
        raise InputError(
            f"{path}: {where} gives token {short(token)} the id {short(value)}; token ids are integers from 0 to "
            f"{MAX_TOKEN_ID - 1}. The tokenizer file is corrupt: re-download it, or save it again with transformers"
        )
    return value


def _read_vocab(model_dir: str) -> tuple[str, dict[str, int], list[tuple[str, int]]]:
    """(path, the model's token -> id, the added tokens as (content, id) in the file's order)."""
    path = os.path.join(model_dir, TOKENIZER_JSON)
    if not os.path.isfile(path):
        raise InputError(
            f"{model_dir}: no {TOKENIZER_JSON}; matching special tokens needs a fast tokenizer file "
            "(save one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
        )
    doc = read_json(path)
    model = doc.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, dict):
        tokens = {str(k): _token_id(path, k, v, "model.vocab") for k, v in vocab.items()}
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
        tokens = {}
        for i, entry in enumerate(vocab):
            if not (isinstance(entry, list) and entry and isinstance(entry[0], str)):
                raise InputError(f"{path}: model.vocab[{i}] is {entry!r}; a Unigram entry is [piece, score]")
            tokens[entry[0]] = i
    else:
        raise InputError(f"{path}: model.vocab is missing or not a map or list")
    added = doc.get("added_tokens") or []
    if not isinstance(added, list):
        raise InputError(f"{path}: added_tokens is a {type(added).__name__}; expected a list")
    found = []
    for i, entry in enumerate(added):
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise InputError(f"{path}: added_tokens[{i}] is {entry!r}; expected an object with a string 'content'")
        found.append((entry["content"], _token_id(path, entry["content"], entry.get("id"), f"added_tokens[{i}]")))
    return path, tokens, found


def load_vocab(model_dir: str) -> dict[str, int]:
    """Token string -> id, from tokenizer.json (BPE, WordPiece, WordLevel or Unigram) and its added tokens."""
    _, tokens, added = _read_vocab(model_dir)
    return {**tokens, **dict(added)}


def next_token_id(model_dir: str) -> int:
    """The id the tokenizers library gives the next token added to tokenizer.json. Added tokens the model's
    vocabulary lacks take the ids after it, one after another, whatever ids the file writes for them (its
    AddedVocabulary): a tokenizer of 32,000 tokens gives 32000 even where the embedding is padded to 32,064."""
    _, tokens, added = _read_vocab(model_dir)
    size, given = len(tokens), {}

    def after(given) -> int:
        top = max(given.values(), default=None)
        return top + 1 if top is not None and (top >= size or size == 0) else size

    for content, _ in added:
        if content not in given:
            given[content] = tokens[content] if content in tokens else after(given)
    return after(given)


def chat_template(model_dir: str):
    """(template, where it was found) or (None, None). A template is a string or a list of named templates."""
    config = optional_json(model_dir, TOKENIZER_CONFIG)
    if config.get("chat_template"):
        return config["chat_template"], TOKENIZER_CONFIG
    jinja = os.path.join(model_dir, CHAT_TEMPLATE_FILES[0])
    if os.path.lexists(jinja):
        text = read_utf8(jinja, jinja, "chat template", MAX_TEMPLATE_BYTES, "any real chat template needs")
        return text, CHAT_TEMPLATE_FILES[0]
    doc = optional_json(model_dir, CHAT_TEMPLATE_FILES[1])
    if doc.get("chat_template"):
        return doc["chat_template"], CHAT_TEMPLATE_FILES[1]
    return None, None


def eos_token(model_dir: str):
    """The eos entry of tokenizer_config.json as written there (a string or an AddedToken dict), or None."""
    return optional_json(model_dir, TOKENIZER_CONFIG).get("eos_token")


def _special_entry(path: str, key: str, value):
    """A special-token entry: a string, an AddedToken object, or null; anything else is an error."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise InputError(f"{path}: {key} is {value!r}; expected a token string or an object with a string 'content'")


def special_tokens(model_dir: str) -> list[str]:
    """The model's special tokens: bos, eos, pad, unk, additional ones, added tokens marked special, and
    added tokens its chat template uses. In a stable order, without repeats."""
    found: list[str] = []
    for name in (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP):
        source, path = optional_json(model_dir, name), os.path.join(model_dir, name)
        for key in _SPECIAL_KEYS:
            found.append(_special_entry(path, key, source.get(key)))
        extra = source.get("additional_special_tokens") or []
        if not isinstance(extra, list):
            raise InputError(f"{path}: additional_special_tokens is {extra!r}; expected a list of tokens")
        for i, entry in enumerate(extra):
            found.append(_special_entry(path, f"additional_special_tokens[{i}]", entry))
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


# The metadata key under which vectors saved before the count moved to the report carried it in every shard.
_OLD_INEXACT_KEY = "chatvec_fast.inexact_elements"


def vector_inexact(vector) -> int:
    """How many elements a saved vector's dtype rounded when `extract` wrote it: its report's count (0 when
    unknown, e.g. its report was removed)."""
    report_path = os.path.join(vector.directory, REPORT_NAME)
    if os.path.isfile(report_path):
        doc = load_json(report_path, "report")
        count = doc.get("inexact_elements") if isinstance(doc, dict) else None
    else:
        count = vector.files[0].metadata.get(_OLD_INEXACT_KEY) if vector.files else None
    if isinstance(count, str) and count.isdigit():
        count = int(count)
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def different_vocabularies(a: str, b: str) -> str | None:
    """None when model directories a and b hold the same vocabulary (the same tokens at the same ids in
    tokenizer.json, or the same tokenizer.model bytes, and the same config vocab_size); else how they differ."""
    for d in (a, b):
        if not os.path.isdir(d):
            return f"whether cp's vocabulary is base's cannot be checked: {d} is not a local directory"
    if has_vocab(a) and has_vocab(b):
        va, vb = load_vocab(a), load_vocab(b)
        if va != vb:
            only = sorted(set(va) ^ set(vb), key=str)[:3] or [t for t in va if va[t] != vb.get(t)][:3]
            shown = ", ".join(map(short, only))
            return f"cp's vocabulary is not base's ({len(vb)} tokens against {len(va)}; e.g. {shown})"
    else:
        files = [os.path.join(d, "tokenizer.model") for d in (a, b)]
        if not all(os.path.isfile(f) for f in files):
            return "whether cp's vocabulary is base's cannot be checked: they lack tokenizer.json (and tokenizer.model)"
        if not same_contents(files[0], files[1], "tokenizer.model"):
            return "cp's tokenizer.model is not base's"
    sizes = [optional_json(d, CONFIG_NAME).get("vocab_size") for d in (a, b)]
    if sizes[0] != sizes[1]:
        return f"cp's vocab_size is {sizes[1]}, base's {sizes[0]}"
    return None
