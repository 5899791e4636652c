"""The in-memory forms' inputs and options: the merge's or apply's, checked by the same Job.build as the files'.

Every option that changes a tensor's bits (skip, alpha_for, the vocabulary and token policies, dtype) and every
option of the engine (backend, threads, device memory, chunk size) is taken, declared once in settings.Settings;
options about output files (shards, tokenizer files, model card, overwrite, resume) have no meaning here and are
refused by name, as an unknown keyword is.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re

from ..alphas import normalize_alphas, vector_alphas
from ..job import Job
from ..plan.options import vector_roles
from ..settings import Settings

# The Settings fields the in-memory forms take (those of merge or apply that concern tensors or the engine).
MEMORY_OPTIONS = ("skip", "allow_unmatched", "vocab_mismatch", "alpha_for", "dtype", "added_tokens",
                  "special_tokens_from", "revision", "backend", "threads", "gpu_memory", "chunk_elements")  # fmt: skip


_DEVICE = re.compile(r"cpu|cuda(:\d{1,3})?")


def device_name(device) -> str:
    """'cpu', 'cuda' or 'cuda:N' (a torch.device is taken too)."""
    text = str(device)
    if not _DEVICE.fullmatch(text):
        raise ValueError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    return text


def memory_options(command: str) -> list:
    """The Settings fields of `command` ("merge" or "apply") that the in-memory forms take."""
    return [f for f in Settings.for_command(command) if f.name in MEMORY_OPTIONS]


def takes_memory_options(fn):
    """Gives fn merge's in-memory options as keyword-only parameters (apply's are a subset) and their meanings
    in its docstring, as api.py does for the file commands."""
    signature = inspect.signature(fn)
    own = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    options = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=Settings.default(f.name, "merge"),
                                 annotation=f.type) for f in memory_options("merge")]  # fmt: skip
    fn.__signature__ = signature.replace(parameters=[*own, *options])
    doc = "\n".join(f"    {f.name}: {Settings.doc(f.name, 'merge')}" for f in memory_options("merge"))
    fn.__doc__ = f"{fn.__doc__.rstrip()}\n\n    Options (as merge's; apply's form takes those apply takes):\n{doc}\n"
    return fn


def roles(base, chat, cp, vector) -> tuple[str, dict[str, str], int]:
    """(command, inputs by role, vector count) of the merge form (base, chat, cp) or apply's (vector, cp)."""
    if cp is None:
        raise TypeError("cp is missing: pass the model the chat vector is added to (cp=...)")
    if vector is None:
        if base is None or chat is None:
            raise TypeError("pass base and chat (the merge: cp + alpha * (chat - base)), or vector= (a chat vector "
                            "saved by extract: cp + alpha * vector)")  # fmt: skip
        return "merge", {"base": os.fspath(base), "chat": os.fspath(chat), "cp": os.fspath(cp)}, 1
    if base is not None or chat is not None:
        raise TypeError("pass base and chat, or vector=, not both: a saved vector already is chat - base")
    vectors = [vector] if isinstance(vector, (str, os.PathLike)) else list(vector)
    inputs = {role: os.fspath(v) for role, v in zip(vector_roles(len(vectors)), vectors)}
    return "apply", {**inputs, "cp": os.fspath(cp)}, len(vectors)


def alpha_values(command: str, vectors: int, alpha) -> list:
    """The one output's alpha, checked: a float, or for apply with several vectors one float per vector."""
    if command == "apply":
        values, _ = vector_alphas(vectors, alpha)
        return values
    if isinstance(alpha, (list, tuple, str)):
        raise ValueError(f"alpha {alpha!r}: the in-memory forms make one model at a time, so one alpha; call again "
                         "for each alpha (HeldMerge switches without reading the files again)")  # fmt: skip
    return normalize_alphas([alpha])


def build_job(fn: str, command: str, inputs: dict[str, str], alphas: list, options: dict) -> Job:
    """The Job of an in-memory form, every option checked as merge (or apply) checks it; fn names the caller in
    messages about keywords it does not take."""
    known = [f.name for f in memory_options(command)]
    for name in options:
        if name in known:
            continue
        if name in {f.name for f in Settings.for_command(command)}:
            why = "it is about output files, and nothing is written here"
        else:
            close = difflib.get_close_matches(name, known, n=3)
            why = f"did you mean {', '.join(close)}?" if close else "not an option"
        raise TypeError(f"{fn}() got an unexpected keyword argument {name!r}: {why} (its options: {', '.join(known)})")
    return Job.build(command, inputs, None, alphas, Settings.build(command, options), sweep=False)
