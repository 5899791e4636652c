"""Reads and validates the header of one .safetensors file.

Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
({"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}),
then the data; offsets are relative to the start of the data. Everything is
checked before any tensor data is used, so a truncated or hostile file is
rejected with a message naming the file and the tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field

from ..dtypes import BITS, nbytes
from ..errors import InputError
from ..regular_files import open_regular
from .identity import FileIdentity

# The safetensors library refuses headers above 100 MB; a 405B model's largest
# shard header is about 100 KB.
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes live."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: str  # the file
    offset: int  # absolute byte offset of the data in the file
    nbytes: int
    identity: FileIdentity | None = None  # the file when its header was read

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class SafetensorsHeader:
    path: str
    file_size: int
    data_start: int  # 8 + N
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo] = field(default_factory=dict)  # in data-offset order
    identity: FileIdentity | None = None


def _reject_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _encodable(text: str) -> bool:
    """JSON may hold lone surrogates ("\\ud800") that no UTF-8 file can: such a name passes json.loads and
    fails when we write it, after the whole merge."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


U64_MAX = 2**64 - 1


def tensor_problem(name: str, shape: list, dtype: str) -> str | None:
    """What the safetensors format could not hold about a tensor found elsewhere (a .bin file)."""
    if not _encodable(name):
        return "the name is not valid Unicode (a lone surrogate)"
    return _shape_problem(shape, dtype)


def _shape_problem(shape: list, dtype: str) -> str | None:
    """What the safetensors library would refuse in a shape: the element count overflows 64 bits at any
    step, left to right (even when a later dimension is 0), or a sub-byte dtype does not end on a byte."""
    count = 1
    for d in shape:
        if d > U64_MAX:
            return f"shape {tuple(shape)}: dimension {d} does not fit in 64 bits"
        count *= d
        if count > U64_MAX:
            return f"shape {tuple(shape)}: the element count overflows 64 bits"
    if (count * BITS[dtype]) % 8:
        return f"shape {tuple(shape)} of {dtype} does not fill whole bytes ({count} x {BITS[dtype]} bits)"
    return None


def read_header(path: str) -> SafetensorsHeader:
    """Parses and validates `path`'s header. Raises InputError naming what is wrong."""
    try:
        with open_regular(path, "safetensors file") as f:
            identity = FileIdentity.of(os.fstat(f.fileno()))
            file_size = identity.size
            prefix = f.read(8)
            if len(prefix) < 8:
                raise InputError(
                    f"{path}: {file_size} bytes, too short for a safetensors file (needs an 8-byte header length); "
                    "the file is truncated or not safetensors"
                )
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES:
                raise InputError(
                    f"{path}: header length {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit; "
                    "the file is corrupt or not safetensors"
                )
            if header_len > file_size - 8:
                raise InputError(
                    f"{path}: header length {header_len} bytes but the file has only {file_size - 8} bytes after "
                    "the length field; the file is truncated (re-download it)"
                )
            raw = f.read(header_len)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) != header_len:
        raise InputError(f"{path}: header shorter than its declared {header_len} bytes; the file is truncated")
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: header is not valid UTF-8 JSON ({exc}); the file is corrupt") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: header is a JSON {type(doc).__name__}, expected an object")

    data_start = 8 + header_len
    data_size = file_size - data_start
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InputError(f"{path}: __metadata__ must map strings to strings")
    if not all(_encodable(k) and _encodable(v) for k, v in metadata.items()):
        raise InputError(f"{path}: __metadata__ holds text that is not valid Unicode (a lone surrogate)")

    entries = []
    for name, spec in doc.items():
        where = f"{path}: tensor {name!r}"
        if not _encodable(name):
            raise InputError(f"{where}: the name is not valid Unicode (a lone surrogate); the header is corrupt")
        if not isinstance(spec, dict):
            raise InputError(f"{where}: entry is a JSON {type(spec).__name__}, expected an object")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in BITS:
            known = ", ".join(sorted(BITS))
            raise InputError(f"{where}: unknown dtype {dtype!r} (known: {known})")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise InputError(f"{where}: shape {shape!r} is not a list of non-negative integers")
        problem = _shape_problem(shape, dtype)
        if problem:
            raise InputError(f"{where}: {problem}; the safetensors format cannot hold it, the file is corrupt")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise InputError(f"{where}: data_offsets {offsets!r} is not [begin, end] with 0 <= begin <= end")
        begin, end = offsets
        expected = nbytes(dtype, math.prod(shape))
        if end - begin != expected:
            raise InputError(
                f"{where}: shape {tuple(shape)} of {dtype} needs {expected} bytes, data_offsets span {end - begin}; "
                "the header is corrupt"
            )
        if end > data_size:
            raise InputError(
                f"{where}: data ends at byte {end} but the file holds {data_size} bytes of data; "
                "the file is truncated (re-download it)"
            )
        entries.append((begin, end, name, dtype, tuple(shape)))

    entries.sort()
    header = SafetensorsHeader(path, file_size, data_start, metadata, identity=identity)
    previous_end, previous_name = 0, None
    for begin, end, name, dtype, shape in entries:
        if begin < previous_end:
            raise InputError(
                f"{path}: tensor {name!r} (bytes {begin}-{end}) overlaps tensor {previous_name!r} "
                f"(which ends at {previous_end}); the header is corrupt"
            )
        header.tensors[name] = TensorInfo(name, dtype, shape, path, data_start + begin, end - begin, identity)
        previous_end, previous_name = max(previous_end, end), name
    return header
