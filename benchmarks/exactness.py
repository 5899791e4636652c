"""Share of an output's elements equal to the correctly rounded float64 reference, and max ulp.

Checks a sample (embedding, lm_head, final norm, every tensor of the first,
middle and last layer) or, with --all, every tensor.

    python benchmarks/exactness.py --base B --chat C --cp P --out O --alpha 0.5 [--all]
"""

from __future__ import annotations

import argparse
import json
import re

from chatvec_fast.backends.reference import as_torch, ulp_distance
from chatvec_fast.read.checkpoint import open_checkpoint
from chatvec_fast.read.chunks import read_tensor_bytes
from chatvec_fast.testing.calls import DTYPE_NAMES, oracle_outputs, tensor_call


def sample_names(names: list[str]) -> list[str]:
    layers = sorted({int(m.group(1)) for n in names if (m := re.search(r"\.layers\.(\d+)\.", n))})
    keep = {layers[0], layers[len(layers) // 2], layers[-1]} if layers else set()
    out = []
    for n in names:
        m = re.search(r"\.layers\.(\d+)\.", n)
        if m is None or int(m.group(1)) in keep:
            out.append(n)
    return out


def measure(base: str, chat: str, cp: str, out: str, alpha: float, every: bool = False) -> dict:
    b, c, p, o = (open_checkpoint(x) for x in (base, chat, cp, out))
    names = list(o.tensors) if every else sample_names(list(o.tensors))
    total = equal = 0
    max_ulp = 0
    for name in names:
        oi, pi = o.tensors[name], p.tensors[name]
        got = as_torch(read_tensor_bytes(oi), oi.dtype, oi.shape)
        want = as_torch(read_tensor_bytes(pi), pi.dtype, pi.shape)
        if name in b.tensors and name in c.tensors:
            bi, ci = b.tensors[name], c.tensors[name]
            rows = bi.shape[0] if bi.shape else None
            chat_t = as_torch(read_tensor_bytes(ci), ci.dtype, ci.shape)
            base_t = as_torch(read_tensor_bytes(bi), bi.dtype, bi.shape)
            want = want.clone()
            call = tensor_call(base_t, chat_t, want[:rows], [alpha], DTYPE_NAMES[got.dtype])
            want[:rows] = oracle_outputs(call, base_t.shape)[0]
        distance = ulp_distance(got, want)
        total += got.numel()
        equal += int((distance == 0).sum())
        if got.numel():
            max_ulp = max(max_ulp, int(distance.max()))
    return {"elements": total, "exact_share": equal / max(total, 1), "max_ulp": max_ulp, "tensors": len(names)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for role in ("base", "chat", "cp", "out"):
        ap.add_argument(f"--{role}", required=True)
    ap.add_argument("--alpha", type=float, required=True)
    ap.add_argument("--all", action="store_true")
    a = ap.parse_args()
    print(json.dumps(measure(a.base, a.chat, a.cp, a.out, a.alpha, a.all)))


if __name__ == "__main__":
    main()
