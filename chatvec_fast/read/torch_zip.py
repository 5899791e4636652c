"""Finds the tensors of a PyTorch .bin checkpoint (torch.save's zip format) without loading any of them.

Since torch 1.6 (and in transformers 4's pytorch_model*.bin) the file is a zip archive:

    <prefix>/data.pkl      the state dict, pickled: each tensor is a call naming a storage key, an offset,
                           sizes and strides (read by torch_pickle.py, which runs no code from the file)
    <prefix>/data/<key>    one member per storage: its raw little-endian bytes, stored uncompressed; torch
                           pads the local header's extra field so the data starts on a 64-byte boundary
    <prefix>/byteorder     "little" (older files lack it; they are little-endian)
    <prefix>/version, .format_version, .storage_alignment, .data/serialization_id

The prefix is the archive's name (torch uses the file's stem; older versions wrote "archive"). A contiguous
tensor's bytes are then one range of the file, like a safetensors tensor: its member's first data byte (found
from the member's *local* header: the central directory does not record it, and the two extra fields differ)
+ storage_offset * itemsize. Every range is checked against its member before any data is used.
"""

from __future__ import annotations

import collections
import math
import os
import shlex
import struct
import zipfile
import zlib
from dataclasses import dataclass

from ..dtypes import itemsize
from ..errors import InputError
from ..regular_files import open_regular
from .torch_pickle import DTYPES, StorageRef, TensorRef, _Dtype, read_state_dict, short

ZIP_MAGIC = b"PK\x03\x04"
# torch.save(..., _use_new_zipfile_serialization=False): pickle protocol 2, then LONG1 of torch's magic number
# 0x1950a86a20f9469cfc6c.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# ~120 bytes of pickle per tensor with Llama-style names: 100 MB is ~800,000 tensors; a 405B model's shards hold a
# few thousand (~0.5 MB).
MAX_PICKLE_BYTES = 100_000_000
MAX_NDIM = 64  # torch's dimension bitsets stop at 64; bounds the size arithmetic below
LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header: 30 bytes before the name and extra
_UTF8_NAME = 0x800  # general-purpose flag bit 11


@dataclass(frozen=True)
class TorchTensor:
    """Where one tensor's bytes live in a torch zip checkpoint."""

    name: str
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the tensor's first element in the .bin file
    nbytes: int


def resave_command(path: str, value: str = "sd") -> str:
    """A one-liner that re-saves `path` in the current format with torch's safe (weights_only) loader. Quoted
    for the shell (shlex): a path such as cp$(touch X) is a name, never a command."""
    code = f"import torch; sd = torch.load({path!r}, weights_only=True); torch.save({value}, {path!r})"
    return shlex.join(["python", "-c", code])


def is_torch_zip(path: str) -> bool:
    """Cheap sniff: a zip archive with a data.pkl member. `is_torch_zip("pytorch_model.bin")` -> True."""
    try:
        with open_regular(path, ".bin checkpoint") as f:
            if f.read(4) != ZIP_MAGIC:
                return False
            with zipfile.ZipFile(f) as zf:
                return any(_is_pickle_name(n) for n in zf.namelist())
    except Exception:  # OSError, or any of the many errors zipfile raises on a malformed directory
        return False


def read_torch_zip(path: str) -> list[TorchTensor]:
    """The state dict's tensors in pickle order, every byte range validated against the archive; InputError otherwise.

    Example: `{t.name: (t.offset, t.nbytes) for t in read_torch_zip("pytorch_model.bin")}`; read the bytes with
    preadv as for a safetensors tensor. Loads no tensor data: memory is the size of data.pkl.
    """
    try:
        with open_regular(path, ".bin checkpoint") as f:
            file_size = os.fstat(f.fileno()).st_size
            _check_magic(path, f.read(len(LEGACY_MAGIC)), file_size)
            f.seek(0)
            try:
                zf = zipfile.ZipFile(f)
            except Exception as exc:  # BadZipFile, NotImplementedError, UnicodeDecodeError, struct.error...
                if isinstance(exc, OSError):
                    raise
                raise InputError(
                    f"{path}: starts like a zip archive but its directory cannot be read ({exc}); the file is "
                    "truncated or corrupt (re-download it)"
                ) from None
            with zf:
                return _read(path, f.fileno(), zf, file_size)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _check_magic(path: str, head: bytes, file_size: int):
    if head.startswith(ZIP_MAGIC):
        return
    if head == LEGACY_MAGIC:
        raise InputError(
            f"{path}: legacy torch.save format (a raw pickle from before torch 1.6, or saved with "
            "_use_new_zipfile_serialization=False), which cannot be read without unpickling it whole. Convert it "
            f"once (torch's safe weights_only loader; it loads the file into memory): {resave_command(path)}"
        )
    raise InputError(
        f"{path}: {file_size} bytes, not a zip archive (starts with {head[:4]!r}, expected {ZIP_MAGIC!r}); "
        "expected a PyTorch checkpoint written by torch.save. The file is truncated, corrupt or another format"
    )


