"""The output's eos, named alike in every file that names it.

When the output takes the chat model's chat template and eos (tokenizer.py), generation must stop where a
chat turn ends: config.json and generation_config.json list cp's eos ids and then chat's (e.g. [2, 32001]:
cp's own text still ends with </s>), and tokenizer_config.json and special_tokens_map.json name chat's token.
A cp without generation_config.json gets one: transformers would otherwise take config.json's eos alone, and
`generate` would run past the end of every turn until max_new_tokens.
"""

from __future__ import annotations

from ..filenames import GENERATION_CONFIG_NAME
from ..read.checkpoint import Checkpoint
from ..read.model_files import optional_json

# What transformers' GenerationConfig.from_model_config carries over from config.json (a written
# generation_config.json replaces it whole)
_FROM_CONFIG = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def _ids(value) -> list[int]:
    """An eos_token_id entry as a list of ids (an int, a list of ints, or absent)."""
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _text_config(config: dict) -> dict:
    return config["text_config"] if isinstance(config.get("text_config"), dict) else {}


def output_eos_ids(cp: Checkpoint, chat_id: int) -> list[int]:
    """cp's eos ids (config.json, its text_config, generation_config.json), then chat's, each once."""
    config = cp.config
    found = [*_ids(config.get("eos_token_id")), *_ids(_text_config(config).get("eos_token_id")),
             *_ids(optional_json(cp.directory, GENERATION_CONFIG_NAME).get("eos_token_id")), chat_id]  # fmt: skip
    return list(dict.fromkeys(found))


def as_entry(ids: list[int]):
    """One id as an int (as configs usually write it), several as a list."""
    return ids[0] if len(ids) == 1 else list(ids)


def config_has_eos(config: dict, ids: list[int]) -> bool:
    """Whether config.json (and its text_config, where it names eos) already gives exactly these ids."""
    text = _text_config(config)
    return _ids(config.get("eos_token_id")) == ids and ("eos_token_id" not in text or _ids(text["eos_token_id"]) == ids)


def edit_config_eos(config: dict, ids: list[int]) -> dict:
    """config.json's eos_token_id (and its text_config's, where it has one)."""
    config = {**config, "eos_token_id": as_entry(ids)}
    text = _text_config(config)
    if "eos_token_id" in text:
        config["text_config"] = {**text, "eos_token_id": as_entry(ids)}
    return config


def generation_config(config: dict, cp_config: dict, ids: list[int]) -> dict:
    """generation_config.json with the eos ids: cp's own edited, or made as transformers makes one from
    config.json when cp has none."""
    if not config:
        text = _text_config(cp_config)
        config = {k: text.get(k, cp_config.get(k)) for k in _FROM_CONFIG if text.get(k, cp_config.get(k)) is not None}
    return {**config, "eos_token_id": as_entry(ids)}


def edit_special_tokens_map(doc: dict, text: str) -> dict:
    """special_tokens_map.json's eos_token, in the form the file gives it (a string or an AddedToken object)."""
    if "eos_token" not in doc:
        return doc
    entry = doc["eos_token"]
    return {**doc, "eos_token": {**entry, "content": text} if isinstance(entry, dict) else text}
