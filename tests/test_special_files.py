"""Inputs that are not regular files: a named pipe (FIFO) where a config, a shard, a .bin, a chat template, a
mergekit config or tune's text and prompts should be, and a character device. open() of a FIFO waits for a
writer forever, and an isfile() test reads it as missing ("no config.json"), so each case runs on a thread
that must finish: one error naming the file and what it is."""

from __future__ import annotations

import os
import threading

import pytest

import chatvec_fast
from chatvec_fast.errors import ChatvecError
from chatvec_fast.regular_files import open_regular, same_contents


def finishes(fn, seconds: float = 20.0):
    """fn's exception (None if it returned), failing the test if it is still blocked after `seconds`."""
    outcome = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s: a named pipe was opened and waited on"
    return outcome.get("error")


def fifo_in_place_of(path: str):
    os.remove(path)
    os.mkfifo(path)


def test_open_regular_names_what_the_path_is(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path, kind in ((pipe, "a named pipe"), (tmp_path, "a directory"), ("/dev/null", "a character device")):
        error = finishes(lambda path=path: open_regular(path, "config").close())
        assert isinstance(error, ChatvecError) and f"config is {kind}" in str(error), error
    (tmp_path / "a").write_bytes(b"x" * 3_000_001)
    (tmp_path / "b").write_bytes(b"x" * 3_000_000 + b"y")
    assert same_contents(tmp_path / "a", tmp_path / "a") and not same_contents(tmp_path / "a", tmp_path / "b")
    assert finishes(lambda: same_contents(tmp_path / "a", pipe)) is not None


@pytest.mark.parametrize("role, name", [("base", "config.json"), ("cp", "config.json"),
                                        ("chat", "model-00001-of-00004.safetensors"), ("cp", "tokenizer_config.json"),
                                        ("chat", "tokenizer.json"), ("base", "model.safetensors")])  # fmt: skip
def test_a_named_pipe_in_an_input_is_refused_not_waited_on(triple, tmp_path, role, name):
    paths = triple()
    if not os.path.exists(os.path.join(paths[role], name)):
        pytest.skip(f"{role} has no {name} in this layout")
    fifo_in_place_of(os.path.join(paths[role], name))
    out = tmp_path / "out"
    error = finishes(lambda: chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(out), alpha=0.5))
    assert isinstance(error, ChatvecError), error
    assert name in str(error) and "named pipe" in str(error), error
    assert not out.exists()


def test_a_named_pipe_as_a_bin_checkpoint_or_chat_template(triple, tmp_path):
    paths = triple(shard_bytes=None)
    os.mkfifo(os.path.join(paths["chat"], "chat_template.jinja"))
    error = finishes(lambda: chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "o")))
    assert isinstance(error, ChatvecError) and "chat_template.jinja: a named pipe (FIFO)" in str(error), error
    from chatvec_fast.read.model_files import chat_template

    alone = tmp_path / "template-only"  # the reader itself: no tokenizer_config.json template to use first
    alone.mkdir()
    os.mkfifo(alone / "chat_template.jinja")
    error = finishes(lambda: chat_template(str(alone)))
    assert isinstance(error, ChatvecError) and "chat template is a named pipe" in str(error), error
    os.remove(os.path.join(paths["chat"], "chat_template.jinja"))
    bin_dir = tmp_path / "bin-model"
    bin_dir.mkdir()
    for name in os.listdir(paths["base"]):
        if not name.endswith(".safetensors"):
            os.link(os.path.join(paths["base"], name), bin_dir / name)
    os.mkfifo(bin_dir / "pytorch_model.bin")
    error = finishes(lambda: chatvec_fast.merge(str(bin_dir), paths["chat"], paths["cp"], str(tmp_path / "o2")))
    assert isinstance(error, ChatvecError) and "pytorch_model.bin" in str(error) and "named pipe" in str(error)


def test_a_named_pipe_as_a_mergekit_config(tmp_path):
    from chatvec_fast.cli.mergekit_load import load_documents

    os.mkfifo(tmp_path / "merge.yml")
    error = finishes(lambda: load_documents(str(tmp_path / "merge.yml")))
    assert isinstance(error, ChatvecError) and "mergekit config is a named pipe" in str(error), error


def test_tune_text_and_prompts_that_are_not_files(tmp_path):
    from chatvec_fast.tuning.prompts import read_prompts

    os.mkfifo(tmp_path / "prompts.jsonl")
    error = finishes(lambda: read_prompts(str(tmp_path / "prompts.jsonl")))
    assert isinstance(error, ChatvecError) and "prompts file is a named pipe" in str(error), error
    from chatvec_fast.tuning.check import _read_text

    error = finishes(lambda: _read_text("/dev/zero", "--text"))  # would read 256 MiB of zeros, then refuse
    assert isinstance(error, ChatvecError) and "--text /dev/zero: text is a character device" in str(error), error