def _is_pickle_name(name: str) -> bool:
    return name == "data.pkl" or (name.endswith("/data.pkl") and name.count("/") == 1)


def _read(path: str, fd: int, zf: zipfile.ZipFile, file_size: int) -> list[TorchTensor]:
    infos = zf.infolist()
    members = {i.filename: i for i in infos}
    if len(members) != len(infos):
        dup = next(n for n, k in collections.Counter(i.filename for i in infos).items() if k > 1)
        raise InputError(f"{path}: the zip archive holds member {dup!r} twice; the file is corrupt")
    pickles = [n for n in members if _is_pickle_name(n)]
    if len(pickles) != 1:
        raise InputError(
            f"{path}: a zip archive with {len(pickles)} data.pkl members ({pickles[:3]}), expected exactly one "
            "<name>/data.pkl; this is not a checkpoint written by torch.save"
        )
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = members.get(prefix + "byteorder")
    if byteorder is not None:
        value = _small_member(path, fd, byteorder, file_size, 16)
        if value != b"little":
            raise InputError(
                f"{path}: byteorder {value.decode('latin-1')!r}, expected 'little'; torch.load converts it when it "
                f"loads the file, so re-save it once: {resave_command(path)}"
            )
    data = _small_member(path, fd, members[pickles[0]], file_size, MAX_PICKLE_BYTES)

    starts: dict[str, int] = {}  # storage key -> absolute offset of its member's data
    out = []
    for name, ref in read_state_dict(path, data):
        storage = ref.storage
        if not isinstance(storage, StorageRef):
            raise InputError(f"{path}: tensor {name!r}: its storage is a {type(storage).__name__}; data.pkl is corrupt")
        if storage.key not in starts:
            starts[storage.key] = _storage_start(path, fd, members, prefix, name, storage, file_size)
        out.append(_locate(path, name, ref, storage, starts[storage.key]))
    _check_disjoint(path, starts, members, prefix)
    return out


def _data_start(where: str, path: str, fd: int, info: zipfile.ZipInfo, file_size: int) -> int:
    """The offset of a member's first data byte, from its local header; checks it is stored and inside the file.

    Only the zip directory comes from zipfile: it would decompress a member, and its errors are of many types.
    """
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        how = "encrypted" if info.flag_bits & 0x1 else f"compressed (zip method {info.compress_type})"
        raise InputError(
            f"{where} is {how}; torch.save stores every member uncompressed so that storages can be read in "
            f"place. The archive was rewritten by another tool; re-save it with torch: {resave_command(path)}"
        )
    if not 0 <= info.header_offset <= file_size - LOCAL_HEADER.size:  # zipfile can compute a negative one
        raise InputError(
            f"{where}: its header at byte {info.header_offset} is outside the file ({file_size} bytes); the file is "
            "truncated or corrupt (re-download it)"
        )
    magic, _, flags, method, _, _, _, _, _, name_len, extra_len = LOCAL_HEADER.unpack(
        os.pread(fd, LOCAL_HEADER.size, info.header_offset)
    )
    local_name = os.pread(fd, name_len, info.header_offset + LOCAL_HEADER.size)
    if magic != ZIP_MAGIC or local_name.decode("utf-8" if flags & _UTF8_NAME else "cp437", "replace") != info.filename:
        raise InputError(f"{where}: no local header for it at byte {info.header_offset}; the archive is corrupt")
    if method != zipfile.ZIP_STORED:
        raise InputError(f"{where}: its local header says compressed (method {method}); the archive is corrupt")
    start = info.header_offset + LOCAL_HEADER.size + name_len + extra_len
    if info.compress_size != info.file_size or start + info.file_size > file_size:
        raise InputError(
            f"{where}: its {info.file_size} bytes at byte {start} do not fit in the file ({file_size} bytes); the "
            "file is truncated or corrupt (re-download it)"
        )
    return start


