"""GPU benchmark: chatvec's Triton pipeline vs a pure-PyTorch GPU merge vs the I/O floor, same files, one run.

Contenders, alternating, each timed until its output is on disk:
  - chatvec merge --backend native (the C++ kernel on every core: what `auto` picks for file-to-file work)
  - chatvec merge --backend triton (streaming: pinned buffers, H2D / kernel / D2H on their own streams), and
    --backend cuda where its extension is built (--backends chooses)
  - pure PyTorch on the GPU: load_file each shard of the three models to the GPU, cp + alpha * (chat - base)
    in bf16, back to the host, save_file (what a user writes)
  - the I/O floor: read the three inputs, write one output-sized file with O_DIRECT
GB/s = (3 inputs + 1 output) / wall. Needs a CUDA GPU and triton.

    python benchmarks/bench_gpu.py --size 7b --rounds 3          # Llama-2-7B shape, 13.5 GB per model
    python benchmarks/bench_gpu.py --size 1b --devices cuda:0,cuda:1

--smoke runs the same code on a tiny model on the CPU (TRITON_INTERPRET=1), so CI keeps it from rotting.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ALPHA = 0.5

TORCH_GPU_MERGE = r"""
import json, os, sys, torch
from safetensors.torch import load_file, save_file
base, chat, cp, out, alpha, device = sys.argv[1:7]
alpha = float(alpha)
os.makedirs(out, exist_ok=True)
def weight_map(d):
    p = os.path.join(d, "model.safetensors.index.json")
    return json.load(open(p))["weight_map"] if os.path.exists(p) else None
maps = {r: weight_map(d) for r, d in (("base", base), ("chat", chat), ("cp", cp))}
shards = sorted(set(maps["cp"].values())) if maps["cp"] else ["model.safetensors"]
def load(d, role, names):
    files = {maps[role][n] for n in names if n in maps[role]} if maps[role] else {"model.safetensors"}
    t = {}
    for f in sorted(files):
        t.update(load_file(os.path.join(d, f), device=device))
    return t
with torch.no_grad():
    for shard in shards:
        p = load_file(os.path.join(cp, shard), device=device)
        b, c = load(base, "base", p), load(chat, "chat", p)
        merged = {n: (t + alpha * (c[n] - b[n]) if n in b and n in c and b[n].shape == t.shape else t).cpu()
                  for n, t in p.items()}
        save_file(merged, os.path.join(out, shard), metadata={"format": "pt"})
        del p, b, c, merged
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1b", help="model shape from chatvec_fast.testing.synthetic.SHAPES")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--devices", default=None, help="e.g. cuda:0,cuda:1 (default: cuda:0)")
    ap.add_argument("--backends", default="native,triton,cuda", help="chatvec backends to time (cuda: if built)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, CPU, triton interpreter: checks the script")
    ap.add_argument("--json", default=os.path.join("bench-results", "gpu.json"))
    a = ap.parse_args()
    if a.smoke:
        os.environ["TRITON_INTERPRET"] = "1"
        os.environ["CHATVEC_BENCH_DIR"] = os.environ.get("CHATVEC_BENCH_DIR", "/tmp/chatvec-bench-smoke")
        a.size, a.rounds, device = "tiny", 1, "cpu"
    else:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench_gpu.py needs a CUDA GPU (or --smoke to check the script on the CPU)")
        device = (a.devices or "cuda:0").split(",")[0]
    sys.path.insert(0, HERE)
    from common import (
        CACHE,
        alternate,
        dir_bytes,
        exact_text,
        io_floors,
        machine,
        models,
        require_free,
        save_json,
        summarize,
    )

    paths = models(a.size)
    require_free(2 * dir_bytes(paths["cp"]))
    out = os.path.join(CACHE, "gpu-out")
    b, c, p = paths["base"], paths["chat"], paths["cp"]
    py = sys.executable

    def chatvec(backend: str) -> list[str]:
        cmd = [py, "-m", "chatvec_fast", "merge", "--base", b, "--chat", c, "--cp", p, "--out", out, "--alpha",
               str(ALPHA), "--backend", backend, "--quiet"]  # fmt: skip
        if backend in ("triton", "cuda") and (a.devices or a.smoke):
            cmd += ["--devices", a.devices or "cpu"]
        return cmd

    backends = [x for x in a.backends.split(",") if x != "cuda" or (not a.smoke and _cuda_built())]
    todo = {f"chatvec merge --backend {x}": (chatvec(x), out) for x in backends}
    todo["pure PyTorch on the GPU (bf16 math)"] = ([py, "-c", TORCH_GPU_MERGE, b, c, p, out, str(ALPHA), device], out)
    todo.update({name: (cmd, out) for name, cmd in io_floors(paths, out, page_cache=False).items()})
    nbytes = sum(dir_bytes(x) for x in paths.values()) + dir_bytes(p)
    from exactness import measure

    exact = {}

    def check(name, path):
        if not name.startswith("I/O"):
            exact[name] = measure(b, c, p, path, ALPHA)

    started = time.strftime("%Y-%m-%d %H:%M")
    runs = alternate(todo, a.rounds, paths.values(), a.size, check)
    summary = {name: {**summarize(rs), "gbps": nbytes / summarize(rs)["median"] / 1e9} for name, rs in runs.items()}
    ours = summary[next(iter(todo))]["median"]
    print(f"\n{machine()}, {started}, device {a.devices or device}, {a.size}: {nbytes / 1e9:.2f} GB moved\n")
    print("| method | wall s, median (min-max) | GB/s | exact share (max ulp) | vs chatvec |")
    print("|---|---|---|---|---|")
    for name, v in summary.items():
        ex_text = exact_text(exact.get(name))
        print(
            f"| {name} | {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}) | {v['gbps']:.2f} | {ex_text} | "
            f"{v['median'] / ours:.2f}x |"
        )
    save_json(
        a.json,
        {
            "machine": machine(),
            "date": started,
            "device": a.devices or device,
            "size": a.size,
            "runs": runs,
            "summary": summary,
            "exact": exact,
        },
    )


def _cuda_built() -> bool:
    import importlib.util

    return importlib.util.find_spec("chatvec_fast._cuda") is not None


if __name__ == "__main__":
    main()
