"""The model as `merge` would write it, and the chat model as it is.

The merged model's files (config.json, the tokenizer files, the chat template, generation_config.json and eos)
are written by the merge's own finish stage (run/finish.py's aux_writer, the code that writes them beside a
merge's shards) into --out/model/, without weights; the model is built once from that config (transformers)
and its weights are then written at each alpha by HeldMerge. transformers and torch are imported here only.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter

from ..errors import InputError
from ..filenames import CONFIG_NAME, GENERATION_CONFIG_NAME
from ..read.model_files import has_tokenizer, optional_json
from ..run.finish import aux_writer
from ..settings import Settings
from .results import MODEL_DIR

log = logging.getLogger("chatvec_fast")


def write_model_files(plan, chat_template_from, tokenizer_from, out: str, spelling: str = "cli") -> str:
    """out/model/: what merge writes besides the weights, for the same options. Kept as it is when an earlier
    run of the same tune (--resume checks that) wrote it; written under a temporary name, then renamed."""
    directory = os.path.join(out, MODEL_DIR)
    before = len(plan.warnings)
    write = aux_writer(plan, chat_template_from, tokenizer_from)  # reads and checks every file it will edit
    for warning in plan.warnings[before:]:
        log.warning(warning)
    if not os.path.isdir(directory):
        partial = directory + ".partial"
        if os.path.isdir(partial):  # an interrupted tune's (check.py: --out holds only a tune's files)
            shutil.rmtree(partial)
        os.makedirs(partial)
        write(partial, output=0)
        os.replace(partial, directory)
    if not has_tokenizer(directory):
        name = lambda option: Settings.describe(option, spelling)  # noqa: E731
        raise InputError(f"the merged model gets no tokenizer (cp has none), and the tune needs one to read "
                         f"{name('text')} and the prompts: pass {name('tokenizer_from')} chat or base")  # fmt: skip
    return directory


def eos_ids(model_dir: str) -> tuple[int, ...]:
    """The ids generation stops at: generation_config.json's eos_token_id, else config.json's (as transformers)."""
    for name in (GENERATION_CONFIG_NAME, CONFIG_NAME):
        value = optional_json(model_dir, name).get("eos_token_id")
        if value is not None:
            ids = value if isinstance(value, list) else [value]
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
                raise InputError(f"{os.path.join(model_dir, name)}: eos_token_id {value!r} is not a token id or a "
                                 "list of them")  # fmt: skip
            return tuple(ids)
    raise InputError(f"{model_dir}: no eos_token_id in {GENERATION_CONFIG_NAME} or {CONFIG_NAME}; the tune counts "
                     "replies that end with eos, so the model needs one")  # fmt: skip


def load_tokenizer(model_dir: str, what: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the message says which
        raise InputError(f"{what} ({model_dir}): its tokenizer does not load with transformers: "
                         f"{type(exc).__name__}: {exc}") from None  # fmt: skip


def context_window(model_dir: str) -> int:
    """The model's context in tokens (config.json's max_position_embeddings): the bits-per-byte window."""
    config = optional_json(model_dir, CONFIG_NAME)
    value = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise InputError(f"{os.path.join(model_dir, CONFIG_NAME)}: max_position_embeddings {value!r} is not a "
                         "context length; the tune reads --text in windows of the model's context")  # fmt: skip
    return value


def main_dtype(plan) -> str:
    """The output dtype holding most of the merge's elements (bf16 for a bf16 cp): the model's dtype. A tensor
    of another dtype lands in it only where that dtype holds it exactly (HeldMerge checks)."""
    counts = Counter()
    for t in plan.tensors:
        counts[t.out_dtype] += t.numel
    return counts.most_common(1)[0][0]


def build_model(model_dir: str, plan, device: str):
    """The merged model's architecture from its config.json, on `device`, in eval mode; its weights are
    HeldMerge's to write."""
    import torch
    import transformers

    from ..memory.sink import torch_dtype

    config = transformers.AutoConfig.from_pretrained(model_dir)
    with torch.device(device), _no_init_weights():
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch_dtype(main_dtype(plan)))
    return model.eval()


def _no_init_weights():
    """transformers' own switch for a model whose parameters are all written next (HeldMerge checks that every
    one is): random initialization costs more than the first switch. Buffers (rotary frequencies) are made as
    usual. A transformers without it initializes."""
    import contextlib

    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        return contextlib.nullcontext()
    return no_init_weights()


def load_chat(chat_dir: str, device: str):
    """The chat model from its own files (its dtype, tokenizer, chat template and eos), for its reference row."""
    import transformers
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the tune's own progress lines say where it is
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(chat_dir, dtype="auto")
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    return model.to(device).eval()
