"""Kernel-level benchmark on in-memory buffers (no I/O): GB/s of 3 inputs read + K outputs written.

Contenders on the same bf16 buffers, in one process, alternating: the native
backend through its one contract, NativeBackend.compute(KernelCall) (K = 1 and
K = 4 alphas), the float64 oracle (chunked), and the naive bf16 torch
expression (each op rounded; not correctly rounded).

    python benchmarks/bench_kernel.py --elements 268435456 --reps 5

--per-call reports what one call costs where the pipeline makes it: median
microseconds per NativeBackend.compute(call) at the pipeline's chunk size (1M
elements) and at 64K elements (where the call's own cost shows), 2 threads, K
= 1; beside it the bare _C.run(call) (the same call, no validate()).

    python benchmarks/bench_kernel.py --per-call [--json per_call.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PER_CALL_SIZES = {"1M (pipeline chunk)": 1 << 20, "64K": 1 << 16}
PER_CALL_CALLS = {1 << 20: 400, 1 << 16: 4000}  # ~0.25 s of calls each, to median over


def bf16_buffers(n: int, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    base = None
    for i in range(3):
        t = torch.empty(n, dtype=torch.bfloat16)
        step = 1 << 24
        for s in range(0, n, step):  # chunked, so generating 256M elements needs no float32 copy of it all
            part = torch.randn(min(step, n - s), generator=g) * (0.02 if i == 0 else 0.002)
            t[s : s + step] = part if i == 0 else (base[s : s + step].float() + part)
        base = t if i == 0 else base
        out.append(t)
    return out


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy().view(np.uint8)


def time_it(fn, reps: int) -> float:
    fn()  # warm up (first touch of outputs, thread pool start)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_call_seconds(fn, calls: int) -> float:
    """Median seconds of one fn() over `calls` timed calls, after 10 untimed ones."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_call(threads: int) -> dict:
    """Median microseconds per call, K = 1 bf16 merge, at each of PER_CALL_SIZES."""
    from chatvec_fast.backends.native import NativeBackend
    from chatvec_fast.testing.calls import tensor_call

    backend = NativeBackend(threads)
    base, chat, cp = bf16_buffers(max(PER_CALL_SIZES.values()), seed=1)
    results = {}
    print(f"per call, K = 1 bf16 merge, {threads} threads, ISA {backend._c.active_isa()}, median:")
    for label, n in PER_CALL_SIZES.items():
        call = tensor_call(base[:n], chat[:n], cp[:n], [0.5], "BF16")
        contenders = {
            "NativeBackend.compute(call)": lambda call=call: backend.compute(call),
            "_C.run(call)": lambda call=call: backend._c.run(call, threads),
        }
        us = {name: 1e6 * per_call_seconds(fn, PER_CALL_CALLS[n]) for name, fn in contenders.items()}
        results[label] = {"elements": n, "microseconds": us}
        print(f"  {label:22s}" + "  ".join(f"{name} {t:8.1f} us" for name, t in us.items()))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", type=int, default=64 << 20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--per-call", action="store_true", help="per-call time at 1M and 64K elements (2 threads)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    from chatvec_fast import _native

    _native.require()
    results = per_call(a.threads or 2) if a.per_call else throughput(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


def throughput(a) -> dict:
    """GB/s of each contender on --elements bf16 elements, checked against the oracle after timing."""
    from chatvec_fast import _native
    from chatvec_fast.backends.native import NativeBackend
    from chatvec_fast.testing.calls import oracle_outputs, tensor_call

    c = _native.module
    threads = a.threads or c.available_cpus()
    torch.set_num_threads(threads)
    backend = NativeBackend(threads)
    n = a.elements
    base, chat, cp = bf16_buffers(n)
    outs = [np.empty(2 * n, np.uint8) for _ in range(4)]
    chunk = 1 << 22
    alphas = [0.25, 0.5, 0.75, 1.0]
    calls = {k: tensor_call(base, chat, cp, alphas[:k], "BF16", outs=outs) for k in (1, 4)}
    chunks = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]

    def reference(k):
        parts = [tensor_call(base[s:e], chat[s:e], cp[s:e], alphas[:k], "BF16") for s, e in chunks]
        return lambda: [oracle_outputs(part, (part.n,)) for part in parts]

    def naive_bf16():
        return cp + 0.5 * (chat - base)

    cases = {
        "native, K=1": (lambda: backend.compute(calls[1]), 1),
        "native, K=4": (lambda: backend.compute(calls[4]), 4),
        "torch float64 reference, K=1 (4M-element chunks)": (reference(1), 1),
        "naive torch bf16 ops, K=1 (not correctly rounded)": (naive_bf16, 1),
    }
    print(f"{n / 2**20:.0f}M bf16 elements per buffer, {threads} threads, ISA {c.active_isa()}, median of {a.reps}")
    results = {}
    for name, (fn, k) in cases.items():
        sec = time_it(fn, a.reps)
        gbps = (3 + k) * 2 * n / sec / 1e9
        results[name] = {"seconds": sec, "gbps": gbps}
        print(f"  {name:55s} {sec * 1e3:8.1f} ms  {gbps:6.2f} GB/s")
    m = min(n, chunk)
    ref = oracle_outputs(tensor_call(base[:m], chat[:m], cp[:m], [0.25], "BF16"), (m,))[0]
    backend.compute(calls[1])
    got = torch.from_numpy(outs[0][: 2 * m]).view(torch.bfloat16)
    assert torch.equal(got.view(torch.int16), ref.view(torch.int16)), "native differs from the reference"
    print(f"  native output checked bit-identical to the float64 reference (first {m} elements)")
    return results


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
