"""End to end: real transformers Llama checkpoints, merged by the CLI, loaded back with from_pretrained.

The merged model's logits must equal those of a model whose state dict was
merged in float64 and rounded once (chatvec_fast.reference), bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from conftest import chatvec_command  # noqa: E402

from chatvec_fast.backends.reference import round_float64  # noqa: E402

ALPHA = 0.7
INPUT_IDS = torch.tensor([[1, 5, 9, 42, 77, 100, 3, 64]])


def tiny_config(vocab=128, tie=False):
    return transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
    )


def perturbed(state: dict, seed: int, scale=0.002) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        k: (v.double() + torch.randn(v.shape, generator=g, dtype=torch.float64) * scale).to(v.dtype)
        for k, v in state.items()
    }


def save(model_cls, config, state, path, shard):
    model = model_cls(config).to(torch.bfloat16)
    model.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.save_pretrained(path, max_shard_size=shard)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def llama_triples(tmp_path_factory):
    """{variant: (dirs, state dicts)} for: plain, expanded-vocabulary cp, tied embeddings."""
    cls = transformers.LlamaForCausalLM
    out = {}
    for variant in ("plain", "expanded_vocab", "tied"):
        root = tmp_path_factory.mktemp(variant)
        tie = variant == "tied"
        torch.manual_seed(0)
        config = tiny_config(tie=tie)
        base_state = {k: v.to(torch.bfloat16) for k, v in cls(config).state_dict().items()}
        states, dirs = {}, {}
        states["base"] = save(cls, config, base_state, root / "base", "30KB")
        states["chat"] = save(cls, config, perturbed(states["base"], 1), root / "chat", "50KB")
        cp_config = tiny_config(vocab=150 if variant == "expanded_vocab" else 128, tie=tie)
        cp_state = perturbed(states["base"], 2)
        if variant == "expanded_vocab":  # Chinese-LLaMA style: 22 new rows at the end
            g = torch.Generator().manual_seed(3)
            for name in ("model.embed_tokens.weight", "lm_head.weight"):
                extra = (torch.randn(22, 32, generator=g) * 0.02).to(torch.bfloat16)
                cp_state[name] = torch.cat([cp_state[name], extra])
        states["cp"] = save(cls, cp_config, cp_state, root / "cp", "10GB")  # a single model.safetensors
        dirs = {k: str(root / k) for k in ("base", "chat", "cp")}
        out[variant] = (dirs, states, cp_config, root)
    return out


def reference_state(states, alpha=ALPHA):
    merged = {}
    for name, cp in states["cp"].items():
        cp = cp.clone()
        if name in states["base"]:
            b, c = states["base"][name].double(), states["chat"][name].double()
            rows = b.shape[0] if b.dim() else None
            cp[:rows] = round_float64(cp[:rows].double() + alpha * (c - b), cp.dtype)
        merged[name] = cp
    return merged


def merge_cli(dirs, out, *extra):
    return subprocess.run(chatvec_command("merge", dirs, out, *extra), capture_output=True, text=True, timeout=300)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "chatvec_fast", *args], capture_output=True, text=True, timeout=300)


def logits(model):
    with torch.no_grad():
        return model(INPUT_IDS).logits


@pytest.mark.parametrize("variant", ["plain", "expanded_vocab", "tied"])
def test_cli_merge_loads_and_matches_float64_reference(llama_triples, variant):
    dirs, states, cp_config, root = llama_triples[variant]
    out = root / f"merged-{variant}"
    r = merge_cli(
        dirs,
        str(out),
        "--alpha",
        str(ALPHA),
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "tensors" in r.stdout and re.search(r"= \d+\.\d\d [kMG]?B/s", r.stdout), r.stdout
    merged = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16)
    want_state = reference_state(states)
    got_state = merged.state_dict()
    for name, want in want_state.items():
        assert torch.equal(got_state[name].view(torch.int16), want.view(torch.int16)), name
    # built as from_pretrained builds the merged one: bf16 weights, the rotary buffers kept in float32
    # (a model's .to(torch.bfloat16) would round inv_freq too, and the logits would differ by up to 0.01)
    ref_model = transformers.AutoModelForCausalLM.from_config(cp_config, dtype=torch.bfloat16)
    ref_model.load_state_dict(want_state, strict=False)
    if cp_config.tie_word_embeddings:
        ref_model.tie_weights()
    assert torch.equal(logits(merged), logits(ref_model))
    # cp's config (not base's) and the provenance metadata
    assert json.loads((out / "config.json").read_text())["vocab_size"] == cp_config.vocab_size
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["chatvec_fast.alpha"] == repr(ALPHA)
    assert meta["chatvec_fast.cp"] == os.path.abspath(dirs["cp"])


def test_expanded_vocab_rows_are_cps(llama_triples):
    dirs, states, _, root = llama_triples["expanded_vocab"]
    out = root / "merged-rows"
    assert (
        merge_cli(
            dirs,
            str(out),
            "--alpha",
            "1.0",
            "--quiet",
        ).returncode
        == 0
    )
    from safetensors.torch import load_file

    got = load_file(str(out / "model.safetensors"))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(got[name][128:], states["cp"][name][128:])
        assert not torch.equal(got[name][:128], states["cp"][name][:128])


def test_vocab_mismatch_policies(llama_triples):
    dirs, states, _, root = llama_triples["expanded_vocab"]
    common = ["--base", dirs["base"], "--chat", dirs["chat"], "--cp", dirs["cp"], "--quiet"]
    r = run_cli("merge", *common, "--out", str(root / "err"), "--vocab-mismatch", "error")
    assert r.returncode != 0 and "model.embed_tokens.weight" in r.stderr and "--vocab-mismatch" in r.stderr
    assert not (root / "err").exists()
    r = run_cli("merge", *common, "--out", str(root / "skip"), "--vocab-mismatch", "skip")
    assert r.returncode == 0, r.stderr
    from safetensors.torch import load_file

    got = load_file(str(root / "skip" / "model.safetensors"))
    assert torch.equal(got["lm_head.weight"], states["cp"]["lm_head.weight"])


def test_dtype_and_reshard(llama_triples):
    dirs, states, _, root = llama_triples["plain"]
    out = root / "f32"
    r = merge_cli(
        dirs,
        str(out),
        "--alpha",
        str(ALPHA),
        "--dtype",
        "f32",
        "--max-shard-size",
        "40KB",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(s.endswith(f"-of-{len(shards):05d}.safetensors") for s in shards)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    state = model.state_dict()
    for name, cp in states["cp"].items():
        b, c = states["base"][name].double(), states["chat"][name].double()
        want = round_float64(cp.double() + ALPHA * (c - b), torch.float32)
        assert torch.equal(state[name], want), name
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in states["cp"].values())


def test_dry_run_writes_nothing(llama_triples):
    dirs, _, _, root = llama_triples["plain"]
    out = root / "dry"
    r = run_cli(
        "merge", "--base", dirs["base"], "--chat", dirs["chat"], "--cp", dirs["cp"], "--out", str(out), "--dry-run"
    )
    assert r.returncode == 0, r.stderr
    assert "merge" in r.stdout and "dry run" in r.stdout and "model.safetensors" in r.stdout
    assert not out.exists() and not list(root.glob(".dry*"))
