"""The Triton kernel and backend: bit-identical to the native kernel (under TRITON_INTERPRET=1 on a CPU)."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_bits_equal, realistic_triple, tensor_call
from test_kernel import dtype_mixes, run_backend

from chatvec_fast import _native, merge
from chatvec_fast.backends import get_backend
from chatvec_fast.backends.reference import TORCH_DTYPES, merge_reference

triton = pytest.importorskip("triton", reason="triton not installed (pip install 'chatvec-fast[gpu]')")

DTYPES = ("BF16", "F16", "F32")
# The interpreter runs ~0.2 M elements/s: the native grid's shapes up to 100k elements.
SHAPES = [(), (0,), (1,), (7,), (17,), (1023,), (1025,), (3, 333), (100_003,)]


def oracle(name):
    """The backend the Triton results must equal bit for bit: native where built, else the reference."""
    return get_backend("native" if _native.available else "torch")


@pytest.mark.parametrize("mix", dtype_mixes(), ids="-".join)
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
def test_triton_grid_matches_native(mix, out_dtype, k):
    tri = get_backend("triton")
    alphas = [0.7] if k == 1 else [0.5, -1.0, 2.5]
    for shape in SHAPES:
        base, chat, cp = realistic_triple(shape, mix, seed=len(shape) + k, hostile=shape == (1025,))
        got = run_backend(tri, base, chat, cp, alphas, out_dtype)
        want = run_backend(oracle("native"), base, chat, cp, alphas, out_dtype)
        ref = merge_reference(base, chat, cp, alphas, TORCH_DTYPES[out_dtype])
        for g, w, r in zip(got, want, ref):
            assert_bits_equal(g, w, f"triton vs native {mix}->{out_dtype} {shape}")
            assert_bits_equal(g, r, f"triton vs reference {mix}->{out_dtype} {shape}")


@pytest.mark.parametrize("out_dtype", ["BF16", "F16", "F32", "F64"])
def test_triton_extract_apply_convert(out_dtype):
    tri, nat = get_backend("triton"), oracle("native")
    base, chat, cp = realistic_triple((20_011,), ("BF16", "F32", "F16"), seed=3, hostile=True)
    calls = {name: tensor_call(base, chat, None, [1.0], out_dtype) for name in ("tri", "nat")}
    counts = {name: backend.compute(calls[name]) for name, backend in (("tri", tri), ("nat", nat))}
    assert np.array_equal(calls["tri"].outs[0], calls["nat"].outs[0]) and counts["tri"] == counts["nat"]
    vector = merge_reference(base, chat, None, [1.0], TORCH_DTYPES[out_dtype])[0]
    for g, w in zip(
        run_backend(tri, None, vector, cp, [0.5, 2.0], "BF16"), run_backend(nat, None, vector, cp, [0.5, 2.0], "BF16")
    ):
        assert_bits_equal(g, w, f"apply {out_dtype} vector")
    assert_bits_equal(
        run_backend(tri, None, None, cp, [0.0], out_dtype)[0],
        run_backend(nat, None, None, cp, [0.0], out_dtype)[0],
        "convert",
    )


def same_dir(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch


@pytest.mark.parametrize("devices", [None, "cpu,cpu"], ids=["one-device", "two-devices"])
def test_pipeline_with_triton_equals_native(triple, tmp_path, devices):
    """The streaming pipeline (buffer sets, events, async hand-off) with the CPU standing in for the GPU."""
    paths = triple(cp_vocab=600)
    args = (paths["base"], paths["chat"], paths["cp"])
    merge(*args, str(tmp_path / "native"), 0.7, backend="native" if _native.available else "torch")
    merge(*args, str(tmp_path / "triton"), 0.7, backend="triton", devices=devices, chunk_elements=4096)
    same_dir(tmp_path / "native", tmp_path / "triton")


def test_gpu_memory_budget_is_enforced(triple, tmp_path):
    paths = triple()
    with pytest.raises(ValueError, match="--gpu-memory"):
        merge(paths["base"], paths["chat"], paths["cp"], str(tmp_path / "o"), backend="triton", gpu_memory="1MB")


def test_import_without_triton_or_cuda_works():
    """`import chatvec_fast` and a native merge in a process where importing triton fails."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import chatvec_fast, chatvec_fast.backends as b\n"
        "assert 'torch' not in sys.modules\n"
        "print(b.get_backend('auto').name)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("native", "torch")
    code = (
        "import sys; sys.modules['triton'] = None\nfrom chatvec_fast.backends import get_backend\nget_backend('triton')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "needs triton" in r.stderr
