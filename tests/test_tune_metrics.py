"""tune's metrics against independent computations: bits per byte from a plain per-token loop over the model's
logits (float64), answers' bits from hand-rendered ChatML, greedy replies from a loop without cache or padding;
the prompts file and the evaluation's inputs refused with clear errors."""

from __future__ import annotations

import copy
import json
import math
import types

import pytest
import torch
from conftest import stable_seed

transformers = pytest.importorskip("transformers")

from chatvec_fast.errors import InputError  # noqa: E402
from chatvec_fast.testing.llama_tokenizer import write_llama_tokenizer  # noqa: E402
from chatvec_fast.tuning.bits import bits_per_byte, text_ids, windows  # noqa: E402
from chatvec_fast.tuning.evaluate import EvalInputs, EvalSettings, Evaluator, check_eval_inputs  # noqa: E402
from chatvec_fast.tuning.generate import greedy_replies  # noqa: E402
from chatvec_fast.tuning.prompts import Prompt, read_prompts  # noqa: E402

VOCAB, CONTEXT = 512, 40
TEXT = "the model can merge what the chat vector is about. Then it will be like that, or so we hope! " * 3
END = 511  # <|im_end|>: the synthetic chat tokenizer's eos


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    write_llama_tokenizer(str(directory), VOCAB, chat=True)
    return transformers.AutoTokenizer.from_pretrained(str(directory))


@pytest.fixture(scope="module")
def model():
    """A random two-layer Llama (float32) whose attention matters: bits per byte depend on the context."""
    torch.manual_seed(stable_seed("tune-metrics"))
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=CONTEXT,
    )  # fmt: skip
    m = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.6 if p.ndim == 2 else 1.0)  # strong weights: logits spread over several nats
    return m


