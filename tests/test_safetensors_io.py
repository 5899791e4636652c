"""Reader and writer against the safetensors library, both directions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from chatvec_fast.backends.reference import as_torch
from chatvec_fast.read.checkpoint import open_checkpoint
from chatvec_fast.read.chunks import read_tensor_bytes
from chatvec_fast.read.header import read_header
from chatvec_fast.write.shard import ShardFile, build_header


def sample_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(17, 33, generator=g).to(torch.bfloat16),
        "b.bias": torch.randn(5, generator=g).to(torch.float16),
        "c.scalar": torch.tensor(3.25, dtype=torch.float32),
        "d.empty": torch.empty(0, 4, dtype=torch.bfloat16),
        "e.ids": torch.arange(7, dtype=torch.int64),
        "f.mask": torch.tensor([True, False, True]),
        "g.double": torch.randn(3, 3, generator=g, dtype=torch.float64),
        "h.u8": torch.arange(9, dtype=torch.uint8),
    }


def write_with_ours(path, tensors, metadata):
    entries = [(n, _st_dtype(t), tuple(t.shape), t.numel() * t.element_size()) for n, t in tensors.items()]
    header, offsets = build_header(entries, metadata)
    size = len(header) + sum(e[3] for e in entries)
    f = ShardFile(str(path), header, size)
    try:
        for t, offset in zip(tensors.values(), offsets):
            if t.numel():
                f.write(t.contiguous().view(-1).view(torch.uint8).numpy(), offset)
    finally:
        f.close()


def _st_dtype(t):
    return {
        torch.bfloat16: "BF16",
        torch.float16: "F16",
        torch.float32: "F32",
        torch.float64: "F64",
        torch.int64: "I64",
        torch.bool: "BOOL",
        torch.uint8: "U8",
    }[t.dtype]


@pytest.mark.parametrize("direct_io", ["1", "0"], ids=["o_direct", "page_cache"])
def test_files_we_write_load_with_safetensors(tmp_path, monkeypatch, direct_io):
    monkeypatch.setenv("CHATVEC_DIRECT_IO", direct_io)
    tensors = sample_tensors()
    meta = {"format": "pt", "note": "ünïcode ✓"}
    path = tmp_path / "ours.safetensors"
    write_with_ours(path, tensors, meta)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == meta
        assert set(f.keys()) == set(tensors)
        for name, t in tensors.items():
            got = f.get_tensor(name)
            assert got.dtype == t.dtype and got.shape == t.shape
            assert torch.equal(got.view(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), name


def test_large_file_spanning_staging_blocks(tmp_path):
    """More than one 16 MiB O_DIRECT block, with odd sizes so the tail needs padding and cutting."""
    g = torch.Generator().manual_seed(1)
    tensors = {f"t{i}": torch.randn(1_000_003 + i, generator=g).to(torch.bfloat16) for i in range(12)}
    path = tmp_path / "big.safetensors"
    write_with_ours(path, tensors, {"format": "pt"})
    with safe_open(str(path), framework="pt") as f:
        for name, t in tensors.items():
            assert torch.equal(f.get_tensor(name).view(torch.int16), t.view(torch.int16)), name


def test_files_safetensors_writes_load_with_ours(tmp_path):
    tensors = sample_tensors(1)
    path = tmp_path / "theirs.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "k": "v"})
    header = read_header(str(path))
    assert header.metadata == {"format": "pt", "k": "v"}
    assert set(header.tensors) == set(tensors)
    for name, t in tensors.items():
        info = header.tensors[name]
        assert info.shape == tuple(t.shape) and info.dtype == _st_dtype(t)
        raw = read_tensor_bytes(info)
        assert raw == t.contiguous().view(-1).view(torch.uint8).numpy().tobytes(), name


def test_sharded_checkpoint_from_transformers_layout(tmp_path):
    """A sharded directory the way save_pretrained writes it loads with ours, tensor for tensor."""
    d = tmp_path / "model"
    d.mkdir()
    tensors = sample_tensors(2)
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:4], "model-00002-of-00002.safetensors": names[4:]}
    weight_map = {}
    for fname, group in shards.items():
        save_file({n: tensors[n] for n in group}, str(d / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in group})
    index = {"metadata": {"total_size": 1}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    ckpt = open_checkpoint(str(d))
    order = list(ckpt.tensors)
    assert set(order[:4]) == set(names[:4]) and set(order[4:]) == set(names[4:])  # shard by shard
    for part in (order[:4], order[4:]):  # storage order inside a shard
        offsets = [ckpt.tensors[n].offset for n in part]
        assert offsets == sorted(offsets)
    for name, t in tensors.items():
        if t.dtype in (torch.bfloat16, torch.float16, torch.float32):
            info = ckpt.tensors[name]
            assert torch.equal(as_torch(read_tensor_bytes(info), info.dtype, info.shape), t), name


def test_build_header_pads_to_eight_bytes():
    for extra in range(9):
        header, offsets = build_header([("x" * extra, "U8", (3,), 3)], {"format": "pt"})
        assert len(header) % 8 == 0
        assert offsets == [len(header)]
        assert json.loads(header[8:].decode())["x" * extra]["data_offsets"] == [0, 3]
    assert np.frombuffer(header[:8], "<u8")[0] == len(header) - 8


def test_shard_files_open_lazily(tmp_path):
    """Hundreds of planned shards cost nothing until written (a 70B sweep has K x 30+ of them)."""
    files = [ShardFile(str(tmp_path / f"s{i}.safetensors"), *_header_and_size(i)) for i in range(300)]
    assert all(f.closed and f._block is None for f in files) and not list(tmp_path.iterdir())
    for i, f in enumerate(files):
        if i % 2:  # odd files hold one 3-byte tensor; even ones an empty tensor and no write at all
            f.write(b"abc", f.next)
        f.close()
    for i in range(300):
        with safe_open(str(tmp_path / f"s{i}.safetensors"), framework="pt") as fh:
            assert fh.get_tensor("x").numel() == (3 if i % 2 else 0)


def _header_and_size(i):
    n = 3 if i % 2 else 0
    header, _ = build_header([("x", "U8", (n,), n)], {"format": "pt"})
    return header, len(header) + n
