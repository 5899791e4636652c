"""PyTorch .bin checkpoints (torch.save's zip format): every tensor's byte range found without loading it, and
every file that is not a plain state dict of contiguous tensors refused with a message naming file and tensor.

Checkpoints are written the way transformers 4 wrote pytorch_model*.bin: torch.save of a dict of tensors, with
the default zip serialization.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import random
import shlex
import subprocess
import sys
import warnings
import zipfile

import pytest
import torch

import chatvec_fast
from chatvec_fast.errors import InputError
from chatvec_fast.read.chunks import read_bytes
from chatvec_fast.read.header import TensorInfo
from chatvec_fast.read.torch_zip import TorchTensor, is_torch_zip, read_torch_zip

SAFETENSORS_NAMES = {
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",  # these last six: _rebuild_tensor_v3, an untyped storage and torch.<dtype>
    torch.float8_e5m2: "F8_E5M2",
    torch.float8_e8m0fnu: "F8_E8M0",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
}
UNSIGNED_BITS = {torch.uint16: 16, torch.uint32: 32}
# 0-d, empty, one element, odd lengths, lengths just past 8/16/64-wide vectors, and a few ranks.
SHAPES = [(), (0, 5), (5, 0), (1,), (7,), (17,), (65,), (3, 5), (2, 3, 7), (1, 1, 9)]


def random_tensor(shape, dtype, g) -> torch.Tensor:
    """Awkward random values: every bit pattern an int can hold, signed normal floats spanning magnitudes."""
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype == torch.uint64:  # torch.randint cannot make the unsigned types directly
        return torch.randint(-(2**63), 2**63 - 1, shape, generator=g, dtype=torch.int64).view(dtype)
    if dtype in UNSIGNED_BITS:
        return torch.randint(0, 2 ** UNSIGNED_BITS[dtype], shape, generator=g, dtype=torch.int64).to(dtype)
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        return torch.randint(info.min, info.max, shape, generator=g, dtype=torch.int64).to(dtype)
    scale = torch.exp2(torch.randint(-6, 6, shape, generator=g).double())
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def raw_bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def read_range(path, t: TorchTensor) -> bytes:
    """Through THE byte reader, as the merge will read it."""
    return bytes(read_bytes(TensorInfo(t.name, t.dtype, t.shape, str(path), t.offset, t.nbytes)))


def check(path, state_dict):
    """read_torch_zip lists every tensor in order with its dtype and shape, and its range holds its bytes."""
    got = read_torch_zip(str(path))
    assert [t.name for t in got] == list(state_dict)
    for t in got:
        want = state_dict[t.name]
        assert (t.dtype, t.shape) == (SAFETENSORS_NAMES[want.dtype], tuple(want.shape)), t.name
        data, expected = read_range(path, t), raw_bytes(want)
        if data != expected:
            first = next(i for i, (a, b) in enumerate(zip(data, expected)) if a != b)
            pytest.fail(f"{t.name}: byte {first} of {len(expected)}: got {data[first]:#x}, want {expected[first]:#x}")
    return got


def save(tmp_path, state_dict, name="pytorch_model.bin", **kwargs):
    path = tmp_path / name
    torch.save(state_dict, path, **kwargs)
    return path


@pytest.mark.parametrize("dtype", list(SAFETENSORS_NAMES), ids=lambda d: SAFETENSORS_NAMES[d])
def test_every_dtype_and_shape(tmp_path, dtype):
    g = torch.Generator().manual_seed(hash(str(dtype)) % 2**31)
    sd = {f"layers.{i}.w{'x'.join(map(str, s))}": random_tensor(s, dtype, g) for i, s in enumerate(SHAPES)}
    check(save(tmp_path, sd), sd)


def test_transformers_style_checkpoints(tmp_path):
    """A whole model's state_dict() (an OrderedDict with a _metadata attribute) and shards as transformers 4 wrote
    them ({name: tensor.contiguous()}), bf16 with an fp32 norm and an int64 buffer."""
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Embedding(67, 24), torch.nn.Linear(24, 37), torch.nn.BatchNorm1d(37))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(random_tensor(p.shape, torch.float32, g))
    model = model.to(torch.bfloat16)
    model[2].float()
    sd = model.state_dict()
    assert hasattr(sd, "_metadata")
    check(save(tmp_path, sd), sd)
    names = list(sd)
    for i, part in enumerate((names[:3], names[3:])):
        shard = {k: sd[k].contiguous() for k in part}
        check(save(tmp_path, shard, f"pytorch_model-0000{i + 1}-of-00002.bin"), shard)


def test_views_of_one_storage(tmp_path):
    """Slices saved beside their base keep one storage; a slice's range starts at its storage_offset."""
    g = torch.Generator().manual_seed(2)
    big, grid = random_tensor((10,), torch.float32, g), random_tensor((6, 4), torch.bfloat16, g)
    sd = {
        "big": big,
        "middle": big[3:7],  # storage_offset 3
        "last": big[9:],  # one element, at the storage's end
        "none_at_end": big[10:],  # empty, offset == numel
        "grid": grid,
        "rows": grid[2:5],  # offset 8
        "row_piece": grid[1:2, 1:3],  # shape (1, 2), strides (4, 1): the size-1 dimension's stride does not matter
        "odd_stride": grid.as_strided((1, 5), (7, 1), 2),  # same, with a stride no contiguous tensor would have
    }
    got = {t.name: t for t in check(save(tmp_path, sd), sd)}
    assert got["middle"].offset == got["big"].offset + 3 * 4
    assert got["rows"].offset == got["grid"].offset + 8 * 2
    assert got["last"].offset + got["last"].nbytes == got["big"].offset + got["big"].nbytes


