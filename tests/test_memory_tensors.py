"""merged_tensors: the merged model as (checkpoint name, tensor) pairs, with the bits merge writes to its files
for the same options, on every backend; the pipeline's memory, threads and errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch
from conftest import requires_native, requires_triton
from memory_models import assert_same_tensors, hf_triple, merged_files

import chatvec_fast
from chatvec_fast.testing.quantize import layout_quantizer
from chatvec_fast.testing.synthetic import FP8Layout, LlamaShape, make_triple

ALPHA = 0.7
CHUNK = 1000  # elements: every tensor but the norms spans several chunks, and chunks end mid-row

BACKENDS = [
    pytest.param("native", marks=requires_native, id="native"),
    pytest.param("torch", id="torch"),
    pytest.param("triton", marks=requires_triton, id="triton"),  # the interpreter here: the kernel writes in place
]


def _fp8(root, roles):
    block = FP8Layout("block", layout_quantizer, (32, 32))
    return make_triple(str(root), "tiny", fp8=dict.fromkeys(roles, block), shard_bytes=60_000)


# name -> (how to make its inputs under a directory, the options of the merge)
CASES = {
    "llama": (lambda r: hf_triple(r), {}),
    "tied": (lambda r: hf_triple(r, variant="tied"), {}),
    "expanded-vocab": (lambda r: hf_triple(r, variant="expanded"), {}),
    "expanded-vocab-skip": (lambda r: hf_triple(r, variant="expanded"), {"vocab_mismatch": "skip"}),
    "added-tokens": (lambda r: hf_triple(r, variant="added"), {}),
    "added-tokens-drop": (lambda r: hf_triple(r, variant="added"), {"added_tokens": "drop"}),
    "qwen3-moe": (lambda r: hf_triple(r, "qwen3_moe"), {}),
    "mixtral-rules": (lambda r: hf_triple(r, "mixtral"), {"alpha_for": ["lm_head=0.25"], "skip": ["norm"]}),
    "f32-output": (lambda r: hf_triple(r), {"dtype": "f32"}),
    "fp8-inputs": (lambda r: _fp8(r, ("base", "chat")), {}),
    "fp8-output": (lambda r: _fp8(r, ("base", "chat", "cp")), {"dtype": "fp8"}),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """case name -> its input paths, made once per module."""
    made = {}

    def get(name):
        if name not in made:
            made[name] = CASES[name][0](tmp_path_factory.mktemp(name))
        return made[name]

    return get


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_stream_has_the_bits_merge_writes(inputs, tmp_path, case, backend):
    paths, options = inputs(case), CASES[case][1]
    want = merged_files(paths, tmp_path / "out", ALPHA, **options)
    stream = chatvec_fast.merged_tensors(**paths, alpha=ALPHA, backend=backend, chunk_elements=CHUNK, **options)
    got = {}
    for name, tensor in stream:
        assert name not in got and tensor.device.type == "cpu" and tensor.is_contiguous()
        got[name] = tensor
    assert stream.names == list(got)
    assert_same_tensors(got, want, f"{case} on {backend}")
    assert stream.report.tensors == len(want) and stream.report.bytes_written == sum(t.nbytes for t in want.values())


def test_special_token_rows_from_chat(tokenized_triple, tmp_path):
    want = merged_files(tokenized_triple, tmp_path / "out", 0.5, special_tokens_from="chat")
    got = dict(chatvec_fast.merged_tensors(**tokenized_triple, alpha=0.5, special_tokens_from="chat"))
    assert_same_tensors(got, want, "special tokens from chat")


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_apply_form_has_the_bits_apply_writes(triple, tmp_path, dtype):
    paths = triple()
    chatvec_fast.extract(paths["base"], paths["chat"], str(tmp_path / "vector"), dtype=dtype)
    applied = {"vector": str(tmp_path / "vector"), "cp": paths["cp"]}
    want = merged_files(applied, tmp_path / "out", 0.5)
    got = dict(chatvec_fast.merged_tensors(vector=applied["vector"], cp=paths["cp"], alpha=0.5))
    assert_same_tensors(got, want, f"apply with an {dtype} vector")
    if dtype == "f64":  # an exact vector: the same bits as the merge itself
        assert_same_tensors(got, dict(chatvec_fast.merged_tensors(**paths, alpha=0.5)), "apply vs merge")


def test_each_tensor_is_the_callers(triple):
    """Tensors handed over are never written again: kept ones hold their values after the stream ends."""
    paths = triple()
    kept = [(name, t, t.clone()) for name, t in chatvec_fast.merged_tensors(**paths, chunk_elements=CHUNK)]
    assert len({t.data_ptr() for _, t, _ in kept}) == len(kept)
    for name, t, copy in kept:
        assert torch.equal(t.view(torch.int16), copy.view(torch.int16)), name


def _pipeline_threads() -> list[str]:
    """The pipeline's threads (the shard writer's pool of a merge to files lives on: not counted)."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(("chatvec-memory", "chatvec-read")))


