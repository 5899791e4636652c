"""apply with several saved vectors at once: acc = cp; acc = acc + alpha[k][m] * v_m in order, rounded once.

Every backend bit for bit against the float64 oracle, for M = 1..4 (and 16 natively) vectors of mixed dtypes
(F32, F64, BF16, F16, and FP8 with scales), K = 1 and 3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import BACKENDS, as_buffer, realistic_triple, requires_native, requires_triton
from fp8_data import chunk_operand, quantize
from test_fp8_kernel import WIDTH, check, check_each_isa

from chatvec_fast import _native
from chatvec_fast.backends import get_backend
from chatvec_fast.backends.call import KernelCall, Operand, OutScale
from chatvec_fast.backends.reference import TORCH_DTYPES
from chatvec_fast.backends.reference_call import reference_call

VECTOR_DTYPES = ["F32", "F64", "BF16", "F16", "F8_E4M3"]


def vectors_call_factory(m, k, n, out_dtype, seed, rows=None):
    """A function returning a fresh apply KernelCall: cp in bf16, vector j in VECTOR_DTYPES[(seed + j) % 5]
    (FP8 with 4 x 8 block scales), hostile values included; an F8_E4M3 output gets 4 x 8 block scales."""
    cols = 45
    rows = rows or -(-n // cols)
    g = torch.Generator().manual_seed(seed)
    base, chat, cp = realistic_triple((rows * cols,), ("F64", "F64", "BF16"), seed, hostile=True)
    vectors = []
    for j in range(m):
        dtype = VECTOR_DTYPES[(seed + j) % len(VECTOR_DTYPES)]
        v = (chat - base) * (1 + j) + torch.randn(rows * cols, generator=g, dtype=torch.float64) * 1e-4
        if dtype == "F8_E4M3":
            codes, scales = quantize(v.numpy().reshape(rows, cols), dtype, ("block", 4, 8))
            vectors.append(chunk_operand(codes, scales, dtype, ("block", 4, 8), 0, n))
        else:
            vectors.append(Operand(as_buffer(v[:n].to(TORCH_DTYPES[dtype])), dtype))
    alphas = [[0.5 * (i + 1) * (-1) ** j for j in range(m)] for i in range(k)]
    cp_op = Operand(as_buffer(cp[:n]), "BF16")

    def factory():
        outs = [np.full(n * WIDTH[out_dtype] + 3, 0xAB, np.uint8) for _ in range(k)]
        out_scale = None
        if out_dtype == "F8_E4M3":
            groups = OutScale("block", [], cols, 0, 4, 8, rows=rows).groups(n)
            out_scale = OutScale("block", [np.full(4 * groups + 4, 0xCD, np.uint8) for _ in range(k)], cols, 0, 4, 8,
                                 rows=rows)  # fmt: skip
        return KernelCall(n, "apply", outs, out_dtype, alphas, cp=cp_op, vectors=tuple(vectors), out_scale=out_scale)

    return factory


@requires_native
@pytest.mark.parametrize("m", [1, 2, 3, 4, 16])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("out_dtype", ["BF16", "F32", "F16", "F8_E4M3"])
@pytest.mark.parametrize("n", [1, 1023, 1025, 20_011, pytest.param(150_001, marks=pytest.mark.slow)])  # 3-8 s a cell
def test_native_vectors(m, k, out_dtype, n):
    if out_dtype == "F8_E4M3":
        n = n // 45 * 45 or 45  # an FP8 output chunk holds whole rows
    seed = m + 7 * k + n % 5
    factory = vectors_call_factory(m, k, n, out_dtype, seed)
    check_each_isa(factory, f"M={m} K={k} n={n} -> {out_dtype} seed={seed}")


@requires_triton
@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 3])
def test_triton_vectors(m, k):
    factory = vectors_call_factory(m, k, 4_099, "BF16", seed=m + k)
    check(get_backend("triton"), factory, f"triton M={m} K={k}")
    if m == 3:  # an FP8 output (4 x 8 blocks; 12 rows of 45)
        check(get_backend("triton"), vectors_call_factory(m, k, 540, "F8_E4M3", seed=m), f"triton M={m} K={k} fp8")


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_vectors_accumulate_in_order(backend_name):
    """The reference adds the vectors one by one, each product and sum rounded: (cp + a0 v0) + a1 v1, which
    is not cp + (a0 v0 + a1 v1) in general."""
    cp = np.array([1.0], np.float64)
    v0, v1 = np.array([2.0**-53], np.float64), np.array([2.0**-53], np.float64)
    call = KernelCall(1, "apply", [np.zeros(8, np.uint8)], "F64", [[1.0, 1.0]], cp=Operand(cp.view(np.uint8), "F64"),
                      vectors=(Operand(v0.view(np.uint8), "F64"), Operand(v1.view(np.uint8), "F64")))  # fmt: skip
    (result,), _, _ = reference_call(call)
    assert result.item() == 1.0  # each addition of 2^-53 to 1.0 is a tie that rounds to even
    for name in ["torch"] + (["native"] if _native.available else []):
        out = np.zeros(8, np.uint8)
        get_backend(name).compute(KernelCall(1, "apply", [out], "F64", [[1.0, 1.0]], cp=call.cp, vectors=call.vectors))
        assert out.view(np.float64)[0] == 1.0, name


def too_many(m: int) -> KernelCall:
    v = Operand(np.zeros(16, np.uint8), "F32")
    return KernelCall(4, "apply", [np.zeros(16, np.uint8)], "F32", [[1.0] * m], cp=v, vectors=(v,) * m)


@requires_triton
def test_more_vectors_than_triton_takes_are_refused_with_the_limit():
    with pytest.raises(ValueError, match="1 to 4 on the triton backend"):
        get_backend("triton").compute(too_many(5))


@requires_native
def test_more_vectors_than_native_takes_are_refused_with_the_limit():
    get_backend("native").compute(too_many(5))  # 5 is fine natively
    with pytest.raises(ValueError, match="1 to 16"):
        get_backend("native").compute(too_many(17))
