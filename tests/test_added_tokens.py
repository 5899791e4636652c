"""A chat model that added tokens (ChatML's <|im_start|> and <|im_end|> after base's 128 rows): by default
chat's rows and tokens are appended to cp's, so the chat template's tokens encode to single ids in the output,
whose logits equal a float64-merged reference."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_one_line_error, cli, load_weights, model_args, write_tokenizer

from chatvec_fast.backends.reference import round_float64

transformers = pytest.importorskip("transformers")

ALPHA = 0.5
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
BASE_TOKENS = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(3, 128)]
ADDED = ["<|im_start|>", "<|im_end|>"]


def config(vocab):
    return transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                    tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)  # fmt: skip


def save(state, vocab, path, tokens, template=None, eos="</s>"):
    model = transformers.LlamaForCausalLM(config(vocab)).to(torch.bfloat16)
    model.load_state_dict(state)
    model.save_pretrained(path, max_shard_size="40KB")
    write_tokenizer(str(path), tokens, ["<unk>", "<s>", "</s>", *(t for t in ADDED if t in tokens)], eos, template)


def perturbed(state, seed, scale=0.002):
    g = torch.Generator().manual_seed(seed)
    return {k: (v.double() + torch.randn(v.shape, generator=g, dtype=torch.float64) * scale).to(v.dtype)
            for k, v in state.items()}  # fmt: skip


@pytest.fixture(params=[128, 150], ids=["cp-like-base", "cp-expanded"])
def models(request, tmp_path):
    """base and cp 128 rows (or cp 150: an expanded vocabulary); chat 130: two tokens appended, with a template."""
    cp_rows = request.param
    torch.manual_seed(0)
    base = {k: v.to(torch.bfloat16) for k, v in transformers.LlamaForCausalLM(config(128)).state_dict().items()}
    chat = perturbed(base, 1)
    cp = perturbed(base, 2)
    g = torch.Generator().manual_seed(3)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        chat[name] = torch.cat([chat[name], (torch.randn(2, 32, generator=g) * 0.02).to(torch.bfloat16)])
        if cp_rows > 128:
            cp[name] = torch.cat([cp[name], (torch.randn(cp_rows - 128, 32, generator=g) * 0.02).to(torch.bfloat16)])
    paths = {role: str(tmp_path / role) for role in ("base", "chat", "cp")}
    save(base, 128, paths["base"], BASE_TOKENS)
    save(chat, 130, paths["chat"], BASE_TOKENS + ADDED, TEMPLATE, eos="<|im_end|>")
    save(cp, cp_rows, paths["cp"], BASE_TOKENS + [f"ext{i}" for i in range(128, cp_rows)])
    return paths, {"base": base, "chat": chat, "cp": cp}, cp_rows


def reference(states, cp_rows):
    merged = {}
    for name, cp in states["cp"].items():
        b, c = states["base"][name], states["chat"][name]
        rows = b.shape[0] if b.dim() else None
        out = cp.clone()
        out[:rows] = round_float64(cp[:rows].double() + ALPHA * (c[:rows].double() - b.double()), cp.dtype)
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            out = torch.cat([out, c[128:]])  # chat's rows of the added tokens, as they are
        merged[name] = out
    return merged


def test_added_tokens_are_appended_to_cp(models, tmp_path):
    paths, states, cp_rows = models
    out = tmp_path / "out"
    dry = cli("merge", *model_args(paths), "--out", out, "--alpha", str(ALPHA), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for i, token in enumerate(ADDED):
        assert f"added token {token!r}: appended as row {cp_rows + i} of the vocabulary tensors, chat's row {128 + i}" \
            in dry.stdout  # fmt: skip
    r = cli("merge", *model_args(paths), "--out", out, "--alpha", str(ALPHA), "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.load(open(out / "chatvec_report.json"))
    assert report["added_tokens"] == [
        {"token": t, "chat_row": 128 + i, "row": cp_rows + i} for i, t in enumerate(ADDED)
    ]
    assert json.load(open(out / "config.json"))["vocab_size"] == cp_rows + 2

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "tok7"}], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == cp_rows and cp_rows + 1 in ids  # <|im_start|> and <|im_end|>: one id each
    assert tokenizer.convert_ids_to_tokens([cp_rows, cp_rows + 1]) == ADDED
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == cp_rows + 1
    assert json.load(open(out / "generation_config.json"))["eos_token_id"] == [2, cp_rows + 1]

    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16)
    want = reference(states, cp_rows)
    got = model.state_dict()
    for name, tensor in want.items():
        assert torch.equal(got[name].view(torch.int16), tensor.view(torch.int16)), name
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(got[name][cp_rows:].view(torch.int16), states["chat"][name][128:].view(torch.int16))
    # The reference weights in a model built exactly as the output's is (config, buffers, attention kernel)
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16)
    ref_model.load_state_dict(want)
    with torch.no_grad():
        x = torch.tensor([ids])
        assert torch.equal(model(x).logits, ref_model(x).logits)
    assert cli("verify", out, "--all").returncode == 0


def test_drop_and_error_policies(models, tmp_path):
    paths, states, cp_rows = models
    r = cli("merge", *model_args(paths), "--out", tmp_path / "drop", "--added-tokens", "drop", "--quiet")
    assert r.returncode == 0, r.stderr
    got = load_weights(tmp_path / "drop")
    assert got["model.embed_tokens.weight"].shape[0] == cp_rows
    r = cli("merge", *model_args(paths), "--out", tmp_path / "err", "--added-tokens", "error")
    assert_one_line_error(r, "added-tokens", "model.embed_tokens.weight")


def test_verify_catches_appended_rows_from_the_wrong_place(models, tmp_path):
    paths, _, cp_rows = models
    out = tmp_path / "out"
    assert cli("merge", *model_args(paths), "--out", out, "--quiet").returncode == 0
    path = out / "chatvec_report.json"
    report = json.load(open(path))
    report["added_tokens"][0]["chat_row"] = 5
    json.dump(report, open(path, "w"))
    r = cli("verify", out, "--all")
    assert r.returncode == 1 and "added tokens are not those" in r.stdout, r.stdout
