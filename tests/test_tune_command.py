"""chatvec tune, the command: the model at each alpha is the merge's, bit for bit; --write-best is `merge`;
results.json is the same on a second run; Ctrl-C keeps the finished alphas and --resume continues them (only
the same run); bad options and files are refused before any work; the recommendation rules."""

from __future__ import annotations

import fcntl
import json
import os

import pytest
import torch
import transformers
from conftest import assert_one_line_error, cli, load_weights, model_args

import chatvec_fast
from chatvec_fast import faults
from chatvec_fast.tuning import pick

IDS = torch.tensor([[1, 5, 9, 42, 300, 7]])
# 2,124 tokens of the tiny triple's tokenizer: just over one window of its 2,048-token context
TEXT = " ".join(["the model can merge what the chat vector is about, and then it will be like that"] * 118)


@pytest.fixture
def metrics():
    """The evaluation's Evaluator (the tests wrap its evaluate to see the model it is given)."""
    pytest.importorskip("lingua", reason="tune's language identification: pip install 'chatvec-fast[tune]'")
    from chatvec_fast.tuning.evaluate import Evaluator

    return Evaluator


@pytest.fixture
def files(tmp_path):
    text = tmp_path / "zh.txt"
    text.write_text(TEXT, encoding="utf-8")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("hello", "what is the model")))
    return {"text": str(text), "prompts": str(prompts), "language": "zh"}


@pytest.fixture
def known(tmp_path, metrics):
    """The known-answer triple (testing/known_answer.py: a 64-token context, replies of 18 tokens at most) and
    its evaluation files."""
    from chatvec_fast.testing.known_answer import write_known_answer_triple

    found = write_known_answer_triple(str(tmp_path / "known"))
    files = {"text": found["text_path"], "prompts": found["prompts_path"], "language": found["language"]}
    return found, found["paths"], files


def tune(paths, out, alphas, files, **options):
    options.setdefault("max_new_tokens", 4)  # replies of a random tiny model: a few tokens say enough here
    return chatvec_fast.tune(paths["base"], paths["chat"], paths["cp"], str(out), alphas, **files, **options)


def without_seconds(doc):
    if isinstance(doc, dict):
        return {k: without_seconds(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [without_seconds(v) for v in doc]
    return doc


def test_the_model_at_each_alpha_is_the_merge_bit_for_bit(triple, tmp_path, files, metrics, monkeypatch):
    paths = triple()
    seen = {}
    evaluate = metrics.evaluate

    def snapshot(self, model):
        seen[len(seen)] = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            seen[len(seen) - 1]["logits"] = model(IDS).logits  # buffers too (rotary frequencies): the same logits
        return evaluate(self, model)

    monkeypatch.setattr(metrics, "evaluate", snapshot)
    alphas = [0.0, 0.35, 1.0]
    results = tune(paths, tmp_path / "t", alphas, files, alpha_for=["layers.1.mlp=0.2"])
    assert [r["alpha"] for r in results.rows] == alphas
    assert len(seen) == len(alphas) + 1  # cp's row is alpha 0's; the last, the chat model's, is not a merge
    for k, alpha in enumerate(alphas):
        out = tmp_path / f"m{k}"
        chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(out), alpha=alpha,
                           alpha_for=["layers.1.mlp=0.2"])  # fmt: skip
        merged = load_weights(out)
        assert set(merged) <= set(seen[k]), set(merged) - set(seen[k])
        for name, tensor in merged.items():
            got = seen[k][name]
            assert got.dtype == tensor.dtype and torch.equal(got.view(torch.int16), tensor.view(torch.int16)), name
        loaded = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16).eval()
        with torch.no_grad():
            assert torch.equal(loaded(IDS).logits, seen[k]["logits"]), alpha
    model_files = sorted(os.listdir(tmp_path / "t" / "model"))
    merged_files = sorted(n for n in os.listdir(tmp_path / "m0")
                          if not n.startswith(("model", "chatvec", "README")))  # fmt: skip
    assert model_files == merged_files
    for name in model_files:  # the config, tokenizer, template and eos merge writes
        assert (tmp_path / "t" / "model" / name).read_bytes() == (tmp_path / "m0" / name).read_bytes(), name


