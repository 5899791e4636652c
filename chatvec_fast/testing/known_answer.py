"""A synthetic triple whose tune is known in advance: every figure at every alpha follows from its construction.

The models are one-layer Llamas in float32 whose transformer block adds nothing (o_proj and down_proj are zero
in all three), so the last hidden state is the token's embedding and the logits are a bigram table:
logits(next | token) = lm_head @ rmsnorm(embed[token]). A few tokens ("states") have one-hot embeddings;
every other token's embedding is zero, so after it every next token is equally likely (1/vocab).
All three lm_heads share a small random part R (so no weight is a round number), and

    base = R     cp = R + C (prefers Chinese)     chat = R + D (chat - base = D pushes toward English and eos)

so the merged model's logits are C + alpha * D (plus R), and greedy replies switch at known alphas:

    state (token)          C (cp)                      D (chat - base)          switches at
    "\\n" (reply start)     中 (its first byte) +6       "▁hello" +8              alpha 6/8 = 0.75: English
    中's, 文's bytes        the next byte +10            "▁hello" +HELLO_PULL     (bits per byte rise)
    文's last byte          。 +7, 中 +6                  -
    。's last byte          中 +6                        eos +13                  alpha 6/13 = 0.46: stops
    "▁hello", "▁world"      -                           "▁world" +10, eos +10

Chinese is written with the tokenizer's byte tokens (中 = E4 B8 AD, 文 = E6 96 87, 。 = E3 80 82), as Llama 2
writes it. So with the ALPHAS 0.0 ... 1.0:
    alpha <= 0.4: "中文。中文。" (MAX_NEW_TOKENS = 18 tokens, never stops): fidelity 1, stops 0
    0.5 ... 0.7:  "中文。" then eos: fidelity 1, stops 1
    alpha >= 0.8: "hello world" then eos: fidelity 0, stops 1
and the bits per byte of TEXT ("中文" repeated, no 。) rise with alpha through the "▁hello" pull, past cp's
+5% between 0.5 and 0.6, so the default rule (the highest fidelity x stops among alphas within 5% of cp's bits
per byte; the lower alpha among equals) recommends 0.5. Every prompt's reference answer is "中文。": its bits
per byte fall while eos after 。 gains and rise once English wins the reply's start (1.35 at alpha 0, 0.35 at
0.6, 1.26 at 1.0), so --pick answer recommends 0.6. The bits per byte are computed here in float64 from the
stored weights and the merge formula (rounded to float32 once, as the merge does).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ..filenames import CONFIG_NAME, GENERATION_CONFIG_NAME, SINGLE_NAME
from ..write.shard import ShardFile, build_header
from .llama_tokenizer import CHATML, FIRST_PIECE, llama_vocabulary, write_llama_tokenizer

VOCAB, HIDDEN, HEADS, KV_HEADS, INTERMEDIATE = 512, 64, 4, 2, 96
WINDOW = 64  # max_position_embeddings: TEXT spans several windows
EPS = 1e-5
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
MAX_NEW_TOKENS = 18  # two of cp's "中文。" cycles (9 byte tokens each)
HELLO_PULL = 10.5  # D's "▁hello" logit after 中文's bytes: cp's bits per byte +2.2% at alpha 0.5, +6.3% at 0.6
TEXT = "中文" * 60  # 360 bytes, 362 tokens with <s> and the leading "▁": six windows of 64 at stride 32
PROMPTS = ("hello", "what is the model", "tell me about the chat vector")
ANSWER = "中文。"  # every prompt's reference answer: cheapest where the reply is 中文。 and eos (middle alphas)
LANGUAGE = "zh"
MAX_BPB_INCREASE = 0.05


def _byte(b: int) -> int:
    return len(("<unk>", "<s>", "</s>")) + b


def _ids() -> dict:
    vocab, _, added = llama_vocabulary(VOCAB)
    ids = {t: i for i, t in added}
    ids.update({"\n": _byte(0x0A), "hello": vocab["\u2581hello"], "world": vocab["\u2581world"]})
    assert ids["hello"] >= FIRST_PIECE and ids[CHATML[1]] == VOCAB - 1
    return ids


def _tables():
    """(states: token id -> one-hot slot, C, D): C and D as {slot: {next token id: logit}}."""
    ids = _ids()
    zhong, wen, stop = (list("中文。"[k].encode()) for k in range(3))
    cycle = [_byte(b) for b in zhong + wen]  # 中文's six bytes
    period = [_byte(b) for b in stop]
    eos = ids[CHATML[1]]
    order = [ids["\n"], *cycle, *period, ids["hello"], ids["world"]]
    states = {t: k for k, t in enumerate(order)}
    s = states.__getitem__
    c = {s(ids["\n"]): {cycle[0]: 6.0}}
    d = {s(ids["\n"]): {ids["hello"]: 8.0}}
    for a, b in zip(cycle[:-1], cycle[1:]):
        c[s(a)] = {b: 10.0}
        d[s(a)] = {ids["hello"]: HELLO_PULL}
    c[s(cycle[-1])] = {period[0]: 7.0, cycle[0]: 6.0}
    c[s(period[0])], c[s(period[1])] = {period[1]: 10.0}, {period[2]: 10.0}
    c[s(period[2])] = {cycle[0]: 6.0}
    d[s(period[2])] = {eos: 13.0}
    d[s(ids["hello"])] = {ids["world"]: 10.0}
    d[s(ids["world"])] = {eos: 10.0}
    return states, c, d


def _weights(role: str, seed: int) -> dict[str, np.ndarray]:
    """The role's tensors (float32), by name, in LlamaForCausalLM's order."""
    states, c, d = _tables()
    rng = np.random.default_rng([seed, 7])  # the same in every role: only lm_head differs between them
    embed = np.zeros((VOCAB, HIDDEN), np.float32)
    for token, slot in states.items():
        embed[token, slot] = 1.0
    # rmsnorm(e_k) = e_k / sqrt(1/64 + eps) ~ 8 e_k: a logit L needs the weight L / 8
    head = rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32) * np.float32(0.01 / 8)
    extra = c if role == "cp" else d if role == "chat" else {}
    for slot, row in extra.items():
        for token, logit in row.items():
            head[token, slot] += np.float32(logit / 8)
    kv = KV_HEADS * (HIDDEN // HEADS)
    small = lambda *shape: (rng.standard_normal(shape) * 0.02).astype(np.float32)  # noqa: E731
    p = "model.layers.0."
    return {
        "model.embed_tokens.weight": embed,
        p + "self_attn.q_proj.weight": small(HIDDEN, HIDDEN),
        p + "self_attn.k_proj.weight": small(kv, HIDDEN),
        p + "self_attn.v_proj.weight": small(kv, HIDDEN),
        p + "self_attn.o_proj.weight": np.zeros((HIDDEN, HIDDEN), np.float32),  # the block adds nothing
        p + "mlp.gate_proj.weight": small(INTERMEDIATE, HIDDEN),
        p + "mlp.up_proj.weight": small(INTERMEDIATE, HIDDEN),
        p + "mlp.down_proj.weight": np.zeros((HIDDEN, INTERMEDIATE), np.float32),
        p + "input_layernorm.weight": np.ones(HIDDEN, np.float32),
        p + "post_attention_layernorm.weight": np.ones(HIDDEN, np.float32),
        "model.norm.weight": np.ones(HIDDEN, np.float32),
        "lm_head.weight": head,
    }


def _write_model(directory: str, role: str, seed: int):
    os.makedirs(directory, exist_ok=True)
    tensors = _weights(role, seed)
    entries = [(n, "F32", t.shape, t.nbytes) for n, t in tensors.items()]
    header, offsets = build_header(entries, {"format": "pt"})
    f = ShardFile(os.path.join(directory, SINGLE_NAME), header, len(header) + sum(e[3] for e in entries))
    try:
        for t, offset in zip(tensors.values(), offsets):
            f.write(np.ascontiguousarray(t), offset)
        f.close()
    except BaseException:
        f.close(sync=False)
        raise
    doc = write_llama_tokenizer(directory, VOCAB, chat=role == "chat")
    eos = next(t["id"] for t in doc["added_tokens"] if t["content"] == ("<|im_end|>" if role == "chat" else "</s>"))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "num_hidden_layers": 1,
              "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
              "max_position_embeddings": WINDOW, "rms_norm_eps": EPS, "rope_theta": 10000.0,
              "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": eos,
              "torch_dtype": "float32"}  # fmt: skip
    with open(os.path.join(directory, CONFIG_NAME), "w") as fh:
        json.dump(config, fh, indent=2)
    with open(os.path.join(directory, GENERATION_CONFIG_NAME), "w") as fh:
        json.dump({"bos_token_id": 1, "eos_token_id": eos}, fh, indent=2)


def _merged_logits(alpha: float, seed: int) -> np.ndarray:
    """[vocab (next), vocab (token)] float64 bigram logits of the merge at alpha: the merge formula in float64
    on the stored float32 weights, rounded to float32 once, then rmsnorm and lm_head in float64."""
    w = {r: _weights(r, seed) for r in ("base", "chat", "cp")}
    head = lambda r: w[r]["lm_head.weight"].astype(np.float64)  # noqa: E731
    merged = (head("cp") + alpha * (head("chat") - head("base"))).astype(np.float32).astype(np.float64)
    x = w["cp"]["model.embed_tokens.weight"].astype(np.float64)
    normed = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + EPS)
    return merged @ normed.T


def bigram_bits_per_byte(alpha: float, ids: list[int], text: str, seed: int = 0) -> float:
    """Bits per byte of `text` (tokenized as `ids`, every token after the first scored) at `alpha`."""
    logits = _merged_logits(alpha, seed)
    log_p = logits - np.log(np.exp(logits - logits.max(axis=0)).sum(axis=0)) - logits.max(axis=0)
    bits = -sum(log_p[b, a] for a, b in zip(ids[:-1], ids[1:])) / math.log(2)
    return bits / len(text.encode("utf-8"))


def _chatml(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def _answer_bits_per_byte(alpha: float, tokenizer, seed: int) -> float:
    """All prompts' ANSWER (and the turn's end, <|im_end|>) given the prompt, over the answers' bytes; ChatML
    rendered here by hand. Only the prompt's last token (its "\n") conditions the answer in a bigram."""
    bits = 0.0
    for user in PROMPTS:
        head = tokenizer(_chatml(user), add_special_tokens=False).input_ids
        ids = tokenizer(_chatml(user) + ANSWER + CHATML[1], add_special_tokens=False).input_ids
        assert ids[: len(head)] == head
        bits += bigram_bits_per_byte(alpha, ids[len(head) - 1 :], ANSWER, seed) * len(ANSWER.encode("utf-8"))
    return bits / (len(PROMPTS) * len(ANSWER.encode("utf-8")))


