"""merge_into: the merge written into a loaded transformers model in place gives the weights and the logits of
from_pretrained on the directory merge writes; every parameter is accounted for before anything is written."""

from __future__ import annotations

import pytest
import torch
from conftest import requires_native, requires_triton
from memory_models import config, hf_triple, plain_module

import chatvec_fast
from chatvec_fast import faults
from chatvec_fast.testing.quantize import layout_quantizer
from chatvec_fast.testing.synthetic import FP8Layout, make_triple

transformers = pytest.importorskip("transformers")

ALPHA = 0.7
IDS = torch.tensor([[1, 5, 9, 42, 77, 100, 3, 64]])


def _fp8_inputs(root):
    block = FP8Layout("block", layout_quantizer, (32, 32))
    return make_triple(str(root), "tiny", fp8=dict.fromkeys(("base", "chat"), block), shard_bytes=60_000)


CASES = {
    "llama": lambda r: hf_triple(r),
    "tied": lambda r: hf_triple(r, variant="tied"),
    "expanded-vocab": lambda r: hf_triple(r, variant="expanded"),
    "qwen3-moe": lambda r: hf_triple(r, "qwen3_moe"),
    "mixtral": lambda r: hf_triple(r, "mixtral"),
    "fp8-inputs": _fp8_inputs,
}
BACKENDS = [pytest.param("native", marks=requires_native, id="native"), pytest.param("torch", id="torch"),
            pytest.param("triton", marks=requires_triton, id="triton")]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            made[name] = CASES[name](tmp_path_factory.mktemp(name))
        return made[name]

    return get


def load(path, dtype=torch.bfloat16):
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()


def assert_same_model(got, want, what):
    g, w = got.state_dict(), want.state_dict()
    assert g.keys() == w.keys(), what
    for name, t in w.items():
        assert g[name].dtype == t.dtype and torch.equal(g[name].view(-1).view(torch.uint8),
                                                        t.view(-1).view(torch.uint8)), f"{what}: {name}"  # fmt: skip
    with torch.no_grad():
        ids = IDS % got.config.vocab_size
        assert torch.equal(got(ids).logits, want(ids).logits), f"{what}: logits"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_merge_into_equals_from_pretrained_of_the_merge(inputs, tmp_path, case, backend):
    paths = inputs(case)
    chatvec_fast.merge(**paths, out=str(tmp_path / "out"), alpha=ALPHA)
    want = load(tmp_path / "out")
    model = load(paths["cp"])
    where = {n: t.data_ptr() for n, t in model.state_dict().items()}
    report = chatvec_fast.merge_into(model, **paths, alpha=ALPHA, backend=backend, chunk_elements=1000)
    assert {n: t.data_ptr() for n, t in model.state_dict().items()} == where  # in place: no second copy
    assert_same_model(model, want, f"{case} on {backend}")
    assert report.tensors == len(report.plan.tensors) and report.outputs == [f"{type(model).__name__} (in memory)"]
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight


def test_added_tokens_need_room_and_then_match(tmp_path):
    """A chat model's added tokens make the merge's vocabulary 130 rows: cp's model (128) is refused, naming the
    tensor, the parameter and the fix; resized, it gets the rows merge writes."""
    paths = hf_triple(tmp_path / "m", variant="added")
    chatvec_fast.merge(**paths, out=str(tmp_path / "out"), alpha=ALPHA)
    model = load(paths["cp"])
    before = {n: t.clone() for n, t in model.state_dict().items()}
    with pytest.raises(chatvec_fast.ChatvecError) as info:
        chatvec_fast.merge_into(model, **paths, alpha=ALPHA)
    text = str(info.value)
    assert "model.embed_tokens.weight: merged shape (130, 32), parameter model.embed_tokens.weight takes (128, 32)" \
        in text and "resize_token_embeddings(130)" in text  # fmt: skip
    assert all(torch.equal(t, before[n]) for n, t in model.state_dict().items())  # nothing written
    model.resize_token_embeddings(130)
    chatvec_fast.merge_into(model, **paths, alpha=ALPHA)
    assert_same_model(model, load(tmp_path / "out"), "added tokens")