def test_tied_weights_and_parameters(tmp_path):
    """Tied weights share one storage (one range); nn.Parameter values (keep_vars=True, with and without
    requires_grad, with Python attributes) read as their data."""
    g = torch.Generator().manual_seed(3)
    emb = torch.nn.Parameter(random_tensor((11, 6), torch.float16, g))
    frozen = torch.nn.Parameter(random_tensor((5,), torch.float32, g), requires_grad=False)
    tagged = torch.nn.Parameter(random_tensor((3, 3), torch.bfloat16, g))
    tagged.tp_dim = 1  # pickled with _rebuild_parameter_with_state
    sd = {"embed.weight": emb, "lm_head.weight": emb, "norm.weight": frozen, "tagged": tagged}
    got = {t.name: t for t in check(save(tmp_path, sd), sd)}
    assert got["embed.weight"] == TorchTensor("embed.weight", "F16", (11, 6), got["lm_head.weight"].offset, 132)


def run_fix(message: str):
    """Runs the `python -c "..."` fix a message ends with, in this process (torch is already imported here)."""
    argv = shlex.split(message[message.index("python -c ") :])
    assert argv[:2] == ["python", "-c"], message
    exec(argv[2], {})


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda x: x.t(), "strides (1, 4), row-major would be (3, 1)"),
        (lambda x: x[:, 1:3], "strides (4, 1), row-major would be (2, 1)"),
        (lambda x: x[:1].expand(5, 4), "strides (0, 1)"),
    ],
    ids=["transposed", "column_slice", "expanded"],
)
def test_non_contiguous_view_is_refused_naming_it(tmp_path, make, fragment):
    x = random_tensor((3, 4), torch.float32, torch.Generator().manual_seed(4))
    sd = {"ok": x, "model.layers.0.mlp.up_proj.weight": make(x)}
    path = save(tmp_path, sd)
    with pytest.raises(InputError, match=r"non-contiguous view") as err:
        read_torch_zip(str(path))
    message = str(err.value)
    assert str(path) in message and "'model.layers.0.mlp.up_proj.weight'" in message and fragment in message
    assert "re-save with .contiguous()" in message
    run_fix(message)  # the fix we print works
    check(path, {k: v.contiguous() for k, v in sd.items()})


def test_lazy_negative_view_is_refused(tmp_path):
    x = random_tensor((4,), torch.float32, torch.Generator().manual_seed(5))
    path = save(tmp_path, {"w": torch._neg_view(x)})  # its bytes are -w
    with pytest.raises(InputError, match=r"tensor 'w': saved with lazy bits .*resolve_neg") as err:
        read_torch_zip(str(path))
    run_fix(str(err.value))
    check(path, {"w": -x})


