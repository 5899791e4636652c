"""inspect's block sums (inspection/sums.py) in the native kernel (csrc/block_sums.cpp) against exact sums,
against the numpy fallback, and on every element type the reader hands over."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import stable_seed

from chatvec_fast import _native
from chatvec_fast.inspection import sums as sums_module
from chatvec_fast.inspection.sums import BLOCK, SUMS, TensorSums, native_block_sums

pytestmark = pytest.mark.skipif(native_block_sums() is None, reason="the native module is not built")

# numpy's element types for each of the reader's dtypes (bf16: uint16 bit patterns)
STORED = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


def stored(values: np.ndarray, dtype: str) -> np.ndarray:
    """values rounded to dtype, as the reader hands them over (bf16 as its bit patterns)."""
    t = torch.from_numpy(values).to(STORED[dtype])
    return t.view(torch.uint16).numpy() if dtype == "BF16" else t.numpy()


def triple(n: int, dtype: str, seed) -> list[np.ndarray]:
    rng = np.random.default_rng(stable_seed(seed))
    base = rng.standard_normal(n) * 0.02
    return [stored(base + rng.standard_normal(n) * s, dtype) for s in (0.0, 0.001, 0.004)]


def exact(values: list[np.ndarray]) -> dict[str, float]:
    """math.fsum of the float64 products: the sums correctly rounded, as far as the products are exact (they
    are for bf16, f16 and f32 inputs; f64 products are rounded here as in the kernel)."""
    b, c, p = (sums_module.widen(v) for v in values)
    d, e = c - b, p - b
    out = {}
    for key, (x, y) in zip(SUMS, ((b, b), (d, d), (e, e), (d, e))):
        out[key] = math.fsum((x * y).tolist())
    return out


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32", "F64"])
@pytest.mark.parametrize("n", [1, 3, 4, 5, BLOCK - 1, BLOCK + 7, 3 * BLOCK + 1])
def test_native_sums_are_the_exact_sums_to_an_ulp(dtype, n):
    values = triple(n, dtype, (dtype, n))
    got = TensorSums(with_cp=True, native=True)
    got.add(*values)
    got = got.finish()
    want = exact(values)
    fallback = TensorSums(with_cp=True, native=False)
    fallback.add(*values)
    fallback = fallback.finish()
    for key in SUMS:
        assert abs(got[key] - want[key]) <= 2 * math.ulp(want[key]), (key, got[key], want[key])
        assert fallback[key] == pytest.approx(want[key], rel=1e-13), key  # numpy's pairwise: a few ulps


def test_native_sums_of_each_element_type_equal_those_of_its_float64_values():
    """Widening is exact, so summing the stored elements and summing their float64 values is the same sum,
    bit for bit; mixed types across roles too (a bf16 base with an f32 cp)."""
    n = 2 * BLOCK + 333
    for dtypes in (("BF16",) * 3, ("F16",) * 3, ("F32",) * 3, ("BF16", "F32", "F16")):
        values = [triple(n, d, ("mixed", i))[i] for i, d in enumerate(dtypes)]
        stored_sums, wide_sums = TensorSums(True, native=True), TensorSums(True, native=True)
        stored_sums.add(*values)
        wide_sums.add(*(sums_module.widen(v) for v in values))
        assert stored_sums.finish() == wide_sums.finish(), dtypes


@pytest.mark.parametrize("chunks", [(65536,), (1, 65535, 65536), (7, 100_000, 1), (131_073,)])
def test_native_sums_do_not_depend_on_the_chunks(chunks):
    values = triple(250_001, "BF16", chunks)
    whole = TensorSums(with_cp=True, native=True)
    whole.add(*values)
    want = whole.finish()
    got = TensorSums(with_cp=True, native=True)
    pos, i = 0, 0
    while pos < len(values[0]):
        n = chunks[i % len(chunks)]
        got.add(*(v[pos : pos + n] for v in values))
        pos, i = pos + n, i + 1
    assert got.finish() == want


def test_native_without_cp_two_sums():
    values = triple(BLOCK + 5, "BF16", "no-cp")[:2]
    got = TensorSums(with_cp=False, native=True)
    got.add(*values)
    want = exact([*values, values[0]])
    assert list(got.finish()) == ["base.base", "delta.delta"]
    for key, value in got.finish().items():
        assert abs(value - want[key]) <= 2 * math.ulp(want[key])


def test_native_nan_and_inf_sum_as_ieee_addition_does():
    base, chat, cp = (sums_module.widen(v).copy() for v in triple(1000, "F64", "ieee"))
    chat[17] = math.inf
    got = TensorSums(True, native=True)
    got.add(base, chat, cp)
    s = got.finish()
    assert s["delta.delta"] == math.inf and s["delta.cp_delta"] in (math.inf, -math.inf)
    assert math.isfinite(s["base.base"]) and got.non_finite == {"base": 0, "chat": 1, "cp": 0}
    chat[18] = math.nan
    got = TensorSums(True, native=True)
    got.add(base, chat, cp)
    assert math.isnan(got.finish()["delta.delta"]) and got.non_finite["chat"] == 2


def test_the_native_binding_checks_its_buffers():
    kernel = _native.module.block_sums
    a = np.ones(10, np.float32)
    out = np.empty((1, 4))
    with pytest.raises(ValueError, match="base: buffer holds 40 bytes, the kernel needs 80"):
        kernel(10, BLOCK, a, "F64", a, "F32", a, "F32", out)
    with pytest.raises(ValueError, match="chat: dtype 'F8_E4M3'; expected F32, F16, BF16 or F64"):
        kernel(10, BLOCK, a, "F32", a, "F8_E4M3", a, "F32", out)
    with pytest.raises(ValueError, match="out: buffer holds 16 bytes, the kernel needs 32"):
        kernel(10, BLOCK, a, "F32", a, "F32", a, "F32", np.empty(2))
    with pytest.raises(ValueError, match="out: the kernel writes this buffer, but it is read-only"):
        kernel(10, BLOCK, a, "F32", a, "F32", a, "F32", np.frombuffer(bytes(32)))
    with pytest.raises(ValueError, match="n must be >= 0 and block >= 1"):
        kernel(10, 0, a, "F32", a, "F32", a, "F32", out)


def test_inspect_of_a_bf16_triple_does_not_import_torch(tmp_path):
    """Plain dtypes are summed from their bytes: torch (1.4 s to import here, a third of a 1.1B inspect's
    time) is loaded only for FP8 inputs."""
    import subprocess
    import sys

    from chatvec_fast.testing.synthetic import make_triple

    paths = make_triple(str(tmp_path / "m"), "tiny")
    code = (
        "import sys, chatvec_fast\n"
        f"r = chatvec_fast.inspect_vector({paths['base']!r}, {paths['chat']!r}, {paths['cp']!r})\n"
        "print(len(r.tensors), 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split()[-1] == "False", r.stdout + r.stderr