def test_a_model_that_does_not_pair_up_is_refused_naming_both_sides(inputs):
    paths = inputs("llama")
    other = transformers.AutoModelForCausalLM.from_config(config("llama").__class__(
        **{**config("llama").to_dict(), "num_hidden_layers": 3})).to(torch.bfloat16)  # fmt: skip
    with pytest.raises(chatvec_fast.ChatvecError) as info:
        chatvec_fast.merge_into(other, **paths, alpha=ALPHA)
    text = str(info.value)
    assert "parameter model.layers.2.mlp.up_proj.weight: no merged tensor fills it (nearest merged tensor: " \
        "model.layers.1.mlp.up_proj.weight)" in text and "nothing was written" in text  # fmt: skip
    # a tied model's merge into an untied model: lm_head.weight gets no merged tensor
    with pytest.raises(chatvec_fast.ChatvecError, match="parameter lm_head.weight: no merged tensor fills it"):
        chatvec_fast.merge_into(load(paths["cp"]), **inputs("tied"), alpha=ALPHA)


def test_dtypes_that_hold_the_merge_exactly_are_taken_others_refused(inputs, tmp_path):
    paths = inputs("llama")
    chatvec_fast.merge(**paths, out=str(tmp_path / "out"), alpha=ALPHA)
    wide = load(paths["cp"], torch.float32)  # bf16 merged values widen exactly: what from_pretrained gives too
    chatvec_fast.merge_into(wide, **paths, alpha=ALPHA)
    assert_same_model(wide, load(tmp_path / "out", torch.float32), "float32 model")
    narrow = load(paths["cp"], torch.float16)
    with pytest.raises(chatvec_fast.ChatvecError, match=r"merged BF16, parameter .* is torch.float16"):
        chatvec_fast.merge_into(narrow, **paths, alpha=ALPHA)
    chatvec_fast.merge_into(narrow, **paths, alpha=ALPHA, dtype="f16")  # computed in f16: rounded once
    chatvec_fast.merge(**paths, out=str(tmp_path / "f16"), alpha=ALPHA, dtype="f16")
    assert_same_model(narrow, load(tmp_path / "f16", torch.float16), "float16 model, dtype f16")


class _Hook:
    """What accelerate's hooks hold for a module offloaded to CPU memory: its values in weights_map."""

    def __init__(self, weights: dict):
        self.weights_map = weights


def test_any_torch_module_by_its_state_dict_names_and_offloaded_parameters(triple, tmp_path):
    paths = triple()
    want = dict(chatvec_fast.merged_tensors(**paths, alpha=ALPHA))
    model = plain_module({n: torch.zeros_like(t) for n, t in want.items()})
    offloaded = {}  # as accelerate offloads to CPU memory: the parameter on meta, its values in the hook
    for name, module in model.get_submodule("model.layers.1.self_attn").named_children():
        values = {"weight": torch.zeros_like(module.weight)}
        module._hf_hook = _Hook(values)
        module.weight = torch.nn.Parameter(torch.empty_like(values["weight"], device="meta"), requires_grad=False)
        offloaded[f"{name}.weight"] = values["weight"]
    chatvec_fast.merge_into(model, **paths, alpha=ALPHA)
    for name, t in want.items():
        prefix = "model.layers.1.self_attn."
        got = offloaded[name[len(prefix) :]] if name.startswith(prefix) else model.get_parameter(name)
        assert torch.equal(got.view(torch.int16), t.view(torch.int16)), name


def test_an_interrupted_merge_into_says_the_model_is_partly_written(triple):
    paths = triple()
    model = plain_module({n: torch.zeros_like(t) for n, t in chatvec_fast.merged_tensors(**paths)})
    calls = []

    def stop(**_):
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt

    with faults.hooked("compute", stop), pytest.raises(KeyboardInterrupt) as info:
        chatvec_fast.merge_into(model, **paths, alpha=ALPHA, chunk_elements=1000)
    if hasattr(info.value, "add_note"):  # Python 3.11+
        assert any("partly rewritten (" in n for n in info.value.__notes__), info.value.__notes__
