"""verify shares nothing with the merge where a bug could confirm itself: a planner whose added tokens or FP8
scales are wrong writes an output that `verify --all` rejects; and verify checks that the output loads
(config, vocab_size, token ids, eos ids), each problem naming its file and field."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

import chatvec_fast
import chatvec_fast.plan as planner
from chatvec_fast.testing.quantize import layout_quantizer
from chatvec_fast.testing.synthetic import FP8Layout, make_triple
from chatvec_fast.verification.loadable import load_problems


def merged(paths, out) -> str:
    chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(out), alpha=0.5)
    return str(out)


def break_everywhere(monkeypatch, real, broken):
    """A bug in `real`: every module of the package that holds it (imported by name or not) gets `broken`."""
    for module in [m for name, m in sys.modules.items() if name.startswith("chatvec_fast") and m is not None]:
        for attr, value in list(vars(module).items()):
            if value is real:
                monkeypatch.setattr(module, attr, broken)


def verified(out):
    (result,) = chatvec_fast.verify(out, every=True)
    return result


def test_a_planner_that_appends_the_wrong_rows_is_caught(tmp_path, monkeypatch):
    paths = make_triple(str(tmp_path / "models"), "tiny", chatml="added")  # chat: 514 rows, base and cp 512
    assert verified(merged(paths, tmp_path / "good")).ok

    real = planner.find_added_tokens

    def swapped(base, chat, cp):  # the chat rows of the two appended tokens exchanged
        appended, present = real(base, chat, cp)
        rows = [t.chat_row for t in appended][::-1]
        return [replace(t, chat_row=r) for t, r in zip(appended, rows)], present

    break_everywhere(monkeypatch, real, swapped)
    result = verified(merged(paths, tmp_path / "bad"))
    assert not result.ok
    assert any("added tokens are not those" in p for p in result.problems), result.problems
    assert {t.name for t in result.failures} == {"model.embed_tokens.weight", "lm_head.weight"}, result.summary()


def test_a_planner_that_reads_the_wrong_fp8_scales_is_caught(tmp_path, monkeypatch):
    block = FP8Layout("block", layout_quantizer, (32, 32))  # tiny's 64 x 64 weights: 2 x 2 scales each
    paths = make_triple(str(tmp_path / "models"), "tiny", fp8=dict.fromkeys(("base", "chat", "cp"), block))
    assert verified(merged(paths, tmp_path / "good")).ok

    real = planner.fp8_scales

    def exchanged(ckpt):  # q_proj reads o_proj's scales and o_proj q_proj's (same shapes: a plausible mix-up)
        specs = real(ckpt)
        for q in [n for n in specs if n.endswith("q_proj.weight")]:
            o = q.replace("q_proj", "o_proj")
            specs[q], specs[o] = replace(specs[q], tensor=specs[o].tensor), replace(specs[o], tensor=specs[q].tensor)
        return specs

    break_everywhere(monkeypatch, real, exchanged)
    result = verified(merged(paths, tmp_path / "bad"))
    assert not result.ok
    failed = {t.name for t in result.failures}
    assert failed and all(n.endswith(("q_proj.weight", "o_proj.weight")) for n in failed), result.summary()


# -- the output loads -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_output(tmp_path_factory):
    root = tmp_path_factory.mktemp("loadable")
    paths = make_triple(str(root / "models"), "tiny", chatml="added")
    return merged(paths, root / "out")


def rewrite(out: str, name: str, text: str | None):
    """Changes one file of an output and its record in the report, as a faulty writer would (the checksums agree)."""
    path = os.path.join(out, name)
    report_path = os.path.join(out, "chatvec_report.json")
    report = json.load(open(report_path))
    if text is None:
        os.unlink(path)
        del report["files"][name]
    else:
        data = text.encode()
        open(path, "wb").write(data)
        report["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    json.dump(report, open(report_path, "w"))


def edited(out: str, name: str, edit) -> str:
    doc = json.load(open(os.path.join(out, name)))
    edit(doc)
    return json.dumps(doc)


def _added_token(doc):
    doc["added_tokens"].append({"id": 600, "content": "<extra>", "special": True})


CASES = {
    "config-missing": ("config.json", lambda out: None, "config.json: missing"),
    "config-unreadable": ("config.json", lambda out: "{", "config.json"),
    "vocab-size": ("config.json", lambda out: edited(out, "config.json", lambda d: d.update(vocab_size=512)),
                   "config.json: vocab_size is 512, the 2 vocabulary tensors (514 rows) have 514"),
    "config-eos": ("config.json", lambda out: edited(out, "config.json", lambda d: d.update(eos_token_id=514)),
                   "config.json: eos_token_id 514 is not a row"),
    "generation-eos": ("generation_config.json",
                       lambda out: edited(out, "generation_config.json", lambda d: d.update(eos_token_id=[2, 9999])),
                       "generation_config.json: eos_token_id 9999 is not a row"),
    "tokenizer-ids": ("tokenizer.json", lambda out: edited(out, "tokenizer.json", _added_token),
                      "tokenizer.json: 1 token ids are not rows of the 2 vocabulary tensors (514 rows): '<extra>'"),
    "tokenizer-config-eos": ("tokenizer_config.json",
                             lambda out: edited(out, "tokenizer_config.json", lambda d: d.update(eos_token="<nope>")),
                             "tokenizer_config.json: eos_token '<nope>' is not in tokenizer.json's vocabulary"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_that_would_not_load_fails_verify(tiny_output, tmp_path, case):
    import shutil

    out = str(tmp_path / "out")
    shutil.copytree(tiny_output, out)
    assert verified(out).ok
    name, text, needle = CASES[case]
    rewrite(out, name, text(out))
    result = verified(out)
    assert not result.ok and not result.file_problems, result.summary()
    assert any(needle in p for p in result.problems), result.problems


def test_vocabulary_tensors_that_disagree_are_named():
    tensors = {
        "model.embed_tokens.weight": SimpleNamespace(shape=(514, 8)),
        "lm_head.weight": SimpleNamespace(shape=(512, 8)),
    }
    problems = load_problems("/nonexistent", tensors)
    assert any("different rows: lm_head.weight 512, model.embed_tokens.weight 514" in p for p in problems), problems


@pytest.mark.parametrize("mode", [["--checksums-only"], ["--all"]])
def test_verify_does_not_import_torch(tiny_output, mode):
    """--checksums-only is a sha256 of each file (0.6 s here, against 2.3 s when it imported torch); the element
    checks are numpy's too."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['chatvec', 'verify', {tiny_output!r}, *{mode!r}]\n"
        "try:\n    runpy.run_module('chatvec_fast', run_name='__main__')\n"
        "except SystemExit as exc:\n    status = exc.code\n"
        "print('exit', status, 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("exit 0 False"), r.stdout + r.stderr
