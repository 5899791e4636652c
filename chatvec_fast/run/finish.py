"""What an output gets besides its tensors: the index, and cp's config and tokenizer files with the chat
model's chat template and eos where the job takes them from chat.

Every choice is made (and every file it needs is read) before the merge starts, so a tokenizer problem
stops the run before any work; the files are written into the staging directory at the end.
"""

from __future__ import annotations

from ..filenames import INEXACT_KEY
from ..job import Job
from ..plan.types import Plan
from ..read.model_files import aux_files, chat_template, eos_token, has_vocab, load_vocab, token_text
from ..write.aux_files import copy_aux_files, set_chat_template


def index_document(plan: Plan, inexact: int | None) -> dict | None:
    """model.safetensors.index.json (None for a single-file output)."""
    if plan.single_file:
        return None
    weight_map = {t.name: s.filename for s in plan.shards for t in s.tensors}
    metadata: dict = {"total_size": plan.write_nbytes}
    if inexact is not None:
        metadata[INEXACT_KEY] = inexact
    return {"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}


def aux_writer(job: Job, plan: Plan):
    """A function that writes the output's config and tokenizer files into a staging directory and returns
    what it did for the report; None when the output has none (a saved vector)."""
    if job.command == "extract":
        return None
    cp_dir = plan.inputs["cp"].directory
    names = aux_files(cp_dir)
    template = _template_choice(job, plan, cp_dir) if job.command in ("merge", "sweep") else None

    def write(staging: str) -> dict:
        entries = {"copied_files": copy_aux_files(cp_dir, names, staging, plan.options.dtype)}
        if template is None:
            entries["chat_template"] = {"from": "cp"}
        elif "template" not in template:
            entries["chat_template"] = template
        else:
            entries["chat_template"] = set_chat_template(staging, **template)
        return entries

    return write


def _template_choice(job: Job, plan: Plan, cp_dir: str) -> dict | None:
    """None: cp's template stays. A dict with 'template': set_chat_template's arguments. Else the report
    entry saying why cp's stays although chat's was asked for."""
    chat_dir = plan.inputs["chat"].directory
    found, where = chat_template(chat_dir)
    source = job.settings.chat_template_from
    if source is None:  # default: the chat model's template when it has one
        source = "chat" if found is not None else "cp"
    if source != "chat":
        return None
    if found is None:
        return {"from": "cp", "reason": "the chat model has no chat template"}
    eos = eos_token(chat_dir)
    text = token_text(eos)
    choice = {"template": found, "found_in": where, "eos": None, "eos_id": None, "eos_reason": None}
    if text is not None:
        cp_vocab = load_vocab(cp_dir) if has_vocab(cp_dir) else {}
        choice["eos"] = eos
        if text in cp_vocab:
            choice["eos_id"] = cp_vocab[text]
        else:
            choice["eos_reason"] = "cp's vocabulary lacks it"
    return choice
