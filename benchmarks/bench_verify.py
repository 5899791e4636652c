"""verify --all against the merge it checks: the wall time of `chatvec merge` and of `chatvec verify --all`
(and `--checksums-only`) on the same synthetic model, alternating, inputs warm; medians and the ratio.

    python benchmarks/bench_verify.py --size small --rounds 5    # the 0.31 GB model of docs/NOTES.md
    python benchmarks/bench_verify.py --size tiny --rounds 1     # smoke (make bench-smoke)
    python benchmarks/bench_verify.py --baseline-tree ../old     # also verify from another checkout

MB/s is the output's bytes checked per second (what verify's progress line shows). verify exits 1 on any
difference, so every timed run is also a pass of the check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import CACHE, alternate, dir_bytes, machine, models, save_json, summarize

ALPHA = 0.5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", help="synthetic.SHAPES: tiny, small (0.31 GB), 1b, 7b")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline-tree", help="a source checkout whose chatvec_fast verify is timed too")
    ap.add_argument("--json", default=os.path.join("bench-results", "verify.json"))
    a = ap.parse_args()
    paths = models(a.size)
    py = sys.executable
    root = os.path.join(CACHE, f"verify-{a.size}")
    merged, scratch = os.path.join(root, "merged"), os.path.join(root, "merge-out")
    merge = [py, "-m", "chatvec_fast", "merge", "--base", paths["base"], "--chat", paths["chat"], "--cp", paths["cp"],
             "--alpha", str(ALPHA), "--quiet"]  # fmt: skip
    if not os.path.exists(os.path.join(merged, "chatvec_report.json")):
        os.makedirs(root, exist_ok=True)
        alternate({"make the output": ([*merge, "--out", merged], os.path.join(root, "none"))}, 1, [])
    none = os.path.join(root, "none")  # verify writes nothing: nothing to delete between runs
    todo = {
        "merge": ([*merge, "--out", scratch], scratch),
        "verify --all": ([py, "-m", "chatvec_fast", "verify", merged, "--all"], none),
        "verify --checksums-only": ([py, "-m", "chatvec_fast", "verify", merged, "--checksums-only"], none),
    }
    if a.baseline_tree:
        tree = os.path.abspath(a.baseline_tree)  # run from there: its chatvec_fast comes first on sys.path
        env = ["env", "-C", tree, f"PYTHONPATH={tree}"]
        for mode in ("--all", "--checksums-only"):
            todo[f"verify {mode} (baseline tree)"] = ([*env, py, "-m", "chatvec_fast", "verify", merged, mode], none)
    started = time.strftime("%Y-%m-%d %H:%M")
    runs = alternate(todo, a.rounds, [*paths.values(), merged], a.size)
    out_bytes = dir_bytes(merged)
    summary = {name: {**summarize(rs), "mbps": out_bytes / summarize(rs)["median"] / 1e6,
                      "peak_rss": max(r["peak_rss"] for r in rs)} for name, rs in runs.items()}  # fmt: skip
    ratios = {name: v["median"] / summary["merge"]["median"] for name, v in summary.items() if name != "merge"}
    print(f"\n{machine()}, {started}, {a.size} triple ({out_bytes / 1e9:.2f} GB output), {a.rounds} rounds\n")
    print("| command | wall s, median (min-max) | MB/s of output | / merge | peak RSS |\n|---|---|---|---|---|")
    for name, v in summary.items():
        ratio = f"{ratios[name]:.2f}x" if name in ratios else "1"
        print(f"| {name} | {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}) | {v['mbps']:.0f} | {ratio} | "
              f"{v['peak_rss'] / 1e6:.0f} MB |")  # fmt: skip
    save_json(a.json, {"machine": machine(), "date": started, "size": a.size, "rounds": a.rounds, "output_bytes":
                       out_bytes, "runs": runs, "summary": summary, "ratio_to_merge": ratios})  # fmt: skip


if __name__ == "__main__":
    main()
