"""HeldMerge: the inputs held once, any alpha's merge written from them with the bits merge writes to files;
its memory said before loading and refused when it does not fit; an interrupted switch known as partial."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import requires_native, requires_triton
from memory_models import assert_same_tensors, hf_triple, merged_files, plain_module

import chatvec_fast
from chatvec_fast import faults
from chatvec_fast.memory.budget import available
from chatvec_fast.memory.held import PARTIAL
from chatvec_fast.testing.quantize import layout_quantizer
from chatvec_fast.testing.synthetic import FP8Layout, make_triple

transformers = pytest.importorskip("transformers")

ALPHAS = (0.3, 1.0, -0.5)

# (hold, backend): the CPU kernels over host memory; the triton kernel over "device" tensors (the interpreter
# here, the CPU standing in for the GPU: operands and outputs are used in place, as on a GPU)
HOLDS = [
    pytest.param(("host", "native"), marks=requires_native, id="host-native"),
    pytest.param(("host", "torch"), id="host-torch"),
    pytest.param(("device", "triton"), marks=requires_triton, id="device-triton"),
]


def _fp8(root, roles):
    block = FP8Layout("block", layout_quantizer, (32, 32))
    return make_triple(str(root), "tiny", fp8=dict.fromkeys(roles, block), shard_bytes=60_000)


CASES = {
    "llama": (lambda r: hf_triple(r), {}),
    "tied": (lambda r: hf_triple(r, variant="tied"), {}),
    "expanded-vocab": (lambda r: hf_triple(r, variant="expanded"), {}),
    "added-tokens": (lambda r: hf_triple(r, variant="added"), {}),
    "qwen3-moe-rules": (lambda r: hf_triple(r, "qwen3_moe"), {"alpha_for": ["lm_head=0.25"], "skip": ["norm"]}),
    "fp8-inputs": (lambda r: _fp8(r, ("base", "chat")), {}),
    "fp8-output": (lambda r: _fp8(r, ("base", "chat", "cp")), {"dtype": "fp8"}),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            made[name] = CASES[name][0](tmp_path_factory.mktemp(name))
        return made[name]

    return get


def _held(paths, hold, backend, **options):
    device = "cpu" if hold == "device" else None  # the interpreter's device is the CPU
    return chatvec_fast.HeldMerge(**paths, hold=hold, device=device, backend=backend, **options)


@pytest.mark.parametrize("hold", HOLDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_alpha_has_the_bits_merge_writes(inputs, tmp_path, case, hold):
    paths, options = inputs(case), CASES[case][1]
    if hold[0] == "device" and options.get("dtype") == "fp8":
        pytest.skip("hold='device' makes no FP8 output (refused: see test_what_is_refused_and_why)")
    with _held(paths, *hold, **options) as held:
        for alpha in ALPHAS:
            want = merged_files(paths, tmp_path / f"out{alpha}", alpha, **options)
            assert_same_tensors(dict(held.tensors(alpha)), want, f"{case}, {hold}, alpha {alpha}")


@pytest.mark.parametrize("hold", HOLDS)
@pytest.mark.parametrize("case", ["llama", "qwen3-moe-rules"])
def test_switching_a_model_gives_from_pretrained_of_the_merge(inputs, tmp_path, case, hold):
    paths, options = inputs(case), CASES[case][1]
    model = transformers.AutoModelForCausalLM.from_pretrained(paths["cp"], dtype=torch.bfloat16)
    where = {n: t.data_ptr() for n, t in model.state_dict().items()}
    held = _held(paths, *hold, **options)
    assert held.alpha is None
    held.apply(model, 0.3)
    report = held.switch(0.7)
    assert held.alpha == 0.7 and report.alphas == [0.7] and report.tensors == len(held.plan.tensors)
    chatvec_fast.merge(**paths, out=str(tmp_path / "out"), alpha=0.7, **options)
    want = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"), dtype=torch.bfloat16)
    got_state, want_state = model.state_dict(), want.state_dict()
    for name, t in want_state.items():
        assert torch.equal(got_state[name].view(torch.int16), t.view(torch.int16)), name
        assert got_state[name].data_ptr() == where[name]
    ids = torch.tensor([[1, 5, 9, 42, 77, 100, 3, 64]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, want(ids).logits)


def test_the_apply_form_holds_a_vector(triple, tmp_path):
    paths = triple()
    chatvec_fast.extract(paths["base"], paths["chat"], str(tmp_path / "vector"), dtype="f64")
    applied = {"vector": str(tmp_path / "vector"), "cp": paths["cp"]}
    held = chatvec_fast.HeldMerge(vector=applied["vector"], cp=paths["cp"])
    for alpha in (0.5, 2.0):
        want = merged_files(applied, tmp_path / f"out{alpha}", alpha)
        assert_same_tensors(dict(held.tensors(alpha)), want, f"apply at {alpha}")


def test_files_are_not_read_after_loading(triple, tmp_path):
    paths = triple()
    want = merged_files(paths, tmp_path / "out", 0.9)
    held = chatvec_fast.HeldMerge(**paths).load()
    for path in paths.values():
        os.rename(path, path + "-moved")  # gone: a switch that read them would fail
    assert_same_tensors(dict(held.tensors(0.9)), want, "held after the files moved")


def test_memory_is_said_before_loading_and_refused_when_it_does_not_fit(triple):
    paths = triple()
    held = chatvec_fast.HeldMerge(**paths)
    read = held.plan.read_nbytes  # base, chat and cp: every byte the merge reads, once
    assert read <= held.nbytes < read + 64 * len(held.held.offsets) and held.held.arena is None
    small = chatvec_fast.HeldMerge(**paths, max_memory="100KB")
    with pytest.raises(MemoryError) as info:
        small.apply(torch.nn.Linear(1, 1), 0.5)
    text = str(info.value)
    assert f"would hold {held.nbytes / 1e3:.2f} kB (base " in text and "100.00 kB is free (max_memory)" in text
    assert "merge_into(model, ...)" in text and small.held.arena is None
    free, source = available("cpu")
    assert free > 0 and ("MemAvailable" in source or "psutil" in source)


def test_what_is_refused_and_why(triple, inputs):
    paths = triple()
    with pytest.raises(RuntimeError, match="call apply first"):
        chatvec_fast.HeldMerge(**paths).switch(0.5)
    with pytest.raises(ValueError, match="hold 'gpu'"):
        chatvec_fast.HeldMerge(**paths, hold="gpu")
    with pytest.raises(ValueError, match="device='cuda' is for hold='device'"):
        chatvec_fast.HeldMerge(**paths, device="cuda")
    with pytest.raises(ValueError, match="an FP8 output"):
        chatvec_fast.HeldMerge(**inputs("fp8-output"), hold="device", device="cpu", dtype="fp8")
    with pytest.raises(ValueError, match="hold='device' computes with the triton kernel"):
        chatvec_fast.HeldMerge(**paths, hold="device", device="cpu", backend="native").load()
    with pytest.raises(ValueError, match="one alpha"):
        list(chatvec_fast.HeldMerge(**paths).tensors([0.5, 1.0]))


def _plain_model(paths):
    return plain_module({n: torch.zeros_like(t) for n, t in chatvec_fast.merged_tensors(**paths)})


@pytest.mark.parametrize("stop", ["exception", "ctrl-c", "env"])
def test_an_interrupted_switch_is_known_as_partial_and_the_next_one_repairs_it(triple, tmp_path, monkeypatch, stop):
    paths = triple()
    model = _plain_model(paths)
    held = chatvec_fast.HeldMerge(**paths)
    held.apply(model, 0.3)
    calls = []

    def interrupt(**_):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt if stop == "ctrl-c" else RuntimeError("a fault in the seventh kernel call")

    expected = {"exception": RuntimeError, "ctrl-c": KeyboardInterrupt, "env": faults.InjectedFault}[stop]
    if stop == "env":
        monkeypatch.setenv("CHATVEC_FAULT", "compute#7")
    with faults.hooked("compute", interrupt if stop != "env" else lambda **_: None):
        with pytest.raises(expected) as info:
            held.switch(0.8)
    assert held.alpha == PARTIAL
    if hasattr(info.value, "add_note"):
        assert any("partly rewritten (6 of 21 tensors" in n for n in info.value.__notes__), info.value.__notes__
    monkeypatch.delenv("CHATVEC_FAULT", raising=False)
    held.switch(0.8)
    assert held.alpha == 0.8
    want = merged_files(paths, tmp_path / "out", 0.8)
    assert_same_tensors({n: model.get_parameter(n) for n in want}, want, "after the repairing switch")
