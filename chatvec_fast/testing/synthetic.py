"""Synthetic Llama-shaped checkpoint triples (base, chat, cp) for the demo, tests and benchmarks.

    chat = base + N(0, noise)      cp = base + N(0, noise)      (matrices; norms ~ 1 + N(0, 0.05))

Values are seeded per model and tensor, so a triple is the same on every
machine. Tensors are generated and written one at a time (numpy only), so
even the 7B shape needs about one tensor of memory. Each model has config
files and a tokenizer in Llama's layout (llama_tokenizer.py) that
transformers loads; the chat model's speaks ChatML.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import dataclass, replace

import numpy as np

from ..filenames import (
    CONFIG_NAME,
    GENERATION_CONFIG_NAME,
    INDEX_NAME,
    SINGLE_NAME,
    shard_name,
)
from ..write.shard import ShardFile, build_header
from .llama_tokenizer import CHATML, write_llama_tokenizer


@dataclass(frozen=True)
class LlamaShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tie: bool = False

    @property
    def params(self) -> int:
        return sum(math.prod(s) for _, s in tensor_specs(self))


SHAPES = {
    "tiny": LlamaShape(layers=2, hidden=64, intermediate=176, heads=4, kv_heads=2, vocab=512),
    "small": LlamaShape(layers=8, hidden=1024, intermediate=2816, heads=16, kv_heads=4, vocab=32000),  # 0.2B
    "1b": LlamaShape(layers=22, hidden=2048, intermediate=5632, heads=32, kv_heads=4, vocab=32000),  # TinyLlama
    "7b": LlamaShape(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=32000),  # Llama-2-7B
}


def tensor_specs(shape: LlamaShape, vocab: int | None = None):
    """(name, shape) in the order of LlamaForCausalLM's state dict."""
    h, v = shape.hidden, vocab or shape.vocab
    kv = shape.kv_heads * (h // shape.heads)
    yield "model.embed_tokens.weight", (v, h)
    for i in range(shape.layers):
        p = f"model.layers.{i}."
        yield p + "self_attn.q_proj.weight", (h, h)
        yield p + "self_attn.k_proj.weight", (kv, h)
        yield p + "self_attn.v_proj.weight", (kv, h)
        yield p + "self_attn.o_proj.weight", (h, h)
        yield p + "mlp.gate_proj.weight", (shape.intermediate, h)
        yield p + "mlp.up_proj.weight", (shape.intermediate, h)
        yield p + "mlp.down_proj.weight", (h, shape.intermediate)
        yield p + "input_layernorm.weight", (h,)
        yield p + "post_attention_layernorm.weight", (h,)
    yield "model.norm.weight", (h,)
    if not shape.tie:
        yield "lm_head.weight", (v, h)


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest-even (inputs here are finite)."""
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def _rng(seed: int, *key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(key).encode())])


def _values(role: str, name: str, shape, seed: int, std: float, noise: float, extra_rows: int) -> np.ndarray:
    is_norm = len(shape) == 1
    base = _rng(seed, "base", name).standard_normal(shape, dtype=np.float32)
    base *= np.float32(0.05 if is_norm else std)
    if is_norm:
        base += np.float32(1.0)
    if role != "base":
        base += _rng(seed, role, name).standard_normal(shape, dtype=np.float32) * np.float32(noise)
    if extra_rows:
        extra = _rng(seed, role + "-extra", name).standard_normal((extra_rows, shape[1]), dtype=np.float32)
        base = np.concatenate([base, extra * np.float32(std)])
    return base


@dataclass(frozen=True)
class FP8Layout:
    """FP8 weights for a synthetic model: the layers' linear weights as F8_E4M3 codes with F32 scales, per
    block ("block": weight_scale_inv of [ceil(rows / br), ceil(cols / bc)], DeepSeek-V3's layout) or per row
    ("row": weight_scale of [rows, 1], compressed-tensors'). quantize(values, layout) -> (codes, scales)."""

    kind: str
    quantize: object
    block: tuple[int, int] = (128, 128)

    def applies(self, name: str) -> bool:
        return ".layers." in name and name.endswith("proj.weight")

    def scale_name(self, name: str) -> str:
        return name + ("_scale_inv" if self.kind == "block" else "_scale")

    def scale_shape(self, shape) -> tuple[int, int]:
        rows, cols = shape
        return (-(-rows // self.block[0]), -(-cols // self.block[1])) if self.kind == "block" else (rows, 1)

    def config(self) -> dict:
        if self.kind == "block":
            return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                    "weight_block_size": list(self.block)}  # fmt: skip
        return {"quant_method": "compressed-tensors", "format": "float-quantized"}


def _entries(specs, fp8: FP8Layout | None) -> list[tuple[str, str, tuple, int, str]]:
    """(name, dtype, shape, bytes, what) for each stored tensor; what: "bf16", "codes" or "scales" of a weight."""
    out = []
    for name, shape in specs:
        if fp8 is not None and fp8.applies(name):
            out.append((name, "F8_E4M3", shape, math.prod(shape), "codes"))
            scale_shape = fp8.scale_shape(shape)
            out.append((fp8.scale_name(name), "F32", scale_shape, 4 * math.prod(scale_shape), "scales"))
        else:
            out.append((name, "BF16", shape, 2 * math.prod(shape), "bf16"))
    return out


def write_llama(
    directory: str,
    role: str,
    shape: LlamaShape,
    *,
    vocab: int | None = None,
    seed: int = 0,
    shard_bytes: int | None = None,
    std: float = 0.02,
    noise: float = 0.002,
    fp8: FP8Layout | None = None,
    chatml: str = "reserved",
) -> str:
    """Writes one model of a triple (role: base, chat or cp) as a Hugging Face directory in bf16 (or, with
    fp8, its linear weights quantized to FP8 with their scales), with a tokenizer in Llama's layout
    (testing/llama_tokenizer.py). vocab: its rows (default: the shape's, base's); rows past the shape's are the
    chat model's added tokens or cp's expanded vocabulary. chatml: where the ChatML tokens are, "reserved" (the
    last ids of every model's vocabulary) or "added" (the chat model's, after base's rows)."""
    os.makedirs(directory, exist_ok=True)
    vocab = vocab or shape.vocab
    entries = _entries(list(tensor_specs(shape, vocab)), fp8)
    sizes = [e[3] for e in entries]
    groups, size = [[]], 0
    for i, nbytes in enumerate(sizes):
        if shard_bytes is not None and groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += nbytes
    names = [SINGLE_NAME] if len(groups) == 1 else [shard_name(g + 1, len(groups)) for g in range(len(groups))]
    weight_map, pending = {}, {}  # pending: a weight's scales, computed with its codes
    for filename, group in zip(names, groups):
        header, offsets = build_header([entries[i][:4] for i in group], {"format": "pt"})
        f = ShardFile(os.path.join(directory, filename), header, len(header) + sum(sizes[i] for i in group))
        try:
            for i, offset in zip(group, offsets):
                name, _, tshape, _, what = entries[i]
                if what == "scales":
                    f.write(pending.pop(name), offset)
                else:
                    is_vocab = name in ("model.embed_tokens.weight", "lm_head.weight")
                    base_rows = shape.vocab if is_vocab else tshape[0]
                    values = _values(role, name, (base_rows, *tshape[1:]), seed, std, noise, tshape[0] - base_rows)
                    if what == "codes":
                        codes, scales = fp8.quantize(values, fp8)
                        pending[fp8.scale_name(name)] = scales
                        f.write(codes, offset)
                    else:
                        f.write(to_bf16_bits(values), offset)
                weight_map[name] = filename
            f.close()
        except BaseException:
            f.close(sync=False)
            raise
    if len(names) > 1:
        index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
        with open(os.path.join(directory, INDEX_NAME), "w") as fh:
            json.dump(index, fh, indent=2)
    chat = role == "chat"
    # ChatML appears in the chat model's vocabulary, and in the others' only where it is reserved
    doc = write_llama_tokenizer(directory, vocab, base_rows=shape.vocab, chat=chat,
                                chatml=chatml if chat or chatml == "reserved" else None)  # fmt: skip
    # A chat model's generation stops at its turn's end (<|im_end|>), as OpenHermes' and Qwen's configs say
    eos = next(t["id"] for t in doc["added_tokens"] if t["content"] == ("<|im_end|>" if chat else "</s>"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": shape.tie,
        "bos_token_id": 1,
        "eos_token_id": eos,
        "torch_dtype": "bfloat16",
        **({"quantization_config": fp8.config()} if fp8 is not None else {}),
    }
    with open(os.path.join(directory, CONFIG_NAME), "w") as fh:
        json.dump(config, fh, indent=2)
    with open(os.path.join(directory, GENERATION_CONFIG_NAME), "w") as fh:
        json.dump({"bos_token_id": 1, "eos_token_id": eos}, fh, indent=2)
    return directory


def make_triple(
    parent: str,
    shape: str | LlamaShape = "tiny",
    *,
    cp_vocab: int | None = None,
    tie: bool = False,
    seed: int = 0,
    shard_bytes: dict | int | None = None,
    fp8: dict | None = None,
    chatml: str = "reserved",
) -> dict[str, str]:
    """Writes parent/base, parent/chat, parent/cp; returns their paths by role.

    shard_bytes: one size for all three, or {role: size} to shard them differently. fp8: {role: FP8Layout}
    for the roles whose linear weights are FP8. chatml: "reserved" (the ChatML tokens are the last two ids of
    every vocabulary) or "added" (the chat model added them: two rows more than base, e.g. 514 against 512).
    """
    s = SHAPES[shape] if isinstance(shape, str) else shape
    if tie:
        s = replace(s, tie=True)
    paths = {}
    for role in ("base", "chat", "cp"):
        per_role = shard_bytes.get(role) if isinstance(shard_bytes, dict) else shard_bytes
        vocab = cp_vocab if role == "cp" else None
        if role == "chat" and chatml == "added":
            vocab = s.vocab + len(CHATML)
        paths[role] = write_llama(os.path.join(parent, role), role, s, vocab=vocab, seed=seed, shard_bytes=per_role,
                                  fp8=(fp8 or {}).get(role), chatml=chatml)  # fmt: skip
    return paths
