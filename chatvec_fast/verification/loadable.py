"""Whether a merged model directory can load: the checks transformers would fail on, named before a user does.

- config.json is present and is a JSON object;
- its vocab_size (or text_config's) equals the rows of every vocabulary tensor (embedding, lm_head), and
  those agree with each other;
- every id tokenizer.json gives (its vocabulary and its added tokens) is a row of those tensors;
- the eos ids (config.json's and generation_config.json's eos_token_id, tokenizer_config.json's eos_token
  looked up in tokenizer.json) are rows of those tensors.

Each problem is one line naming the file and the field, what it holds and what the tensors have.
"""

from __future__ import annotations

import os

from ..errors import InputError
from ..filenames import CONFIG_NAME, GENERATION_CONFIG_NAME, TOKENIZER_CONFIG, TOKENIZER_JSON
from ..read.json_file import load_json
from ..read.model_files import load_vocab, token_text
from .added import VOCABULARY


def _json(out: str, name: str, problems: list[str]) -> dict | None:
    path = os.path.join(out, name)
    if not os.path.isfile(path):
        return None
    try:
        doc = load_json(path, name)
    except InputError as exc:
        problems.append(f"{exc}; a model with this file does not load")
        return None
    if not isinstance(doc, dict):
        problems.append(f"{path}: holds a JSON {type(doc).__name__}, not an object; a model with it does not load")
        return None
    return doc


def _ids(value) -> list:
    return value if isinstance(value, list) else [value]


def load_problems(out: str, tensors: dict) -> list[str]:
    """Problems that would stop the model in `out` (with `tensors`: name -> TensorInfo) from loading."""
    problems: list[str] = []
    config = _json(out, CONFIG_NAME, problems)
    if config is None and not os.path.isfile(os.path.join(out, CONFIG_NAME)):
        problems.append(f"{os.path.join(out, CONFIG_NAME)}: missing; transformers cannot load a model without it")
    rows_by_tensor = {n: t.shape[0] for n, t in tensors.items() if VOCABULARY.search(n) and t.shape}
    if len(set(rows_by_tensor.values())) > 1:
        problems.append("the vocabulary tensors have different rows: "
                        + ", ".join(f"{n} {r}" for n, r in sorted(rows_by_tensor.items())))  # fmt: skip
    if not rows_by_tensor:
        return problems
    rows = min(rows_by_tensor.values())
    where = f"{len(rows_by_tensor)} vocabulary tensor{'s' if len(rows_by_tensor) > 1 else ''} ({rows} rows)"
    config_path = os.path.join(out, CONFIG_NAME)
    for section, key in ((config, "vocab_size"), ((config or {}).get("text_config"), "text_config.vocab_size")):
        size = section.get("vocab_size") if isinstance(section, dict) else None
        if size is not None and size != max(rows_by_tensor.values()):
            problems.append(f"{config_path}: {key} is {size!r}, the {where} have {max(rows_by_tensor.values())}")
    vocab = _tokenizer_ids(out, rows, where, problems)
    for name, doc in ((CONFIG_NAME, config), (GENERATION_CONFIG_NAME, _json(out, GENERATION_CONFIG_NAME, problems))):
        for eos in _ids((doc or {}).get("eos_token_id")):
            if eos is not None and not (type(eos) is int and 0 <= eos < rows):
                problems.append(f"{os.path.join(out, name)}: eos_token_id {eos!r} is not a row of the {where}")
    tokenizer_config = _json(out, TOKENIZER_CONFIG, problems) or {}
    eos_token = token_text(tokenizer_config.get("eos_token"))
    if eos_token is not None and vocab is not None:
        path = os.path.join(out, TOKENIZER_CONFIG)
        if eos_token not in vocab:
            problems.append(f"{path}: eos_token {eos_token!r} is not in {TOKENIZER_JSON}'s vocabulary")
        elif not vocab[eos_token] < rows:
            problems.append(f"{path}: eos_token {eos_token!r} has id {vocab[eos_token]} in {TOKENIZER_JSON}, "
                            f"not a row of the {where}")  # fmt: skip
    return problems


def _tokenizer_ids(out: str, rows: int, where: str, problems: list[str]) -> dict | None:
    """tokenizer.json's token -> id (None without one), with a problem for each id past the rows."""
    if not os.path.isfile(os.path.join(out, TOKENIZER_JSON)):
        return None
    try:
        vocab = load_vocab(out)
    except InputError as exc:
        problems.append(f"{exc}; a model with this tokenizer does not load")
        return None
    past = sorted((i, t) for t, i in vocab.items() if i >= rows)
    if past:
        shown = ", ".join(f"{t!r} -> {i}" for i, t in past[:3]) + (
            f" and {len(past) - 3} more" if len(past) > 3 else ""
        )
        problems.append(f"{os.path.join(out, TOKENIZER_JSON)}: {len(past)} token ids are not rows of the {where}: "
                        f"{shown}")  # fmt: skip
    return vocab
