"""The known-answer triple (testing/known_answer.py) through the metrics: at each alpha the merged model's
figures are the ones its construction gives (replies, fidelity, stops; bits per byte from the float64 bigram
table), they move as constructed, and the default rule recommends the alpha computed by hand; with each
language identifier (lingua, py3langid)."""

from __future__ import annotations

import importlib.util

import pytest

transformers = pytest.importorskip("transformers")

import chatvec_fast  # noqa: E402
from chatvec_fast.testing.known_answer import write_known_answer_triple  # noqa: E402
from chatvec_fast.tuning.evaluate import EvalInputs, EvalSettings, Evaluator, check_eval_inputs  # noqa: E402
from chatvec_fast.tuning.pick import recommend  # noqa: E402
from chatvec_fast.tuning.prompts import read_prompts  # noqa: E402

# both sides of every switch: stops between 0.4 and 0.5, cp's bits per byte + 5% between 0.5 and 0.6,
# English between 0.7 and 0.8
ALPHAS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


IDENTIFIERS = [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                          reason=f"{name} is not installed"))
               for name in ("lingua", "py3langid")]  # fmt: skip


@pytest.fixture(scope="module", params=IDENTIFIERS)
def language_id(request):
    return request.param


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return write_known_answer_triple(str(tmp_path_factory.mktemp("known")), alphas=ALPHAS)


def evaluator(known, tokenizer_dir, eos, language_id):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    # the merged model's files: cp's tokenizer, the chat model's template and eos (merge's defaults)
    tokenizer.chat_template = transformers.AutoTokenizer.from_pretrained(known["paths"]["chat"]).chat_template
    inputs = EvalInputs(known["text"], None, tuple(read_prompts(known["prompts_path"])))
    settings = EvalSettings(known["language"], max_new_tokens=known["max_new_tokens"], batch_size=2,
                            language_id=language_id)  # fmt: skip
    check_eval_inputs(tokenizer, inputs, settings, known["window"])
    return Evaluator(tokenizer, inputs, settings, eos)


@pytest.fixture(scope="module")
def rows(known, language_id):
    ev = evaluator(known, known["paths"]["cp"], (tokenizer_eos(known),), language_id)
    model = transformers.AutoModelForCausalLM.from_pretrained(known["paths"]["cp"]).eval()
    out = {}
    for alpha in ALPHAS:
        chatvec_fast.merge_into(model, known["paths"]["base"], known["paths"]["chat"], known["paths"]["cp"],
                                alpha=alpha)  # fmt: skip
        out[alpha] = {"alpha": alpha, **ev.evaluate(model)}
    return out


def tokenizer_eos(known) -> int:
    return transformers.AutoTokenizer.from_pretrained(known["paths"]["chat"]).convert_tokens_to_ids("<|im_end|>")


def test_every_alpha_measures_as_constructed(known, rows):
    for alpha, row in rows.items():
        want = known["expected"][alpha]
        replies = {r["text"] for r in row["replies"]}
        assert replies == {want["reply"]}, alpha  # the reply starts at the prompt's last token, the same for all
        assert all(r["stopped"] == want["stopped"] for r in row["replies"]), alpha
        for key in ("fidelity", "line_fidelity", "stops"):
            assert row[key] == want[key], (alpha, key)
        # float32 logits and log_softmax against the float64 bigram table: 3e-7 relative measured
        assert row["bits_per_byte"] == pytest.approx(want["bits_per_byte"], rel=known["tolerance"]), alpha
        assert row["answer_bits_per_byte"] == pytest.approx(want["answer_bits_per_byte"], rel=known["tolerance"])
        # 中文。: nine byte tokens and eos; hello world: "▁hello", "▁world" and eos
        tokens = 10 if want["reply"] == "中文。" else 3 if want["stopped"] else known["max_new_tokens"]
        assert {r["tokens"] for r in row["replies"]} == {tokens}, alpha


def test_figures_move_with_alpha_as_constructed(rows):
    ordered = [rows[a] for a in ALPHAS]
    fidelity = [r["fidelity"] for r in ordered]
    stops = [r["stops"] for r in ordered]
    bpb = [r["bits_per_byte"] for r in ordered]
    assert fidelity == sorted(fidelity, reverse=True) and fidelity[0] == 1.0 and fidelity[-1] == 0.0
    assert stops == sorted(stops) and stops[0] == 0.0 and stops[-1] == 1.0
    assert all(a < b for a, b in zip(bpb, bpb[1:]))


def test_default_rule_recommends_the_alpha_computed_by_hand(known, rows):
    measured = [rows[a] for a in ALPHAS]
    chosen = recommend(measured, rows[0.0], "fidelity-stops", known["max_bpb_increase"])
    assert chosen["alpha"] == known["recommended"] == 0.5
    # the other rules: the lowest answer bits per byte (0.6), the highest fidelity and lowest bits per byte
    # on --text (cp's own alpha 0)
    for rule, alpha in (("answer", 0.6), ("fidelity", 0.0), ("bits-per-byte", 0.0)):
        assert recommend(measured, rows[0.0], rule, known["max_bpb_increase"])["alpha"] == alpha, rule
        assert known["recommended_by"][rule] == alpha, rule


def test_reference_rows_cp_and_chat_alone(known, rows, language_id):
    chat = evaluator(known, known["paths"]["chat"], (tokenizer_eos(known),), language_id)
    model = transformers.AutoModelForCausalLM.from_pretrained(known["paths"]["chat"]).eval()
    row = chat.evaluate(model)
    assert {r["text"] for r in row["replies"]} == {"hello world"}
    assert (row["fidelity"], row["stops"]) == (0.0, 1.0)
    cp = transformers.AutoModelForCausalLM.from_pretrained(known["paths"]["cp"]).eval()
    alone = chat.evaluate(cp)  # cp as it is: alpha 0, bit for bit
    assert {k: v for k, v in alone.items() if k != "seconds"} == {k: v for k, v in rows[0.0].items()
                                                                   if k not in ("seconds", "alpha")}  # fmt: skip
