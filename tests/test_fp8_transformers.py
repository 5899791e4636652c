"""An FP8 merge that transformers loads: a tiny Qwen3 whose base and chat are block-scaled FP8 (DeepSeek-V3's
layout) and whose cp is bf16 (or also FP8), merged to bf16 by the CLI, loaded with from_pretrained and run.

The expected weights are built without the package: FP8 decoded by tests/fp8_data.py in float64, the
merge in float64, one rounding to bf16 by hand (torch's float64 -> bf16 cast rounds twice, via float32).
The two models must agree bit for bit, weights and logits.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import cli, model_args
from fp8_data import dequantize, quantize
from safetensors import safe_open
from safetensors.torch import save_file

transformers = pytest.importorskip("transformers")

ALPHA = 0.7
BLOCK = (32, 32)  # hidden 72 and intermediate 200 are not multiples of 32: every matrix has partial edge blocks
LAYOUT = ("block", *BLOCK)
QUANT_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": list(BLOCK)}


def qwen3_config():
    return transformers.Qwen3Config(vocab_size=256, hidden_size=72, intermediate_size=200, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                                    tie_word_embeddings=False, dtype="bfloat16")  # fmt: skip


def is_fp8(name: str, value: np.ndarray) -> bool:
    """The linear layers' weights, as FP8 checkpoints quantize them (embeddings, norms, lm_head stay bf16)."""
    return value.ndim == 2 and ".layers." in name and name.endswith("proj.weight")


def bf16_round(x: np.ndarray) -> torch.Tensor:
    """float64 -> bf16, rounded once to nearest-even: 8 significant bits via frexp (exact for the normal
    range, which these weights stay in), then an exact cast."""
    assert np.all(np.isfinite(x)) and np.all((x == 0) | (np.abs(x) >= 2.0**-126))
    m, e = np.frexp(x)
    rounded = np.ldexp(np.rint(np.ldexp(m, 8)), e - 8)  # np.rint ties to even
    return torch.from_numpy(rounded).to(torch.bfloat16)  # exact: every value has 8 significant bits


def role_values() -> dict[str, dict[str, np.ndarray]]:
    """float64 weights of base (transformers' own init, norms jittered off 1), chat and cp (base + noise)."""
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(qwen3_config())
    rng = np.random.default_rng(0)
    base = {}
    for name, t in model.state_dict().items():
        v = t.double().numpy().copy()
        base[name] = v + rng.standard_normal(v.shape) * 0.05 if v.ndim == 1 else v
    noisy = {r: {n: v + rng.standard_normal(v.shape) * 0.002 for n, v in base.items()} for r in ("chat", "cp")}
    return {"base": base, **noisy}


def write_role(directory: str, values: dict[str, np.ndarray], fp8: bool) -> dict[str, np.ndarray]:
    """Writes a Hugging Face directory (with safetensors' own writer, not the package's); returns the float64
    values as stored (FP8 decoded independently, bf16 widened), which the expected merge starts from."""
    os.makedirs(directory)
    tensors, stored = {}, {}
    for name, v in values.items():
        if fp8 and is_fp8(name, v):
            codes, scales = quantize(v, "F8_E4M3", LAYOUT)
            scales = scales.reshape(-(-v.shape[0] // BLOCK[0]), -(-v.shape[1] // BLOCK[1]))
            tensors[name] = torch.from_numpy(codes).view(torch.float8_e4m3fn)
            tensors[name + "_scale_inv"] = torch.from_numpy(scales)
            stored[name] = dequantize(codes, scales.reshape(-1), "F8_E4M3", LAYOUT)
        else:
            tensors[name] = bf16_round(v)
            stored[name] = tensors[name].double().numpy()
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    config = qwen3_config().to_dict()
    if fp8:
        config["quantization_config"] = QUANT_CONFIG
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return stored


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3-fp8")
    values = role_values()
    paths = {r: str(root / r) for r in ("base", "chat")}
    stored = {r: write_role(paths[r], values[r], fp8=True) for r in ("base", "chat")}
    for kind in ("bf16", "fp8"):  # the common case (a bf16 cp), and an FP8 cp whose quantization_config must go
        paths[f"cp-{kind}"] = str(root / f"cp-{kind}")
        stored[f"cp-{kind}"] = write_role(paths[f"cp-{kind}"], values["cp"], fp8=kind == "fp8")
    return paths, stored


@pytest.mark.parametrize("cp_kind", ["bf16", "fp8"])
def test_merged_fp8_qwen3_loads_in_transformers_and_matches_float64_exactly(inputs, tmp_path, cp_kind):
    paths, stored = inputs
    roles = {"base": paths["base"], "chat": paths["chat"], "cp": paths[f"cp-{cp_kind}"]}
    out = tmp_path / "out"
    r = cli("merge", *model_args(roles), "--out", out, "--alpha", str(ALPHA), "--quiet")
    assert r.returncode == 0, r.stderr

    # (a) bf16 output: the scales are folded in, so transformers must not be told the weights are FP8
    config = json.load(open(out / "config.json"))
    assert "quantization_config" not in config, config["quantization_config"]
    with safe_open(str(out / "model.safetensors"), "pt") as g:
        assert not [k for k in g.keys() if k.endswith("_scale_inv")]

    # (b) loads as a plain bf16 model, every key used and none missing
    got, info = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.bfloat16, attn_implementation="eager", output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    assert type(got).__name__ == "Qwen3ForCausalLM" and got.dtype == torch.bfloat16

    # (c) the independent expectation, in a second model of the same config
    b, c, p = stored["base"], stored["chat"], stored[f"cp-{cp_kind}"]
    want_state = {n: bf16_round(p[n] + ALPHA * (c[n] - b[n])) for n in p}
    want = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.from_pretrained(out), dtype=torch.bfloat16, attn_implementation="eager"
    )
    want.load_state_dict(want_state, strict=True)
    got_params, want_params = dict(got.named_parameters()), dict(want.named_parameters())
    assert got_params.keys() == want_params.keys() == want_state.keys()
    for name, t in got_params.items():
        assert t.dtype == torch.bfloat16 and torch.equal(t.view(torch.int16), want_params[name].view(torch.int16)), name
    got_buffers, want_buffers = dict(got.named_buffers()), dict(want.named_buffers())
    assert got_buffers.keys() == want_buffers.keys()
    for name, t in got_buffers.items():  # the rotary tables: equal logits then depend on the weights alone
        assert torch.equal(t, want_buffers[name]), name

    ids = torch.tensor([[1, 17, 42, 255, 3, 128, 64, 9, 200, 5]])
    with torch.no_grad():
        got_logits, want_logits = got(input_ids=ids).logits, want(input_ids=ids).logits
    assert got_logits.dtype == torch.bfloat16 and torch.isfinite(got_logits).all()
    assert torch.equal(got_logits, want_logits)
    # Not vacuous: the chat vector moved the weights away from cp's own.
    down = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(got_params[down], bf16_round(p[down]))
