"""Kernel-level benchmark on in-memory buffers (no I/O): GB/s of 3 inputs read + K outputs written.

Contenders on the same bf16 buffers, in one process, alternating: the native
kernel (K = 1 and K = 4 alphas), the float64 torch reference (chunked), and
the naive bf16 torch expression (each op rounded; not correctly rounded).

    python benchmarks/bench_kernel.py --elements 268435456 --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", type=int, default=64 << 20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    from chatvec_fast import _native
    from chatvec_fast.testing.calls import oracle_outputs, tensor_call

    c = _native.require()
    threads = a.threads or c.available_cpus()
    torch.set_num_threads(threads)
    n = a.elements
    base, chat, cp = bf16_buffers(n)
    nb, nc, npp = as_np(base), as_np(chat), as_np(cp)
    outs = [np.empty(2 * n, np.uint8) for _ in range(4)]
    chunk = 1 << 22
    alphas = [0.25, 0.5, 0.75, 1.0]

    def native(k):
        return lambda: c.merge(nb, c.BF16, nc, c.BF16, npp, c.BF16, n, alphas[:k], outs[:k], c.BF16, threads)

    def reference(k):
        def run():
            for s in range(0, n, chunk):
                e = min(n, s + chunk)
                oracle_outputs(tensor_call(base[s:e], chat[s:e], cp[s:e], alphas[:k], "BF16"), (e - s,))

        return run

    def naive_bf16():
        return cp + 0.5 * (chat - base)

    cases = {
        "native, K=1": (native(1), 1),
        "native, K=4": (native(4), 4),
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
    m = min(n, 1 << 22)
    ref = oracle_outputs(tensor_call(base[:m], chat[:m], cp[:m], [0.25], "BF16"), (m,))[0]
    native(1)()
    got = torch.from_numpy(outs[0][: 2 * m]).view(torch.bfloat16)
    assert torch.equal(got.view(torch.int16), ref.view(torch.int16)), "native differs from the reference"
    print("  native output checked bit-identical to the float64 reference (first 4M elements)")
    return results


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
