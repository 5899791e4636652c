"""Work that would grow with a value read from an input or an option is bounded before it is paid: each case
runs in a child process under a time limit and an address-space limit, and must end in one clear error.
A run that is parsing stops within a second of SIGINT or SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
from conftest import assert_one_line_error, default_sigint, model_args

MEMORY_LIMIT = 2 << 30  # bytes of address space for the child: torch alone maps ~1 GB
TIME_LIMIT = 30  # seconds; each case here takes well under 5 when bounded


def run_limited(*args, cwd=None) -> subprocess.CompletedProcess:
    """`python -m chatvec_fast ARGS` with RLIMIT_AS and a wall-clock limit."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "chatvec_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=TIME_LIMIT, preexec_fn=limit, cwd=cwd)  # fmt: skip


def torch_zip(path, pickle_bytes: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/version", b"3\n")
    return path


def nested_tuples(levels: int, opcode_after: bytes) -> bytes:
    """A dict whose key is t = (t, t) nested `levels` deep, memoised: a few hundred bytes, 2^levels to hash."""
    p = io.BytesIO()
    p.write(b"\x80\x02}q\x00(")  # PROTO 2, EMPTY_DICT, BINPUT 0, MARK
    p.write(b")q\x01")  # EMPTY_TUPLE, BINPUT 1
    for _ in range(levels):
        p.write(b"h\x01h\x01\x86q\x01")  # BINGET 1, BINGET 1, TUPLE2, BINPUT 1
    p.write(opcode_after)
    return p.getvalue()


def replace_weights(model_dir, pickle_bytes: bytes):
    for name in os.listdir(model_dir):
        if name.endswith((".safetensors", ".index.json")):
            os.unlink(os.path.join(model_dir, name))
    torch_zip(os.path.join(model_dir, "pytorch_model.bin"), pickle_bytes)


@pytest.mark.parametrize(
    "tail,needle",
    [
        (b"K\x01u.", "is of type tuple, expected str"),  # MARK key value SETITEMS
        (b"K\x01s.", "is of type tuple, expected str"),  # key value SETITEM (the MARK stays on the stack)
        (b"\x85\x91.", "a set"),  # TUPLE1 FROZENSET: hashes the tuple too
    ],
    ids=["setitems", "setitem", "frozenset"],
)
def test_a_pickle_that_hashes_nested_tuples_is_refused_at_once(triple, tmp_path, tail, needle):
    paths = triple()
    replace_weights(paths["chat"], nested_tuples(50, tail))
    t0 = time.monotonic()
    r = run_limited("merge", *model_args(paths), "--out", tmp_path / "out")
    assert_one_line_error(r, "pytorch_model.bin", needle)
    assert time.monotonic() - t0 < TIME_LIMIT


def alias_bomb(levels: int = 9) -> str:
    """The YAML billion laughs: each anchor lists the previous one nine times (9^9 values in ~700 bytes)."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    top = f"*l{levels - 1}"
    lines += ["merge_method: task_arithmetic", "base_model: base", f"models: {top}", f"parameters: {top}"]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path):
    config = tmp_path / "bomb.yml"
    config.write_text(alias_bomb())
    assert config.stat().st_size < 1000
    r = run_limited("merge", "--mergekit-config", config, "--out", tmp_path / "out")
    assert_one_line_error(r, "bomb.yml", "more than 10000 values")


def test_a_huge_yaml_file_is_refused_before_it_is_parsed(tmp_path):
    config = tmp_path / "huge.yml"
    config.write_text("# " + "x" * (2 << 20) + "\nmerge_method: linear\n")
    assert_one_line_error(run_limited("merge", "--mergekit-config", config, "--out", tmp_path / "o"), "larger than")


def test_the_alpha_grid_of_many_vectors_is_counted_before_it_is_built(tmp_path):
    """16 vectors x 64 alphas each is 64^16 outputs: refused from the sizes, not by building the grid."""
    args = []
    for m in range(16):
        args += ["--vector", tmp_path / f"v{m}", "--alphas", "0:63:1"]
    r = run_limited("apply", *args, "--cp", tmp_path / "cp", "--out", tmp_path / "out")
    assert_one_line_error(r, "64 x 64", "at most 64")


@pytest.mark.parametrize(
    "alphas,needle",
    [("0:1e1000000:1", "cannot read alphas"), ("1e999999999999,2", "cannot read alphas"),
     (",".join(["0.5"] * 20_000), "more than 64 outputs"), ("0:1:" + "0" * 5000 + "1", "cannot read alphas")],
    ids=["huge-stop", "huge-value", "20k-values", "5000-digit-step"],
)  # fmt: skip
def test_alphas_that_would_cost_without_bound_are_refused(triple, tmp_path, alphas, needle):
    paths = triple()
    r = run_limited("sweep", *model_args(paths), "--out", tmp_path / "out", "--alphas", alphas)
    assert_one_line_error(r, needle)


def deep_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("name", ["config.json", "model.safetensors.index.json", "tokenizer.json",
                                  "tokenizer_config.json"])  # fmt: skip
@pytest.mark.parametrize("content", ["deep", "not-utf8"])
def test_hostile_json_files_are_one_error_naming_the_file(triple, tmp_path, name, content):
    paths = triple(shard_bytes={"base": None, "chat": 100_000, "cp": 100_000})
    path = os.path.join(paths["cp"], name)
    if content == "deep":
        open(path, "w").write(deep_json(100_000))
    else:
        open(path, "wb").write(b'{"eos_token": "\xff\xfe"}')
    r = run_limited("merge", *model_args(paths), "--out", tmp_path / "out")
    assert_one_line_error(r, path, "nests 100000 levels" if content == "deep" else "not UTF-8")


def slow_pickle(count: int) -> bytes:
    """A state dict {"x": [0, 1, 2, ...]}: count list items, each a few opcodes for the pure-Python unpickler."""
    p = io.BytesIO()
    p.write(b"\x80\x02}q\x00X\x01\x00\x00\x00x](")  # PROTO, EMPTY_DICT, BINPUT, 'x', EMPTY_LIST, MARK
    p.write(b"K\x07" * count)  # BININT1 7
    p.write(b"es.")  # APPENDS, SETITEM, STOP
    return p.getvalue()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_long_parse_within_a_second(triple, tmp_path, sig):
    paths = triple()
    replace_weights(paths["chat"], slow_pickle(40_000_000))  # ~40 s of parsing if let run
    command = [sys.executable, "-m", "chatvec_fast", "merge", *model_args(paths), "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    time.sleep(3)  # past the imports, inside the parse
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 1.0, err
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_report_nested_without_bound_is_not_followed(tmp_path):
    """verify reads the output's report as untrusted input too."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "chatvec_report.json").write_text(deep_json(100_000))
    r = run_limited("verify", out)
    assert_one_line_error(r, "chatvec_report.json", "nests 100000 levels")


def test_a_tokenizer_with_ids_past_any_bound_is_refused(tokenized_triple, tmp_path):
    """A token id of 10^30 (JSON allows it) is refused by the reader, not used as a row."""
    path = os.path.join(tokenized_triple["cp"], "tokenizer.json")
    doc = json.load(open(path))
    doc["added_tokens"][-1]["id"] = 10**30
    json.dump(doc, open(path, "w"))
    r = run_limited("merge", *model_args(tokenized_triple), "--out", tmp_path / "out", "--special-tokens-from", "chat")
    assert_one_line_error(r, path)