def plain_bits(model, ids, window, stride) -> float:
    """Each target t scored alone: the model run on its window's tokens before t (the first window's start
    that holds t: 0, stride, 2 stride ... or the last window's, len - window), log_softmax in float64."""
    n, total = len(ids), 0.0
    for t in range(1, n):
        start = 0 if t < window or n <= window else min(((t - window) // stride + 1) * stride, n - window)
        with torch.no_grad():
            logits = model(torch.tensor([ids[start:t]])).logits[0, -1].double()
        total -= logits.log_softmax(-1)[ids[t]].item() / math.log(2)
    return total


@pytest.mark.parametrize("n, window, stride", [(1, 4, 2), (4, 4, 2), (5, 4, 2), (10, 4, 2), (11, 4, 3), (17, 5, 4),
                                               (17, 5, 1), (100, 32, 7)])  # fmt: skip
def test_windows_score_every_token_once_with_left_context(n, window, stride):
    plan = windows(n, window, stride)
    scored = [t for i, (start, first) in enumerate(plan) for t in range(first, min(n, start + window))]
    assert scored == list(range(1, n))
    for start, first in plan:
        assert 0 <= start and start + min(n, window) <= max(n, window)
        assert first == 1 or first - start >= window - stride  # every later target sees window - stride tokens


@pytest.mark.parametrize("window, stride", [(5, 5), (5, 0), (5, 6)])
def test_windows_refuse_a_stride_that_leaves_a_token_without_context(window, stride):
    with pytest.raises(ValueError, match="stride"):
        windows(20, window, stride)


@pytest.mark.parametrize("window, stride, batch", [(40, 20, 8), (17, 5, 3), (16, 15, 1), (23, 1, 64)])
def test_bits_per_byte_equals_a_plain_loop_over_the_logits(model, tokenizer, window, stride, batch):
    ids = text_ids(tokenizer, TEXT)
    assert len(ids) > 2 * window and ids[0] == tokenizer.bos_token_id
    got = bits_per_byte(model, tokenizer, TEXT, window, stride, batch)
    want = plain_bits(model, ids, window, stride) / len(TEXT.encode("utf-8"))
    # float32 log_softmax and different sequence lengths against float64 on the same float32 logits: ~1e-7
    assert got == pytest.approx(want, rel=1e-6), (got, want)
    assert 1.0 < got < 20.0  # a random model: far from 0 and from log2(512) per token spread over ~5 bytes


def test_bits_per_byte_in_row_chunks(model, tokenizer, monkeypatch):
    # log_softmax runs ROWS positions at a time (1024 for real models); 7 splits every window here
    from chatvec_fast.tuning import bits

    monkeypatch.setattr(bits, "ROWS", 7)
    got = bits_per_byte(model, tokenizer, TEXT, 24, 10, 2)
    want = plain_bits(model, text_ids(tokenizer, TEXT), 24, 10) / len(TEXT.encode("utf-8"))
    assert got == pytest.approx(want, rel=1e-6)


def test_bits_per_byte_depends_on_the_context(model, tokenizer):
    assert bits_per_byte(model, tokenizer, TEXT, 40, 20) != pytest.approx(bits_per_byte(model, tokenizer, TEXT, 8, 4))


def chatml(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def test_answer_bits_per_byte_from_hand_rendered_chatml(model, tokenizer):
    prompts = (Prompt("a", ({"role": "user", "content": "hello there"},), "it is the model, and so"),
               Prompt("b", ({"role": "user", "content": "what is it"},), None),
               Prompt("c", ({"role": "user", "content": "and then?"},), "then it will be like that!"))  # fmt: skip
    ev = Evaluator(tokenizer, EvalInputs(TEXT, None, prompts), EvalSettings("en", max_new_tokens=3), (END,))
    got = ev.evaluate(model)["answer_bits_per_byte"]
    bits = nbytes = 0
    for p in (prompts[0], prompts[2]):
        head = tokenizer(chatml(p.messages[0]["content"]), add_special_tokens=False).input_ids
        ids = tokenizer(chatml(p.messages[0]["content"]) + p.answer + "<|im_end|>", add_special_tokens=False).input_ids
        assert ids[: len(head)] == head and ids[-1] == END
        with torch.no_grad():
            log_p = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
        bits -= sum(log_p[t - 1, ids[t]].item() for t in range(len(head), len(ids))) / math.log(2)
        nbytes += len(p.answer.encode("utf-8"))
    assert got == pytest.approx(bits / nbytes, rel=1e-6)


def plain_greedy(model, prompt, eos, max_new):
    """No cache, no padding: the whole sequence through the model at every step."""
    ids = list(prompt)
    for _ in range(max_new):
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        if ids[-1] in eos:
            break
    return tuple(ids[len(prompt) :])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_batched_equals_one_by_one_and_a_plain_loop(model, tokenizer, dtype):
    # bf16 too: padding changes the shapes of every matmul, and a bf16 near-tie could flip (none on the CPU)
    model = copy.deepcopy(model).to(dtype)
    users = ("hello", "what is the model about, and the chat vector?", "so", "and then it will be")
    prompts = [tokenizer(chatml(u), add_special_tokens=False).input_ids for u in users]
    assert len({len(p) for p in prompts}) == 4  # padding differs in every row
    first = plain_greedy(model, prompts[1], (), 1)[0]
    eos = (first, END)  # prompt 1's reply stops at once; the others run on unless they meet one
    want = [plain_greedy(model, p, eos, 9) for p in prompts]
    for batch in (1, 3, 4):
        got = greedy_replies(model, prompts, eos, 9, batch, pad_id=0)
        assert [r.tokens for r in got] == want, f"batch {batch}"
        assert [r.stopped for r in got] == [w[-1] in eos for w in want]
    assert want[1] == (first,) and any(len(w) == 9 and w[-1] not in eos for w in want)


def test_evaluate_is_deterministic_and_leaves_the_model_alone(model, tokenizer):
    prompts = tuple(read_prompts_from(["hello", "what is the model"]))
    ev = Evaluator(tokenizer, EvalInputs(TEXT, TEXT[:150], prompts), EvalSettings("en", max_new_tokens=5, window=20,
                   batch_size=2), (END,))  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one, two = ev.evaluate(model), ev.evaluate(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert one.pop("seconds") >= 0 and two.pop("seconds") >= 0
    assert one == two
    assert set(one) == {"bits_per_byte", "reference_bits_per_byte", "fidelity", "line_fidelity", "stops",
                        "answer_bits_per_byte", "replies"}  # fmt: skip
    assert one["answer_bits_per_byte"] is None and one["reference_bits_per_byte"] > 0
    assert [r["id"] for r in one["replies"]] == ["1", "2"] and all(r["tokens"] <= 5 for r in one["replies"])
    assert one["stops"] == sum(r["stopped"] for r in one["replies"]) / 2


def read_prompts_from(users, tmp=None):
    return [Prompt(str(i + 1), ({"role": "user", "content": u},), None) for i, u in enumerate(users)]


def test_eval_inputs_refused_before_work(tokenizer):
    prompts = tuple(read_prompts_from(["hello"]))
    ok = EvalInputs(TEXT, None, prompts)
    check_eval_inputs(tokenizer, ok, EvalSettings("en", max_new_tokens=8), CONTEXT)
    with pytest.raises(InputError, match=r"--text: \d+ tokens, shorter than one window \(512 tokens"):
        check_eval_inputs(tokenizer, ok, EvalSettings("en"), 512)
    with pytest.raises(InputError, match="--reference-text: 2 tokens"):
        check_eval_inputs(tokenizer, EvalInputs(TEXT, "the", prompts), EvalSettings("en", max_new_tokens=8), CONTEXT)
    n = len(tokenizer(chatml("hello"), add_special_tokens=False).input_ids)
    with pytest.raises(InputError, match=f"prompt '1': {n} tokens under the chat template, and with 32 new tokens"):
        check_eval_inputs(tokenizer, ok, EvalSettings("en", max_new_tokens=32), CONTEXT)
    bare = transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    bare.chat_template = None
    with pytest.raises(InputError, match="no chat template.*--chat-template-from"):
        check_eval_inputs(bare, ok, EvalSettings("en", max_new_tokens=8), CONTEXT)


def write(tmp_path, lines) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(lines if isinstance(lines, bytes) else "".join(x + "\n" for x in lines).encode())
    return str(path)


def test_prompts_file_read(tmp_path):
    path = write(tmp_path, [json.dumps({"prompt": "你好"}), "",
                            json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                                     {"role": "user", "content": "hi"}], "answer": "hello"}),
                            json.dumps({"id": 7, "prompt": "x", "answer": "y"})])  # fmt: skip
    assert read_prompts(path) == [
        Prompt("1", ({"role": "user", "content": "你好"},), None),
        Prompt("3", ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}), "hello"),
        Prompt("7", ({"role": "user", "content": "x"},), "y"),
    ]


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "a"', ], r"line 1: not JSON \(Expecting ',' delimiter"),
    (['{"prompt": "a"}', '["a"]'], "line 2: a JSON list, expected an object"),
    (['{"answer": "a"}'], 'line 1: has neither of "prompt" and "messages"; give exactly one'),
    (['{"prompt": "a", "messages": []}'], 'line 1: has both of "prompt" and "messages"'),
    (['{"prompt": "a", "reply": "b"}'], "line 1: unknown key\\(s\\) 'reply'"),
    (['{"prompt": 3}'], 'line 1: "prompt" is a JSON int, expected a string'),
    (['{"prompt": "  "}'], 'line 1: "prompt" is empty'),
    (['{"prompt": "a", "answer": ""}'], 'line 1: "answer" is empty'),
    (['{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}'],
     'ends with a assistant turn; .* must end with a user turn'),
    (['{"messages": [{"role": "robot", "content": "a"}]}'], r'"messages"\[0\]: role .robot., expected one of'),
    (['{"messages": [{"role": "user"}]}'], r'"messages"\[0\] is .*expected \{"role": ..., "content": ...\}'),
    (['{"messages": {}}'], 'must be a non-empty list'),
    (['{"prompt": "a", "id": "x"}', '{"prompt": "b", "id": "x"}'], "line 2: id 'x' is also line 1's"),
    (['{"prompt": "a", "id": true}'], '"id" True is not a non-empty string or integer'),
    (["", "  "], "no prompts"),
    (b'{"prompt": "\xff"}\n', "not UTF-8 text"),
])  # fmt: skip
def test_bad_prompts_file_refused_naming_the_line(tmp_path, lines, message):
    path = write(tmp_path, lines)
    with pytest.raises(InputError, match=message) as info:
        read_prompts(path)
    assert str(info.value).startswith(f"--prompts {path}")


