"""Input formats: the 1.1B merge from PyTorch .bin checkpoints (as transformers 4 saved them) against the same
weights in safetensors, alternating, in one run. GB/s counts the 3 inputs read + the output written.

    python benchmarks/bench_formats.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from common import CACHE, alternate, dir_bytes, machine, models, save_json, summarize

ALPHA = 0.5


def bin_models(size: str) -> dict[str, str]:
    """The triple of `size` with its weights re-saved by torch.save in the same shards (made once, cached)."""
    import torch
    from safetensors.torch import load_file

    source = models(size)
    root = os.path.join(CACHE, f"models-{size}-bin")
    done = os.path.join(root, ".complete")
    paths = {r: os.path.join(root, r) for r in source}
    if os.path.exists(done):
        return paths
    shutil.rmtree(root, ignore_errors=True)
    print(f"writing the {size} triple as .bin shards in {root} (once) ...", flush=True)
    for role, src in source.items():
        dst = paths[role]
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
        if not os.path.exists(os.path.join(src, "model.safetensors.index.json")):  # a single file (tiny)
            torch.save(load_file(os.path.join(src, "model.safetensors")), os.path.join(dst, "pytorch_model.bin"))
            continue
        index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
        shards = sorted(set(index["weight_map"].values()))
        weight_map = {}
        for i, shard in enumerate(shards):
            state = load_file(os.path.join(src, shard))
            name = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
            torch.save(state, os.path.join(dst, name))
            weight_map.update({k: name for k in state})
        with open(os.path.join(dst, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": index["metadata"], "weight_map": weight_map}, f)
    open(done, "w").close()
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1b")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=os.path.join("bench-results", "formats.json"))
    a = ap.parse_args()
    safetensors, pytorch = models(a.size), bin_models(a.size)
    out = os.path.join(CACHE, "formats-out")
    todo = {}
    for name, paths in (("safetensors inputs", safetensors), (".bin inputs", pytorch)):
        todo[name] = ([sys.executable, "-m", "chatvec_fast", "merge", "--base", paths["base"], "--chat", paths["chat"],
                       "--cp", paths["cp"], "--out", out, "--alpha", str(ALPHA), "--quiet"], out)  # fmt: skip
    started = time.strftime("%Y-%m-%d %H:%M")
    runs = alternate(todo, a.rounds, [*safetensors.values(), *pytorch.values()], a.size)
    nbytes = {"safetensors inputs": sum(dir_bytes(p) for p in safetensors.values()),
              ".bin inputs": sum(dir_bytes(p, ".bin") for p in pytorch.values())}  # fmt: skip
    written = dir_bytes(safetensors["cp"])
    summary = {}
    for name, rs in runs.items():
        s = summarize(rs)
        summary[name] = {**s, "gbps": (nbytes[name] + written) / s["median"] / 1e9,
                         "peak_rss": max(r["peak_rss"] for r in rs)}  # fmt: skip
    ratio = summary[".bin inputs"]["median"] / summary["safetensors inputs"]["median"]
    print(f"\n{machine()}, {started}, {a.size} triple, alpha {ALPHA}, {a.rounds} alternating rounds\n")
    print("| inputs | wall s, median (min-max) | GB/s | peak RSS |\n|---|---|---|---|")
    for name, v in summary.items():
        print(f"| {name} | {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}) | {v['gbps']:.2f} | "
              f"{v['peak_rss'] / 1e9:.2f} GB |")  # fmt: skip
    print(f"\n.bin / safetensors = {ratio:.2f}x")
    save_json(a.json, {"machine": machine(), "date": started, "rounds": a.rounds, "runs": runs, "summary": summary,
                       "ratio": ratio})  # fmt: skip


if __name__ == "__main__":
    main()
