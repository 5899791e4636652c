"""The triton backend in the pipeline: buffer sets, events and the asynchronous hand-off give the native files
(under TRITON_INTERPRET=1 on a CPU). The kernel itself is in the grids of tests/test_kernel.py,
test_fp8_kernel.py and test_apply_vectors.py, against the float64 oracle like every backend."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

import pytest

from chatvec_fast import _native, merge

triton = pytest.importorskip("triton", reason="triton not installed (pip install 'chatvec-fast[gpu]')")


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
