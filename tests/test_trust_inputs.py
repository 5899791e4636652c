"""Inputs are trusted only as far as they were checked: files that change under the run, token ids, layouts
that look wrong, quantized checkpoints, names and shapes the safetensors library would refuse."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import assert_one_line_error, chatvec_command, cli, file_digests, model_args, open_every_output
from test_bad_input import rewrite_header

import chatvec_fast
from chatvec_fast.errors import InputError
from chatvec_fast.read.chunks import InputFiles
from chatvec_fast.read.header import read_header


def shards(model_dir) -> list[str]:
    return sorted(os.path.join(model_dir, f) for f in os.listdir(model_dir) if f.endswith(".safetensors"))


def merge(paths, out, **kwargs):
    return chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], str(out), kwargs.pop("alpha", 0.5), **kwargs)


# -- 1. inputs that change under the run ----------------------------------------------------------


def test_a_shard_replaced_between_planning_and_reading_is_refused(triple, tmp_path, monkeypatch):
    """mv of another valid file over a shard after its header was read: the old offsets would read new data."""
    paths = triple()
    victim = shards(paths["cp"])[-1]
    impostor = tmp_path / "impostor.safetensors"
    shutil.copyfile(shards(paths["chat"])[-1], impostor)  # a valid safetensors file, other bytes
    from chatvec_fast import faults

    swap = lambda: os.replace(impostor, victim)  # noqa: E731 - what `mv` does: a new inode at the same path
    with faults.hooked("planned", swap), pytest.raises(InputError, match="replaced by another file") as info:
        merge(paths, tmp_path / "out")
    assert victim in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_shard_modified_while_it_is_read_is_refused(triple, tmp_path, monkeypatch):
    """In place (same inode): the modification time gives it away at the end of the run."""
    paths = triple()
    victim = shards(paths["chat"])[0]
    monkeypatch.setenv("CHATVEC_SLOW", "write:0.01")

    def touch_later():
        time.sleep(0.5)
        st = os.stat(victim)
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    toucher = threading.Thread(target=touch_later)
    toucher.start()
    try:
        with pytest.raises(InputError, match="changed while it was being read") as info:
            merge(paths, tmp_path / "out", chunk_elements=1000)
    finally:
        toucher.join()
    assert victim in str(info.value) and not (tmp_path / "out").exists()


def test_descriptors_stay_bounded_with_many_shards(triple, tmp_path):
    """One shard per tensor (21 per model, 63 inputs) under a 40-descriptor limit: the run still works."""
    paths = triple(shard_bytes=1)
    assert len(shards(paths["cp"])) == 21

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    cmd = chatvec_command("merge", paths, tmp_path / "out", "--quiet")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert r.returncode == 0, r.stderr
    assert cli("verify", tmp_path / "out", "--all").returncode == 0


def test_reads_outside_a_tensor_are_refused_where_they_are_issued(triple):
    paths = triple()
    info = next(iter(read_header(shards(paths["cp"])[0]).tensors.values()))
    with InputFiles() as files:
        for first, size in ((-2, 4), (info.nbytes - 2, 4), (info.nbytes, 1)):
            with pytest.raises(InputError, match="falls outside"):
                files.read(info, first, bytearray(size))
        files.read(info, info.nbytes - 4, bytearray(4))  # the last bytes are fine


# -- 2. untrusted token ids -------------------------------------------------------------------------


def edit_json(path, edit):
    doc = json.load(open(path))
    edit(doc)
    json.dump(doc, open(path, "w"))


@pytest.mark.parametrize(
    "bad_id", [-1, -600, None, 1.5, "4", True], ids=["negative", "very-negative", "null", "float", "string", "bool"]
)
def test_untrusted_token_ids_are_refused(tokenized_triple, tmp_path, bad_id):
    """With --special-tokens-from chat a negative id used to copy header bytes into a row, exit 0."""
    paths = tokenized_triple
    tokenizer = os.path.join(paths["chat"], "tokenizer.json")

    def edit(doc):
        entry = next(t for t in doc["added_tokens"] if t["content"] == "<|im_end|>")
        entry["id"] = bad_id

    edit_json(tokenizer, edit)
    before = file_digests(*paths.values())
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--special-tokens-from", "chat", "--quiet")
    assert_one_line_error(r, tokenizer, "<|im_end|>")
    assert not (tmp_path / "out").exists() and file_digests(*paths.values()) == before


def test_a_vocabulary_with_null_ids_is_refused(tokenized_triple, tmp_path):
    tokenizer = os.path.join(tokenized_triple["cp"], "tokenizer.json")
    edit_json(tokenizer, lambda doc: doc["model"]["vocab"].update({"tok7": None}))
    r = cli("merge", *model_args(tokenized_triple), "--out", tmp_path / "out", "--special-tokens-from", "chat")
    assert_one_line_error(r, tokenizer, "tok7")


def test_ids_past_the_rows_are_refused(tokenized_triple, tmp_path):
    tokenizer = os.path.join(tokenized_triple["cp"], "tokenizer.json")
    edit_json(tokenizer, lambda doc: next(t for t in doc["added_tokens"] if t["content"] == "<|im_end|>").update(
        id=100_000))  # fmt: skip
    r = cli("merge", *model_args(tokenized_triple), "--out", tmp_path / "out", "--special-tokens-from", "chat")
    assert_one_line_error(r, "outside")


@pytest.mark.parametrize("value", ["<|im_end|>", [3], {"content": 5}], ids=["string", "ints", "bad-object"])
def test_additional_special_tokens_of_the_wrong_type(tokenized_triple, tmp_path, value):
    config = os.path.join(tokenized_triple["chat"], "tokenizer_config.json")
    edit_json(config, lambda doc: doc.update(additional_special_tokens=value))
    r = cli("merge", *model_args(tokenized_triple), "--out", tmp_path / "out", "--special-tokens-from", "chat")
    assert_one_line_error(r, config, "additional_special_tokens")


def test_verify_does_not_share_the_planners_row_arithmetic(tokenized_triple, tmp_path):
    """What a planner bug in the row transplant (each special token's row taken from the chat row after it)
    would write, with a report and checksums that agree with it: verify derives the rows by its own rules."""
    import torch
    from safetensors import safe_open

    from chatvec_fast.read.header import read_header
    from chatvec_fast.write.records import sha256_file

    out = tmp_path / "out"
    merge(tokenized_triple, out, special_tokens_from="chat")
    report = json.load(open(out / "chatvec_report.json"))
    name = "model.embed_tokens.weight"
    info = next(h.tensors[name] for h in map(read_header, shards(out)) if name in h.tensors)
    with safe_open(shards(tokenized_triple["chat"])[0], "pt") as chat:
        chat_rows = chat.get_tensor(name)
    row_bytes = info.nbytes // info.shape[0]
    with open(info.path, "r+b") as f:  # the planner's off-by-one: chat's next row in each special token's place
        for r in report["special_token_rows"]:
            f.seek(info.offset + r["cp_row"] * row_bytes)
            f.write(chat_rows[r["chat_row"] + 1].contiguous().view(torch.uint8).numpy().tobytes())
    shard = os.path.basename(info.path)
    report["files"][shard]["sha256"] = sha256_file(info.path)
    json.dump(report, open(out / "chatvec_report.json", "w"))
    (result,) = chatvec_fast.verify(str(out), every=True)
    assert not result.file_problems and not result.ok, result.summary()
    assert [t.name for t in result.failures] == [name], result.summary()


# -- 7. inputs whose roles or layout look wrong --------------------------------------------------------


def test_swapped_base_and_chat_are_warned_before_work(tokenized_triple, tmp_path):
    paths = dict(tokenized_triple, base=tokenized_triple["chat"], chat=tokenized_triple["base"])
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 0, r.stderr
    warning = next(line for line in r.stderr.splitlines() if line.startswith("warning:"))
    assert "swapped" in warning and r.stderr.index(warning) < r.stderr.index("note:") if "note:" in r.stderr else True
    report = json.load(open(tmp_path / "out" / "chatvec_report.json"))
    assert any("swapped" in w for w in report["warnings"])


def test_chat_template_from_chat_that_has_none_is_warned(tokenized_triple, tmp_path):
    config = os.path.join(tokenized_triple["chat"], "tokenizer_config.json")
    edit_json(config, lambda doc: doc.pop("chat_template"))
    r = cli("merge", *model_args(tokenized_triple), "--out", tmp_path / "out", "--chat-template-from", "chat")
    assert r.returncode == 0 and "warning:" in r.stderr and "no chat template" in r.stderr, r.stderr


def test_single_file_and_index_together_follow_transformers(triple, tmp_path):
    """transformers loads model.safetensors when both it and an index are present: so do we, and say so."""
    paths = triple()
    shutil.copyfile(os.path.join(paths["base"], "model.safetensors"), os.path.join(paths["cp"], "model.safetensors"))
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 0 and "warning:" in r.stderr and "as transformers does" in r.stderr, r.stderr
    assert os.path.exists(tmp_path / "out" / "model.safetensors")  # cp's single file is what was read


def test_an_empty_weight_map_beside_shards_is_an_error(triple, tmp_path):
    paths = triple()
    index = os.path.join(paths["cp"], "model.safetensors.index.json")
    edit_json(index, lambda doc: doc.update(weight_map={}))
    assert_one_line_error(cli("merge", *model_args(paths), "--out", tmp_path / "out"), index, "empty weight_map")


def test_a_run_that_merges_nothing_is_an_error(triple, tmp_path):
    paths = triple()
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--skip", "weight")
    assert_one_line_error(r, "nothing to merge")
    assert not (tmp_path / "out").exists()


# -- 8. quantized checkpoints ------------------------------------------------------------------------------


def quantize_layout(model_dir, kind):
    """Rewrites one tensor of every shard header as a quantized model stores it (names and dtypes only)."""
    for path in shards(model_dir):

        def edit(h):
            name = next(k for k in h if k != "__metadata__" and len(h[k]["shape"]) == 2)
            spec = h.pop(name)
            begin, end = spec["data_offsets"]
            rows, cols = spec["shape"]
            if kind == "fp8-without-scale":  # a bf16 weight's bytes hold an F8 weight (and nothing gives its scale)
                h[name] = {"dtype": "F8_E4M3", "shape": [rows, cols], "data_offsets": [begin, begin + rows * cols]}
            elif kind == "mxfp4":  # MXFP4: U8 blocks of packed codes and U8 shared exponents
                base = name[: -len(".weight")]
                h[base + ".weight_blocks"] = {
                    "dtype": "U8",
                    "shape": [rows, cols],
                    "data_offsets": [begin, begin + rows * cols],
                }
                h[base + ".weight_scales"] = {"dtype": "U8", "shape": [rows, 1], "data_offsets": [end - rows, end]}
            else:
                base = name[: -len(".weight")]
                h[base + ".qweight"] = {"dtype": "I32", "shape": [rows // 2, cols], "data_offsets": [begin, end]}
            return h

        rewrite_header(path, edit)


@pytest.mark.parametrize(
    "kind,needles",
    [("fp8-without-scale", ("F8_E4M3 without a", "_scale")), ("gptq", ("GPTQ", "quantized", ".qweight")),
     ("mxfp4", ("MXFP4", "quantized", "_blocks"))],
)  # fmt: skip
def test_unsupported_quantized_checkpoints_are_refused(triple, tmp_path, kind, needles):
    """FP8 weights with their scales merge (test_fp8.py); anything else quantized is refused, named."""
    paths = triple(shard_bytes=None)  # single files: the header can be renamed without an index to follow
    quantize_layout(paths["cp"], kind)
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out")
    assert_one_line_error(r, paths["cp"], *needles)


# -- 14/19. names and shapes the safetensors library refuses ------------------------------------------------


def test_a_lone_surrogate_name_is_refused_when_the_header_is_read(triple, tmp_path):
    paths = triple()
    path = shards(paths["chat"])[0]

    def edit(h):
        name = next(k for k in h if k != "__metadata__")
        h["bad\ud800name"] = h.pop(name)

    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    edit(header)
    text = json.dumps(header).encode()  # ensure_ascii: the surrogate travels as \\ud800, valid JSON
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)
    with pytest.raises(InputError, match="surrogate"):
        read_header(path)
    assert_one_line_error(cli("merge", *model_args(paths), "--out", tmp_path / "out"), path, "surrogate")


@pytest.mark.parametrize(
    "dtype,shape,needle",
    [("BF16", [0, 2**64], "64 bits"), ("BF16", [2**40, 2**40, 0], "overflows"), ("F4", [3], "whole bytes")],
    ids=["dim-2^64", "product-overflows-before-zero", "sub-byte"],
)
def test_shapes_the_safetensors_library_refuses_are_refused(tmp_path, dtype, shape, needle):
    header = {"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, 0 if 0 in shape else 2]}}
    text = json.dumps(header).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"\x00\x00")
    with pytest.raises(InputError) as info:
        read_header(str(path))
    assert str(path) in str(info.value) and needle in str(info.value)


def test_every_file_we_write_opens_with_the_safetensors_library(triple, tmp_path):
    """Inputs with gaps between tensors and empty tensors: our outputs are dense and loadable."""
    paths = triple()
    for role in ("base", "chat", "cp"):
        for path in shards(paths[role]):

            def add_gap(h):  # move the last tensor 64 bytes further: a gap the library itself refuses
                last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
                b, e = h[last]["data_offsets"]
                h[last]["data_offsets"] = [b + 64, e + 64]

            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                f.seek(8 + n)
                data = f.read()
            rewrite_header(path, add_gap)
            with open(path, "r+b") as f:  # put the last tensor's bytes at their new place
                n = int.from_bytes(f.read(8), "little")
                f.truncate(8 + n)
                f.seek(8 + n)
                last_size = 0
                header = json.loads(open(path, "rb").read()[8 : 8 + n])
                last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
                b, e = header[last]["data_offsets"]
                last_size = e - b
                f.write(data[: b - 64] + b"\xff" * 64 + data[b - 64 : b - 64 + last_size])
    out = tmp_path / "out"
    assert cli("merge", *model_args(paths), "--out", out, "--quiet").returncode == 0
    assert cli("sweep", *model_args(paths), "--out", tmp_path / "sweep", "--alphas", "0.5,1", "--quiet").returncode == 0
    vector = tmp_path / "vector"
    assert cli("extract", "--base", paths["base"], "--chat", paths["chat"], "--out", vector, "--quiet").returncode == 0
    applied = cli("apply", "--vector", vector, "--cp", paths["cp"], "--out", tmp_path / "applied", "--quiet")
    assert applied.returncode == 0, applied.stderr
    for d in (out, tmp_path / "sweep", vector, tmp_path / "applied"):
        assert open_every_output(d) > 0
    assert cli("verify", out, "--all").returncode == 0


# -- 15. nothing scales with a number read from an input ----------------------------------------------------


def test_a_huge_shard_count_in_a_name_costs_nothing(triple, tmp_path):
    paths = triple()
    index = os.path.join(paths["chat"], "model.safetensors.index.json")
    doc = json.load(open(index))
    renames = {}
    for i, old in enumerate(sorted(set(doc["weight_map"].values()))):
        renames[old] = f"model-{i + 1:05d}-of-10000000.safetensors"
        os.rename(os.path.join(paths["chat"], old), os.path.join(paths["chat"], renames[old]))
    doc["weight_map"] = {k: renames[v] for k, v in doc["weight_map"].items()}
    json.dump(doc, open(index, "w"))
    t0 = time.perf_counter()
    r = cli("merge", *model_args(paths), "--out", tmp_path / "out", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t0 < 20  # was 50 s: ten million stat calls


def test_python_path_for_subprocesses():
    assert sys.executable