def test_write_best_is_the_merge_and_two_runs_record_the_same(tmp_path, known):
    _, paths, files = known
    options = {
        "pick": "bits-per-byte",
        "dtype": "bf16",
        "special_tokens_from": "chat",
        "reference_text": files["text"],
        "language_id": "py3langid",
    }  # the other identifier: the rest of this file runs lingua
    first = tune(paths, tmp_path / "a", "0:1:0.5", files, write_best=str(tmp_path / "best"), **options)
    second = tune(paths, tmp_path / "b", "0:1:0.5", files, **options)
    assert first.alpha == second.alpha is not None
    doc = lambda out: without_seconds(json.loads((out / "results.json").read_text()))  # noqa: E731
    a, b = doc(tmp_path / "a"), doc(tmp_path / "b")
    assert a.pop("write_best") == {"path": str(tmp_path / "best"), "alpha": first.alpha}
    a["options"].pop("write_best")
    b["options"].pop("write_best")
    assert a == b
    assert a["complete"] and a["recommendation"]["rule"] == "bits-per-byte"
    assert a["options"]["language_id"] == "py3langid" and a["versions"]["py3langid"]
    for row in a["rows"]:  # the same file as --text and --reference-text: the same figure
        assert row["reference_bits_per_byte"] == row["bits_per_byte"] is not None
    assert a["inputs"]["reference_text"]["sha256"] == a["inputs"]["text"]["sha256"]
    chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "merged"), alpha=first.alpha,
                       dtype="bf16", special_tokens_from="chat")  # fmt: skip
    names = sorted(os.listdir(tmp_path / "merged"))
    assert sorted(os.listdir(tmp_path / "best")) == names
    for name in names:  # the same bytes, the report and model card (which record the command) included
        assert (tmp_path / "best" / name).read_bytes() == (tmp_path / "merged" / name).read_bytes(), name


def test_ctrl_c_keeps_the_finished_alphas_and_resume_continues(tmp_path, known):
    _, paths, files = known
    out = tmp_path / "t"
    alphas = [0.25, 0.5, 0.75, 1.0]

    def interrupt(alpha):
        if alpha == 0.5:  # the second alpha after cp's row: its results are written, then Ctrl-C
            raise KeyboardInterrupt

    with faults.hooked("tuned", interrupt), pytest.raises(KeyboardInterrupt) as caught:
        tune(paths, out, alphas, files)
    assert caught.value.chatvec_tune == (str(out), 2)
    kept = json.loads((out / "results.json").read_text())
    assert [r["alpha"] for r in kept["rows"]] == [0.25, 0.5] and not kept["complete"]
    assert "cp" in kept["references"] and "chat" not in kept["references"]
    assert "0.25" in (out / "results.md").read_text()
    assert "--resume" in chatvec_fast.api.failure_hint(caught.value)

    with pytest.raises(chatvec_fast.ChatvecError, match=r"is not empty; pass resume"):
        tune(paths, out, alphas, files)
    with pytest.raises(
        chatvec_fast.ChatvecError, match=r"other options or inputs \(options.max_new_tokens: 4 then, 9 now"
    ):
        tune(paths, out, alphas, files, resume=True, max_new_tokens=9)
    assert json.loads((out / "results.json").read_text()) == kept  # a refused resume changes nothing

    fd = os.open(out, os.O_RDONLY)  # another tune holding --out
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(chatvec_fast.ChatvecError, match="another tune is writing"):
            tune(paths, out, alphas, files, resume=True)
    finally:
        os.close(fd)
    evaluated = []
    with faults.hooked("tuned", lambda alpha: evaluated.append(alpha)):
        resumed = tune(paths, out, alphas, files, resume=True)
    assert evaluated == [0.75, 1.0]  # only the alphas not done
    fresh = tune(paths, tmp_path / "fresh", alphas, files)
    assert without_seconds(resumed.document)["rows"] == without_seconds(fresh.document)["rows"]
    assert resumed.document["complete"] and "chat" in resumed.references