def rewrite_zip(src, dst, replace=None, drop=(), compress=None):
    """Copies a zip member by member: `replace` {name: bytes}, `drop` names, `compress(name) -> method`."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            method = compress(info.filename) if compress else zipfile.ZIP_STORED
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)), compress_type=method)
    return dst


def small_checkpoint(tmp_path, name="pytorch_model.bin"):
    g = torch.Generator().manual_seed(6)
    sd = {"a": random_tensor((5, 3), torch.bfloat16, g), "b": random_tensor((7,), torch.float32, g)}
    return save(tmp_path, sd, name), sd


def member(path, suffix):
    return next(n for n in zipfile.ZipFile(path).namelist() if n.endswith(suffix))


class Payload:
    """A value whose unpickling calls `fn(*args)`: what a malicious checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args

    def __call__(self, *args):  # pickle wants a callable where a chain uses a Payload as the function
        raise AssertionError("only pickle's loader should call it")


def payloads(marker):
    touch = f"touch {shlex.quote(str(marker))}"
    return {
        "os.system": (Payload(os.system, touch), "posix.system"),
        "eval": (Payload(eval, f"__import__('os').system({touch!r})"), "builtins.eval"),
        "getattr": (Payload(Payload(getattr, Payload(__import__, "os"), "system"), touch), "builtins.getattr"),
        "torch.load": (Payload(torch.load, str(marker)), "torch.serialization.load"),
    }


class Storage:
    def __init__(self, key, numel, kind=torch.FloatStorage, location="cpu"):
        self.key, self.numel, self.kind, self.location = key, numel, kind, location


class Tensor:
    """Pickles as the call torch.save writes for a tensor, with any arguments we like."""

    def __init__(self, storage, offset, size, stride, *extra, fn=torch._utils._rebuild_tensor_v2):
        self.args, self.fn = (storage, offset, size, stride, False, collections.OrderedDict(), *extra), fn

    def __reduce__(self):
        return self.fn, self.args


class CraftPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.kind, obj.key, obj.location, obj.numel)
        return None


def crafted(tmp_path, obj, storages, protocol=2, name="crafted.bin", byteorder=b"little"):
    """A torch-style zip: archive/data.pkl pickled from `obj`, archive/data/<key> from `storages` {key: bytes}."""
    buf = io.BytesIO()
    CraftPickler(buf, protocol=protocol).dump(obj)
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", b"3\n")
    return path


def test_zip64_local_header(tmp_path):
    """A member written with zip64 extra fields (torch writes them for members over 4 GiB): the data start comes
    from the local header, whose extra field differs from the central directory's."""
    data = random_tensor((6,), torch.float64, torch.Generator().manual_seed(11))
    path = crafted(tmp_path, {"a": Tensor(Storage("0", 6, torch.DoubleStorage), 0, (6,), (1,))}, {})
    with zipfile.ZipFile(path, "a") as z, z.open("archive/data/0", "w", force_zip64=True) as f:
        f.write(raw_bytes(data))
    check(path, {"a": data})


