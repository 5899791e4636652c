"""The output's README.md is a Hugging Face model card: front matter the Hub reads, and what was made how."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import cli, model_args


def card(out):
    text = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_the_model_card_says_what_was_merged_and_how(triple, tmp_path):
    paths = triple()
    with open(os.path.join(paths["cp"], "README.md"), "w") as f:
        f.write("# cp's own card\n")
    json.dump({**json.load(open(os.path.join(paths["chat"], "config.json"))), "_name_or_path": "org/chat-model"},
              open(os.path.join(paths["chat"], "config.json"), "w"))  # fmt: skip
    out = tmp_path / "out"
    r = cli("merge", *model_args(paths), "--out", out, "--alpha", "0.5", "--alpha-for", "embed_tokens|lm_head=0",
            "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    front, body = card(out)
    assert front["tags"] == ["merge", "chat-vector"] and front["library_name"] == "transformers"
    assert front["base_model"] == ["org/chat-model"]  # Hub ids only; local inputs are named in the body
    assert os.path.abspath(paths["cp"]) in body and os.path.abspath(paths["base"]) in body
    assert "cp + alpha * (chat - base)" in body and "alpha = 0.5" in body and "0.0: 2 tensors" in body
    assert "--alpha-for 'embed_tokens|lm_head=0'" in body and "chatvec merge" in body and "float64" in body
    assert "0.1.0" in body or "chatvec-fast" in body
    assert open(out / "README.cp.md").read() == "# cp's own card\n"
    report = json.load(open(out / "chatvec_report.json"))
    assert {"README.md", "README.cp.md"} <= set(report["files"])
    assert cli("verify", out).returncode == 0


def test_no_model_card(triple, tmp_path):
    paths = triple()
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--no-model-card", "--quiet")
    assert r.returncode == 0 and not (tmp_path / "out" / "README.md").exists()


def test_apply_and_sweep_outputs_have_their_own_cards(triple, tmp_path):
    paths = triple()
    assert cli("sweep", *model_args(paths), "--out", tmp_path / "s", "--alphas", "0.5,1", "--quiet").returncode == 0
    assert "alpha = 1.0" in card(tmp_path / "s" / "alpha-1.0")[1]
    r = cli("extract", "--base", paths["base"], "--chat", paths["chat"], "--out", tmp_path / "v", "--quiet")
    assert r.returncode == 0 and not (tmp_path / "v" / "README.md").exists()  # a vector is not a model
    r = cli("apply", "--vector", tmp_path / "v", "--cp", paths["cp"], "--out", tmp_path / "a", "--quiet")
    assert r.returncode == 0
    front, body = card(tmp_path / "a")
    assert "cp + alpha * vector" in body and os.path.abspath(tmp_path / "v") in body and "base_model" not in front


@pytest.mark.parametrize(
    "name",
    ["cp: evil", "cp # comment", "cp\nbase_model: [x]\nlicense: mit", "cp | `x` ```", "- [cp]", "&a *b !!python"],
    ids=["colon", "hash", "newline-keys", "markdown", "list", "yaml-syntax"],
)
def test_hostile_input_names_cannot_change_the_front_matter(triple, tmp_path, name):
    paths = triple()
    hostile = tmp_path / name
    os.rename(paths["cp"], hostile)
    out = tmp_path / "out"
    r = cli("merge", "--base", paths["base"], "--chat", paths["chat"], "--cp", hostile, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    front, body = card(out)
    assert front == {"tags": ["merge", "chat-vector"], "library_name": "transformers"}
    assert sum(line.startswith("| cp ") for line in body.splitlines()) == 1  # one table row, whatever the name
