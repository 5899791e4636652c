"""`chatvec inspect` against the I/O floor of reading the same files, on a cached synthetic triple.

Alternating, inputs warm in the page cache before each run (common.alternate):
  inspect      `python -m chatvec_fast inspect --base --chat --cp --out DIR --quiet --threads N` for each N
               of --threads: every compared tensor read once, the float64 sums, the three files written
  read floor   `cat` of the three inputs' safetensors files to /dev/null: the same bytes read, no arithmetic

    python benchmarks/bench_inspect.py                 # the 1b triple (generated once, cached), 1 round
    python benchmarks/bench_inspect.py --size small --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from common import CACHE, alternate, dir_bytes, machine, models, save_json, summarize  # noqa: E402

READ_FLOOR = "read floor (cat the 3 inputs to /dev/null)"
INSPECT = "chatvec inspect (with cp, --out)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1b")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="inspect's --threads values to time, e.g. 1,2,8")
    parser.add_argument("--json", default=None, help="default: docs/results/inspect-SIZE.json")
    args = parser.parse_args(argv)
    paths = models(args.size)
    out = os.path.join(CACHE, "inspect-out")
    files = " ".join(f"{paths[r]}/*.safetensors" for r in ("base", "chat", "cp"))
    inputs = [arg for role in ("base", "chat", "cp") for arg in (f"--{role}", paths[role])]
    command = [sys.executable, "-m", "chatvec_fast", "inspect", *inputs, "--out", out, "--quiet"]
    methods = {
        **{f"{INSPECT}, --threads {n}": ([*command, "--threads", n], out) for n in args.threads.split(",")},
        READ_FLOOR: (["sh", "-c", f"cat {files} > /dev/null"], out),
    }
    runs = alternate(methods, args.rounds, list(paths.values()), label=args.size)
    nbytes = sum(dir_bytes(p) for p in paths.values())
    results = {
        name: {**summarize(r), "cpu": summarize(r, "user")["median"] + summarize(r, "sys")["median"],
               "peak_rss": max(x["peak_rss"] for x in r)}
        for name, r in runs.items()
    }  # fmt: skip
    floor = results[READ_FLOOR]["median"]
    print(f"{machine()}\n{args.size} triple, {nbytes / 1e9:.2f} GB of safetensors read, inputs warm")
    for name, r in results.items():
        print(f"  {name}: {r['median']:.2f} s median ({r['min']:.2f}-{r['max']:.2f}, n={r['n']}), "
              f"{nbytes / r['median'] / 1e9:.2f} GB/s, {r['median'] / floor:.1f}x the read floor, "
              f"CPU {r['cpu']:.1f} s, peak RSS {r['peak_rss'] / 1e9:.2f} GB")  # fmt: skip
    path = args.json or os.path.join(HERE, "..", "docs", "results", f"inspect-{args.size}.json")
    save_json(path, {"machine": machine(), "size": args.size, "bytes": nbytes, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