def test_crafted_archive_reads_like_torch(tmp_path):
    """The test helper above writes what torch.save writes (protocol 2 and 4 both)."""
    data = random_tensor((15,), torch.float32, torch.Generator().manual_seed(7))
    for protocol in (2, 4):
        obj = collections.OrderedDict(a=Tensor(Storage("0", 15), 3, (3, 4), (4, 1)))
        path = crafted(tmp_path, obj, {"0": raw_bytes(data)}, protocol=protocol)
        check(path, {"a": data[3:].reshape(3, 4)})


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL, and protocol 4's STACK_GLOBAL
@pytest.mark.parametrize("where", ["top", "value", "persistent_id"])
@pytest.mark.parametrize("kind", ["os.system", "eval", "getattr", "torch.load"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, kind, where, protocol):
    marker = tmp_path / "MARKER"
    evil, qualname = payloads(marker)[kind]
    if where == "persistent_id":  # as the storage type of a tensor's storage
        obj = {"a": Tensor(Storage("0", 4, kind=evil), 0, (4,), (1,))}
        path = crafted(tmp_path, obj, {"0": b"\x01\x02\x03\x04" * 4}, protocol=protocol)
    else:  # in a real checkpoint, data.pkl replaced
        real, _ = small_checkpoint(tmp_path)
        obj = evil if where == "top" else {"a": evil, "b": 1}
        path = real.with_suffix(".evil")
        rewrite_zip(real, path, replace={member(real, "/data.pkl"): pickle.dumps(obj, protocol=protocol)})
    with pytest.raises(InputError) as err:
        read_torch_zip(str(path))
    message = str(err.value)
    if protocol < 3:  # pickle writes Python 2's module names for protocols 0-2
        qualname = qualname.replace("builtins.", "__builtin__.")
    assert f"`{qualname}`" in message and "malicious" in message and str(path) in message
    assert "weights_only=False" in message and ".safetensors" in message
    assert not marker.exists()


def test_the_malicious_payload_is_live(tmp_path):
    """The control: pickle itself runs the payload the test above feeds read_torch_zip."""
    marker = tmp_path / "MARKER"
    for kind, (evil, _) in payloads(marker).items():
        if kind != "torch.load":
            pickle.loads(pickle.dumps({"a": evil}, protocol=2))
            assert marker.exists(), kind
            marker.unlink()


def test_legacy_format_is_refused_with_a_conversion_that_works(tmp_path):
    g = torch.Generator().manual_seed(8)
    sd = {"w": random_tensor((4, 6), torch.float16, g), "b": random_tensor((6,), torch.float32, g)}
    path = save(tmp_path, sd, _use_new_zipfile_serialization=False)
    assert not is_torch_zip(str(path))
    with pytest.raises(InputError, match=r"legacy torch.save format") as err:
        read_torch_zip(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "weights_only=True" in message and "\n" not in message
    run_fix(message)
    check(path, sd)


@pytest.mark.parametrize(
    "which, error",
    [
        ("all", r"member '.*/(byteorder|data.pkl)' is compressed \(zip method 8\)"),  # read before the storages
        ("storages", r"tensor 'a': storage member '.*/data/0' is compressed \(zip method 8\)"),
    ],
)
def test_compressed_member_is_refused(tmp_path, which, error):
    path, sd = small_checkpoint(tmp_path)
    deflated = rewrite_zip(
        path,
        tmp_path / "deflated.bin",
        compress=lambda n: zipfile.ZIP_DEFLATED if which == "all" or "/data/" in n else zipfile.ZIP_STORED,
    )
    assert torch.equal(torch.load(deflated, weights_only=True)["a"], sd["a"])  # torch itself reads it
    with pytest.raises(InputError, match=error) as err:
        read_torch_zip(str(deflated))
    assert "uncompressed" in str(err.value) and "weights_only=True" in str(err.value)


@pytest.mark.parametrize("keep", [0, 3, 100, 0.5, -22, -1])  # bytes kept; a fraction of the file; bytes cut
def test_truncated_file_is_refused(tmp_path, keep):
    path, _ = small_checkpoint(tmp_path)
    size = os.path.getsize(path)
    os.truncate(path, int(size * keep) if isinstance(keep, float) else keep if keep >= 0 else size + keep)
    with pytest.raises(InputError, match=r"truncated") as err:
        read_torch_zip(str(path))
    assert str(err.value).startswith(f"{path}: ")
    assert not is_torch_zip(str(path))


def test_missing_storage_member_is_refused(tmp_path):
    path, _ = small_checkpoint(tmp_path)
    broken = rewrite_zip(path, tmp_path / "broken.bin", drop={member(path, "/data/1")})
    with pytest.raises(InputError, match=r"tensor 'b': storage member '.*/data/1' is missing from the zip archive"):
        read_torch_zip(str(broken))


FLOATS16 = bytes(range(1, 33))  # 16 floats' worth of storage "0", never zeros
F = Storage("0", 8)  # 8 x F32 = 32 bytes


def case(id, obj, error, storages=None):
    return pytest.param(obj, storages or {"0": FLOATS16}, error, id=id)


V3 = torch._utils._rebuild_tensor_v3
U = torch.storage.UntypedStorage
VEC = ((4,), (1,))  # size and stride of a 4-vector


@pytest.mark.parametrize(
    "obj, storages, error",
    [
        case("no_member", {"a": Tensor(Storage("9", 8), 0, (8,), (1,))},
             r"'a': storage member 'archive/data/9' is missing"),
        case("member_size", {"a": Tensor(Storage("0", 9), 0, (9,), (1,))},
             r"holds 32 bytes, data.pkl declares 9 x F32 = 36"),
        case("past_end", {"a": Tensor(F, 5, *VEC)}, r"'a': elements 5..9 of F32 \(bytes 20-36\) run past its storage"),
        case("too_big", {"a": Tensor(F, 0, (2, 5), (5, 1))}, r"run past its storage '0' of 32 bytes"),
        case("negative_size", {"a": Tensor(F, 0, (2, -4), (4, 1))}, r"'a': sizes \(2, -4\) and strides \(4, 1\)"),
        case("rank_mismatch", {"a": Tensor(F, 0, (2, 4), (4,))}, r"not two tuples of up to 64 .* of the same length"),
        case("bool_size", {"a": Tensor(F, 0, (True, 4), (4, 1))}, r"sizes \(True, 4\)"),
        case("huge_size", {"a": Tensor(F, 0, (2**64, 0), (1, 1))}, r"sizes \(18446744073709551616, 0\)"),
        case("list_size", {"a": Tensor(F, 0, [4], (1,))}, r"sizes \[4\]"),
        case("rank_65", {"a": Tensor(F, 0, (1,) * 65, (1,) * 65)}, r"up to 64"),
        case("negative_offset", {"a": Tensor(F, -1, *VEC)}, r"'a': storage offset -1 is not a non-negative integer"),
        case("two_dtypes", {"a": Tensor(F, 0, *VEC), "b": Tensor(Storage("0", 16, torch.HalfStorage), 0, *VEC)},
             r"storage '0' is declared as both 8 x F32 and 16 x F16"),
        case("negative_numel", {"a": Tensor(Storage("0", -8), 0, *VEC)}, r"storage '0' declares -8 elements"),
        case("complex_storage", {"a": Tensor(Storage("0", 4, torch.ComplexFloatStorage), 0, *VEC)},
             r"dtype torch.ComplexFloatStorage, which the merge cannot read"),
        case("complex_v3", {"a": Tensor(Storage("0", 32, U), 0, *VEC, torch.complex64, fn=V3)},
             r"dtype torch.complex64, which the merge cannot read"),
        case("v3_no_dtype", {"a": Tensor(Storage("0", 32, U), 0, *VEC, "F32", fn=V3)},
             r"'a': dtype str, expected one of torch.float8_e4m3fn"),
        case("storage_not_persistent", {"a": Tensor("0", 0, *VEC)}, r"tensor 'a': its storage is a str"),
        case("int_value", {"a": Tensor(F, 0, *VEC), "step": 3}, r"key 'step' holds a value of type int, not a tensor"),
        case("nested", {"model": {"a": Tensor(F, 0, *VEC)}}, r"key 'model' holds a nested dict.*\[\"model\"\]"),
        case("int_key", {0: Tensor(F, 0, *VEC)}, r"state dict key 0 is of type int, expected str"),
        case("list", [Tensor(F, 0, *VEC)], r"data.pkl holds an object of type list, expected a dict"),
        case("neg_bit", {"a": Tensor(F, 0, *VEC, {"conj": False, "neg": True})}, r"lazy bits"),
    ],
)  # fmt: skip
def test_corrupt_state_dict_is_refused(tmp_path, obj, storages, error):
    path = crafted(tmp_path, obj, storages)
    with pytest.raises(InputError, match=error) as err:
        read_torch_zip(str(path))
    assert str(err.value).startswith(f"{path}: ")


def test_accepted_oddities(tmp_path):
    """No lazy bits set, an empty tensor past its storage's end is still inside it, and a storage nobody uses."""
    obj = {
        "a": Tensor(F, 0, (2, 4), (4, 1), {"conj": False, "neg": False}),
        "empty": Tensor(F, 8, (0, 3), (3, 1)),
        "scalar": Tensor(F, 7, (), ()),
    }
    path = crafted(tmp_path, obj, {"0": FLOATS16, "1": b"unused"})
    got = read_torch_zip(str(path))
    assert [(t.name, t.shape, t.nbytes, t.offset - got[0].offset) for t in got] == [
        ("a", (2, 4), 32, 0),
        ("empty", (0, 3), 0, 32),
        ("scalar", (), 4, 28),
    ]
    assert read_range(path, got[2]) == FLOATS16[28:]


def test_big_endian_and_layout_oddities_are_refused(tmp_path):
    obj = {"a": Tensor(F, 0, (4,), (1,))}
    with pytest.raises(InputError, match=r"byteorder 'big', expected 'little'.*weights_only=True"):
        read_torch_zip(str(crafted(tmp_path, obj, {"0": FLOATS16}, byteorder=b"big")))
    path = crafted(tmp_path, obj, {"0": FLOATS16})
    with zipfile.ZipFile(path, "a") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we are making
        z.writestr("archive/data/0", FLOATS16)
    with pytest.raises(InputError, match=r"holds member 'archive/data/0' twice"):
        read_torch_zip(str(path))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/data.pkl", b"")
        z.writestr("b/data.pkl", b"")
    with pytest.raises(InputError, match=r"2 data.pkl members"):
        read_torch_zip(str(path))


@pytest.mark.parametrize(
    "data, error",
    [
        pytest.param(b"", "EOFError", id="empty"),
        pytest.param(b"\x80\x02}q\x00(X\x01\x00\x00\x00a", "EOFError", id="cut"),
        # LONG_BINPUT 2**31 then STOP: a valid pickle of None, for which the C unpickler allocates 32 GiB of memo
        pytest.param(b"\x80\x02N" + b"r\x00\x00\x00\x80" + b".", "holds an object of type NoneType", id="memo_bomb"),
        pytest.param(b"\x80\x05\x97.", "UnpicklingError", id="out_of_band_buffer"),
        pytest.param(b"\x80\x02)Q.", "persistent id () is not ('storage'", id="bad_persistent_id"),
        pytest.param(b"\x80\x02ctorch\nFloatStorage\n)R.", "not callable", id="call_a_storage_type"),
        # the stand-ins are immutable: NEWOBJ cannot make one, BUILD cannot give one a __dict__ or attributes
        pytest.param(b"\x80\x02ccollections\nOrderedDict\nX\x01\x00\x00\x00x\x85\x81.", "TypeError", id="newobj"),
        pytest.param(b"\x80\x02ccollections\nOrderedDict\n}X\x01\x00\x00\x00kK\x01sb.", "AttributeError", id="build"),
        pytest.param(
            b"\x80\x02ccollections\nOrderedDict\nN}X\x08\x00\x00\x00qualnameX\t\x00\x00\x00os.systems\x86b.",
            "AttributeError",
            id="build_slots",
        ),
    ],
)
def test_malformed_pickle_is_refused_in_bounded_memory(tmp_path, data, error):
    path = tmp_path / "bad.bin"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from chatvec_fast.errors import InputError\n"
        "from chatvec_fast.read.torch_zip import read_torch_zip\n"
        "try:\n    read_torch_zip(sys.argv[1])\nexcept InputError as e:\n    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=child_env())
    assert r.returncode == 0 and r.stdout.startswith(f"{path}: data.pkl") and error in r.stdout, r.stdout + r.stderr


def child_env():
    """This checkout's package first on the path (the worktree, not an installed copy)."""
    root = os.path.dirname(os.path.dirname(chatvec_fast.__file__))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def test_is_torch_zip(tmp_path):
    path, _ = small_checkpoint(tmp_path)
    assert is_torch_zip(str(path))
    assert is_torch_zip(str(crafted(tmp_path, {}, {})))
    assert read_torch_zip(str(tmp_path / "crafted.bin")) == []
    (tmp_path / "empty.bin").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    for name in ("empty.bin", "other.zip", "missing.bin"):
        assert not is_torch_zip(str(tmp_path / name)), name
    with pytest.raises(InputError, match=r"0 data.pkl members"):
        read_torch_zip(str(tmp_path / "other.zip"))
    with pytest.raises(InputError, match=r"missing.bin: cannot read: No such file"):
        read_torch_zip(str(tmp_path / "missing.bin"))


def test_reading_never_loads_storages(tmp_path):
    """~200 MB of tensors: peak RSS of a fresh interpreter running read_torch_zip grows by well under 1% of the
    file (it reads the zip directory, data.pkl and one local header per storage), and torch is never imported."""
    g = torch.Generator().manual_seed(9)
    sd = {f"layers.{i}.weight": torch.randint(1, 256, (25 << 20,), generator=g, dtype=torch.uint8).view(torch.bfloat16)
          for i in range(8)}  # fmt: skip
    sd["odd"] = random_tensor((1001,), torch.float32, g)
    path = save(tmp_path, sd)
    size = os.path.getsize(path)
    assert size > 200e6
    code = (
        "import json, resource, sys\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "from chatvec_fast.read.torch_zip import read_torch_zip\n"
        "before = peak()\n"
        "tensors = read_torch_zip(sys.argv[1])\n"
        "print(json.dumps({'before': before, 'after': peak(), 'n': len(tensors), 'torch': 'torch' in sys.modules}))\n"
    )
    # Linux carries ru_maxrss over fork + exec (the forked copy of this big process counts), so the measured
    # interpreter is started by a small one.
    launch = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, *sys.argv[1:]]).returncode)"
    argv = [sys.executable, "-c", launch, "-c", code, str(path)]
    r = subprocess.run(argv, capture_output=True, text=True, env=child_env())
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["n"] == 9 and not got["torch"]
    assert got["after"] - got["before"] < 2 << 20, f"read_torch_zip raised peak RSS by {got['after'] - got['before']}"
    assert got["after"] < size / 8, got
    t = read_torch_zip(str(path))[7]
    tail = read_bytes(TensorInfo(t.name, t.dtype, t.shape, str(path), t.offset, t.nbytes), t.nbytes - 4096)
    assert tail == raw_bytes(sd[t.name])[-4096:]


