"""A Hugging Face checkpoint: one weight file, or shards plus an index; safetensors or PyTorch .bin.

Only headers are read. Every shard header is validated, and the index must
agree with the shards exactly (each listed tensor in its listed shard, no
tensor missing from the index, none in two shards).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass, field

from ..errors import InputError
from ..filenames import (
    BIN_INDEX_NAME,
    BIN_SINGLE_NAME,
    CONFIG_NAME,
    CONFIG_PATTERNS,
    INDEX_NAME,
    SINGLE_NAME,
    TOKENIZER_PATTERNS,
    WEIGHT_SUFFIXES,
)
from ..regular_files import FLAGS as REGULAR_FLAGS
from ..regular_files import refuse_special_files
from .header import SafetensorsHeader, TensorInfo, read_header, tensor_problem
from .identity import FileIdentity, check_identity
from .index import shard_files_from_index
from .json_file import load_json_object
from .torch_zip import is_torch_zip, read_torch_zip


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


# The weight files a directory may hold, in the order transformers (modeling_utils) tries them: the first
# that exists is the model. (index name or None, file name)
_LAYOUTS = ((None, SINGLE_NAME), (INDEX_NAME, None), (None, BIN_SINGLE_NAME), (BIN_INDEX_NAME, None))


def read_weight_file(path: str) -> SafetensorsHeader:
    """The validated tensor table of one weight file: safetensors, or a PyTorch .bin (torch's zip format)."""
    if path.endswith(".safetensors"):
        return read_header(path)
    if path.endswith((".bin", ".pt", ".pth")) or is_torch_zip(path):
        return read_torch_file(path)
    return read_header(path)


def _choose_layout(path: str, warnings: list[str]) -> tuple[str | None, list[str], dict | None]:
    """(index path or None, weight file names, the index's weight_map or None) of the model in `path`."""
    present = [(index, single) for index, single in _LAYOUTS if os.path.isfile(os.path.join(path, index or single))]
    if not present:
        found = sorted(f for f in os.listdir(path) if f.endswith(WEIGHT_SUFFIXES))
        hint = (f"; it has {', '.join(found[:3])}{' ...' if len(found) > 3 else ''} but no index to say which are "
                "the model's shards" if found else "")  # fmt: skip
        raise InputError(
            f"{path}: no weights found: none of {SINGLE_NAME}, {INDEX_NAME}, {BIN_SINGLE_NAME} or {BIN_INDEX_NAME}"
            f"{hint}"
        )
    index, single = present[0]
    chosen = index or single
    same_format = [n for i, s in present[1:] for n in (i or s,) if n.split(".")[1] == chosen.split(".")[1]]
    if same_format:
        warnings.append(f"{path} holds both {chosen} and {same_format[0]}; reading {chosen}, as transformers does "
                        "(remove the one that is not the model)")  # fmt: skip
    if single is not None:
        return None, [single], None
    index_path = os.path.join(path, index)
    shards, weight_map = shard_files_from_index(path, index_path)
    return index_path, shards, weight_map


def open_checkpoint(path: str) -> Checkpoint:
    """Opens a checkpoint directory (or a single weight file) and validates all its headers: safetensors
    (model.safetensors, or an index and its shards) or PyTorch .bin (pytorch_model.bin, or an index and its
    shards), whichever transformers would load."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    refuse_special_files(path)  # before any isfile() test could call one missing
    config: dict = {}
    warnings: list[str] = []
    index_path = weight_map = None
    if os.path.isfile(path):
        files = [read_weight_file(path)]
    else:
        index_path, names, weight_map = _choose_layout(path, warnings)
        files = [read_weight_file(os.path.join(path, n)) for n in names]
        _refuse_misnamed_shards(path, files)
        config_path = os.path.join(path, CONFIG_NAME)
        if os.path.isfile(config_path):
            config = load_json_object(config_path, CONFIG_NAME)

    tensors: dict[str, TensorInfo] = {}
    for header in files:
        for name, info in header.tensors.items():
            if name in tensors:
                raise InputError(f"{path}: tensor {name!r} is stored twice, in {tensors[name].path} and {header.path}")
            tensors[name] = info
    if index_path is not None:
        _check_index(index_path, weight_map, tensors)
    return Checkpoint(path, files, tensors, config, warnings)


def _check_index(index_path: str, weight_map: dict[str, str], tensors: dict[str, TensorInfo]):
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


def read_torch_file(path: str) -> SafetensorsHeader:
    """A PyTorch .bin file's tensors as a tensor table (no torch.load: see torch_zip.py), with the identity of
    the file they were found in."""
    try:
        before = FileIdentity.of(os.stat(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    found = read_torch_zip(path)
    check_identity(path, before, FileIdentity.of(os.stat(path)), "while its tensors were being listed")
    table = SafetensorsHeader(path, before.size, 0, {}, identity=before)
    for t in found:
        problem = tensor_problem(t.name, list(t.shape), t.dtype)
        if problem:
            raise InputError(f"{path}: tensor {t.name!r}: {problem}")
        table.tensors[t.name] = TensorInfo(t.name, t.dtype, t.shape, path, t.offset, t.nbytes, before)
    return table


# Bytes compared at each end of every shard: 1 MiB reads in ~1 ms from page cache, ~10 ms from a disk, and two
# different models already differ in their first tensor's first bytes.
SAMPLE_BYTES = 1 << 20


def _table(f: SafetensorsHeader) -> list:
    """A file's tensor table, its offsets counted from its data section (headers may differ in metadata)."""
    return [(t.name, t.dtype, t.shape, t.offset - f.data_start, t.nbytes) for t in f.tensors.values()]


def _ends_digest(f: SafetensorsHeader) -> bytes:
    """sha256 of the first and the last SAMPLE_BYTES of a file's data section, read from the file whose header
    was read."""
    fd = os.open(f.path, REGULAR_FLAGS)  # O_NONBLOCK: a FIFO swapped in since is refused, not waited on
    try:
        check_identity(f.path, f.identity, FileIdentity.of(os.fstat(fd)), "since its header was read")
        data = f.file_size - f.data_start
        h = hashlib.sha256(os.pread(fd, min(SAMPLE_BYTES, data), f.data_start))
        h.update(os.pread(fd, min(SAMPLE_BYTES, data), max(f.data_start, f.file_size - SAMPLE_BYTES)))
        return h.digest()
    finally:
        os.close(fd)


def same_weights(a: Checkpoint, b: Checkpoint) -> bool:
    """Whether two checkpoints look like copies of one model: the same tensor tables in files of the same
    sizes, and the same first and last MiB of data in every file. Cheap (2 MiB a shard), not a proof: a
    difference only in the middle of a large shard goes unseen."""
    if len(a.files) != len(b.files):
        return False
    pairs = list(zip(a.files, b.files))
    if any(fa.file_size - fa.data_start != fb.file_size - fb.data_start or _table(fa) != _table(fb)
           for fa, fb in pairs):  # fmt: skip
        return False
    return all(_ends_digest(fa) == _ends_digest(fb) for fa, fb in pairs)
