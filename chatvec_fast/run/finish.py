"""What an output gets besides its tensors: the index, cp's config files, a tokenizer (run/tokenizer.py),
and, for a saved vector, chat's tokenizer files in its chat/ folder (so that `apply` writes the same files
as `merge`).

Every choice is made, and every JSON file to edit is read and checked, before the merge starts; the
files are written into the staging directory at the end, each exactly once.
"""

from __future__ import annotations

import os

from ..dtypes import TORCH_NAMES
from ..filenames import (
    CARD_NAME,
    CONFIG_NAME,
    CONFIG_PATTERNS,
    CP_CARD_NAME,
    GENERATION_CONFIG_NAME,
    INDEX_SUFFIX,
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    TOKENIZER_PATTERNS,
    VECTOR_CHAT_DIR,
)
from ..plan.types import Plan
from ..read.checkpoint import Checkpoint
from ..read.model_files import model_files, read_json, token_text
from ..write.aux_files import write_files
from .eos import as_entry, config_has_eos, edit_config_eos, edit_special_tokens_map, generation_config, output_eos_ids
from .tokenizer import choose_tokenizer


def index_document(plan: Plan) -> dict | None:
    """model.safetensors.index.json (None for a single-file output)."""
    if plan.single_file:
        return None
    weight_map = {t.name: s.filename for s in plan.shards for t in s.tensors}
    return {"metadata": {"total_size": plan.write_nbytes}, "weight_map": dict(sorted(weight_map.items()))}


def _weight_files(ckpt: Checkpoint) -> set[str]:
    """A checkpoint's weight files and indexes: never carried as config or tokenizer files, whatever their
    names (a shard may be called tokenizer.json)."""
    names = {os.path.basename(f.path) for f in ckpt.files}
    return names | {n for n in os.listdir(ckpt.directory) if n.endswith(INDEX_SUFFIX)}


def aux_writer(plan: Plan, chat_template_from: str | None, tokenizer_from: str | None, card=None):
    """A function that writes the output's other files into a staging directory and returns what it did,
    for the report. Appends to plan.warnings what the user should hear before the run starts.
    chat_template_from, tokenizer_from: the options (None: the defaults); card(output, has_cp_card): the
    model card's text, or None for no card."""
    if plan.options.kind == "extract":
        chat = plan.inputs["chat"]
        names = model_files(chat.directory, TOKENIZER_PATTERNS, _weight_files(chat))
        sources = [(os.path.join(chat.directory, n), f"{VECTOR_CHAT_DIR}/{n}", None) for n in names]
        return lambda staging, output: {"chat_files": write_files(sources, staging)}
    cp = plan.inputs["cp"]
    edits = {}
    appended = plan.appended
    # An FP8 cp merged to bf16 (the default): the output is not quantized, so its config must not say so.
    unquantized = bool(plan.fp8.get("cp")) and plan.options.dtype != "F8_E4M3"
    dtype = plan.options.dtype if plan.options.dtype != "F8_E4M3" else None
    tokenizer = choose_tokenizer(plan, chat_template_from, tokenizer_from)
    eos = output_eos_ids(cp, tokenizer.eos_id) if tokenizer.eos_id is not None else None  # chat's eos is used
    config_eos = eos if eos and not config_has_eos(cp.config, eos) else None
    if eos:
        tokenizer.record["generation_eos_token_id"] = as_entry(eos)
    if dtype is not None or appended or unquantized or config_eos:
        edits[CONFIG_NAME] = lambda config: _edit_config(config, dtype or (unquantized and "BF16") or None, appended,
                                                         unquantized, config_eos)  # fmt: skip
    sources = [
        (os.path.join(cp.directory, n), n) for n in model_files(cp.directory, CONFIG_PATTERNS, _weight_files(cp))
    ]
    if tokenizer.directory is not None:
        exclude = set(tokenizer.replaces_template_files)
        if tokenizer.role in plan.inputs:
            exclude |= _weight_files(plan.inputs[tokenizer.role])
        names = model_files(tokenizer.directory, TOKENIZER_PATTERNS, exclude)
        sources += [(os.path.join(tokenizer.directory, n), n) for n in names]
    if tokenizer.template is not None or appended:
        edits[TOKENIZER_CONFIG] = lambda config: tokenizer.edit_tokenizer_config_for(config, appended)
        if not any(name == TOKENIZER_CONFIG for _, name in sources):
            sources.append((None, TOKENIZER_CONFIG))  # a tokenizer without one still gets the template
    if eos:
        edits[GENERATION_CONFIG_NAME] = lambda config: generation_config(config, cp.config, eos)
        edits[SPECIAL_TOKENS_MAP] = lambda doc: edit_special_tokens_map(doc, token_text(tokenizer.eos))
        if not any(name == GENERATION_CONFIG_NAME for _, name in sources):
            sources.append((None, GENERATION_CONFIG_NAME))  # without one, transformers stops at config.json's eos only
    if appended:
        edits[TOKENIZER_JSON] = lambda doc: tokenizer.edit_tokenizer_json(doc, appended)
    for src, name in sources:
        if name in edits and src is not None:
            read_json(src)  # a malformed file stops the run now, not after the merge
    plan_files = [(src, name, edits.get(name)) for src, name in sources]
    cp_card = _cp_card(cp)
    if card is not None and cp_card is not None:
        plan_files.append((cp_card, CP_CARD_NAME, None))

    def write(staging: str, output: int) -> dict:
        files = plan_files
        if card is not None:
            text = card(output, cp_card is not None)
            files = [*plan_files, (None, CARD_NAME, lambda _: text)]
        entries = {"copied_files": write_files(files, staging)}
        entries["tokenizer_from"] = tokenizer.role if tokenizer.directory else None
        entries["chat_template"] = tokenizer.record
        return entries

    return write


def _cp_card(cp: Checkpoint) -> str | None:
    """cp's README.md (its model card), to keep beside ours; never one of its weight files."""
    path = os.path.join(cp.directory, CARD_NAME)
    return path if os.path.isfile(path) and CARD_NAME not in _weight_files(cp) else None


def _edit_config(config: dict, dtype: str | None, appended, unquantized: bool = False, eos=None) -> dict:
    """config.json follows the output: its dtype (--dtype: torch_dtype, and dtype where the config has it), its
    vocab_size when tokens were appended (also a multimodal model's text_config), no quantization_config when
    FP8 weights came out unquantized, cp's and chat's eos ids when the chat model's eos is the tokenizer's."""
    config = edit_config_eos(config, eos) if eos else dict(config)
    if unquantized:
        config.pop("quantization_config", None)
        if isinstance(config.get("text_config"), dict):
            config["text_config"] = {k: v for k, v in config["text_config"].items() if k != "quantization_config"}
    if dtype is not None:
        config["torch_dtype"] = TORCH_NAMES[dtype]
        if "dtype" in config:
            config["dtype"] = TORCH_NAMES[dtype]
    if appended:
        rows = appended[-1].row + 1
        config["vocab_size"] = rows
        if isinstance(config.get("text_config"), dict) and "vocab_size" in config["text_config"]:
            config["text_config"] = {**config["text_config"], "vocab_size": rows}
    return config
