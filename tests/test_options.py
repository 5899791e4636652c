"""Options and commands that used to do nothing, poison the model, or produce another model than merge:
non-finite alphas, rules that match nothing, vectors that are not vectors, extract -> apply, tokenizers."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import CHAT_TEMPLATE, assert_one_line_error, cli, model_args, write_tokenizer
from safetensors.torch import load_file

import chatvec_fast

# -- 6. options that do nothing or poison ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--alpha", "nan"], "alpha nan"),
        (["--alpha", "inf"], "alpha inf"),
        (["--alpha", "1e300"], "alpha 1e+300"),
        (["--alpha=-1e3"], "within +-100"),
        (["--alpha-for", "layers=nan"], "--alpha-for"),
        (["--alpha-for", "layers=-inf"], "--alpha-for"),
        (["--threads", "-5"], "threads -5"),
        (["--threads", "0"], "threads 0"),
        (["--max-shard-size", "infGB"], "infGB"),
        (["--max-shard-size", "nanMB"], "nanMB"),
        (["--max-shard-size=-3GB"], "-3GB"),
    ],
)
def test_poisonous_options_are_refused(triple, tmp_path, args, needle):
    paths = triple()
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", *args)
    assert_one_line_error(r, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "alphas,needle", [("nan,1", "alpha nan"), ("0.5,inf", "alpha inf"), ("0:inf:1", "0:inf:1"), ("0:1:1e-9", "outputs")]
)
def test_poisonous_sweeps_are_refused(triple, tmp_path, alphas, needle):
    paths = triple()
    r = cli("sweep", *model_args(paths), "--out", tmp_path / "out", "--alphas", alphas)
    assert_one_line_error(r, needle)


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize(
    "rule,needle",
    [
        (["--alpha-for", r"embed_tokens\|lm_head=0"], "literal '|'"),  # copied from a Markdown table's source
        (["--alpha-for", "embd_tokens=0"], "nearest names"),
        (["--skip", "mlp.up_projection"], "nearest names"),
        (["--alpha-for", "layers=0.5", "--alpha-for", "layers.1=0.2"], "an earlier rule"),
    ],
    ids=["escaped-bar", "typo", "skip-typo", "shadowed"],
)
def test_rules_that_change_nothing_are_refused(triple, tmp_path, rule, needle, dry_run):
    paths = triple()
    extra = ["--dry-run"] if dry_run else []
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", *rule, *extra)
    assert_one_line_error(r, needle, "--allow-unmatched")
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", *rule, *extra, "--allow-unmatched", "--quiet")
    assert r.returncode == 0, r.stderr


def test_the_readme_rules_work_as_written(triple, tmp_path):
    """The README's --alpha-for examples, as a shell passes them, match what they say."""
    paths = triple()
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--alpha-for", "embed_tokens|lm_head=0",
            "--alpha-for", r"layers\.(1|3\d)\.=0.5", "--dry-run")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "0.0: 2 tensors" in r.stdout and "0.5: 9 tensors" in r.stdout


# -- 4. vectors that are not vectors -----------------------------------------------------------------------


def test_apply_refuses_a_model_as_a_vector(triple, tmp_path):
    paths = triple()
    r = cli("apply", "--vector", paths["chat"], "--cp", paths["cp"], "--out", tmp_path / "out")
    assert_one_line_error(r, paths["chat"], "not written by `chatvec extract`", "chatvec extract --base")
    assert not (tmp_path / "out").exists()


# -- 5. extract -> apply writes what merge writes --------------------------------------------------------


def assert_same_model_directories(merged, applied):
    """Same files; the same bytes in every file but the weights (whose provenance differs), the report and the
    model card; the same tensors, bit for bit."""
    names = sorted(os.listdir(merged))
    assert names == sorted(os.listdir(applied))
    for name in names:
        if name.endswith(".safetensors"):
            a, b = load_file(os.path.join(merged, name)), load_file(os.path.join(applied, name))
            assert a.keys() == b.keys() and all(torch.equal(a[k].view(torch.int16), b[k].view(torch.int16)) for k in a)
        elif name not in ("chatvec_report.json", "README.md"):  # both say how the output was made
            assert open(os.path.join(merged, name), "rb").read() == open(os.path.join(applied, name), "rb").read(), name


