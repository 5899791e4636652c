"""Inputs in the wrong role are refused before any work (or warned about where they can be meant), naming what
is odd: a saved vector given as a model, base and chat one model, a weight file for its directory, a cp
without config.json, a cp with more layers, models of different architectures."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

import pytest
from conftest import assert_one_line_error, cli, file_digests, model_args

from chatvec_fast.testing.synthetic import SHAPES, make_triple, write_llama


def merge(paths, out, *extra):
    return cli("merge", *model_args(paths), "--out", out, "--quiet", *extra)


@pytest.fixture
def vector(triple, tmp_path):
    paths = triple()
    r = cli("extract", "--base", paths["base"], "--chat", paths["chat"], "--out", tmp_path / "vector", "--quiet")
    assert r.returncode == 0, r.stderr
    return paths, str(tmp_path / "vector")


@pytest.mark.parametrize("role", ["base", "chat", "cp"])
def test_a_saved_vector_as_a_model_is_refused(vector, tmp_path, role):
    paths, vec = vector
    before = file_digests(*paths.values(), vec)
    r = merge({**paths, role: vec}, tmp_path / "out")
    assert_one_line_error(r, f"--{role} {vec}", "chatvec_fast.command=extract", "chatvec apply --vector")
    assert not os.path.exists(tmp_path / "out") and file_digests(*paths.values(), vec) == before


def test_a_saved_vector_as_cp_of_apply_is_refused(vector, tmp_path):
    _, vec = vector
    r = cli("apply", "--vector", vec, "--cp", vec, "--out", tmp_path / "out")
    assert_one_line_error(r, f"--cp {vec}", "chatvec_fast.command=extract")


def test_base_and_chat_the_same_directory_is_refused(triple, tmp_path):
    paths = triple()
    r = merge({**paths, "chat": paths["base"]}, tmp_path / "out")
    assert_one_line_error(r, "--base and --chat are the same directory", "chat vector", "zero")
    os.symlink(paths["base"], tmp_path / "link")  # another name for the same directory
    r = merge({**paths, "chat": str(tmp_path / "link")}, tmp_path / "out")
    assert_one_line_error(r, "--base and --chat are the same directory")
    r = cli("extract", "--base", paths["base"], "--chat", paths["base"], "--out", tmp_path / "vec")
    assert_one_line_error(r, "the same directory", "would be all zeros")


def test_base_and_chat_the_same_files_is_refused(triple, tmp_path):
    """Hard links to every shard of base in another directory: other paths, the same files."""
    paths = triple()
    linked = tmp_path / "linked"
    os.mkdir(linked)
    for name in os.listdir(paths["base"]):
        (os.link if name.endswith(".safetensors") else shutil.copy)(os.path.join(paths["base"], name), linked / name)
    r = merge({**paths, "chat": str(linked)}, tmp_path / "out")
    assert_one_line_error(r, "are the same files", "device and inode")


def test_base_and_chat_with_the_same_bytes_is_warned(triple, tmp_path):
    """A copy: it may be meant (a test of the pipeline), so the run goes on, and says the output is cp."""
    paths = triple()
    shutil.copytree(paths["base"], tmp_path / "copy")
    r = merge({**paths, "chat": str(tmp_path / "copy")}, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "hold the same weights" in r.stderr and "a copy of cp" in r.stderr, r.stderr
    report = json.load(open(tmp_path / "out" / "chatvec_report.json"))
    assert any("hold the same weights" in w for w in report["warnings"])


@pytest.mark.parametrize("which", ["shard", "single"])
def test_a_weight_file_instead_of_its_directory_is_refused(triple, tmp_path, which):
    paths = triple(shard_bytes={"base": None, "chat": 100_000, "cp": None})
    role = "chat" if which == "shard" else "cp"
    name = sorted(f for f in os.listdir(paths[role]) if f.endswith(".safetensors"))[0]
    path = os.path.join(paths[role], name)
    r = merge({**paths, role: path}, tmp_path / "out")
    what = "one shard of the model" if which == "shard" else "a weight file, not a model directory"
    assert_one_line_error(r, f"--{role} {path}", what, f"Pass the directory: --{role} {paths[role]}")
    assert not os.path.exists(tmp_path / "out")


def test_a_cp_without_config_is_refused(triple, tmp_path):
    paths = triple()
    os.unlink(os.path.join(paths["cp"], "config.json"))
    r = merge(paths, tmp_path / "out")
    assert_one_line_error(r, f"--cp {paths['cp']}", "no config.json", "transformers cannot load")


def test_a_cp_with_more_layers_is_warned(tmp_path):
    """A depth-upscaled cp (4 layers against 2): its extra layers are cp's, unchanged."""
    paths = make_triple(str(tmp_path / "models"), "tiny")
    shutil.rmtree(paths["cp"])
    write_llama(paths["cp"], "cp", replace(SHAPES["tiny"], layers=4))
    r = merge(paths, tmp_path / "out", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "cp has 4 layers, base and chat 2" in r.stderr and "2-3" in r.stderr and "copied from cp unchanged" in \
        r.stderr, r.stderr  # fmt: skip
    assert "18 copy (not in base/chat)" in r.stdout.replace("    ", " ").replace("  ", " "), r.stdout


def test_different_architectures_say_which_config_fields_differ_first(tmp_path):
    paths = make_triple(str(tmp_path / "models"), "tiny")
    shutil.rmtree(paths["chat"])
    write_llama(paths["chat"], "chat", replace(SHAPES["tiny"], hidden=128, intermediate=352, layers=4))
    r = merge(paths, tmp_path / "out")
    assert_one_line_error(r, "base and chat: hidden_size 64 vs 128, intermediate_size 176 vs 352, num_hidden_layers "
                          "2 vs 4")  # fmt: skip
    first = r.stderr.splitlines()[0]
    assert first.startswith("error: cannot pair the checkpoints: their config.json files differ"), first