def test_hostile_prompts_files(tmp_path, monkeypatch):
    path = write(tmp_path, ['{"prompt": "a"}', "[" * 100_000 + "]" * 100_000])
    with pytest.raises(InputError, match="line 2: nested deeper than Python can decode"):
        read_prompts(path)
    from chatvec_fast.tuning import prompts

    monkeypatch.setattr(prompts, "MAX_BYTES", 1000)  # the real cap is 64 MiB: a file of 1001 bytes stands in
    path = write(tmp_path, [json.dumps({"prompt": "x" * 986})])  # 1000 bytes and a newline
    with pytest.raises(InputError, match="1001 bytes, more than the 1000 a tune's prompts need"):
        read_prompts(path)


def test_missing_prompts_file(tmp_path):
    with pytest.raises(InputError, match="cannot read prompts file: no such file; check the path"):
        read_prompts(str(tmp_path / "none.jsonl"))
    with pytest.raises(InputError, match="prompts file is a directory, not a regular file"):
        read_prompts(str(tmp_path))


def test_the_context_from_the_config_or_its_text_config():
    from types import SimpleNamespace as Config

    from chatvec_fast.tuning.evaluate import _context

    assert _context(Config(max_position_embeddings=4096)) == 4096
    assert _context(Config(text_config=Config(max_position_embeddings=8192))) == 8192  # multimodal configs
    for config in (Config(), Config(max_position_embeddings=None, text_config=None), Config(max_position_embeddings=1)):
        with pytest.raises(InputError, match="no usable max_position_embeddings"):
            _context(config)


