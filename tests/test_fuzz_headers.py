"""Hostile headers: the safetensors parser on random and mutated input (hypothesis, fixed seed, bounded).

Property: read_header either returns a header whose every tensor lies inside the file, or raises
InputError naming the file. Never another exception, never a hang, never a read outside the file.
"""

from __future__ import annotations

import json
import math
import os
import struct

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from chatvec_fast.dtypes import BITS, nbytes
from chatvec_fast.errors import InputError
from chatvec_fast.read.header import MAX_HEADER_BYTES, read_header

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


def check(path: str):
    size = os.path.getsize(path)
    try:
        header = read_header(path)
    except InputError as exc:
        assert path in str(exc)
        return None
    for info in header.tensors.values():
        assert header.data_start <= info.offset and info.offset + info.nbytes <= size
        assert info.nbytes == nbytes(info.dtype, math.prod(info.shape))
    spans = sorted((t.offset, t.offset + t.nbytes) for t in header.tensors.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    return header


def valid_file(tensors: dict, metadata=None, data_extra=0) -> bytes:
    doc, offset = {}, 0
    if metadata is not None:
        doc["__metadata__"] = metadata
    for name, (dtype, shape) in tensors.items():
        size = nbytes(dtype, math.prod(shape))
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(doc).encode()
    return struct.pack("<Q", len(text)) + text + b"\x01" * (offset + data_extra)


names = st.text(min_size=1, max_size=12)
shapes = st.lists(st.integers(0, 6), max_size=3)
dtypes = st.sampled_from(sorted(BITS))
# Valid tensors fill whole bytes (the safetensors library refuses a sub-byte tensor that does not; so do we).
whole_bytes = st.tuples(dtypes, shapes).filter(lambda t: math.prod(t[1]) * BITS[t[0]] % 8 == 0)
tensor_maps = st.dictionaries(names.filter(lambda n: n != "__metadata__"), whole_bytes, max_size=6)


@seed(1)
@SETTINGS
@given(tensor_maps, st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)))
def test_valid_files_parse(tmp_path_factory, tensors, metadata):
    path = str(tmp_path_factory.mktemp("fuzz") / "ok.safetensors")
    with open(path, "wb") as f:
        f.write(valid_file(tensors, metadata))
    header = check(path)
    assert header is not None and set(header.tensors) == set(tensors)


@seed(2)
@SETTINGS
@given(tensor_maps, st.data())
def test_mutated_files_are_rejected_or_sane(tmp_path_factory, tensors, data):
    raw = bytearray(valid_file(tensors, {"format": "pt"}))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "length"]))
        if kind == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "truncate":
            del raw[data.draw(st.integers(0, len(raw))) :]
        elif kind == "insert":
            i = data.draw(st.integers(0, len(raw)))
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "length" and len(raw) >= 8:
            raw[:8] = struct.pack("<Q", data.draw(st.sampled_from([0, 1, 7, 2**31, 2**63, MAX_HEADER_BYTES + 1])))
    path = str(tmp_path_factory.mktemp("fuzz") / "mutant.safetensors")
    with open(path, "wb") as f:
        f.write(raw)
    check(path)


@seed(3)
@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(tmp_path_factory, blob):
    path = str(tmp_path_factory.mktemp("fuzz") / "random.safetensors")
    with open(path, "wb") as f:
        f.write(blob)
    check(path)


@seed(4)
@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=12))  # fmt: skip
def test_arbitrary_json_headers(tmp_path_factory, doc):
    text = json.dumps(doc).encode()
    path = str(tmp_path_factory.mktemp("fuzz") / "json.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"\x00" * 64)
    check(path)


def test_named_hostile_cases(tmp_path):
    """The classic attacks, each named: every one is an InputError naming the file."""
    cases = {
        "huge shape": {"t": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}},
        "negative offset": {"t": {"dtype": "U8", "shape": [4], "data_offsets": [-4, 0]}},
        "overflowing offsets": {"t": {"dtype": "U8", "shape": [4], "data_offsets": [2**64, 2**64 + 4]}},
        "offsets past the end": {"t": {"dtype": "U8", "shape": [4], "data_offsets": [60, 64]}},
        "bool offsets": {"t": {"dtype": "U8", "shape": [1], "data_offsets": [False, True]}},
        "float shape": {"t": {"dtype": "U8", "shape": [1.0], "data_offsets": [0, 1]}},
        "metadata not strings": {"__metadata__": {"format": 1},
                                 "t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}},
        "overlap": {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                    "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}},
    }  # fmt: skip
    for case, doc in cases.items():
        text = json.dumps(doc).encode()
        path = tmp_path / f"{case.replace(' ', '_')}.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + b"\x00" * 8)
        try:
            read_header(str(path))
        except InputError as exc:
            assert str(path) in str(exc), case
        else:
            raise AssertionError(f"{case}: accepted")
    entry = b'{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'
    duplicate = b'{"a":' + entry + b',"a":' + entry + b"}"
    path = tmp_path / "duplicate.safetensors"
    path.write_bytes(struct.pack("<Q", len(duplicate)) + duplicate + b"\x00\x00")
    try:
        read_header(str(path))
    except InputError as exc:
        assert "duplicate" in str(exc)
    else:
        raise AssertionError("duplicate names accepted")
    bad_utf8 = b'{"\xff\xfe":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    path = tmp_path / "utf8.safetensors"
    path.write_bytes(struct.pack("<Q", len(bad_utf8)) + bad_utf8 + b"\x00")
    try:
        read_header(str(path))
    except InputError as exc:
        assert "UTF-8" in str(exc)
    else:
        raise AssertionError("non-UTF-8 name accepted")