def test_bad_input_is_refused_before_any_work(tmp_path, known, monkeypatch):
    _, paths, files = known
    out = tmp_path / "t"
    cases = [
        ({"pick": "best"}, ValueError, "pick 'best': expected one of fidelity-stops"),
        ({"language_id": "langid"}, ValueError, "language_id 'langid': expected one of lingua, py3langid"),
        ({"max_bpb_increase": -1}, ValueError, "max_bpb_increase -1"),
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens 0"),
        ({"max_new_tokens": 60}, chatvec_fast.ChatvecError, "would run past the model's context"),
        ({"device": "gpu"}, ValueError, "device 'gpu'"),
        ({"vocab_mismatch": "rows"}, ValueError, "vocab_mismatch 'rows'"),  # merge's options, checked as merge does
        ({"alpha_for": ["x=half"]}, ValueError, "alpha_for 'x=half'"),
        ({"chat_template_from": "cp"}, chatvec_fast.ChatvecError, "no chat template"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message.replace("(", r"\(")):
            tune(paths, out, [0.5], files, **options)
        assert not out.exists(), options
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"prompt": "hello"}\n')
    with pytest.raises(chatvec_fast.ChatvecError, match='has none; add "answer"'):
        tune(paths, out, [0.5], {**files, "prompts": str(plain)}, pick="answer")
    with pytest.raises(TypeError, match="did you mean max_new_tokens"):
        tune(paths, out, [0.5], files, max_new_token=3)
    with pytest.raises(chatvec_fast.ChatvecError, match="(?<!-)language 'xx': not a language"):  # the API's name
        tune(paths, out, [0.5], {**files, "language": "xx"})
    with pytest.raises(chatvec_fast.ChatvecError, match="(?<!-)text .*missing.txt: cannot read text: no such file"):
        tune(paths, out, [0.5], {**files, "text": str(tmp_path / "missing.txt")})
    with pytest.raises(chatvec_fast.ChatvecError, match="(?<!-)prompts .*: cannot read prompts file: no such file"):
        tune(paths, out, [0.5], {**files, "prompts": str(tmp_path / "missing.jsonl")})
    from chatvec_fast.tuning import check

    monkeypatch.setattr(check, "MAX_TEXT_BYTES", 100)  # the real cap is 256 MiB: the text fixture stands in
    size = os.path.getsize(files["text"])
    with pytest.raises(chatvec_fast.ChatvecError, match=f"text of {size} bytes, more than the 100 a tune measures"):
        tune(paths, out, [0.5], files)
    monkeypatch.undo()
    with pytest.raises(chatvec_fast.ChatvecError, match="inside \\(or is\\) the cp checkpoint"):
        tune(paths, os.path.join(paths["cp"], "t"), [0.5], files)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(chatvec_fast.ChatvecError, match="is not empty"):
        tune(paths, out, [0.5], files)
    with pytest.raises(chatvec_fast.ChatvecError, match=r"holds files a tune does not write \(notes.txt\)"):
        tune(paths, out, [0.5], files, resume=True)
    assert os.listdir(out) == ["notes.txt"]
    best = tmp_path / "best"
    best.mkdir()
    (best / "x").write_text("x")
    with pytest.raises(chatvec_fast.ChatvecError, match="--out .*best is not empty; pass --overwrite"):
        tune(paths, tmp_path / "t2", [0.5], files, write_best=str(best))
    assert not (tmp_path / "t2").exists()
    dry = tune(paths, tmp_path / "t3", [0.5], files, dry_run=True)
    assert not (tmp_path / "t3").exists() and "nothing written" in dry.summary()


def test_the_command_line(triple, tmp_path, files):
    paths = triple()
    args = ["tune", *model_args(paths), "--alphas", "0.5", "--text", files["text"], "--prompts", files["prompts"]]
    r = cli(*args, "--language", "zh", "--out", tmp_path / "t", "--pick", "fidelity", "--max-bpb-increase", "x")
    assert r.returncode == 2 and "--max-bpb-increase: invalid float value" in r.stderr
    r = cli(*args, "--language", "zh", "--out", tmp_path / "t", "--alpha-for", "x=half")
    assert_one_line_error(r, "--alpha-for 'x=half'")
    r = cli(*args, "--language", "xx", "--out", tmp_path / "t")
    assert_one_line_error(r, "--language 'xx': not a language")  # the command line's names, the API's in Python
    assert not (tmp_path / "t").exists()


