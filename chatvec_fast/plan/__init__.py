"""Stage 2, the planner: pairs tensors across the inputs by name, shape and dtype, applies the policies,
lays the output out in shards (and over ranks and devices), and cuts the work into chunks.

Reads headers and tokenizer files only (and, to tell base from chat when their headers are the same, the first
and last MiB of their shards): never a kernel, never an output file.
"""

from __future__ import annotations

import os

from ..read.checkpoint import open_checkpoint
from ..read.model_files import chat_template, special_rows, vector_inexact
from .added_tokens import embedding_rows, find_added_tokens
from .fp8 import fp8_scales, without_scales
from .fp8_plan import attach_fp8
from .options import MergeOptions, vector_roles
from .pairing import make_extract_plan, make_plan
from .quantized import refuse_quantized
from .roles import (
    base_and_chat,
    check_vector,
    deeper_cp,
    refuse_cp_without_config,
    refuse_vectors_as_models,
    refuse_weight_files,
)
from .types import Plan
from .vectors import add_vectors


def plan_job(inputs: dict[str, str], options: MergeOptions) -> Plan:
    """Opens the inputs (role -> local directory; headers only, all validated) and plans every output tensor
    of the command options.kind names."""
    refuse_weight_files(inputs)
    # Absolute paths: messages, the report and the resume fingerprint then say the same whatever the cwd.
    ckpts = {role: open_checkpoint(os.path.abspath(path)) for role, path in inputs.items()}
    warnings = _check_roles(ckpts, options.kind)
    fp8 = {role: fp8_scales(ckpt) for role, ckpt in ckpts.items()}
    refuse_quantized(ckpts, fp8)
    warnings[:0] = [w for ckpt in ckpts.values() for w in ckpt.warnings]
    full, ckpts = ckpts, {role: without_scales(ckpt, fp8[role]) for role, ckpt in ckpts.items()}
    if options.kind == "extract":
        plan = make_extract_plan(ckpts["base"], ckpts["chat"], options)
    elif options.kind == "apply":
        plan = _plan_apply(options, ckpts)
    else:
        plan = _plan_merge(options, ckpts)
        warnings += _swapped_roles(ckpts)
    plan.warnings[:0] = warnings
    attach_fp8(plan, full, fp8)
    return plan


def _check_roles(ckpts, kind: str) -> list[str]:
    """Inputs in the wrong role (roles.py): errors raised, warnings returned."""
    refuse_vectors_as_models(ckpts)
    warnings = []
    if kind != "apply":
        warnings += base_and_chat(ckpts["base"], ckpts["chat"], kind)
    if kind != "extract":
        refuse_cp_without_config(ckpts["cp"])
        warnings += deeper_cp(ckpts["cp"], {r: c for r, c in ckpts.items() if r != "cp"})
    return warnings


def _plan_apply(options: MergeOptions, ckpts) -> Plan:
    vectors = [ckpts[role] for role in vector_roles(len(ckpts) - 1)]
    for vector in vectors:
        check_vector(vector)
    plan = make_plan(None, vectors[0], ckpts["cp"], options)
    if len(vectors) > 1:
        add_vectors(plan, vectors)
        plan.notes.append(f"{len(vectors)} vectors: the chat template and eos come from the first one's chat model")
    for vector in vectors:
        inexact = vector_inexact(vector)
        if inexact:
            plan.notes.append(
                f"the vector {vector.path} rounded {inexact} elements when it was saved: the result differs "
                "from a merge of the models there; extract with --dtype f64 to avoid it"
            )
    return plan


def _plan_merge(options: MergeOptions, ckpts) -> Plan:
    rows, notes = (), []
    if options.special_tokens_from == "chat":
        found, missing = special_rows(ckpts["chat"].directory, ckpts["cp"].directory)
        rows = tuple(found)
        if missing:
            notes.append(f"special tokens of chat that cp's tokenizer lacks (left as merged): {', '.join(missing)}")
    appended = ()
    extra = (embedding_rows(ckpts["chat"]) or 0) - (embedding_rows(ckpts["base"]) or 0)
    if options.added_tokens == "drop" and extra > 0:
        notes.append(f"chat's {extra} rows beyond base's (tokens it added) are left out (--added-tokens drop); "
                     "cp's tokenizer cannot encode those tokens")  # fmt: skip
    if options.added_tokens == "append":
        appended, present = find_added_tokens(ckpts["base"], ckpts["chat"], ckpts["cp"])
        if present:
            notes.append(f"chat's added tokens cp's tokenizer already has (cp's rows kept): {', '.join(present)}")
    plan = make_plan(ckpts["base"], ckpts["chat"], ckpts["cp"], options, rows, appended)
    plan.notes.extend(notes)
    if appended:
        plan.notes.append(f"{len(appended)} tokens chat added (base has no rows for them) are appended to cp's "
                          f"vocabulary: {', '.join(t.token for t in appended)}")  # fmt: skip
    return plan


def _swapped_roles(ckpts) -> list[str]:
    """Chat templates that suggest --base and --chat were given the other way round."""
    base, chat = ckpts["base"], ckpts["chat"]
    if chat_template(base.directory)[0] is not None and chat_template(chat.directory)[0] is None:
        return [
            f"base {base.path} has a chat template and chat {chat.path} has none: are --base and --chat swapped? "
            "(the chat vector is chat - base; swapped, the merge removes chat skills instead of adding them)"
        ]
    return []
