"""The restricted unpickler for a torch checkpoint's data.pkl: it runs no code from the file.

torch.save pickles a state dict as calls to a few torch functions. torch 2.13 writes exactly these globals
for one (checked against real files):

    collections.OrderedDict                 the state dict itself, and each tensor's empty backward hooks
    torch._utils._rebuild_tensor_v2         a tensor of a dtype with a legacy typed storage (F32, BF16, I64...)
    torch._utils._rebuild_tensor_v3         a newer dtype (float8, uint16...): untyped storage + torch.<dtype>
    torch._utils._rebuild_parameter         an nn.Parameter (state_dict(keep_vars=True))
    torch._utils._rebuild_parameter_with_state   an nn.Parameter carrying Python attributes
    torch.<X>Storage, torch.storage.UntypedStorage, torch.<dtype>   inside the persistent ids

and a persistent id ('storage', storage type, key, location, numel) per storage (its bytes are the zip
member <prefix>/data/<key>). No builtins and no _codecs: a state dict holds no bytes, sets or slices.

Each allowed global is replaced by a stand-in that returns a plain description (StorageRef, TensorRef);
any other global is refused before anything is looked up. The stand-ins are immutable tuples, so pickle's
BUILD opcode cannot set attributes on them, and the base is pickle's pure-Python _Unpickler, whose memo is a
dict: the C Unpickler allocates its memo up to the largest index used, so LONG_BINPUT 2**31 in a 7-byte
pickle asks for 32 GiB. Parsing in Python costs ~25 us a tensor: 0.12 s for a 5,000-tensor shard (a 405B
model's shards hold a few thousand), 5 s for 100,000, half what torch.load(weights_only=True) takes.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import reprlib
import shlex
from typing import NamedTuple

from ..dtypes import itemsize
from ..errors import InputError

# Legacy typed storages (torch.<X>Storage) -> safetensors dtype.
STORAGES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}
# torch.<dtype> globals (the last arguments of _rebuild_tensor_v3) -> safetensors dtype. torch 2.13 only
# uses v3 for dtypes without a typed storage (float8, uint16/32/64); the rest are accepted for robustness.
DTYPES = {
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e8m0fnu": "F8_E8M0",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "bfloat16": "BF16",
    "float16": "F16",
    "float32": "F32",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
# Other torch dtypes and typed storages (complex, quantized, sub-byte): refused as unsupported, not as suspect.
_OTHER_DTYPE = re.compile(r"(complex|cfloat|cdouble|quint|qint|uint|int|float|bits)(\d\w*)?")
_OTHER_STORAGE = re.compile(r"(Complex\w+|Q\w+)Storage")
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
short = _repr.repr  # bounded repr of file-controlled values, for messages


class StorageRef(NamedTuple):
    """One storage as its persistent id declares it."""

    key: str  # its bytes are the member <prefix>/data/<key>
    dtype: str  # the element type it is typed as (U8 for an untyped storage)
    numel: int  # elements of dtype

    @property
    def nbytes(self) -> int:
        return self.numel * itemsize(self.dtype)


class TensorRef(NamedTuple):
    """A tensor as data.pkl describes it, fields unchecked (torch_zip.py validates them, naming the tensor)."""

    storage: object
    offset: object  # storage_offset, in elements of the tensor's dtype
    size: object
    stride: object
    dtype: object  # v3 only: a _Dtype; v2 tensors have their storage's dtype
    metadata: object  # v2/v3's optional {"conj": bool, "neg": bool}


class _StorageType(NamedTuple):
    dtype: str


class _Dtype(NamedTuple):
    dtype: str


class StateDict(dict):
    """collections.OrderedDict's stand-in."""

    __slots__ = ()

    def __setstate__(self, state):
        pass  # state_dict()'s `_metadata` attribute (module versions): no tensor data


def _ordered_dict():
    return StateDict()


def _tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    return TensorRef(storage, storage_offset, size, stride, None, metadata)


def _tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    return TensorRef(storage, storage_offset, size, stride, dtype, metadata)


def _parameter(data, requires_grad, backward_hooks, state=None):
    return data  # an nn.Parameter's bytes are its data tensor's; the state holds Python attributes only


class _Call(NamedTuple):
    """What find_class hands out for an allowed function: immutable, and calling it runs only our code."""

    qualname: str

    def __call__(self, *args):
        return _CALLS[self.qualname](*args)


_CALLS = {
    "collections.OrderedDict": _ordered_dict,
    "torch._utils._rebuild_tensor_v2": _tensor_v2,
    "torch._utils._rebuild_tensor_v3": _tensor_v3,
    "torch._utils._rebuild_parameter": _parameter,
    "torch._utils._rebuild_parameter_with_state": _parameter,
}
ALLOWED = {
    **{name: _Call(name) for name in _CALLS},
    **{f"torch.{name}": _StorageType(dtype) for name, dtype in STORAGES.items()},
    "torch.storage.UntypedStorage": _StorageType("U8"),  # bytes; v3 names the tensor's dtype
    **{f"torch.{name}": _Dtype(dtype) for name, dtype in DTYPES.items()},
}


def convert_to_safetensors_command(path: str) -> str:
    """The one-liner that converts a trusted checkpoint to safetensors (it runs the file's pickle)."""
    out = os.path.splitext(path)[0] + ".safetensors"
    code = (f"import torch, safetensors.torch as st; sd = torch.load({path!r}, weights_only=False); "
            f"st.save_file({{k: v.contiguous().clone() for k, v in sd.items()}}, {out!r})")  # fmt: skip
    return shlex.join(["python", "-c", code])