def _small_member(path: str, fd: int, info: zipfile.ZipInfo, file_size: int, limit: int) -> bytes:
    """A metadata member's bytes (data.pkl, byteorder), size-bounded and CRC-checked."""
    where = f"{path}: member {info.filename!r}"
    if info.file_size > limit:
        raise InputError(
            f"{where} declares {info.file_size} bytes, over its {limit}-byte limit (a state dict needs ~120 bytes "
            "per tensor); the file is corrupt or not a model checkpoint"
        )
    data = os.pread(fd, info.file_size, _data_start(where, path, fd, info, file_size))
    if zlib.crc32(data) != info.CRC:
        raise InputError(f"{where} fails its CRC check; the file is corrupt (re-download it)")
    return data


def _storage_start(path: str, fd: int, members: dict, prefix: str, name: str, storage: StorageRef, file_size: int):
    """Validates a storage's member (stored, inside the file, the size data.pkl declares); returns its data start."""
    member = prefix + "data/" + storage.key
    where = f"{path}: tensor {name!r}: storage member {member!r}"
    info = members.get(member)
    if info is None:
        raise InputError(f"{where} is missing from the zip archive; the file is truncated or corrupt (re-download it)")
    start = _data_start(where, path, fd, info, file_size)
    if info.file_size != storage.nbytes:
        raise InputError(
            f"{where} holds {info.file_size} bytes, data.pkl declares {storage.numel} x {storage.dtype} = "
            f"{storage.nbytes} bytes; the archive is corrupt (re-download it)"
        )
    return start


def _is_index(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**63


def _index_tuple(x) -> bool:
    return isinstance(x, tuple) and all(_is_index(d) for d in x)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _locate(path: str, name: str, ref: TensorRef, storage: StorageRef, start: int) -> TorchTensor:
    where = f"{path}: tensor {name!r}"
    if ref.dtype is None:  # _rebuild_tensor_v2: the storage's dtype
        dtype = storage.dtype
    elif isinstance(ref.dtype, _Dtype):
        dtype = ref.dtype.dtype
    else:
        raise InputError(f"{where}: dtype {type(ref.dtype).__name__}, expected one of torch.{', torch.'.join(DTYPES)}")
    shape, stride, offset = ref.size, ref.stride, ref.offset
    if not (_index_tuple(shape) and _index_tuple(stride) and len(stride) == len(shape) <= MAX_NDIM):
        raise InputError(
            f"{where}: sizes {short(shape)} and strides {short(stride)} are not two tuples of up to {MAX_NDIM} "
            "non-negative integers of the same length; data.pkl is corrupt"
        )
    if not _is_index(offset):
        raise InputError(f"{where}: storage offset {short(offset)} is not a non-negative integer; data.pkl is corrupt")
    if not (ref.metadata is None or (isinstance(ref.metadata, dict) and not any(ref.metadata.values()))):
        raise InputError(
            f"{where}: saved with lazy bits {short(ref.metadata)} (a conjugate or negative view), so its bytes are not "
            f"its values; re-save with .resolve_conj().resolve_neg(): {resave_command(path, _ALL_RESOLVED)}"
        )
    # A dimension of size 1 is never stepped over, and an empty tensor has no element to misplace, so only
    # the strides of dimensions longer than 1 must be the row-major ones.
    want = _contiguous_strides(shape)
    if 0 not in shape and any(n > 1 and s != w for n, s, w in zip(shape, stride, want)):
        raise InputError(
            f"{where}: non-contiguous view (shape {shape}, strides {stride}, row-major would be {want}), so its "
            f"bytes are not one range; re-save with .contiguous(): {resave_command(path, _ALL_CONTIGUOUS)}"
        )
    numel, size = math.prod(shape), itemsize(dtype)  # sizes < 2**63 and at most 64 of them: cheap to multiply
    first, end = offset * size, (offset + numel) * size
    if end > storage.nbytes:  # storage.nbytes is its member's size, so every range is inside the file
        raise InputError(
            f"{where}: elements {offset}..{offset + numel} of {dtype} (bytes {first}-{end}) run past its storage "
            f"{storage.key!r} of {storage.nbytes} bytes; data.pkl is corrupt"
        )
    return TorchTensor(name, dtype, shape, start + first, numel * size)


_ALL_CONTIGUOUS = "{k: v.contiguous() for k, v in sd.items()}"
_ALL_RESOLVED = "{k: v.resolve_conj().resolve_neg() for k, v in sd.items()}"


def _check_disjoint(path: str, starts: dict[str, int], members: dict, prefix: str):
    """Distinct storages must not share bytes (torch writes each once); tensors of one storage may overlap."""
    spans = sorted((start, start + members[prefix + "data/" + key].file_size, key) for key, start in starts.items())
    for (_, end, key), (begin, _, other) in zip(spans, spans[1:]):
        if begin < end:
            raise InputError(f"{path}: storages {key!r} and {other!r} overlap in the file; the archive is corrupt")
