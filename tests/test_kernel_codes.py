"""One source for the kernels' numbers: chatvec_fast/kernel_codes.py. The C++ enums (through the tables _C
exports), the Triton kernels' constants and the Python modules that name codes all equal it."""

from __future__ import annotations

import pytest
from conftest import requires_native

from chatvec_fast import _native, alphas, dtypes, kernel_codes
from chatvec_fast.backends import call
from chatvec_fast.backends import cuda as cuda_backend


@requires_native
def test_the_native_enums_equal_the_python_codes():
    c = _native.module
    assert dict(c.DTYPE_CODES) == kernel_codes.DTYPE_CODES  # csrc/dtype_convert.h DType
    assert dict(c.MODE_CODES) == kernel_codes.MODE_CODES  # csrc/kernel_call.h Mode
    assert dict(c.SCALE_KIND_CODES) == kernel_codes.SCALE_KIND_CODES  # csrc/kernel_call.h ScaleKind
    assert c.NO_SCALE == kernel_codes.NO_SCALE
    assert c.MAX_VECTORS == kernel_codes.MAX_VECTORS  # csrc/kernel_call.h kMaxVectors


def test_python_modules_take_the_codes_from_the_one_source():
    assert dtypes.KERNEL_CODES is kernel_codes.DTYPE_CODES
    assert call.MODES is kernel_codes.MODE_CODES and call.SCALE_KINDS is kernel_codes.SCALE_KIND_CODES
    assert call.MAX_VECTORS == alphas.MAX_APPLY_VECTORS == kernel_codes.MAX_VECTORS
    # the cuda backend packs codes for chatvec_fast._cuda, whose C++ side includes the native enums
    assert cuda_backend.MODES is kernel_codes.MODE_CODES and cuda_backend.KERNEL_CODES is kernel_codes.DTYPE_CODES
    assert cuda_backend.SCALE_KINDS is kernel_codes.SCALE_KIND_CODES and cuda_backend.NO_SCALE == kernel_codes.NO_SCALE


def test_the_triton_constants_equal_the_python_codes():
    pytest.importorskip("triton", reason="triton not installed (pip install 'chatvec-fast[gpu]')")
    from chatvec_fast.kernels import convert, launch, merge

    from chatvec_fast.backends.triton import TritonBackend

    for name, code in kernel_codes.DTYPE_CODES.items():
        assert getattr(convert, name).value == code, name
    for name, code in kernel_codes.MODE_CODES.items():
        assert getattr(merge, name.upper()).value == code, name
    kinds = {"tensor": merge.TENSOR, "row": merge.ROW, "block": merge.BLOCK_SCALE}
    assert {name: k.value for name, k in kinds.items()} == kernel_codes.SCALE_KIND_CODES
    assert merge.NONE.value == kernel_codes.NO_SCALE
    assert launch.MODES == kernel_codes.MODE_CODES
    assert launch.F64 == kernel_codes.DTYPE_CODES["F64"] and launch.F8_E4M3 == kernel_codes.DTYPE_CODES["F8_E4M3"]
    assert set(launch.BITS_DTYPE) == set(kernel_codes.DTYPE_CODES.values())
    assert len(launch.SLOTS) - 2 == kernel_codes.MAX_TRITON_VECTORS  # base and cp, then one slot per vector
    assert TritonBackend.max_vectors == kernel_codes.MAX_TRITON_VECTORS


def test_every_global_a_triton_kernel_reads_is_a_constexpr_object():
    """A GPU compile refuses a plain int global ("Cannot access global variable X from within @jit'ed
    function"; `X: tl.constexpr = 3` at module level is a plain int). The interpreter accepts it, so the CPU
    tests would not notice: check the kernels' globals here."""
    pytest.importorskip("triton", reason="triton not installed (pip install 'chatvec-fast[gpu]')")
    import triton
    import triton.language as tl
    from chatvec_fast.kernels import convert, merge, quantize

    bad = []
    for module in (convert, merge, quantize):
        for name, fn in vars(module).items():
            if not isinstance(fn, triton.runtime.JITFunction):
                continue
            for used in fn.fn.__code__.co_names:
                value = vars(module).get(used)
                if isinstance(value, (bool, int, float)) and not isinstance(value, tl.constexpr):
                    bad.append(f"{module.__name__}.{name} reads {used} = {value!r}")
    assert not bad, "globals of @triton.jit functions must be tl.constexpr(...) objects:\n" + "\n".join(bad)
