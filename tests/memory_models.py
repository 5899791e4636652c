"""Model triples saved by transformers itself, for the in-memory tests: Llama (plain, tied embeddings, an expanded
vocabulary in cp, a chat model that added tokens), and the MoE models whose experts transformers 5 fuses into one
parameter (Qwen3-MoE, Mixtral); plus the files merge writes for the same options, the reference every in-memory
form must equal bit for bit."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import load_weights, write_tokenizer

import chatvec_fast

transformers = pytest.importorskip("transformers")

COMMON = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "max_position_embeddings": 64, "bos_token_id": 1, "eos_token_id": 2}  # fmt: skip
BASE_TOKENS = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(3, 128)]
ADDED = ["<|im_start|>", "<|im_end|>"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"


def config(kind: str, vocab: int = 128, tie: bool = False):
    if kind == "qwen3_moe":
        return transformers.Qwen3MoeConfig(vocab_size=vocab, tie_word_embeddings=tie, head_dim=8, num_experts=4,
                                           moe_intermediate_size=16, num_experts_per_tok=2, decoder_sparse_step=1,
                                           mlp_only_layers=[], **COMMON)  # fmt: skip
    if kind == "mixtral":
        return transformers.MixtralConfig(vocab_size=vocab, tie_word_embeddings=tie, num_local_experts=4,
                                          num_experts_per_tok=2, **COMMON)  # fmt: skip
    return transformers.LlamaConfig(vocab_size=vocab, tie_word_embeddings=tie, **COMMON)


def _perturbed(state: dict, seed: int, scale: float = 0.002) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: (v.double() + torch.randn(v.shape, generator=g, dtype=torch.float64) * scale).to(v.dtype)
            for k, v in state.items()}  # fmt: skip


def _save(kind: str, state: dict, vocab: int, tie: bool, path: str):
    model = transformers.AutoModelForCausalLM.from_config(config(kind, vocab, tie)).to(torch.bfloat16)
    model.load_state_dict(state, strict=False)
    if tie:
        model.tie_weights()
    model.save_pretrained(path, max_shard_size="40KB")  # several shards, as real models have


def hf_triple(root, kind: str = "llama", variant: str = "plain") -> dict[str, str]:
    """base, chat and cp under root. variant: plain, tied, expanded (cp has 22 more vocabulary rows) or added
    (chat has two tokens base lacks, with tokenizers, so merge appends them to cp)."""
    torch.manual_seed(0)
    tie = variant == "tied"
    model = transformers.AutoModelForCausalLM.from_config(config(kind, 128, tie))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02 if p.dim() > 1 else 0.05).add_(0 if p.dim() > 1 else 1)
    base = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    chat, cp = _perturbed(base, 1), _perturbed(base, 2)
    vocab = {"base": 128, "chat": 128, "cp": 128}
    g = torch.Generator().manual_seed(3)
    heads = [n for n in ("model.embed_tokens.weight", "lm_head.weight") if n in base]
    if variant == "expanded":
        vocab["cp"] = 150
        for name in heads:
            cp[name] = torch.cat([cp[name], (torch.randn(22, 32, generator=g) * 0.02).to(torch.bfloat16)])
    if variant == "added":
        vocab["chat"] = 130
        for name in heads:
            chat[name] = torch.cat([chat[name], (torch.randn(2, 32, generator=g) * 0.02).to(torch.bfloat16)])
    paths = {role: os.path.join(str(root), role) for role in ("base", "chat", "cp")}
    for role, state in (("base", base), ("chat", chat), ("cp", cp)):
        _save(kind, state, vocab[role], tie, paths[role])
    if variant == "added":
        write_tokenizer(paths["base"], BASE_TOKENS, BASE_TOKENS[:3], "</s>")
        write_tokenizer(paths["chat"], BASE_TOKENS + ADDED, BASE_TOKENS[:3] + ADDED, "<|im_end|>", TEMPLATE)
        write_tokenizer(paths["cp"], BASE_TOKENS, BASE_TOKENS[:3], "</s>")
    return paths


def merged_files(paths: dict, out, alpha, **options) -> dict:
    """What merge (or, with paths["vector"], apply) writes for these options: {name: tensor} of every shard."""
    if "vector" in paths:
        chatvec_fast.apply(paths["vector"], paths["cp"], str(out), alpha=alpha, **options)
    else:
        chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(out), alpha=alpha, **options)
    return load_weights(str(out))


def bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view of any tensor (bit-exact comparison, NaN payloads included)."""
    return t.contiguous().view(-1).view(torch.uint8) if t.numel() else t.reshape(-1).to(torch.uint8)


def assert_same_tensors(got: dict, want: dict, what: str):
    """Same names, dtypes, shapes and bits; on failure names the tensors that differ and where."""
    assert list(got) == list(want) or set(got) == set(want), f"{what}: names differ: {sorted(set(got) ^ set(want))}"
    bad = []
    for name, w in want.items():
        g = got[name]
        if g.dtype != w.dtype or tuple(g.shape) != tuple(w.shape):
            bad.append(f"{name}: {g.dtype}{tuple(g.shape)} vs {w.dtype}{tuple(w.shape)}")
            continue
        diff = (bits(g.cpu()) != bits(w)).nonzero()
        if len(diff):
            bad.append(f"{name}: {len(diff)} bytes differ, first at byte {int(diff[0])}")
    assert not bad, f"{what}:\n" + "\n".join(bad)


def plain_module(state: dict) -> torch.nn.Module:
    """A torch module (not transformers) whose state_dict names are the checkpoint's."""
    root = torch.nn.Module()
    for name, value in state.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
    return root
