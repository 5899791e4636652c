"""A sharded checkpoint's index (model.safetensors.index.json, pytorch_model.bin.index.json): which file holds
which tensor, checked against the directory before any shard is opened."""

from __future__ import annotations

import os

from ..errors import InputError
from ..filenames import SHARD_NAME, WEIGHT_SUFFIXES
from .json_file import load_json_object


def shard_files_from_index(directory: str, index_path: str) -> tuple[list[str], dict[str, str]]:
    index = load_json_object(index_path, "index")
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
        on_disk = sorted(f for f in os.listdir(directory) if f.endswith(WEIGHT_SUFFIXES))
        raise InputError(
            f"{index_path}: the index maps no tensor to any shard (empty weight_map)"
            + (f", while {len(on_disk)} weight files are in the directory" if on_disk else "")
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
    series = {(m["prefix"], m["count"], m["ext"]) for m in map(SHARD_NAME.fullmatch, listed) if m}
    for name in sorted(os.listdir(directory)):
        m = SHARD_NAME.fullmatch(name)
        if m and (m["prefix"], m["count"], m["ext"]) in series and name not in listed:
            raise InputError(
                f"{index_path}: shard {name} is in the directory but the index maps no tensor to it; "
                "the index and the shards disagree (re-download the checkpoint)"
            )
