"""Merged weights into memory under pytest-benchmark: merge_into a resident transformers model, and a held
switch, per alpha; bench_memory.py alternates them with the disk route and the floors for the README.

extra_info records GB/s of (3 inputs read + the model written) and whether the result equals the merge's
files bit for bit.
"""

from __future__ import annotations

import os

import pytest
from conftest import ROUNDS, SMOKE

transformers = pytest.importorskip("transformers")

ALPHA = 0.5


@pytest.fixture(scope="module")
def resident(tmp_path_factory):
    """(input paths, a model loaded from cp and merged into once, the merge's files as tensors)."""
    import torch
    from safetensors.torch import load_file

    import chatvec_fast

    if SMOKE:
        from chatvec_fast.testing.synthetic import make_triple

        paths = make_triple(str(tmp_path_factory.mktemp("bench-models")), "tiny", shard_bytes=60_000)
    else:
        from common import models

        paths = models(os.environ.get("CHATVEC_BENCH_SIZE", "1b"))
    model = transformers.AutoModelForCausalLM.from_pretrained(paths["cp"], dtype=torch.bfloat16)
    chatvec_fast.merge_into(model, **paths, alpha=0.0)  # the model's pages its own (from_pretrained maps files)
    out = str(tmp_path_factory.mktemp("bench-merged") / "out")
    chatvec_fast.merge(**paths, out=out, alpha=ALPHA)
    want = {}
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors"):
            want.update(load_file(os.path.join(out, f)))
    return paths, model, want


def _record(benchmark, model, want):
    import torch

    state = model.state_dict()
    moved = 4 * sum(t.nbytes for t in want.values())
    exact = all(torch.equal(state[n].view(torch.int16), t.view(torch.int16)) for n, t in want.items())
    benchmark.extra_info.update({"gbps": moved / benchmark.stats.stats.median / 1e9, "bit_identical": exact})
    assert exact


def test_merge_into_a_resident_model(benchmark, resident):
    import chatvec_fast

    paths, model, want = resident
    benchmark.pedantic(lambda: chatvec_fast.merge_into(model, **paths, alpha=ALPHA), rounds=ROUNDS, iterations=1)
    _record(benchmark, model, want)


def test_held_switch(benchmark, resident):
    import chatvec_fast

    paths, model, want = resident
    with chatvec_fast.HeldMerge(**paths) as held:
        held.apply(model, 0.0)  # loads the inputs once
        benchmark.pedantic(lambda: held.switch(ALPHA), rounds=ROUNDS, iterations=1)
        assert held.alpha == ALPHA
    _record(benchmark, model, want)
