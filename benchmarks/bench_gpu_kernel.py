"""Kernel-level GPU benchmark: the device backends' kernels on device buffers, against a device-to-device copy of
the same bytes, in one process, alternating.

Bytes moved per call: 3 inputs read + K outputs written (n elements each). The copy moves as many bytes (a copy
of half of them: each byte read once and written once), so "vs copy" is the share of the memory system's rate
the kernel reaches (the target is 85% or more). Contenders for bf16 and float32, K = 1 and 4: the Triton kernel
(launch.py's main launch and tail, autotuned, no FMA), the CUDA C++ kernel where its extension is built, and
the pure-PyTorch bf16 expression cp + alpha * (chat - base) (not correctly rounded). Each kernel's output is
checked bit for bit against the native CPU kernel on the first 16M elements.

    python benchmarks/bench_gpu_kernel.py --elements 268435456 --reps 20 --json bench-results/gpu-kernel.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKED = 1 << 24  # elements compared with the native kernel


def timed(fn, reps: int, torch) -> list[float]:
    """Seconds of each of reps calls, by CUDA events (after two warm-up calls: autotuning, first touch)."""
    fn()
    fn()
    out = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        out.append(start.elapsed_time(stop) / 1e3)
    return out


def triton_call(torch, inputs, out_dtype: str, k: int, n: int, device):
    """A function running the Triton kernel once (merge, K alphas) on device buffers, and its outputs."""
    from chatvec_fast.kernels import launch

    from chatvec_fast.kernel_codes import DTYPE_CODES, NO_SCALE

    code = DTYPE_CODES[out_dtype]
    out = torch.empty(k * launch.padded(n), dtype=launch.BITS_DTYPE[code], device=device).view(k, -1)[:, :n]
    slots = {name: (t.view(launch.BITS_DTYPE[code]), code, NO_SCALE) for name, t in zip(("base", "chat", "cp"), inputs)}
    alphas = torch.tensor([0.25 * (j + 1) for j in range(k)], dtype=torch.float64, device=device)
    meta = torch.zeros(len(launch.SLOTS) * launch.META_WORDS, dtype=torch.int64, device=device)
    scales = torch.ones(1, dtype=torch.float32, device=device)
    count = torch.zeros(1, dtype=torch.int64, device=device)
    return (lambda: launch.launch("merge", slots, scales, meta, out, alphas, count, n, code)), out


def cuda_call(torch, inputs, out_dtype: str, k: int, n: int, device):
    """The CUDA C++ kernel once (merge, K alphas: K = 1 takes its 16-byte path) on device buffers, and its
    outputs; None where chatvec_fast._cuda is not built."""
    try:
        from chatvec_fast import _cuda
    except ImportError:
        return None, None
    from chatvec_fast.kernel_codes import DTYPE_CODES, MODE_CODES, NO_SCALE

    code = DTYPE_CODES[out_dtype]
    out = torch.empty(k, n * inputs[0].element_size(), dtype=torch.uint8, device=device)
    ops = [(t.data_ptr(), code, NO_SCALE, 0, 1, 0, 1, 1, 0) for t in inputs]
    alphas = [0.25 * (j + 1) for j in range(k)]
    outs = [out[j].data_ptr() for j in range(k)]
    stream = torch.cuda.current_stream(device).cuda_stream
    return (lambda: _cuda.run(MODE_CODES["merge"], n, ops, alphas, outs, code, None, 0, stream, True)), out


def native_reference(torch, inputs, out_dtype: str, k: int):
    """The native CPU kernel's outputs for the first CHECKED elements (bits, on the host)."""
    import numpy as np

    from chatvec_fast.backends import get_backend
    from chatvec_fast.backends.call import KernelCall, Operand

    host = [t[:CHECKED].cpu() for t in inputs]
    size = host[0].element_size()
    outs = [np.empty(CHECKED * size, np.uint8) for _ in range(k)]
    ops = [Operand(h.view(torch.uint8).numpy(), out_dtype) for h in host]
    call = KernelCall(CHECKED, "merge", outs, out_dtype, [[0.25 * (j + 1)] for j in range(k)], *ops)
    get_backend("native").compute(call)
    return outs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", type=int, default=1 << 28)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu_kernel.py: no CUDA device here; nothing to measure")
        return 0
    device, n, results = torch.device("cuda:0"), a.elements, {}
    for out_dtype, torch_dtype in (("BF16", torch.bfloat16), ("F32", torch.float32)):
        g = torch.Generator(device=device).manual_seed(0)
        base = (torch.randn(n, generator=g, device=device) * 0.02).to(torch_dtype)
        inputs = [base, base + (torch.randn(n, generator=g, device=device) * 0.002).to(torch_dtype),
                  base + (torch.randn(n, generator=g, device=device) * 0.002).to(torch_dtype)]  # fmt: skip
        size = base.element_size()
        for k in (1, 4):
            moved = (3 + k) * n * size
            src = torch.empty(moved // 2, dtype=torch.uint8, device=device)
            dst = torch.empty_like(src)
            run, out = triton_call(torch, inputs, out_dtype, k, n, device)
            contenders = {"triton": run, "device-to-device copy of the same bytes": lambda d=dst, s=src: d.copy_(s)}
            run_cuda, out_cuda = cuda_call(torch, inputs, out_dtype, k, n, device)
            if run_cuda is not None:
                contenders["cuda"] = run_cuda
            contenders["pure PyTorch, bf16 expression (not exact)"] = lambda x=inputs, k=k: [
                x[2] + (0.25 * (j + 1)) * (x[1] - x[0]) for j in range(k)
            ]
            times = {name: [] for name in contenders}
            for _ in range(3):  # alternate: clocks and other tenants drift
                for name, fn in contenders.items():
                    times[name] += timed(fn, max(1, a.reps // 3), torch)
            want = native_reference(torch, inputs, out_dtype, k)
            first = [bytes(out[j, :CHECKED].contiguous().view(torch.uint8).cpu().numpy()) for j in range(k)]
            exact = {"triton": first == [bytes(w) for w in want]}
            if out_cuda is not None:
                exact["cuda"] = all(
                    bytes(out_cuda[j, : CHECKED * size].cpu().numpy()) == bytes(want[j]) for j in range(k)
                )
            copy = statistics.median(times["device-to-device copy of the same bytes"])
            for name, ts in times.items():
                med = statistics.median(ts)
                row = {"median_s": med, "min_s": min(ts), "max_s": max(ts), "gbps": moved / med / 1e9,
                       "vs_copy": copy / med, "exact_first_16M": exact.get(name)}  # fmt: skip
                results[f"{out_dtype} K={k} {name}"] = row
                print(
                    f"{out_dtype} K={k} {name:45s} {med * 1e3:8.3f} ms  {row['gbps']:7.1f} GB/s  "
                    f"{row['vs_copy']:5.2f} of copy" + (f"  bit-identical: {exact[name]}" if name in exact else "")
                )
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(0), "elements": n, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    raise SystemExit(main())
