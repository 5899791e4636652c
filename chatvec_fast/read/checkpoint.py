"""A Hugging Face checkpoint: one model.safetensors, or shards plus model.safetensors.index.json.

Only headers are read. Every shard header is validated, and the index must
agree with the shards exactly (each listed tensor in its listed shard, no
tensor missing from the index, none in two shards).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field

from ..errors import InputError
from ..filenames import CONFIG_NAME, CONFIG_PATTERNS, INDEX_NAME, SHARD_NAME, SINGLE_NAME, TOKENIZER_PATTERNS
from .header import SafetensorsHeader, TensorInfo, read_header


@dataclass
class Checkpoint:
    """All tensors of one model, by name, in storage order (shard by shard, by offset)."""

    path: str  # the directory (or the single file given directly)
    files: list[SafetensorsHeader]  # in index order (sorted shard names)
    tensors: dict[str, TensorInfo]
    config: dict  # config.json, or {} when absent
    warnings: list[str] = field(default_factory=list)  # odd but usable layouts, said before any work

    @property
    def directory(self) -> str:
        return self.path if os.path.isdir(self.path) else os.path.dirname(self.path)


def _load_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: {what} is a JSON {type(doc).__name__}, expected an object")
    return doc


def _shard_files_from_index(directory: str, index_path: str) -> tuple[list[str], dict[str, str]]:
    index = _load_json(index_path, "index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise InputError(f"{index_path}: 'weight_map' must map tensor names to shard file names")
    for name, shard in weight_map.items():
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise InputError(
                f"{index_path}: tensor {name!r} maps to {shard!r}; shard names must be plain file names "
                "in the checkpoint directory"
            )
    shards = sorted(set(weight_map.values()))
    if not shards:
        on_disk = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
        raise InputError(
            f"{index_path}: the index maps no tensor to any shard (empty weight_map)"
            + (f", while {len(on_disk)} .safetensors files are in the directory" if on_disk else "")
            + "; the index is broken (re-download the checkpoint)"
        )
    _check_no_stale_sibling(directory, index_path, set(shards))
    for shard in shards:
        if not os.path.isfile(os.path.join(directory, shard)):
            first = next(n for n, s in weight_map.items() if s == shard)
            raise InputError(
                f"{index_path}: names shard {shard!r} (for tensor {first!r}) but {os.path.join(directory, shard)} "
                "does not exist; the download is incomplete"
            )
    return shards, weight_map


def _check_no_stale_sibling(directory: str, index_path: str, listed: set[str]):
    """save_pretrained names shards PREFIX-00001-of-0000N; a file of the index's series on disk that the
    index never mentions means the index is stale. One directory listing: the work must not grow with the
    N written in a file name (model-00001-of-10000000.safetensors)."""
    series = {(m["prefix"], m["count"]) for m in map(SHARD_NAME.fullmatch, listed) if m}
    for name in sorted(os.listdir(directory)):
        m = SHARD_NAME.fullmatch(name)
        if m and (m["prefix"], m["count"]) in series and name not in listed:
            raise InputError(
                f"{index_path}: shard {name} is in the directory but the index maps no tensor to it; "
                "the index and the shards disagree (re-download the checkpoint)"
            )


def _refuse_misnamed_shards(directory: str, files: list[SafetensorsHeader]):
    """A weight shard named like a config or tokenizer file would be read as one (here, by transformers, by
    every tool): refuse it rather than guess which the file is."""
    for f in files:
        name = os.path.basename(f.path)
        if any(fnmatch.fnmatch(name, p) for p in (*CONFIG_PATTERNS, *TOKENIZER_PATTERNS)):
            raise InputError(
                f"{f.path}: a weight shard named {name!r}, the name of a model's config or tokenizer file; rename "
                f"the shard (and its entries in {INDEX_NAME}) so that the two cannot be confused"
            )


def open_checkpoint(path: str) -> Checkpoint:
    """Opens a checkpoint directory (or a single .safetensors file) and validates all its headers."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    config: dict = {}
    warnings: list[str] = []
    if os.path.isfile(path):
        files = [read_header(path)]
        weight_map = None
    else:
        index_path = os.path.join(path, INDEX_NAME)
        single_path = os.path.join(path, SINGLE_NAME)
        # transformers loads model.safetensors when it exists, else the index: read what it would load.
        if os.path.isfile(single_path):
            files = [read_header(single_path)]
            weight_map = None
            if os.path.isfile(index_path):
                warnings.append(
                    f"{path} holds both {SINGLE_NAME} and {INDEX_NAME}; reading {SINGLE_NAME}, as transformers "
                    f"does (remove the one that is not the model)"
                )
        elif os.path.isfile(index_path):
            shard_names, weight_map = _shard_files_from_index(path, index_path)
            files = [read_header(os.path.join(path, s)) for s in shard_names]
        else:
            found = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
            hint = (
                f"; it has {', '.join(found[:3])}{' ...' if len(found) > 3 else ''} but no {INDEX_NAME} to say "
                "which are the model's shards"
                if found
                else ""
            )
            raise InputError(f"{path}: neither {SINGLE_NAME} nor {INDEX_NAME} found{hint}")
        _refuse_misnamed_shards(path, files)
        config_path = os.path.join(path, CONFIG_NAME)
        if os.path.isfile(config_path):
            config = _load_json(config_path, CONFIG_NAME)

    tensors: dict[str, TensorInfo] = {}
    for header in files:
        for name, info in header.tensors.items():
            if name in tensors:
                raise InputError(f"{path}: tensor {name!r} is stored twice, in {tensors[name].path} and {header.path}")
            tensors[name] = info
    if weight_map is not None:
        index_path = os.path.join(path, INDEX_NAME)
        for name, shard in weight_map.items():
            info = tensors.get(name)
            if info is None or os.path.basename(info.path) != shard:
                raise InputError(
                    f"{index_path}: lists tensor {name!r} in {shard!r}, but that shard's header does not have it; "
                    "the index and the shards disagree (re-download the checkpoint)"
                )
        extra = [n for n in tensors if n not in weight_map]
        if extra:
            raise InputError(
                f"{index_path}: tensor {extra[0]!r} is in shard {os.path.basename(tensors[extra[0]].path)} but not "
                f"in the index ({len(extra)} such tensors); the index and the shards disagree"
            )
    return Checkpoint(path, files, tensors, config, warnings)