def test_mutated_files_give_input_error_or_valid_ranges(tmp_path):
    """Seeded fuzzing, two ways: random bytes of a real checkpoint changed (most hit the zip structure or fail a
    CRC), and a mutated data.pkl in a well-formed zip (the unpickler's paths). Nothing but InputError escapes,
    and what is accepted lies inside the file. (30,000 rounds found nothing; the test keeps 400.)"""
    g = torch.Generator().manual_seed(10)
    big = random_tensor((7,), torch.float32, g)
    path = save(
        tmp_path, {"a": random_tensor((5, 3), torch.bfloat16, g), "b": big, "c": torch.tensor(3), "d": big[2:5]}
    )
    original = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    pkl = member(path, "/data.pkl")
    rng = random.Random(0)
    for i in range(400):
        if i % 2:
            data = bytearray(original)
            for _ in range(rng.choice([1, 2, 4, 8])):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path.write_bytes(data[: rng.randrange(len(data))] if rng.random() < 0.1 else data)
        else:
            data = bytearray(members[pkl])
            for _ in range(rng.choice([1, 2, 3, 6])):
                at = rng.randrange(len(data))
                data[at : at + rng.randrange(2)] = bytes(rng.randrange(256) for _ in range(rng.randrange(2)))
            with zipfile.ZipFile(path, "w") as z:
                for name, content in members.items():
                    z.writestr(name, bytes(data) if name == pkl else content)
        assert is_torch_zip(str(path)) in (True, False)
        try:
            tensors = read_torch_zip(str(path))
        except InputError:
            continue
        size = os.path.getsize(path)
        assert all(0 <= t.offset and t.offset + t.nbytes <= size for t in tensors)


@pytest.mark.parametrize("dirname", ["cp$(touch PWNED)", "cp`touch PWNED`", 'it\'s "quoted"; touch PWNED'])
def test_fix_commands_quote_paths_for_the_shell(tmp_path, dirname):
    """The command a message suggests, pasted into a shell, treats the path as a name: nothing in it runs."""
    folder = tmp_path / dirname
    folder.mkdir()
    x = random_tensor((3, 4), torch.float32, torch.Generator().manual_seed(4))
    path = save(folder, {"w": x.t()})
    with pytest.raises(InputError, match="re-save with .contiguous()") as err:
        read_torch_zip(str(path))
    command = str(err.value)[str(err.value).index("python -c ") :].replace("python", shlex.quote(sys.executable), 1)
    r = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "PWNED").exists() and not (folder / "PWNED").exists()
    check(path, {"w": x.t().contiguous()})  # and the command did its job