def _key(unpickler, key):
    """A dict key of the pickle: a state dict's keys are strings. Anything else is refused before it is hashed:
    50 nested tuples memoised as (t, t) are 107 bytes of pickle and 2^50 steps of hash()."""
    if not isinstance(key, str):
        raise InputError(f"{unpickler.path}: state dict key {short(key)} is of type {type(key).__name__}, expected "
                         "str (a state dict's keys are strings; this is not one, or the file is corrupt)")  # fmt: skip
    return key


class _Unpickler(pickle._Unpickler):  # the pure-Python one: see the module docstring
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, path: str, data: bytes):
        super().__init__(io.BytesIO(data))
        self.path = path
        self.storages: dict[str, StorageRef] = {}

    # Every opcode that hashes a value the file built: dict keys must be strings, sets are refused.
    def load_setitem(self):
        value = self.stack.pop()
        key = _key(self, self.stack.pop())
        self.stack[-1][key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        for i in range(0, len(items), 2):
            target[_key(self, items[i])] = items[i + 1]

    def load_dict(self):
        items = self.pop_mark()
        self.append({_key(self, items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def load_set(self):
        raise self._bad("a set; a state dict holds none")

    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    for _opcode in (pickle.EMPTY_SET, pickle.ADDITEMS, pickle.FROZENSET):
        dispatch[_opcode[0]] = load_set

    def find_class(self, module, name):
        qualname = f"{module}.{name}"
        if qualname in ALLOWED:
            return ALLOWED[qualname]
        if not (len(qualname) <= 100 and qualname.isprintable()):
            qualname = short(qualname)
        if module == "torch" and (_OTHER_STORAGE.fullmatch(name) or _OTHER_DTYPE.fullmatch(name)):
            raise InputError(
                f"{self.path}: a tensor has dtype torch.{name}, which the merge cannot read "
                f"(supported: {', '.join(sorted(set(DTYPES.values())))}); convert the tensors to one of these first"
            )
        raise InputError(
            f"{self.path}: data.pkl asks for the global `{qualname}`, which a state dict of plain "
            "tensors never needs (allowed: collections.OrderedDict, torch._utils._rebuild_tensor_v2/v3, "
            "torch._utils._rebuild_parameter[_with_state], torch.<X>Storage, torch.<dtype>). It may hold a "
            "quantized, sparse or subclassed tensor, or the file may be malicious: unpickling it can run any "
            "code, so it was not loaded. Only if you trust where it came from, convert it once to safetensors: "
            + convert_to_safetensors_command(self.path)
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self._bad(f"persistent id {short(pid)} is not ('storage', type, key, location, numel)")
        _, kind, key, location, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not isinstance(location, str):
            raise self._bad(f"persistent id {short(pid)} has no storage type, key or location")
        if not _is_int(numel) or not 0 <= numel < 2**63:
            raise self._bad(f"storage {key!r} declares {short(numel)} elements")
        ref = StorageRef(key, kind.dtype, numel)
        seen = self.storages.setdefault(key, ref)
        if seen != ref:  # torch.save refuses to write one storage under two dtypes
            raise self._bad(
                f"storage {key!r} is declared as both {seen.numel} x {seen.dtype} and {numel} x {kind.dtype}"
            )
        return ref

    def _bad(self, what: str) -> InputError:
        return InputError(f"{self.path}: data.pkl: {what}; the file is corrupt or was not written by torch.save")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_state_dict(path: str, data: bytes) -> list[tuple[str, TensorRef]]:
    """The (name, TensorRef) pairs of data.pkl's state dict, in pickle order.

    The top-level object must be a dict of str -> tensor. Any other value (a number, a string, a nested dict
    such as a training checkpoint's {"model": ..., "optimizer": ...}) is refused, naming its key: dropping it
    quietly would make an output that differs from its input without saying so.
    """
    unpickler = _Unpickler(path, data)
    try:
        obj = unpickler.load()
    except InputError:
        raise
    except Exception as exc:  # the unpickler raises anything from KeyError to UnicodeDecodeError on bad input
        raise unpickler._bad(f"not a valid state-dict pickle ({type(exc).__name__}: {short(str(exc))})") from None
    if not isinstance(obj, dict):
        raise InputError(
            f"{path}: data.pkl holds an object of type {type(obj).__name__}, expected a dict of tensor names to "
            "tensors (a state dict); save model.state_dict() instead"
        )
    out = []
    for name, value in obj.items():
        if not isinstance(name, str):
            raise InputError(f"{path}: state dict key {short(name)} is of type {type(name).__name__}, expected str")
        if isinstance(value, TensorRef):
            out.append((name, value))
            continue
        kind = "a nested dict" if isinstance(value, dict) else f"a value of type {type(value).__name__}"
        # json.dumps writes Python string literals in double quotes: shlex then quotes the code as a whole
        where, key = json.dumps(path), json.dumps(name)
        fix = f"torch.load({where}, weights_only=True)[{key}]" if isinstance(value, dict) else (
            f"{{k: v for k, v in torch.load({where}, weights_only=True).items() if isinstance(v, torch.Tensor)}}"
        )  # fmt: skip
        code = f'import torch; torch.save({fix}, "tensors.bin")'
        raise InputError(
            f"{path}: state dict key {name!r} holds {kind}, not a tensor; a model checkpoint holds only tensors "
            f"(is this a training checkpoint?). Save the tensors alone: {shlex.join(['python', '-c', code])}"
        )
    return out
