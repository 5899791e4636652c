"""Merged weights into memory vs to disk and back, on the 1.1B triple, per alpha, in one process.

Per alpha, the contenders alternate (inputs warm in the page cache before each):
  merge_into            a resident transformers model (loaded from cp once), written in place
  merge + from_pretrained   chatvec merge to disk, then transformers loads the output
  naive in-memory PyTorch   safetensors load_file of the three models' shards, the bf16 expression,
                            load_state_dict into the resident model
  memory floor          the 3 inputs read from the page cache, cp's read landing in the parameters: every
                        input byte read once and the model's bytes written once, no arithmetic
Then the held-input switch on the CPU (HeldMerge(hold="host"), inputs loaded once) against a memcpy of the
same byte count (every parameter written twice, from held base and chat: 2 reads + 2 writes of the model's
bytes; a switch reads 3 and writes 1). Peak RSS is each method's growth over the resident model (VmHWM reset
before it). Correctness is checked after timing: merge_into and the switch equal the disk route bit for bit.

    python benchmarks/bench_memory.py --rounds 3            # the 1b triple (generated once, cached)
    python benchmarks/bench_memory.py --size small          # 0.3 GB per model, a quick look

gpu_held_switch() is the GPU part (a 7B-shaped held switch against a device-to-device copy of the same
bytes, on a tiled 7B-shaped triple that memory_routes.fast_triple writes at disk speed), for a session with a
CUDA device: `python benchmarks/bench_memory.py --gpu` (or --gpu --size 1b); without CUDA it says so.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from common import CACHE, machine, models, save_json, warm  # noqa: E402
from memory_routes import (  # noqa: E402
    FLOOR,
    HELD,
    INTO,
    MEMCPY,
    NAIVE,
    TO_DISK,
    HeldRoutes,
    Routes,
    bits_equal,
    gpu_held_switch,
    peak_reset,
    peak_since,
)

ALPHAS = (0.25, 0.5, 0.75)


def run(size: str, rounds: int) -> dict:
    import torch
    import transformers

    paths = models(size)
    out = os.path.join(CACHE, "bench-memory-out")
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(paths["cp"], dtype=torch.bfloat16).eval()
    model_bytes = sum(t.nbytes for t in model.state_dict().values())
    routes = Routes(paths, model, out)
    runs = {name: [] for name in routes}
    # from_pretrained maps cp's files copy-on-write: the first merge into the model makes every page its own
    warm(paths.values())
    t0 = time.perf_counter()
    routes.into(ALPHAS[0])
    first = time.perf_counter() - t0
    print(f"  first merge_into into the model fresh from from_pretrained: {first:.2f} s", flush=True)
    for r in range(rounds):
        for alpha in ALPHAS:
            for name, route in routes.items():
                _timed(runs, name, route, alpha, paths, f"round {r + 1}/{rounds}")
                routes.after(name)
    checks = {}
    routes.to_disk(ALPHAS[-1], keep=True)  # after timing: the disk route's model, for the bit checks
    routes.into(ALPHAS[-1])
    checks["merge_into == merge + from_pretrained"] = bits_equal(model, routes.disk_model)
    routes.naive(ALPHAS[-1])
    checks["naive bf16: share of elements equal to merge's"] = bits_equal(model, routes.disk_model, share=True)
    routes.close()
    gc.collect()
    held = HeldRoutes(paths, model)
    for r in range(rounds):
        for alpha in ALPHAS:
            for name in (HELD, MEMCPY):
                _timed(runs, name, held[name], alpha, None, f"held round {r + 1}/{rounds}")
    held.held.switch(ALPHAS[-1])
    routes.to_disk(ALPHAS[-1], keep=True)
    checks["held switch == merge + from_pretrained"] = bits_equal(model, routes.disk_model)
    routes.close()
    return {"size": size, "rounds": rounds, "alphas": ALPHAS, "model_bytes": model_bytes, "first_merge_into_s": first,
            "held_bytes": held.nbytes, "runs": runs, "checks": checks, "machine": machine()}  # fmt: skip


def _timed(runs: dict, name: str, route, alpha: float, warm_paths, label: str):
    """One timed run: inputs warmed first (not for the held routes, which read no file), peak RSS from here."""
    gc.collect()
    if warm_paths is not None:
        warm(warm_paths.values())
    base = peak_reset()
    t0 = time.perf_counter()
    route(alpha)
    wall = time.perf_counter() - t0
    runs.setdefault(name, []).append({"alpha": alpha, "wall": wall, "peak_rss": peak_since(base)})
    print(f"  [{label}, alpha {alpha}] {name}: {wall:.3f} s, +{runs[name][-1]['peak_rss'] / 1e9:.2f} GB", flush=True)


def table(doc: dict) -> str:
    n = doc["model_bytes"]
    moved = {INTO: 4 * n, TO_DISK: 4 * n, NAIVE: 4 * n, FLOOR: 4 * n, HELD: 4 * n, MEMCPY: 4 * n}
    med = {name: statistics.median(r["wall"] for r in runs) for name, runs in doc["runs"].items()}
    lines = [f"{doc['machine']}; {doc['size']} triple ({n / 1e9:.2f} GB per model), alphas {doc['alphas']}, "
             f"{doc['rounds']} alternating rounds; GB/s: 3 inputs read + the model written ({4 * n / 1e9:.2f} GB)",
             "", "| method | s per alpha, median (min-max) | GB/s | peak RSS over the model | vs merge_into |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, runs in doc["runs"].items():
        walls = [r["wall"] for r in runs]
        rss = max(r["peak_rss"] for r in runs)
        ratio = med[name] / med[INTO] if name not in (HELD, MEMCPY) else med[name] / med[MEMCPY]
        vs = f"{ratio:.2f}x" + (" (vs memcpy)" if name in (HELD, MEMCPY) else "")
        gbps = moved[name] / med[name] / 1e9
        spread = f"{min(walls):.3f}-{max(walls):.3f}"
        lines.append(f"| {name} | {med[name]:.3f} ({spread}) | {gbps:.2f} | {rss / 1e9:.2f} GB | {vs} |")
    into_floor = med[INTO] / med[FLOOR]
    disk_speedup = med[TO_DISK] / med[INTO]
    lines += ["", f"merge_into: {into_floor:.2f}x the memory floor (target <= 1.5x: "
              f"{'met' if into_floor <= 1.5 else 'missed'}), {disk_speedup:.1f}x faster than merge + from_pretrained "
              f"(target >= 5x: {'met' if disk_speedup >= 5 else 'missed'}); held switch {med[HELD]:.3f} s = "
              f"{med[HELD] / med[MEMCPY]:.2f}x a memcpy of the same bytes; the first merge_into into the model fresh "
              f"from from_pretrained (pages mapped copy-on-write from cp's files): {doc['first_merge_into_s']:.2f} s",
              "",
              "checks: " + "; ".join(f"{k}: {v}" for k, v in doc["checks"].items())]  # fmt: skip
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default=None, help="synthetic SHAPES size (default 1b; 7b with --gpu)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(CACHE, "bench-memory.json"))
    ap.add_argument("--gpu", action="store_true", help="the GPU part: a 7B-shaped held switch vs a D2D copy")
    ap.add_argument("--device", default="cuda", help="--gpu's device (cpu: a smoke run under TRITON_INTERPRET=1)")
    a = ap.parse_args()
    if a.gpu:
        doc = gpu_held_switch(a.size or "7b", a.rounds, a.device)
        print(doc.get("table") or doc)
    else:
        doc = run(a.size or "1b", a.rounds)
        doc["table"] = table(doc)
        print(doc["table"])
    save_json(a.out, doc)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
