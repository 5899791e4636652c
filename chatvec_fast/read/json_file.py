"""JSON files from inputs (config, index, tokenizer, report files), read as untrusted input.

Every failure is one InputError naming the file: missing or unreadable, larger than any real one, not
UTF-8, not JSON, nested deeper than any real one (json's recursive decoder would otherwise raise
RecursionError), or not the JSON object expected.
"""

from __future__ import annotations

import json
import re

from ..errors import InputError
from .text_file import read_utf8

# The largest real files are tokenizers: 33 MB for Gemma 3's tokenizer.json. 256 MiB leaves room and keeps
# a hostile file from costing gigabytes.
MAX_JSON_BYTES = 256 << 20
# Real files nest a few levels (tokenizer.json's normalizer sequences: < 10); 200 is far beyond them and far
# below the interpreter's recursion limit.
MAX_DEPTH = 200


def load_json(path: str, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES):
    """The JSON document at path (any type); InputError naming the file and `what` it is otherwise."""
    text = read_utf8(path, path, what, max_bytes,
                     "any real one needs; it is not a file of this kind (or is corrupt)")  # fmt: skip
    depth = _depth(text)
    if depth > MAX_DEPTH:
        raise InputError(f"{path}: {what} nests {depth} levels deep; real ones nest a few. It is corrupt or hostile")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: {what} is not valid JSON: {str(exc)[:200]}") from None


def load_json_object(path: str, what: str = "JSON file") -> dict:
    doc = load_json(path, what)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object in this {what}, found {type(doc).__name__}")
    return doc


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings. Strings and everything but brackets are dropped by
    regular expressions (C speed), so only the brackets are walked: a 33 MB tokenizer.json in ~0.2 s."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    deepest = level = 0
    for ch in brackets:
        level += 1 if ch in "[{" else -1
        deepest = level if level > deepest else deepest
    return deepest


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
