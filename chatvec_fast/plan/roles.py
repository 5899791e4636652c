"""Inputs in the wrong role, caught before any work.

A saved vector given as a model (or a model as a vector) merges weights that are not what the role
means; base and chat one model make the chat vector zero; a weight file given for its directory leaves the
output without config and tokenizer; a cp without config.json gives an output transformers cannot load. Those
stop the run. A cp deeper than base and chat (depth-upscaled), or base and chat with the same bytes, can be
meant: they are warnings. When pairing fails, the configs' differences are said first (pairing.py).
"""

from __future__ import annotations

import os
import re

from ..errors import InputError
from ..filenames import CONFIG_NAME, INDEX_SUFFIX, SHARD_NAME
from ..read.checkpoint import Checkpoint, same_weights

# config.json fields that make two models different architectures (vocab_size is left out: an expanded cp is
# one architecture with more rows)
ARCHITECTURE_FIELDS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                       "num_key_value_heads", "head_dim", "num_local_experts", "num_experts")  # fmt: skip
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")  # Llama, GPT-2 and BLOOM, RWKV, BERT


def flag(role: str) -> str:
    return "--vector" if role.startswith("vector") else f"--{role}"


def refuse_weight_files(inputs: dict[str, str]):
    """A weight file given where a model's directory belongs: its config and tokenizer files would be missing
    from the output (and a shard is only part of the model)."""
    for role, path in inputs.items():
        if not os.path.isfile(path):
            continue
        directory = os.path.dirname(os.path.abspath(path))
        name = os.path.basename(path)
        indexes = [n for n in sorted(os.listdir(directory)) if n.endswith(INDEX_SUFFIX)]
        what = (f"one shard of the model in {directory} ({indexes[0]} lists the others)"
                if SHARD_NAME.fullmatch(name) and indexes else "a weight file, not a model directory")  # fmt: skip
        raise InputError(
            f"{flag(role)} {path}: {what}; a model is read from its directory, which holds its config.json and "
            f"tokenizer files (the output needs them) and every shard. Pass the directory: {flag(role)} {directory}"
        )


def _is_vector(ckpt: Checkpoint) -> bool:
    return any(f.metadata.get("chatvec_fast.command") == "extract" for f in ckpt.files)


def refuse_vectors_as_models(ckpts: dict[str, Checkpoint]):
    """A saved chat vector given as --base, --chat or --cp would be merged as if its differences were weights."""
    for role in ("base", "chat", "cp"):
        ckpt = ckpts.get(role)
        if ckpt is not None and _is_vector(ckpt):
            raise InputError(
                f"--{role} {ckpt.path}: a chat vector saved by `chatvec extract` (its shards' metadata say "
                f"chatvec_fast.command=extract), not a model: as {role} its differences would be merged as if they "
                f"were weights. Add it to cp with `chatvec apply --vector {ckpt.path} --cp CP --out OUT`, or pass the "
                f"{role} model"
            )


def check_vector(vector: Checkpoint):
    """A vector is what `extract` wrote (every shard's metadata says so): a model directory given as --vector
    would add the model's weights themselves to cp."""
    for f in vector.files:
        if f.metadata.get("chatvec_fast.command") != "extract":
            raise InputError(
                f"--vector {vector.path}: {f.path} was not written by `chatvec extract` (its metadata lacks "
                "chatvec_fast.command=extract), so it is not a chat vector: apply would add the weights "
                "themselves to cp. Save the vector first with `chatvec extract --base BASE --chat CHAT --out "
                "VECTOR`, or merge the three models with `chatvec merge`"
            )


def base_and_chat(base: Checkpoint, chat: Checkpoint, kind: str) -> list[str]:
    """Base and chat one model: the same directory or the same files stop the run; the same bytes (copies) is
    a warning. Returns the warnings."""
    would, warn = ("would be all zeros", "is all zeros")
    if kind != "extract":
        would, warn = "would be zero and the output a copy of cp", "is zero and the output is a copy of cp"
    fix = "pass the pretrained model as --base and its chat-tuned sibling as --chat"
    if os.path.realpath(base.directory) == os.path.realpath(chat.directory):
        raise InputError(f"--base and --chat are the same directory ({os.path.realpath(base.directory)}): the chat "
                         f"vector (chat - base) {would}; {fix}")  # fmt: skip
    files = [sorted((f.identity.device, f.identity.inode) for f in c.files if f.identity) for c in (base, chat)]
    if files[0] and files[0] == files[1]:
        raise InputError(f"--base {base.path} and --chat {chat.path} are the same files (every shard has the same "
                         f"device and inode: links to one model): the chat vector {would}; {fix}")  # fmt: skip
    if same_weights(base, chat):
        return [f"base {base.path} and chat {chat.path} hold the same weights (the same tensors, and the first and "
                f"last MiB of every shard are equal): the chat vector {warn}; check --base and --chat"]  # fmt: skip
    return []


def refuse_cp_without_config(cp: Checkpoint):
    if not os.path.isfile(os.path.join(cp.directory, CONFIG_NAME)):
        raise InputError(
            f"--cp {cp.path}: no {CONFIG_NAME}; the output takes cp's, and without one transformers cannot load "
            f"the output. Put cp's {CONFIG_NAME} beside its weights (save_pretrained writes it), then run again"
        )


def layers(ckpt: Checkpoint) -> int:
    """The number of transformer layers, from the tensor names (a vector has no config.json)."""
    found = [int(m.group(1)) for name in ckpt.tensors for m in [_LAYER.search(name)] if m]
    return max(found) + 1 if found else 0


def deeper_cp(cp: Checkpoint, others: dict[str, Checkpoint]) -> list[str]:
    """cp with more layers than base and chat (a depth-upscaled cp): its extra layers get no chat vector."""
    counts = {role: layers(c) for role, c in others.items()}
    theirs, mine = max(counts.values(), default=0), layers(cp)
    if not theirs or mine <= theirs:
        return []
    who = " and ".join(counts) if len(set(counts.values())) == 1 else ", ".join(f"{r} {n}" for r, n in counts.items())
    return [
        f"cp has {mine} layers, {who} {theirs}: cp's layers {theirs}-{mine - 1} have no chat vector and are "
        f"copied from cp unchanged, and layers 0-{theirs - 1} take the chat vector of the layers with the same "
        "numbers (if cp inserted its new layers elsewhere, as LLaMA-Pro does, those numbers do not match)"
    ]


def _architecture(config: dict) -> dict:
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return {k: text.get(k, config.get(k)) for k in ARCHITECTURE_FIELDS if text.get(k, config.get(k)) is not None}


def config_differences(base: Checkpoint, chat: Checkpoint, cp: Checkpoint | None = None) -> str:
    """How the inputs' config.json files differ in architecture ("" when they agree or are missing)."""
    parts = []
    pairs = [("base", base, "chat", chat)] + ([("base", base, "cp", cp)] if cp is not None else [])
    for role_a, a, role_b, b in pairs:
        x, y = _architecture(a.config), _architecture(b.config)
        diff = [f"{k} {x[k]} vs {y[k]}" for k in ARCHITECTURE_FIELDS if k in x and k in y and x[k] != y[k]]
        if diff:
            parts.append(f"{role_a} and {role_b}: {', '.join(diff)}")
    if not parts:
        return ""
    return (
        f"their {CONFIG_NAME} files differ ({'; '.join(parts)}); a chat vector needs base, chat and cp of one "
        "architecture: check that each input is the model you meant. The tensors that cannot be paired:"
    )