@pytest.mark.parametrize("template_from", [None, "cp"], ids=["default", "cp-template"])
def test_extract_then_apply_writes_what_merge_writes(tokenized_triple, tmp_path, template_from):
    paths = tokenized_triple
    extra = ["--chat-template-from", template_from] if template_from else []
    assert cli("merge", *model_args(paths), "--out", tmp_path / "merged", "--alpha", "0.5", *extra).returncode == 0
    r = cli("extract", "--base", paths["base"], "--chat", paths["chat"], "--out", tmp_path / "vector", "--dtype", "f64")
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(tmp_path / "vector" / "chat" / "tokenizer_config.json")
    r = cli("apply", "--vector", tmp_path / "vector", "--cp", paths["cp"], "--out", tmp_path / "applied",
            "--alpha", "0.5", *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert_same_model_directories(tmp_path / "merged", tmp_path / "applied")
    config = json.load(open(tmp_path / "applied" / "tokenizer_config.json"))
    if template_from is None:
        assert config["chat_template"] == CHAT_TEMPLATE and config["eos_token"] == "<|im_end|>"
    else:
        assert "chat_template" not in config and config["eos_token"] == "</s>"
    assert cli("verify", tmp_path / "applied", "--all").returncode == 0


# -- 9. a cp without tokenizer files ----------------------------------------------------------------------------


def tokenizer_files(d):
    return sorted(f for f in os.listdir(d) if f.startswith("tokenizer") or f.startswith("chat_template"))


def test_a_cp_without_a_tokenizer_gets_no_broken_one(tokenized_triple, tmp_path):
    """Before: a tokenizer_config.json holding only the chat template, which AutoTokenizer cannot load."""
    transformers = pytest.importorskip("transformers")
    paths = tokenized_triple
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.unlink(os.path.join(paths["cp"], name))
    r = cli("merge", *model_args(paths), "--out", tmp_path / "none", "--quiet")
    assert r.returncode == 0 and "warning:" in r.stderr and "--tokenizer-from" in r.stderr, r.stderr
    assert tokenizer_files(tmp_path / "none") == []
    report = json.load(open(tmp_path / "none" / "chatvec_report.json"))
    assert report["tokenizer_from"] is None and any("no tokenizer" in w for w in report["warnings"])
    # base's vocabulary is cp's shared part; cp's 600 rows hold it: --tokenizer-from base is the fix
    r = cli("merge", *model_args(paths), "--out", tmp_path / "base-tok", "--tokenizer-from", "base", "--quiet")
    assert r.returncode == 0, r.stderr
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "base-tok"))
    assert tokenizer.chat_template == CHAT_TEMPLATE and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "tok7"}], tokenize=True)
    assert len(ids) > 0


def test_tokenizer_from_a_model_with_a_larger_vocabulary_is_refused(tokenized_triple, tmp_path):
    paths = tokenized_triple
    big = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, 700)]
    write_tokenizer(paths["chat"], big, ["<unk>", "<s>", "</s>"], "</s>", CHAT_TEMPLATE)
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--tokenizer-from", "chat")
    assert_one_line_error(r, "--tokenizer-from chat", "rows")


def test_tokenizer_from_a_source_without_one_is_refused(tokenized_triple, tmp_path):
    paths = tokenized_triple
    shutil.rmtree(paths["base"] + "-copy", ignore_errors=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.unlink(os.path.join(paths["base"], name))
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--tokenizer-from", "base")
    assert_one_line_error(r, "--tokenizer-from base", "no tokenizer files")


def test_api_refuses_the_same_things(triple, tmp_path):
    paths = triple()
    with pytest.raises(ValueError, match="alpha"):
        chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "o"), float("nan"))
    with pytest.raises(ValueError, match="alpha inf"):
        chatvec_fast.sweep(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "o"), [0.5, float("inf")])