def test_leaving_the_loop_early_stops_the_pipeline(triple):
    paths = triple()
    before = _pipeline_threads()
    stream = chatvec_fast.merged_tensors(**paths, chunk_elements=CHUNK)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    assert _pipeline_threads() == before
    assert len(dict(stream)) == len(stream)  # iterable again: a new pass over the inputs


def test_a_failed_read_is_raised_in_the_callers_thread(triple, monkeypatch):
    paths = triple()
    before = _pipeline_threads()
    stream = chatvec_fast.merged_tensors(**paths, chunk_elements=CHUNK)
    monkeypatch.setenv("CHATVEC_FAULT", "read:EIO#5")
    with pytest.raises(chatvec_fast.ChatvecError, match="Input/output error"):
        list(stream)
    assert _pipeline_threads() == before


def test_options_are_checked_as_merge_checks_them(triple):
    paths = triple()
    with pytest.raises(TypeError, match="about output files"):
        chatvec_fast.merged_tensors(**paths, max_shard_size="1GB")
    with pytest.raises(TypeError, match="did you mean alpha_for"):
        chatvec_fast.merged_tensors(**paths, alpha_fro=["x=1"])
    with pytest.raises(ValueError, match="vocab_mismatch 'drop'"):
        chatvec_fast.merged_tensors(**paths, vocab_mismatch="drop")
    with pytest.raises(ValueError, match="finite"):
        chatvec_fast.merged_tensors(**paths, alpha=float("nan"))
    with pytest.raises(TypeError, match="not both"):
        chatvec_fast.merged_tensors(**paths, vector=paths["chat"])
    with pytest.raises(ValueError, match="device 'gpu'"):
        chatvec_fast.merged_tensors(**paths, device="gpu")
    with pytest.raises(chatvec_fast.ChatvecError, match="no_such_tensor"):  # planned when made, before a read
        chatvec_fast.merged_tensors(**paths, skip=["no_such_tensor"])


def test_making_the_stream_imports_no_torch(triple):
    """Planned without torch: only iterating loads it (and the backend)."""
    paths = triple()
    code = ("import sys, chatvec_fast\n"
            f"s = chatvec_fast.merged_tensors({paths['base']!r}, {paths['chat']!r}, {paths['cp']!r}, alpha=0.5)\n"
            "assert 'torch' not in sys.modules, 'planning imported torch'\n"
            "n = sum(1 for _ in s)\n"
            "assert 'torch' in sys.modules and n == len(s), n\n")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0, r.stderr


PEAK = """
import sys, chatvec_fast
paths = {r: sys.argv[1] + "/" + r for r in ("base", "chat", "cp")}
stream = chatvec_fast.merged_tensors(**paths, alpha=0.5, chunk_elements=16384)
import torch, numpy  # loaded before the baseline: only the stream's own memory is measured

def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))

open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from the current RSS
before = status("VmRSS:")
largest = count = 0
for name, t in stream:
    largest, count = max(largest, t.nbytes), count + 1
    del t
print(count, largest, status("VmHWM:") - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc/self/clear_refs")
@requires_native
def test_peak_memory_stays_flat_as_the_model_grows(tmp_path):
    """Twice the layers (1.7x the bytes, far more than the pipeline's 0.5 MiB of slots) and the same peak: the
    stream holds its slots and a tensor or two, never the model. Measured here: 6.4 MB for 75 tensors of a
    15.9 MB model, 6.5 MB for 147 tensors of 27.7 MB (largest tensor 2 MB)."""
    measured = {}
    for layers in (8, 16):
        shape = LlamaShape(layers=layers, hidden=256, intermediate=704, heads=4, kv_heads=2, vocab=4000)
        make_triple(str(tmp_path / str(layers)), shape)
        r = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / str(layers))], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        count, largest, grown = map(int, r.stdout.split())
        measured[layers] = (count, largest, grown, shape.params * 2)
    (c8, largest, grown8, bytes8), (c16, _, grown16, bytes16) = measured[8], measured[16]
    assert c16 > c8 and bytes16 > 1.7 * bytes8
    assert grown16 < grown8 + 0.25 * (bytes16 - bytes8), measured  # growth is not the model's
    assert grown16 < 4 * largest + (16 << 20), measured  # slots, one tensor held, one handed over, slack


@pytest.mark.parametrize("fn", [chatvec_fast.merged_tensors, chatvec_fast.merge_into, chatvec_fast.HeldMerge],
                         ids=lambda f: f.__name__)  # fmt: skip
def test_the_options_are_declared_once_in_settings(fn):
    """Each form's options are settings.Settings fields with merge's defaults, explained in its docstring."""
    import dataclasses
    import inspect
    import re

    from chatvec_fast.settings import Settings

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    own = {"vector", "device", "hold", "max_memory"}  # the forms' own: inputs and where things are held
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY and p.name not in own]
    assert {p.name for p in params} >= {"skip", "alpha_for", "dtype", "vocab_mismatch", "backend"}
    doc = inspect.getdoc(fn.__init__ if isinstance(fn, type) else fn)
    for p in params:
        assert p.name in fields and p.default == fields[p.name].default, p.name
        assert re.search(rf"^\s*{p.name}: \S", doc, re.M), f"{fn.__name__}'s docstring does not explain {p.name}"