def test_a_pad_token_past_the_embedding_is_not_used(model, tokenizer):
    # a <pad> added to the tokenizer without resizing the embedding (id 512 of 512 rows): padding with it
    # would index past the embedding; the evaluation pads with eos, which the model has a row for
    padded = copy.deepcopy(tokenizer)
    padded.add_special_tokens({"pad_token": "<pad>"})
    assert padded.pad_token_id == VOCAB
    prompts = tuple(read_prompts_from(["hello", "what is the model about"]))
    settings = EvalSettings("en", max_new_tokens=3, batch_size=2)
    got = Evaluator(padded, EvalInputs(TEXT, None, prompts), settings, (END,)).evaluate(model)
    want = Evaluator(tokenizer, EvalInputs(TEXT, None, prompts), settings, (END,)).evaluate(model)
    assert got.pop("seconds") >= 0 and want.pop("seconds") >= 0 and got == want


class MergingTokenizer:
    """Characters as ids, except that "\\nA" is one token (id 1000): a merge across the end of the
    generation prompt, as byte-level BPE makes of some template/answer boundaries."""

    chat_template = "ChatML"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        text = "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages)
        return text + ("<assistant>\n" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens):
        ids, k = [], 0
        while k < len(text):
            if text.startswith("\nA", k):
                ids.append(1000)
                k += 2
            else:
                ids.append(ord(text[k]))
                k += 1
        return types.SimpleNamespace(input_ids=ids)


def test_answer_tokens_when_a_token_spans_the_prompt_and_the_answer():
    from chatvec_fast.tuning.template import answer_ids, prompt_ids

    messages = ({"role": "user", "content": "hi"},)
    tok = MergingTokenizer()
    head = prompt_ids(tok, messages, "here")
    assert head[-1] == ord("\n")
    # rendered whole, "\nA" would be one token and the prompt's "\n" would vanish: the answer is tokenized on
    # its own after the prompt's tokens, as generation would produce it; the turn ends at the eos id ("\n")
    ids, first = answer_ids(tok, messages, "AB", (ord("\n"),), "here")
    assert first == len(head) and ids == [*head, ord("A"), ord("B"), ord("\n")]
    ids, first = answer_ids(tok, messages, "BA", (ord("\n"),), "here")  # no merge: the template's own tokens
    assert ids == [*head, ord("B"), ord("A"), ord("\n")]
