"""Kernel-level benchmarks on in-memory bf16 buffers: GB/s of (3 inputs read + K outputs written).

Contenders: the native backend, the float64 oracle (4M-element chunks; exact), the torch-fp32 backend
(float32 math, one cast at the end) and naive bf16 torch ops, for K = 1 and K = 4 alphas; the backends
through their one contract, compute(KernelCall). Triton runs
only as a correctness smoke under the interpreter: its time on a CPU means nothing.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch
from conftest import ROUNDS, SMOKE

from chatvec_fast import _native
from chatvec_fast.backends import get_backend
from chatvec_fast.testing.calls import oracle_outputs, tensor_call

ELEMENTS = [1 << 20] if SMOKE else [16 << 20, 64 << 20, 256 << 20]
ALPHAS = [0.25, 0.5, 0.75, 1.0]
CHUNK = 1 << 22
_buffers: dict[int, tuple] = {}
FP32_OUTS: dict[int, list] = {}  # torch-fp32's own outputs, so that its result is not the native one's


def buffers(n: int):
    """bf16 base ~ N(0, 0.02), chat and cp = base + N(0, 0.002); generated in chunks, cached per size."""
    if n not in _buffers:
        _buffers.clear()
        g = torch.Generator().manual_seed(n)
        base, chat, cp = (torch.empty(n, dtype=torch.bfloat16) for _ in range(3))
        for s in range(0, n, 1 << 24):
            e = min(n, s + (1 << 24))
            b = torch.randn(e - s, generator=g) * 0.02
            base[s:e] = b
            chat[s:e] = b + torch.randn(e - s, generator=g) * 0.002
            cp[s:e] = b + torch.randn(e - s, generator=g) * 0.002
        outs = [np.empty(2 * n, np.uint8) for _ in ALPHAS]
        _buffers[n] = (base, chat, cp, outs)
    return _buffers[n]


def as_np(t):
    return t.view(torch.int16).numpy().view(np.uint8)


def contender(name: str, n: int, k: int):
    base, chat, cp, outs = buffers(n)
    alphas = ALPHAS[:k]
    if name == "native":  # the backend contract: one KernelCall
        call = tensor_call(base, chat, cp, alphas, "BF16", outs=outs)
        return lambda: get_backend("native").compute(call)
    if name == "torch float64 reference":
        calls = [tensor_call(base[s:e], chat[s:e], cp[s:e], alphas, "BF16") for s, e in chunks(n)]

        def reference():
            for (s, e), call in zip(chunks(n), calls):
                for j, r in enumerate(oracle_outputs(call, (e - s,))):
                    outs[j][2 * s : 2 * e] = as_np(r)

        return reference
    if name == "torch float32 math":
        fp32_outs = FP32_OUTS.setdefault(n, [np.empty(2 * n, np.uint8) for _ in ALPHAS])
        call = tensor_call(base, chat, cp, alphas, "BF16", outs=fp32_outs)
        return lambda: get_backend("torch-fp32").compute(call)
    if name == "naive torch bf16 ops":
        return lambda: [cp + a * (chat - base) for a in alphas]
    raise ValueError(name)


def chunks(n: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]


def result_of(name: str, n: int, k: int) -> torch.Tensor:
    """The first output's first 4M elements, for the exactness check."""
    base, chat, cp, outs = buffers(n)
    m = min(n, CHUNK)
    if name in ("native", "torch float64 reference"):
        return torch.from_numpy(outs[0][: 2 * m]).view(torch.bfloat16)
    if name == "torch float32 math":
        return torch.from_numpy(FP32_OUTS[n][0][: 2 * m]).view(torch.bfloat16)
    return cp[:m] + ALPHAS[0] * (chat[:m] - base[:m])


@pytest.mark.parametrize("n", ELEMENTS, ids=lambda n: f"{n >> 20}M")
@pytest.mark.parametrize("k", [1, 4], ids=lambda k: f"K{k}")
@pytest.mark.parametrize("name", ["native", "torch float64 reference", "torch float32 math", "naive torch bf16 ops"])
def test_kernel(benchmark, name, k, n):
    if name == "native" and not _native.available:
        pytest.skip("native module not built")
    if name == "torch float64 reference" and n > (64 << 20):
        pytest.skip("the float64 reference takes 10+ s a call above 64M elements; measured at 16M and 64M")
    fn = contender(name, n, k)
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=0 if SMOKE else 1)
    seconds = benchmark.stats.stats.median
    base, chat, cp, _ = buffers(n)
    m = min(n, CHUNK)
    want = oracle_outputs(tensor_call(base[:m], chat[:m], cp[:m], ALPHAS[:1], "BF16"), (m,))[0]
    exact = (result_of(name, n, k).view(torch.int16) == want.view(torch.int16)).double().mean().item()
    benchmark.extra_info.update(
        gbps=(3 + k) * 2 * n / seconds / 1e9,
        exact_share=exact,
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        isa=_native.module.active_isa() if _native.available else None,
    )
    if name in ("native", "torch float64 reference"):
        assert exact == 1.0, f"{name} is not bit-identical to the float64 reference"


def test_triton_interpreter_smoke(benchmark):
    """Correctness only: the Triton kernel (interpreter on a CPU) against the native kernel."""
    pytest.importorskip("triton")
    import os

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU, and TRITON_INTERPRET=1 was not set before triton was imported")
    n = 50_000
    base, chat, cp, _ = buffers(1 << 20)
    tri = get_backend("triton")
    call = tensor_call(base[:n], chat[:n], cp[:n], [0.5], "BF16")
    benchmark.pedantic(lambda: tri.compute(call), rounds=1, iterations=1)
    want = oracle_outputs(call, (n,))[0]
    assert torch.equal(torch.from_numpy(call.outs[0]).view(torch.int16), want.view(torch.int16))
    benchmark.extra_info["note"] = "interpreter: the time is not a measurement"
