"""Sweeps, saved chat vectors (extract/apply), per-tensor alphas, the special-token transplant, verify."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import CHAT_TEMPLATE, assert_bits_equal, chatvec_command, load_weights
from safetensors.torch import save_file

from chatvec_fast import apply, extract, merge, sweep
from chatvec_fast.alphas import parse_alphas
from chatvec_fast.backends.reference import round_float64
from chatvec_fast.read.checkpoint import open_checkpoint
from chatvec_fast.write.names import alpha_dirname


def cli(*args):
    return subprocess.run([sys.executable, "-m", "chatvec_fast", *args], capture_output=True, text=True, timeout=300)


def merge_cli(paths, out, *extra):
    return subprocess.run(chatvec_command("merge", paths, out, *extra), capture_output=True, text=True, timeout=300)


def same_dir(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch


# -- sweep ---------------------------------------------------------------------------------


def test_parse_alphas():
    assert parse_alphas("0.25:1:0.25") == [0.25, 0.5, 0.75, 1.0]
    assert parse_alphas("0.1:0.3:0.1") == [0.1, 0.2, 0.3]  # decimal steps: no 0.30000000000000004
    assert parse_alphas("1, 0.5") == [1.0, 0.5]
    assert alpha_dirname(0.1 + 0.2) == "alpha-0.30000000000000004" and alpha_dirname(1) == "alpha-1.0"
    for bad in ("", "1:0:0.1", "0:1:0", "a,b", "0.5,0.5"):
        with pytest.raises(ValueError):
            parse_alphas(bad)


def test_cli_sweep_equals_separate_merges(triple, tmp_path):
    paths = triple(cp_vocab=600)
    common = ["--base", paths["base"], "--chat", paths["chat"], "--cp", paths["cp"], "--quiet"]
    r = cli("sweep", *common, "--out", str(tmp_path / "sweep"), "--alphas", "0.25:1:0.25")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "sweep")) == ["alpha-0.25", "alpha-0.5", "alpha-0.75", "alpha-1.0"]
    for a in ("0.25", "1.0"):
        assert cli("merge", *common, "--out", str(tmp_path / a), "--alpha", a).returncode == 0
        same_dir(tmp_path / "sweep" / f"alpha-{a}", tmp_path / a)


def test_sweep_reads_each_input_once(triple, tmp_path):
    paths = triple()
    one = merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "one"), 0.5)
    four = sweep(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "four"), [0.25, 0.5, 0.75, 1.0])
    assert four.bytes_read == one.bytes_read
    assert four.bytes_written == 4 * one.bytes_written


# -- extract and apply ---------------------------------------------------------------------


def write_model(directory, tensors: dict, config=None):
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    json.dump(config or {"vocab_size": 8}, open(os.path.join(directory, "config.json"), "w"))
    return str(directory)


@pytest.fixture
def far_apart(tmp_path):
    """bf16 models where some chat and base values lie far apart, so f32 cannot hold chat - base."""
    g = torch.Generator().manual_seed(0)
    base = (torch.randn(64, 33, generator=g) * 0.02).to(torch.bfloat16)
    chat = (base.float() + torch.randn(64, 33, generator=g) * 0.002).to(torch.bfloat16)
    # 25 to 40 binades apart: float64 holds these differences exactly, float32 does not
    chat[0, :5] = torch.tensor([1.0, -2.0, 3.0, 1e-3, 8.0])
    base[0, :5] = torch.tensor([1e-9, -3e-10, 5e-11, 1e-13, 3e-8])
    cp = (base.float() + torch.randn(64, 33, generator=g) * 0.002).to(torch.bfloat16)
    norm = torch.ones(33, dtype=torch.bfloat16)
    dirs = {}
    for role, t in (("base", base), ("chat", chat), ("cp", cp)):
        dirs[role] = write_model(tmp_path / role, {"w": t.clone(), "norm": norm.clone()})
    return dirs


def test_extract_apply_reproduces_merge(far_apart, tmp_path):
    d = far_apart
    merged = merge(d["base"], d["chat"], d["cp"], str(tmp_path / "merged"), 0.7)
    assert merged.tensors == 2
    f64 = extract(d["base"], d["chat"], str(tmp_path / "vec64"), dtype="f64")
    assert f64.inexact == 0
    apply(str(tmp_path / "vec64"), d["cp"], str(tmp_path / "applied64"), 0.7)
    for name, t in load_weights(tmp_path / "merged").items():
        assert_bits_equal(load_weights(tmp_path / "applied64")[name], t, name)
    # f32 cannot hold the far-apart differences: counted, recorded, and apply then differs there
    f32 = extract(d["base"], d["chat"], str(tmp_path / "vec32"))
    assert f32.inexact == 5
    vector = open_checkpoint(str(tmp_path / "vec32"))
    assert all("chatvec_fast.inexact_elements" not in f.metadata for f in vector.files)  # the report's, not patched
    assert json.load(open(tmp_path / "vec32" / "chatvec_report.json"))["inexact_elements"] == 5
    report = apply(str(tmp_path / "vec32"), d["cp"], str(tmp_path / "applied32"), 0.7)
    assert any("rounded 5 elements" in n for n in report.notes)


def test_exact_f32_vector_apply_equals_merge_and_sweeps(triple, tmp_path):
    paths = triple(cp_vocab=600)
    vec = extract(paths["base"], paths["chat"], str(tmp_path / "vec"))
    assert vec.inexact == 0  # bf16 neighbours: f32 holds their difference
    apply(str(tmp_path / "vec"), paths["cp"], str(tmp_path / "applied"), alphas="0.5,1.0")
    sweep(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "swept"), [0.5, 1.0])
    for a in ("alpha-0.5", "alpha-1.0"):
        got, want = load_weights(tmp_path / "applied" / a), load_weights(tmp_path / "swept" / a)
        assert got.keys() == want.keys()
        for name in want:
            assert_bits_equal(got[name], want[name], f"{a} {name}")


def test_bf16_vector_warns_and_counts(far_apart, tmp_path):
    r = cli(
        "extract",
        "--base",
        far_apart["base"],
        "--chat",
        far_apart["chat"],
        "--out",
        str(tmp_path / "v"),
        "--dtype",
        "bf16",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "could not hold" in r.stderr
    count = json.load(open(tmp_path / "v" / "chatvec_report.json"))["inexact_elements"]
    # Neighbouring bf16 values subtract exactly (Sterbenz), so only some differences round
    from chatvec_fast.backends.reference import count_inexact

    b, c = load_weights(far_apart["base"]), load_weights(far_apart["chat"])
    want = sum(
        count_inexact(round_float64(c[n].double() - b[n].double(), torch.bfloat16), c[n].double() - b[n].double())
        for n in b
    )
    assert count == want and 0 < count < 64 * 33


# -- per-tensor alphas ----------------------------------------------------------------------


def test_alpha_for_patterns(triple, tmp_path):
    paths = triple()
    rules = [r"embed_tokens|lm_head=0", r"layers\.1\.=0.25"]
    dry = merge_cli(
        paths,
        str(tmp_path / "x"),
        "--alpha",
        "0.8",
        "--dry-run",
        *sum((["--alpha-for", r] for r in rules), []),
    )
    assert dry.returncode == 0, dry.stderr
    assert "alphas by tensor" in dry.stdout and "0.0: 2 tensors" in dry.stdout and "0.25: 9 tensors" in dry.stdout
    merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "out"), 0.8, alpha_for=rules)
    got = load_weights(tmp_path / "out")
    b, c, p = (load_weights(paths[r]) for r in ("base", "chat", "cp"))
    for name, t in got.items():
        alpha = 0.0 if ("embed_tokens" in name or "lm_head" in name) else 0.25 if "layers.1." in name else 0.8
        want = round_float64(p[name].double() + alpha * (c[name].double() - b[name].double()), torch.bfloat16)
        assert_bits_equal(t, want, f"{name} alpha={alpha}")
    report = json.load(open(tmp_path / "out" / "chatvec_report.json"))
    assert set(report["alpha_by_tensor"]) == {"0.0", "0.25", "0.8"}


# -- special tokens from the chat model -----------------------------------------------------


def test_special_tokens_and_chat_template_from_chat(tokenized_triple, tmp_path):
    paths = tokenized_triple
    out = tmp_path / "out"
    r = merge_cli(
        paths,
        str(out),
        "--alpha",
        "0.5",
        "--special-tokens-from",
        "chat",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    got, chat, cp = load_weights(out), load_weights(paths["chat"]), load_weights(paths["cp"])
    expected_rows = {"<unk>": (0, 0), "<s>": (1, 1), "</s>": (2, 2), "<|im_start|>": (3, 3), "<|im_end|>": (4, 599)}
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        for token, (chat_row, cp_row) in expected_rows.items():
            assert torch.equal(got[name][cp_row], chat[name][chat_row]), (name, token)
        assert torch.equal(got[name][512:599], cp[name][512:599])  # cp's extension rows stay cp's
        assert not torch.equal(got[name][4], chat[name][4])  # row 4 is cp's "tok4-cp": merged, not transplanted
    report = json.load(open(out / "chatvec_report.json"))
    rows = {r["token"]: (r["chat_row"], r["cp_row"]) for r in report["special_token_rows"]}
    assert rows == expected_rows
    config = json.load(open(out / "tokenizer_config.json"))
    assert config["chat_template"] == CHAT_TEMPLATE and config["eos_token"] == "<|im_end|>"
    assert report["chat_template"]["eos_token"] == {"token": "<|im_end|>", "id": 599}
    assert json.load(open(out / "generation_config.json"))["eos_token_id"] == [2, 599]
    tokens = json.load(open(out / "tokenizer.json"))["model"]["vocab"]
    assert tokens["ext512"] == 512  # the tokenizer itself is cp's
    r = cli("verify", str(out), "--all")
    assert r.returncode == 0, r.stdout + r.stderr


def test_default_keeps_cp_rows_and_takes_the_chat_template(tokenized_triple, tmp_path):
    paths = tokenized_triple
    merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "out"), 0.5)
    report = json.load(open(tmp_path / "out" / "chatvec_report.json"))
    assert "special_token_rows" not in report
    assert report["chat_template"]["from"] == "chat"
    merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "cp-template"), 0.5, chat_template_from="cp")
    assert "chat_template" not in json.load(open(tmp_path / "cp-template" / "tokenizer_config.json"))


# -- verify ---------------------------------------------------------------------------------


def flip_bits(path, tensor, count=1, exponent=True):
    ckpt = open_checkpoint(os.path.dirname(path))
    info = next(t for t in ckpt.tensors.values() if t.name == tensor)
    with open(info.path, "r+b") as f:
        for i in range(count):
            f.seek(info.offset + 2 * i + 1)  # high byte of a bf16: sign and exponent
            byte = f.read(1)[0]
            f.seek(info.offset + 2 * i + 1)
            f.write(bytes([byte ^ (0x40 if exponent else 0x01)]))


@pytest.mark.parametrize("every", [False, True])
def test_verify_catches_a_corrupted_tensor(triple, tmp_path, every):
    paths = triple()
    out = tmp_path / "out"
    merge(paths["base"], paths["chat"], paths["cp"], str(out), 0.5)
    assert cli("verify", str(out)).returncode == 0
    victim = "model.layers.1.mlp.up_proj.weight"
    shard = json.load(open(out / "model.safetensors.index.json"))["weight_map"][victim]
    flip_bits(str(out / shard), victim, count=1)
    r = cli("verify", str(out), *(["--all"] if every else []))
    assert r.returncode == 1 and victim in r.stdout and "FAILED" in r.stdout, r.stdout


def test_verify_catches_a_one_ulp_change_with_all(triple, tmp_path):
    paths = triple()
    out = tmp_path / "out"
    merge(paths["base"], paths["chat"], paths["cp"], str(out), 0.5)
    victim = "model.norm.weight"
    flip_bits(
        str(out / json.load(open(out / "model.safetensors.index.json"))["weight_map"][victim]), victim, exponent=False
    )
    r = cli("verify", str(out), "--all")
    assert r.returncode == 1 and victim in r.stdout
    # a tolerance relaxes the element check; the changed file still fails its recorded checksum
    r = cli("verify", str(out), "--all", "--max-ulp", "256")
    assert r.returncode == 1 and "sha256 differs" in r.stdout and f"{victim}:" not in r.stdout, r.stdout
