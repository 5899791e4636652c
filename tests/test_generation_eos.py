"""Generation stops at the chat model's eos: the merged model's every file names it (config.json,
generation_config.json, tokenizer_config.json, special_tokens_map.json), and `generate` under the chat
template ends with <|im_end|> rather than running to max_new_tokens, with or without a generation_config.json
in cp.

The weights make greedy decoding emit <|im_end|> at once, whatever the prompt: every layer's output
projections are zero (the residual stream is the token's embedding), every embedding row has 1.0 in its first
dimension, and only the chat model's lm_head row of <|im_end|> reads that dimension (4.0; 0 elsewhere).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import cli, model_args

from chatvec_fast.testing.synthetic import make_triple

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

MAX_NEW = 8


def steer(path: str, eos_row: int | None):
    """Rewrites a model's weights as the module docstring says (eos_row: the chat model's <|im_end|> row)."""
    file = os.path.join(path, "model.safetensors")
    state = safetensors_torch.load_file(file)
    for name, t in state.items():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            t.zero_()
    state["model.embed_tokens.weight"][:, 0] = 1.0
    state["lm_head.weight"][:, 0] = 0.0
    if eos_row is not None:
        state["lm_head.weight"][eos_row, 0] = 4.0
    safetensors_torch.save_file(state, file, metadata={"format": "pt"})


@pytest.fixture(params=[("added", True), ("added", False), ("reserved", True)],
                ids=["chat-added-chatml", "chat-added-chatml-cp-generation-config", "cp-has-im-end"])  # fmt: skip
def merged(request, tmp_path):
    layout, drop_generation_config = request.param
    paths = make_triple(str(tmp_path / "models"), "tiny", chatml=layout)
    chat_eos = 513 if layout == "added" else 511  # in chat's vocabulary
    for role, path in paths.items():
        steer(path, chat_eos if role == "chat" else None)
    if drop_generation_config:
        os.unlink(os.path.join(paths["cp"], "generation_config.json"))
    out = tmp_path / "out"
    r = cli("merge", *model_args(paths), "--out", out, "--alpha", "0.5", "--quiet")
    assert r.returncode == 0, r.stderr
    # in the output's vocabulary: appended after cp's 512 rows, or cp's own id of the token
    return out, 513 if layout == "added" else 511


def test_generation_stops_at_the_chat_models_eos(merged):
    out, eos = merged
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    messages = [{"role": "user", "content": "Hello, how are you?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    n = prompt["input_ids"].shape[1]
    with torch.no_grad():
        stopped = model.generate(**prompt, max_new_tokens=MAX_NEW, do_sample=False)[0, n:].tolist()
        unstopped = model.generate(**prompt, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=2)[0, n:].tolist()
    assert stopped == [eos], stopped  # one turn, ended by <|im_end|>
    assert unstopped == [eos] * MAX_NEW  # with cp's </s> alone, generation runs past the end of the turn
    assert tokenizer.decode(stopped) == "<|im_end|>"


def test_every_file_names_the_same_eos(merged):
    out, eos = merged
    read = lambda name: json.load(open(out / name, encoding="utf-8"))  # noqa: E731
    assert read("config.json")["eos_token_id"] == [2, eos]
    assert read("generation_config.json")["eos_token_id"] == [2, eos]
    assert read("tokenizer_config.json")["eos_token"] == "<|im_end|>"
    assert read("special_tokens_map.json")["eos_token"]["content"] == "<|im_end|>"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == eos
    generation = transformers.GenerationConfig.from_pretrained(str(out))
    assert generation.eos_token_id == [2, eos] and generation.bos_token_id == 1
    assert read("chatvec_report.json")["chat_template"]["generation_eos_token_id"] == [2, eos]
