"""Bad input: every failure exits non-zero, names the file and tensor, leaves no output, touches no input."""

from __future__ import annotations

import json
import os
import struct
import subprocess

import pytest
from conftest import chatvec_command, file_digests

from chatvec_fast.errors import InputError
from chatvec_fast.read.header import read_header


def rewrite_header(path, edit):
    """Rewrites a .safetensors file with edit(header_dict) applied; the data is kept as is."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def first_shard(model_dir):
    return sorted(p for p in os.listdir(model_dir) if p.endswith(".safetensors"))[0]


def run_merge(paths, out, *extra):
    return subprocess.run(chatvec_command("merge", paths, out, "--quiet", *extra), capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def truncate(path, nbytes=100):
    os.truncate(path, os.path.getsize(path) - nbytes)


def set_header_length(path, value):
    with open(path, "r+b") as f:
        f.write(struct.pack("<Q", value))


def garble_json(path):
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(b"{not json")


def unknown_dtype(path):
    rewrite_header(path, lambda h: h[next(k for k in h if k != "__metadata__")].update(dtype="BF17"))


def overlapping(path):
    def edit(h):
        names = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
        a, b = h[names[0]], h[names[1]]
        size = b["data_offsets"][1] - b["data_offsets"][0]
        b["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + size]

    rewrite_header(path, edit)


def out_of_range(path):
    def edit(h):
        last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
        b, e = h[last]["data_offsets"]
        h[last]["data_offsets"] = [b + 4096, e + 4096]

    rewrite_header(path, edit)


# (case, which model, how to break its first shard, text the error must contain besides the path)
FILE_CASES = [
    ("truncated shard", "cp", truncate, "truncated"),
    ("header length beyond the file", "chat", lambda p: set_header_length(p, 10**7), "header length"),
    ("invalid JSON", "base", garble_json, "not valid UTF-8 JSON"),
    ("unknown dtype", "cp", unknown_dtype, "BF17"),
    ("overlapping offsets", "chat", overlapping, "overlaps"),
    ("offsets out of range", "cp", out_of_range, "data ends at byte"),
]


@pytest.mark.parametrize("case,role,breaker,needle", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_broken_file(triple, tmp_path, case, role, breaker, needle):
    paths = triple()
    shard = os.path.join(paths[role], first_shard(paths[role]))
    breaker(shard)
    before = file_digests(*paths.values())
    out = tmp_path / "out"
    r = run_merge(paths, out)
    assert r.returncode != 0
    assert shard in r.stderr and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert_nothing_written(tmp_path, out)
    assert file_digests(*paths.values()) == before


def assert_nothing_written(parent, out):
    assert not out.exists()
    leftovers = [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, leftovers


def test_index_names_missing_shard(triple, tmp_path):
    paths = triple()
    index_path = os.path.join(paths["chat"], "model.safetensors.index.json")
    index = json.load(open(index_path))
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "model-00099-of-00099.safetensors"
    json.dump(index, open(index_path, "w"))
    r = run_merge(paths, tmp_path / "out")
    assert r.returncode != 0
    assert index_path in r.stderr and "model-00099-of-00099.safetensors" in r.stderr and name in r.stderr
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_index_disagrees_with_shard(triple, tmp_path):
    paths = triple()
    index_path = os.path.join(paths["cp"], "model.safetensors.index.json")
    index = json.load(open(index_path))
    shard_of = index["weight_map"]
    # a tensor whose shard holds others too, so the shard stays referenced
    name = next(n for n, s in shard_of.items() if list(shard_of.values()).count(s) > 1)
    del shard_of[name]
    json.dump(index, open(index_path, "w"))
    r = run_merge(paths, tmp_path / "out")
    assert r.returncode != 0 and name in r.stderr and "not in the index" in r.stderr, r.stderr


def test_index_omits_a_shard(triple, tmp_path):
    paths = triple()
    index_path = os.path.join(paths["cp"], "model.safetensors.index.json")
    index = json.load(open(index_path))
    dropped = index["weight_map"].pop("model.embed_tokens.weight")  # alone in the first shard
    assert dropped not in index["weight_map"].values()
    json.dump(index, open(index_path, "w"))
    r = run_merge(paths, tmp_path / "out")
    assert r.returncode != 0 and dropped in r.stderr and "maps no tensor" in r.stderr, r.stderr


def test_shape_mismatch(triple, tmp_path):
    paths = triple()
    shard = os.path.join(paths["chat"], first_shard(paths["chat"]))
    victim = {}

    def edit(h):
        name = next(k for k in h if k != "__metadata__" and len(h[k]["shape"]) == 2)
        rows, cols = h[name]["shape"]
        h[name]["shape"] = [cols, rows]  # same bytes, transposed shape
        victim["name"] = name

    rewrite_header(shard, edit)
    r = run_merge(paths, tmp_path / "out")
    assert r.returncode != 0
    assert victim["name"] in r.stderr and "shape" in r.stderr and "--skip" in r.stderr, r.stderr
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_missing_tensor_in_chat(triple, tmp_path):
    paths = triple()
    index_path = os.path.join(paths["chat"], "model.safetensors.index.json")
    index = json.load(open(index_path))
    name = "model.layers.1.mlp.up_proj.weight"
    shard = os.path.join(paths["chat"], index["weight_map"].pop(name))
    json.dump(index, open(index_path, "w"))
    rewrite_header(shard, lambda h: h.pop(name))
    r = run_merge(paths, tmp_path / "out")
    assert r.returncode != 0
    assert name in r.stderr and "missing from chat" in r.stderr and "--skip" in r.stderr, r.stderr
    # the suggested fix works
    r = run_merge(paths, tmp_path / "out", "--skip", r"mlp\.up_proj")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("where", ["inside", "equal", "contains"])
def test_output_inside_an_input(triple, tmp_path, where):
    paths = triple()
    before = file_digests(*paths.values())
    out = {
        "inside": os.path.join(paths["cp"], "merged"),
        "equal": paths["base"],
        "contains": os.path.dirname(paths["cp"]),
    }[where]
    r = run_merge(paths, out, "--overwrite")
    assert r.returncode != 0 and "choose a path" in r.stderr, r.stderr
    assert file_digests(*paths.values()) == before
    assert not os.path.exists(os.path.join(paths["cp"], "merged"))


def test_output_through_a_symlink_into_an_input(triple, tmp_path):
    paths = triple()
    link = tmp_path / "link"
    link.symlink_to(paths["cp"])
    r = run_merge(paths, link / "merged")
    assert r.returncode != 0 and "inside" in r.stderr


def test_non_empty_output_needs_overwrite(triple, tmp_path):
    paths = triple()
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"old weights")
    r = run_merge(paths, out)
    assert r.returncode != 0 and "--overwrite" in r.stderr
    assert (out / "model.safetensors").read_bytes() == b"old weights"
    r = run_merge(paths, out, "--overwrite")  # a directory of model files: replaced
    assert r.returncode == 0, r.stderr
    assert not (out / "model.safetensors").exists() and (out / "model.safetensors.index.json").exists()


def test_missing_input_directory(triple, tmp_path):
    paths = triple()
    paths["chat"] = str(tmp_path / "nope")
    r = run_merge(paths, tmp_path / "out")
    assert r.returncode != 0 and str(tmp_path / "nope") in r.stderr and "no such" in r.stderr


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x01\x00",
        struct.pack("<Q", 2) + b"[]",
        struct.pack("<Q", 4) + b'{"a"',
        struct.pack("<Q", 30) + b'{"__metadata__": {"k": 1}}    ',
        struct.pack("<Q", 48) + b'{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}'[:48],
        struct.pack("<Q", 16) + b'{"a":1, "a":2}  ',
    ],
    ids=["empty", "short", "array", "cut-json", "metadata-int", "negative-shape", "duplicate-key"],
)
def test_header_parser_rejects_garbage(tmp_path, raw):
    p = tmp_path / "x.safetensors"
    p.write_bytes(raw)
    with pytest.raises(InputError, match=str(p)):
        read_header(str(p))
