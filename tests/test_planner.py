"""Pairing and policies, from headers alone."""

from __future__ import annotations

import pytest

from chatvec_fast.errors import PlanError
from chatvec_fast.job import Job
from chatvec_fast.plan.pairing import make_plan
from chatvec_fast.plan.types import (
    COPY_NOT_FLOAT,
    COPY_ONLY_IN_CP,
    COPY_SKIPPED,
    COPY_VOCAB_SKIPPED,
    MERGE,
    SHARED_ROWS,
)
from chatvec_fast.read.checkpoint import Checkpoint
from chatvec_fast.read.header import SafetensorsHeader, TensorInfo
from chatvec_fast.settings import Settings


def ckpt(spec: dict, files=1, vocab=None) -> Checkpoint:
    """A Checkpoint from {name: (dtype, shape)}, split over `files` shard files."""
    names = list(spec)
    headers, tensors = [], {}
    per = -(-len(names) // files)
    for f in range(files):
        h = SafetensorsHeader(f"/m/model-{f + 1:05d}-of-{files:05d}.safetensors", 0, 8, {})
        offset = 8
        for name in names[f * per : (f + 1) * per]:
            dtype, shape = spec[name]
            n = 1
            for d in shape:
                n *= d
            size = n * {"BF16": 2, "F16": 2, "F32": 4, "I64": 8}[dtype]
            info = TensorInfo(name, dtype, tuple(shape), h.path, offset, size)
            h.tensors[name] = tensors[name] = info
            offset += size
        headers.append(h)
    return Checkpoint("/m", headers, tensors, {"vocab_size": vocab} if vocab else {})


LLAMA = {
    "model.embed_tokens.weight": ("BF16", (100, 8)),
    "model.layers.0.self_attn.q_proj.weight": ("BF16", (8, 8)),
    "model.layers.0.mlp.up_proj.weight": ("BF16", (16, 8)),
    "model.norm.weight": ("F32", (8,)),
    "lm_head.weight": ("BF16", (100, 8)),
}


def plan_of(base, chat, cp, **options):
    """The plan for merge's options as a user gives them (checked and parsed by Job.build)."""
    job = Job.build("merge", {}, "out", [1.0], Settings.build("merge", options), sweep=False)
    return make_plan(base, chat, cp, job.options)


def policies(plan):
    return {t.name: t.policy for t in plan.tensors}


def test_plain_merge_mirrors_cp_shards():
    plan = plan_of(ckpt(LLAMA), ckpt(LLAMA, files=3), ckpt(LLAMA, files=2))
    assert set(policies(plan).values()) == {MERGE}
    assert [s.filename for s in plan.shards] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert not plan.single_file
    assert plan.write_nbytes == sum(t.nbytes for t in ckpt(LLAMA).tensors.values())


def test_single_file_cp_gives_single_file_output():
    plan = plan_of(ckpt(LLAMA, files=2), ckpt(LLAMA), ckpt(LLAMA))
    assert plan.single_file and [s.filename for s in plan.shards] == ["model.safetensors"]


@pytest.mark.parametrize("policy,want", [("shared-rows", SHARED_ROWS), ("skip", COPY_VOCAB_SKIPPED)])
def test_expanded_vocabulary(policy, want):
    cp = dict(LLAMA, **{"model.embed_tokens.weight": ("BF16", (130, 8)), "lm_head.weight": ("BF16", (130, 8))})
    plan = plan_of(ckpt(LLAMA, vocab=100), ckpt(LLAMA, vocab=100), ckpt(cp, vocab=130), vocab_mismatch=policy)
    p = policies(plan)
    assert p["model.embed_tokens.weight"] == p["lm_head.weight"] == want
    embed = next(t for t in plan.tensors if t.name == "model.embed_tokens.weight")
    assert embed.merged_elements == (100 * 8 if want == SHARED_ROWS else 0)


def test_expanded_vocabulary_error_policy_names_tensors():
    cp = dict(LLAMA, **{"model.embed_tokens.weight": ("BF16", (130, 8))})
    with pytest.raises(PlanError, match=r"model\.embed_tokens\.weight.*130 rows.*100"):
        plan_of(ckpt(LLAMA), ckpt(LLAMA), ckpt(cp), vocab_mismatch="error")


def test_row_growth_outside_the_vocabulary_is_a_shape_error():
    cp = dict(LLAMA, **{"model.layers.0.mlp.up_proj.weight": ("BF16", (20, 8))})
    with pytest.raises(PlanError, match=r"up_proj.*shape"):
        plan_of(ckpt(LLAMA), ckpt(LLAMA), ckpt(cp))


def test_skip_only_in_cp_dropped_and_not_float():
    cp = dict(LLAMA, **{"extra.adapter": ("BF16", (4,)), "rotary.inv_freq": ("I64", (4,))})
    base = dict(LLAMA, **{"rotary.inv_freq": ("I64", (4,)), "gone.weight": ("BF16", (2,))})
    plan = plan_of(ckpt(base), ckpt(base), ckpt(cp), skip=(r"norm",))
    p = policies(plan)
    assert p["model.norm.weight"] == COPY_SKIPPED
    assert p["extra.adapter"] == COPY_ONLY_IN_CP
    assert p["rotary.inv_freq"] == COPY_NOT_FLOAT
    assert plan.dropped == ["gone.weight"]
    assert "left out" in plan.describe()


def test_only_in_one_of_base_and_chat_is_an_error_with_a_fix():
    chat = {k: v for k, v in LLAMA.items() if "up_proj" not in k}
    with pytest.raises(PlanError) as info:
        plan_of(ckpt(LLAMA), ckpt(chat), ckpt(LLAMA))
    msg = str(info.value)
    assert "model.layers.0.mlp.up_proj.weight: in base and cp, missing from chat" in msg and "--skip" in msg


def test_error_lists_first_names_and_counts_the_rest():
    many = {f"layer.{i}.weight": ("BF16", (4,)) for i in range(12)}
    chat = {f"layer.{i}.weight": ("BF16", (5,)) for i in range(12)}
    with pytest.raises(PlanError, match=r"12 tensors whose shapes differ(.|\n)*and 7 more"):
        plan_of(ckpt(many), ckpt(chat), ckpt(many))


def test_tied_embeddings():
    tied = {k: v for k, v in LLAMA.items() if k != "lm_head.weight"}
    plan = plan_of(ckpt(tied), ckpt(tied), ckpt(tied))
    assert "lm_head.weight" not in policies(plan)
    untied_cp = plan_of(ckpt(tied), ckpt(tied), ckpt(LLAMA))
    assert policies(untied_cp)["lm_head.weight"] == COPY_ONLY_IN_CP
    assert any("tie" in n for n in untied_cp.notes)


def test_mixed_dtypes_and_dtype_option():
    chat = dict(LLAMA, **{"model.layers.0.self_attn.q_proj.weight": ("F32", (8, 8))})
    plan = plan_of(ckpt(LLAMA), ckpt(chat), ckpt(LLAMA), dtype="f16")
    assert {t.out_dtype for t in plan.tensors} == {"F16"}
    assert set(policies(plan).values()) == {MERGE}
    keep = plan_of(ckpt(LLAMA), ckpt(chat), ckpt(LLAMA))
    assert {t.name: t.out_dtype for t in keep.tensors}["model.norm.weight"] == "F32"


def test_max_shard_size_packs_in_order():
    plan = plan_of(ckpt(LLAMA), ckpt(LLAMA), ckpt(LLAMA, files=2), max_shard_size=1700)
    sizes = [s.data_nbytes for s in plan.shards]
    assert all(size <= 1700 or len(s.tensors) == 1 for size, s in zip(sizes, plan.shards))
    assert [t.name for t in plan.tensors] == list(LLAMA)
    assert plan.shards[0].filename == f"model-00001-of-{len(plan.shards):05d}.safetensors"
