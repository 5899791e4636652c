"""PyTorch .bin checkpoints as transformers 4 wrote them (torch.save of state-dict shards plus
pytorch_model.bin.index.json): read with the same streaming reader, never with torch.load, and merged
bit-identically to the same weights saved as safetensors, in any mix of formats."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
import zipfile

import pytest
import torch
from conftest import assert_one_line_error, cli, model_args
from safetensors.torch import load_file

from chatvec_fast.read.checkpoint import open_checkpoint


def safetensors_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))


def to_bin(src: str, dst: str, sharded: bool):
    """The same model with its weights as transformers 4 saved them (torch.save), config and tokenizer copied."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    state = {}
    for f in safetensors_files(src):
        state.update(load_file(os.path.join(src, f)))
    if not sharded:
        torch.save(state, os.path.join(dst, "pytorch_model.bin"))
        return dst
    names = list(state)
    groups = [names[i : i + 6] for i in range(0, len(names), 6)]
    weight_map = {}
    for i, group in enumerate(groups):
        shard = f"pytorch_model-{i + 1:05d}-of-{len(groups):05d}.bin"
        torch.save({n: state[n] for n in group}, os.path.join(dst, shard))
        weight_map.update({n: shard for n in group})
    total = sum(t.numel() * t.element_size() for t in state.values())
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(dst, "pytorch_model.bin.index.json"), "w"))  # fmt: skip
    return dst


def tensors_of(d):
    out = {}
    for f in safetensors_files(d):
        out.update(load_file(os.path.join(d, f)))
    return out


@pytest.fixture
def formats(tokenized_triple, tmp_path):
    """Each role in three forms: safetensors (as made), one .bin, and .bin shards with an index."""
    forms = {}
    for role, path in tokenized_triple.items():
        forms[role] = {
            "safetensors": path,
            "bin": to_bin(path, str(tmp_path / f"{role}-bin"), sharded=False),
            "bin-shards": to_bin(path, str(tmp_path / f"{role}-bin-shards"), sharded=True),
        }
    return forms


def test_bin_checkpoints_open_like_their_safetensors(formats):
    for role, forms in formats.items():
        ref = open_checkpoint(forms["safetensors"])
        for kind in ("bin", "bin-shards"):
            got = open_checkpoint(forms[kind])
            assert {n: (t.dtype, t.shape) for n, t in got.tensors.items()} == {
                n: (t.dtype, t.shape) for n, t in ref.tensors.items()
            }, (role, kind)
            assert all(f.path.endswith(".bin") for f in got.files)


MIXES = [
    m
    for m in itertools.product(("safetensors", "bin", "bin-shards"), repeat=3)
    if len(set(m)) > 1 or m[0] != "safetensors"
]


@pytest.mark.parametrize("mix", MIXES[:6] + [("bin-shards",) * 3], ids="-".join)
def test_any_mix_of_formats_merges_bit_identically(formats, tmp_path, mix):
    ref_paths = {role: formats[role]["safetensors"] for role in ("base", "chat", "cp")}
    paths = {role: formats[role][kind] for role, kind in zip(("base", "chat", "cp"), mix)}
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert cli("merge", *model_args(ref_paths), "--out", reference, "--alpha", "0.7", "--quiet").returncode == 0
    r = cli("merge", *model_args(paths), "--out", out, "--alpha", "0.7", "--quiet")
    assert r.returncode == 0, r.stderr
    want, got = tensors_of(reference), tensors_of(out)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name].view(torch.int16), got[name].view(torch.int16)), name
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert open(reference / name, "rb").read() == open(out / name, "rb").read(), name
    assert all(f.endswith(".safetensors") or not f.endswith(".bin") for f in os.listdir(out))  # output: safetensors
    assert cli("verify", out, "--all").returncode == 0


def test_sweep_extract_and_apply_read_bin(formats, tmp_path):
    paths = {role: formats[role]["bin-shards"] for role in ("base", "chat", "cp")}
    assert cli("sweep", *model_args(paths), "--out", tmp_path / "sweep", "--alphas", "0.5,1", "--quiet").returncode == 0
    r = cli("extract", "--base", paths["base"], "--chat", paths["chat"], "--out", tmp_path / "v", "--dtype", "f64")
    assert r.returncode == 0, r.stderr
    r = cli("apply", "--vector", tmp_path / "v", "--cp", paths["cp"], "--out", tmp_path / "a", "--alpha", "0.5")
    assert r.returncode == 0, r.stderr
    a, b = tensors_of(tmp_path / "a"), tensors_of(tmp_path / "sweep" / "alpha-0.5")
    assert all(torch.equal(a[n].view(torch.int16), b[n].view(torch.int16)) for n in a)


def test_safetensors_win_over_bin_as_in_transformers(formats, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(formats["cp"]["safetensors"], both)
    shutil.copyfile(os.path.join(formats["cp"]["bin"], "pytorch_model.bin"), both / "pytorch_model.bin")
    assert all(f.path.endswith(".safetensors") for f in open_checkpoint(str(both)).files)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_malicious_bin_is_refused_and_runs_nothing(formats, tmp_path):
    """A pickle asking for os.system: refused by name; the command never runs."""
    cp = formats["cp"]["bin"]
    path = os.path.join(cp, "pytorch_model.bin")
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    members[pkl] = pickle.dumps({"model.embed_tokens.weight": Evil()}, protocol=2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    paths = {"base": formats["base"]["safetensors"], "chat": formats["chat"]["safetensors"], "cp": cp}
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", cwd=tmp_path)
    assert_one_line_error(r, path, "system")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_the_legacy_format_is_refused_with_the_conversion(formats, tmp_path):
    cp = formats["cp"]["bin"]
    path = os.path.join(cp, "pytorch_model.bin")
    state = torch.load(path, weights_only=True)
    torch.save(state, path, _use_new_zipfile_serialization=False)
    paths = {"base": formats["base"]["safetensors"], "chat": formats["chat"]["safetensors"], "cp": cp}
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out")
    assert_one_line_error(r, path, "torch.load", "torch.save")


def test_a_non_contiguous_tensor_is_refused_by_name(formats, tmp_path):
    cp = formats["cp"]["bin"]
    path = os.path.join(cp, "pytorch_model.bin")
    state = torch.load(path, weights_only=True)
    name = "model.layers.0.self_attn.q_proj.weight"
    state[name] = state[name].t().contiguous().t()  # same shape and values, column-major storage
    torch.save(state, path)
    paths = {"base": formats["base"]["safetensors"], "chat": formats["chat"]["safetensors"], "cp": cp}
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out")
    assert_one_line_error(r, path, name, "contiguous")