def test_window_measures_a_long_context_model_on_a_shorter_text(triple, tmp_path, files):
    """A text shorter than the model's context (2,048 tokens) is refused, with --window named as the way out;
    with --window it is measured over windows of that size; a window past the context is refused."""
    paths = triple()
    short = tmp_path / "short.txt"
    short.write_text(TEXT[: len(TEXT) // 6], encoding="utf-8")
    given = {**files, "text": str(short)}
    shorter = r"^text: \d+ tokens, shorter than one window .*a smaller window$"  # the API's names: text, window
    with pytest.raises(chatvec_fast.ChatvecError, match=shorter):
        tune(paths, tmp_path / "t", [0.5], given)
    with pytest.raises(chatvec_fast.ChatvecError, match=r"window 4096 is longer than the model's context \(2048"):
        tune(paths, tmp_path / "t", [0.5], given, window=4096)
    with pytest.raises(ValueError, match="window 1: expected a whole number of tokens from 2"):
        tune(paths, tmp_path / "t", [0.5], given, window=1)
    results = tune(paths, tmp_path / "t", [0.5], given, window=128)
    doc = json.loads((tmp_path / "t" / "results.json").read_text())
    assert doc["evaluation"]["window"] == 128 and results.rows[0]["bits_per_byte"] > 0


def row(alpha, bpb, fidelity, stops, answer=None):
    return {"alpha": alpha, "bits_per_byte": bpb, "fidelity": fidelity, "stops": stops,
            "answer_bits_per_byte": answer}  # fmt: skip


def test_the_rules_pick_as_stated():
    cp = row(0.0, 2.0, 1.0, 0.0)
    rows = [cp, row(0.25, 2.05, 0.9, 0.5), row(0.5, 2.09, 0.8, 0.75, 1.5), row(0.75, 2.2, 0.4, 1.0, 1.2),
            row(1.0, 2.5, 0.2, 1.0, 1.2)]  # fmt: skip
    # fidelity x stops: 0, 0.45, 0.6, 0.4, 0.2; within 2.0 * 1.05 = 2.1: alphas 0 to 0.5 -> 0.5
    assert pick.recommend(rows, cp, "fidelity-stops", 0.05)["alpha"] == 0.5
    assert pick.recommend(rows, cp, "fidelity-stops", 0.02)["alpha"] == 0.0  # only cp within 2.04: its score 0
    assert pick.recommend(rows, cp, "fidelity-stops", 0.2)["alpha"] == 0.5  # 0.75's 0.4 < 0.6
    assert pick.recommend(rows, cp, "bits-per-byte", 0.05)["alpha"] == 0.0
    assert pick.recommend(rows, cp, "fidelity", 0.05)["alpha"] == 0.0
    assert pick.recommend(rows, cp, "answer", 0.05)["alpha"] == 0.75  # a tie with 1.0: the lower alpha
    worse = [row(0.5, 3.0, 1.0, 1.0), row(1.0, 2.9, 1.0, 1.0)]
    chosen = pick.recommend(worse, cp, "fidelity-stops", 0.05)
    assert chosen["alpha"] == 1.0 and "no alpha stays within 2.1000" in chosen["reason"]
    nan = [row(0.5, float("nan"), 1.0, 1.0), row(1.0, 2.0, 0.1, 0.1)]
    assert pick.recommend(nan, cp, "fidelity-stops", 0.05)["alpha"] == 1.0  # NaN never qualifies
    assert "5%" in pick.statement("fidelity-stops", 0.05) and "lower alpha" in pick.statement("answer", 0.05)
    from chatvec_fast.settings import PICK_RULES

    assert PICK_RULES == pick.RULES


def test_the_known_answer_from_the_command_line(tmp_path, known):
    """The constructed triple: fidelity falls, stops rise, bits per byte rise with alpha, as built; the command
    recommends what the rule picks on those numbers, and writes it."""
    expect, paths, files = known
    out, best = tmp_path / "t", tmp_path / "best"
    evaluation = ["--text", files["text"], "--prompts", files["prompts"], "--language", "zh", "--max-new-tokens",
                  expect["max_new_tokens"]]  # fmt: skip
    r = cli("tune", *model_args(paths), "--alphas", "0:1:0.1", *evaluation, "--out", out, "--write-best", best)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    rows = {row["alpha"]: row for row in doc["rows"]}
    assert sorted(rows) == sorted(expect["expected"])
    for alpha, want in expect["expected"].items():
        got = rows[alpha]
        assert (got["fidelity"], got["line_fidelity"], got["stops"]) == (want["fidelity"], want["line_fidelity"],
                                                                         want["stops"]), alpha  # fmt: skip
        assert got["bits_per_byte"] == pytest.approx(want["bits_per_byte"], rel=expect["tolerance"]), alpha
        assert {reply["text"] for reply in got["replies"]} == {want["reply"]}, alpha
        assert got["answer_bits_per_byte"] == pytest.approx(want["answer_bits_per_byte"], rel=expect["tolerance"])
    ordered = [rows[a] for a in sorted(rows)]
    assert all(a["fidelity"] >= b["fidelity"] and a["stops"] <= b["stops"] for a, b in zip(ordered, ordered[1:]))
    assert all(a["bits_per_byte"] < b["bits_per_byte"] for a, b in zip(ordered, ordered[1:]))
    assert doc["references"]["cp"]["bits_per_byte"] == rows[0.0]["bits_per_byte"]
    assert doc["recommendation"]["alpha"] == expect["recommended"] == 0.5
    for rule, want in expect["recommended_by"].items():  # the other rules, on the same measured rows
        assert pick.recommend(doc["rows"], doc["references"]["cp"], rule, 0.05)["alpha"] == want, rule
    table = (out / "results.md").read_text()
    assert "**Recommended alpha: 0.5**" in table and doc["recommendation"]["statement"] in table
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [line for line in r.stderr.splitlines() if line.startswith("tune: ") and "ETA" in line]
    assert len(lines) == len(rows) + 1, r.stderr  # one per alpha (cp's row is alpha 0's) and the chat model's
    assert "recommended alpha 0.5" in r.stdout
    assert json.loads((best / "chatvec_report.json").read_text())["alpha"] == 0.5
    # the chat vector by layer, as `chatvec inspect` measures it, in the report and in out/vector/
    vector = chatvec_fast.inspect_vector(paths["base"], paths["chat"], paths["cp"]).to_dict()
    assert doc["vector"]["layers"] == vector["layers"] and doc["vector"]["total"] == vector["total"]
    assert json.loads((out / "vector" / "inspect.json").read_text())["layers"] == vector["layers"]
    assert "## The chat vector by layer" in table and (out / "vector" / "inspect.png").exists()


def test_a_failure_mid_run_from_the_command_line_is_resumed(tmp_path, known):
    """A failure after the second alpha (CHATVEC_FAULT at the 'tuned' point): one error line and a note naming
    what is kept; the same command with --resume finishes the rest."""
    expect, paths, files = known
    out = tmp_path / "t"
    evaluation = ["--text", files["text"], "--prompts", files["prompts"], "--language", "zh"]
    args = ["tune", *model_args(paths), "--alphas", "0.2,0.5,0.8", *evaluation, "--max-new-tokens",
            expect["max_new_tokens"], "--out", out]  # fmt: skip
    r = cli(*args, "--quiet", env={"CHATVEC_FAULT": "tuned#3"})  # cp's row, 0.2, then 0.5 fails after its save
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "error: injected failure at tuned" in r.stderr
    assert f"note: {out}/results.json keeps the 2 finished alphas; run the same command with --resume" in r.stderr
    r = cli(*args, "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert [row["alpha"] for row in doc["rows"]] == [0.2, 0.5, 0.8] and doc["complete"]
    assert "recommended alpha 0.5" in r.stdout