def _reply(alpha: float) -> tuple[str, bool]:
    if alpha >= 0.75:
        return "hello world", True
    return ("中文。", True) if alpha >= 6 / 13 else ("中文。中文。", False)


def write_known_answer_triple(directory: str, alphas=ALPHAS, seed: int = 0) -> dict:
    """Writes directory/{base,chat,cp}, directory/text.txt and directory/prompts.jsonl; returns their paths and
    the figures a tune must find (see the module's docstring):

    {"paths": {role: dir}, "text", "text_path", "prompts", "prompts_path", "language", "window",
     "max_new_tokens", "max_bpb_increase", "expected": {alpha: {"fidelity", "line_fidelity", "stops",
     "bits_per_byte", "answer_bits_per_byte", "reply", "stopped"}}, "recommended": alpha (the default rule),
     "recommended_by": {rule: alpha} (--pick answer, fidelity, bits-per-byte), "tolerance": relative, on bits
     per byte}

    >>> known = write_known_answer_triple(str(tmp_path))   # doctest: +SKIP
    >>> known["expected"][0.5]["reply"], known["recommended"]   # doctest: +SKIP
    ('中文。', 0.5)
    """
    from transformers import AutoTokenizer

    paths = {r: os.path.join(directory, r) for r in ("base", "chat", "cp")}
    for role, path in paths.items():
        _write_model(path, role, seed)
    text_path, prompts_path = os.path.join(directory, "text.txt"), os.path.join(directory, "prompts.jsonl")
    with open(text_path, "w", encoding="utf-8") as fh:
        fh.write(TEXT)
    prompts = [{"prompt": p, "answer": ANSWER} for p in PROMPTS]
    with open(prompts_path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in prompts)
    tokenizer = AutoTokenizer.from_pretrained(paths["cp"])
    ids = tokenizer(TEXT).input_ids
    expected = {}
    for alpha in alphas:
        reply, stopped = _reply(alpha)
        fidelity = 1.0 if "中" in reply else 0.0
        expected[alpha] = {"fidelity": fidelity, "line_fidelity": fidelity, "stops": float(stopped),
                           "bits_per_byte": bigram_bits_per_byte(alpha, ids, TEXT, seed), "reply": reply,
                           "stopped": stopped,
                           "answer_bits_per_byte": _answer_bits_per_byte(alpha, tokenizer, seed)}  # fmt: skip
    cp_bpb = bigram_bits_per_byte(0.0, ids, TEXT, seed)
    within = [a for a in alphas if expected[a]["bits_per_byte"] <= cp_bpb * (1 + MAX_BPB_INCREASE)]
    score = {a: expected[a]["fidelity"] * expected[a]["stops"] for a in within}
    best = max(score.values())
    lowest = lambda key, sign=1: min(alphas, key=lambda a: (sign * expected[a][key], a))  # noqa: E731 - ties: lower alpha
    return {"paths": paths, "text": TEXT, "text_path": text_path, "prompts": prompts, "prompts_path": prompts_path,
            "language": LANGUAGE, "window": WINDOW, "max_new_tokens": MAX_NEW_TOKENS,
            "max_bpb_increase": MAX_BPB_INCREASE, "cp_bits_per_byte": cp_bpb, "expected": expected,
            "recommended": min(a for a in within if score[a] == best), "tolerance": 1e-5,
            "recommended_by": {"answer": lowest("answer_bits_per_byte"), "fidelity": lowest("fidelity", -1),
                               "bits-per-byte": lowest("bits_per_byte")}}  # fmt: skip
