"""What the CUDA kernel compiles to (benchmarks/codegen_cuda.py reads the built extension's cubins for sm_80 and
sm_90): no DFMA outside the IEEE divisions of FP8 re-quantization, no fused multiply-add in the PTX, nothing
flushed to zero, no spills or stack in the kernels every ordinary call takes, 16-byte loads and stores on the
vectorised merge. Needs the extension (nvcc at install) and cuobjdump/nvdisasm (the CUDA toolkit's, or the
triton wheel's); no GPU."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("chatvec_fast._cuda") is None:
    pytest.skip("chatvec_fast._cuda not built (no nvcc at install)", allow_module_level=True)

from benchmarks import codegen_cuda  # noqa: E402


@pytest.fixture(scope="module")
def facts():
    try:
        tools = codegen_cuda.tools()
    except Exception as exc:  # noqa: BLE001 - no toolkit tools and no triton wheel
        pytest.skip(f"no cuobjdump/nvdisasm: {exc}")
    assert all(tools.values()), tools
    import chatvec_fast._cuda as ext

    return codegen_cuda.analyze(ext.__file__)


def test_both_architectures_and_every_kernel_are_there(facts):
    assert sorted(facts) == ["sm_80", "sm_90"]
    for kernels in facts.values():
        # 6 input dtypes x 4 outputs vectorised, 3 passes x 2 index widths, the group scales
        assert sum(k.startswith("merge_vec") for k in kernels) == 24
        assert sum(k.startswith("merge_any") for k in kernels) == 6 and "group_scales" in kernels


def test_no_codegen_problems(facts):
    assert codegen_cuda.check(facts) == []


def test_the_bf16_merge_moves_16_bytes_a_load_and_a_store(facts):
    for arch in facts:
        f = facts[arch]["merge_vec bf16->bf16"]
        assert f["loads"].get("LDG.E.128.CONSTANT") == 3 and f["stores"].get("STG.E.128") == 1, (arch, f)
        assert f["DFMA"] == 0 and f["ftz"] == 0 and f["fp64"] > 0, (arch, f)


def test_the_check_catches_what_it_looks_for(facts):
    """The checks fail on a DFMA, a flushed operation, a spill and a narrow load (so they can fail)."""
    base = facts["sm_90"]["merge_vec bf16->bf16"]
    bad = {"DFMA": 1, "ftz": 1, "spill_stores": 1, "loads": {"LDG.E.U16": 3}}
    found = codegen_cuda.check({"sm_90": {"merge_vec bf16->bf16": {**base, **bad}}})
    assert len(found) == 4, found
