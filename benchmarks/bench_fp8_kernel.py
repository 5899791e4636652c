"""Kernel-level benchmark of the general call (FP8 inputs, FP8 output, several vectors): GB/s of bytes read
plus bytes written, in memory (no I/O), native kernel, alternating with the bf16 merge as the baseline.

    python benchmarks/bench_fp8_kernel.py --elements 16777216 --reps 7 --threads 2

Cases (bf16 output unless named):
- bf16 triple merge (the fused fast path): 3 x 2 bytes read + 2 written per element;
- FP8 e4m3 triple merge, 128 x 128 block scales: 3 x 1 + 2 (+ the scales, ~0.02%);
- FP8 e4m3 triple merge, per-row scales;
- bf16 triple merge to FP8 e4m3 with 128 x 128 block scales: 3 x 2 + 1;
- apply of M = 1, 2, 4 bf16 vectors to a bf16 cp: 2 + 2M + 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

import numpy as np
import torch


def time_it(fn, reps: int) -> float:
    fn()  # warm up: first touch of outputs, thread pool start
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", type=int, default=16 << 20)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    from chatvec_fast import _native
    from chatvec_fast.backends.call import KernelCall, Operand, OutScale, Scale
    from chatvec_fast.backends.native import NativeBackend
    from chatvec_fast.backends.reference_call import reference_call

    c = _native.require()
    backend = NativeBackend(a.threads)
    cols = a.cols
    n = a.elements // cols * cols
    rows = n // cols
    g = torch.Generator().manual_seed(0)

    def bf16():
        return (torch.randn(n, generator=g) * 0.02).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint8)

    def fp8(kind):
        codes = (torch.randn(n, generator=g) * 100).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
        count = -(-rows // 128) * -(-cols // 128) if kind == "block" else rows
        scales = (torch.rand(count, generator=g) * 1e-4 + 1e-5).numpy()
        br, bc = (128, 128) if kind == "block" else (1, 1)
        return Operand(codes, "F8_E4M3", Scale(kind, scales, cols, 0, br, bc))

    plain = [Operand(bf16(), "BF16") for _ in range(3)]
    block = [fp8("block") for _ in range(3)]
    row = [fp8("row") for _ in range(3)]
    vectors = [Operand(bf16(), "BF16") for _ in range(4)]
    out16 = np.empty(2 * n, np.uint8)
    out8 = np.empty(n, np.uint8)
    out_scales = np.empty(4 * (-(-rows // 128)) * (-(-cols // 128)), np.uint8)
    cases = {
        "bf16 triple -> bf16 (fused path)": (KernelCall(n, "merge", [out16], "BF16", [[0.5]], *plain), 8),
        "fp8 e4m3 triple, 128x128 block scales -> bf16": (KernelCall(n, "merge", [out16], "BF16", [[0.5]], *block), 5),
        "fp8 e4m3 triple, row scales -> bf16": (KernelCall(n, "merge", [out16], "BF16", [[0.5]], *row), 5),
        "bf16 triple -> fp8 e4m3, 128x128 block scales": (
            KernelCall(
                n,
                "merge",
                [out8],
                "F8_E4M3",
                [[0.5]],
                *plain,
                out_scale=OutScale("block", [out_scales], cols, 0, 128, 128),
            ),
            7,
        ),  # fmt: skip
    }
    for m in (1, 2, 4):
        alphas = [[0.5] * m]
        call = KernelCall(n, "apply", [out16], "BF16", alphas, cp=plain[2], vectors=tuple(vectors[:m]))
        cases[f"apply M={m} bf16 vectors -> bf16"] = (call, 4 + 2 * m)
    print(f"{n / 2**20:.0f}M elements ({rows} x {cols}), {backend.threads} threads, ISA {c.active_isa()}, "
          f"median of {a.reps}")  # fmt: skip
    results = {}
    for name, (call, per_element) in cases.items():
        sec = time_it(lambda call=call: backend.compute(call), a.reps)
        results[name] = {"seconds": sec, "gbps": per_element * n / sec / 1e9, "melems": n / sec / 1e6}
        print(f"  {name:50s} {sec * 1e3:7.1f} ms  {results[name]['gbps']:6.2f} GB/s  {n / sec / 1e9:5.2f} G elem/s")
    check = 1 << 20  # correctness after timing: the first 1M elements (whole block-rows) against the reference
    for name, (call, _) in cases.items():
        o = call.out_scale
        part = dataclasses.replace(call, n=check, outs=[np.empty(2 * check, np.uint8)])
        if o is not None:
            part = dataclasses.replace(
                part, out_scale=dataclasses.replace(o, buffers=[np.empty(o.groups(check) * 4, np.uint8)])
            )
        outs, scales, _ = reference_call(part)
        backend.compute(part)
        want = outs[0].view(-1).view(torch.uint8).numpy()
        assert np.array_equal(part.outs[0][: want.size], want), f"{name}: differs from the reference"
        if scales is not None:
            assert np.array_equal(part.out_scale.buffers[0], scales[0].view(torch.uint8).numpy()), name
    print("  outputs checked bit-identical to the float64 reference (first 1M elements)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"elements": n, "threads": backend.threads, "isa": c.active_isa(), "results": results}, f, indent=2
            )
    return results


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
