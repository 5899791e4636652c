"""The Chat Vector merge as a user writes it in plain PyTorch: the baseline we compare against.

For each of cp's shards: safetensors.torch.load_file the matching tensors of
base, chat and cp, compute  cp + alpha * (chat - base)  per tensor, save_file,
then copy cp's config and index. --math bf16 computes in bf16 (each op
rounded: fast, not correctly rounded); --math fp32 computes in float32 and
rounds once at the end (the usual "exact" variant). --alphas a,b,... writes
OUT/alpha-a/, OUT/alpha-b/, ... from one load of each shard (a one-pass sweep).

    python benchmarks/naive_merge.py --base B --chat C --cp P --out O --alpha 0.5 --math bf16
    python benchmarks/naive_merge.py --base B --chat C --cp P --out O --alphas 0.25,0.5,0.75,1.0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file


def shard_map(model_dir: str) -> dict[str, str]:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return json.load(f)["weight_map"]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for role in ("base", "chat", "cp", "out"):
        ap.add_argument(f"--{role}", required=True)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--alphas", default=None, help="comma list: a one-pass sweep into OUT/alpha-A/")
    ap.add_argument("--math", choices=("bf16", "fp32"), default="bf16")
    a = ap.parse_args()
    alphas = [float(x) for x in a.alphas.split(",")] if a.alphas else [a.alpha]
    outs = [os.path.join(a.out, f"alpha-{x!r}") for x in alphas] if a.alphas else [a.out]
    for out in outs:
        os.makedirs(out, exist_ok=True)
    maps = {r: shard_map(getattr(a, r)) for r in ("base", "chat", "cp")}
    cp_shards = sorted(set(maps["cp"].values())) if maps["cp"] else ["model.safetensors"]
    for shard in cp_shards:
        cp = load_file(os.path.join(a.cp, shard))
        others = {}
        for role in ("base", "chat"):
            files = {maps[role][n] for n in cp if n in maps[role]} if maps[role] else {"model.safetensors"}
            loaded = {}
            for f in sorted(files):
                loaded.update(load_file(os.path.join(getattr(a, role), f)))
            others[role] = loaded
        for alpha, out_dir in zip(alphas, outs):
            out = {}
            for name, p in cp.items():
                b, c = others["base"].get(name), others["chat"].get(name)
                if b is None or c is None or b.shape != p.shape:
                    out[name] = p
                elif a.math == "bf16":
                    out[name] = p + alpha * (c - b)
                else:
                    out[name] = (p.float() + alpha * (c.float() - b.float())).to(p.dtype)
            save_file(out, os.path.join(out_dir, shard), metadata={"format": "pt"})
            del out
        del cp, others
    for name in os.listdir(a.cp):
        if name.endswith(".json"):
            for out in outs:
                shutil.copyfile(os.path.join(a.cp, name), os.path.join(out, name))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
