"""The Triton kernels compile for real GPUs, and into the code the merge's exactness needs.

The interpreter (TRITON_INTERPRET=1, every other test) never compiles: a kernel global that is a plain int, for
one, runs there and fails on every GPU. Here benchmarks/codegen.py compiles them ahead of time for sm_80 and
sm_90 in a child process with the interpreter off and a fresh cache, and checks the PTX and SASS. The default
run compiles a handful of variants; the slow run (CI) every variant the pipeline launches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import TRITON

pytestmark = pytest.mark.skipif(not TRITON, reason="triton not installed (pip install 'chatvec-fast[gpu]')")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_variants(tmp_path, *args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_CACHE_DIR")}
    out = tmp_path / "facts.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.codegen", "--json", str(out), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return json.load(open(out))


def test_the_bf16_merge_compiles_exact_and_wide(tmp_path):
    facts = compile_variants(tmp_path, "--quick")
    assert not facts["problems"], facts["problems"]
    for arch in (80, 90):
        main = facts["facts"][f"sm{arch}/merge_BF16-BF16-BF16_to_BF16_K1"]
        assert main["loads"].get("LDG.E.128") == 3 and main["stores"].get("STG.E.128") == 1, main
        assert main["DFMA"] == 0 and main["fma.rn.f64"] == 0 and main["calls"] == 0
        fused = facts["facts"][f"sm{arch}/merge_BF16-BF16-BF16_to_BF16_K1 (fusion on)"]
        assert fused["fma.rn.f64"] > 0  # the check sees a fused multiply-add when one is there
        fp8 = facts["facts"][f"sm{arch}/merge_F8_E4M3-F8_E4M3-F8_E4M3_to_BF16_K1_block_shared"]
        assert fp8["calls"] == 0 and fp8["div.s64"] == 0  # block indices without 64-bit division


@pytest.mark.slow
def test_every_launched_variant_compiles_exact_without_spills(tmp_path):
    facts = compile_variants(tmp_path)
    assert not facts["problems"], "\n".join(facts["problems"])
    assert len(facts["facts"]) >= 100  # every variant of benchmarks/codegen_variants.py, for both targets


def test_the_variants_cover_every_value_the_pipeline_launches():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from codegen_variants import variants

    from chatvec_fast.kernel_codes import DTYPE_CODES, MODE_CODES, SCALE_KIND_CODES

    merges = [v.values for v in variants() if v.kernel == "merge"]
    seen = lambda key: {m[key] for m in merges}  # noqa: E731
    inputs = {m[s] for m in merges for s in ("BASE", "CHAT", "CP")}
    assert set(DTYPE_CODES.values()) <= inputs and set(MODE_CODES.values()) == seen("MODE")
    assert {DTYPE_CODES[d] for d in ("BF16", "F16", "F32", "F64")} <= seen("OUT")
    assert {1, 2, 4, 8} <= seen("K") and {1, 2, 3, 4} <= seen("M")
    assert set(SCALE_KIND_CODES.values()) <= {m[f"S_{s}"] for m in merges for s in ("BASE", "CHAT", "CP")}
    assert {SCALE_KIND_CODES["row"], SCALE_KIND_CODES["block"]} <= seen("SHARED")
    assert {0, 1} == {m["end"] % 16 != 0 for m in merges}  # main launches and tails
    assert {"quantize"} <= {v.kernel for v in variants()}


def test_every_autotuner_configuration_is_compiled_and_checked():
    """A GPU's autotuner may pick any configuration: each must be among the variants the check compiles."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from chatvec_fast.kernels.launch import _GPU_CONFIGS
    from codegen_variants import AUTOTUNE

    assert AUTOTUNE == [(c.kwargs["BLOCK"], c.num_warps) for c in _GPU_CONFIGS]
