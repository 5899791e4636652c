"""File-level benchmark: chatvec merge vs the pure-PyTorch merge vs the I/O floor, on the same files.

Generates a TinyLlama-shaped bf16 triple (1.1B parameters, 1 GB shards) once,
then runs every method N times, alternating (A B C D A B C D ...), so a slow
spell of this noisy VM hits all of them alike. Every timing runs until the
output is on disk: a `sync` right after each command is counted in. Before
each run the output is deleted, the inputs are read into the page cache and
dirty pages are flushed.

GB/s = (3 inputs read + 1 output written) / wall time. Peak RSS is the
kernel's ru_maxrss of the process (mmapped pages it touched included).

    python benchmarks/bench_merge.py --rounds 5             # ~6 min, needs ~16 GB of disk
    python benchmarks/bench_merge.py --rounds 3 --size small --size 1b   # RSS at two model sizes
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import CACHE, alternate, dir_bytes, machine, models, require_free, save_json, summarize

HERE = os.path.dirname(os.path.abspath(__file__))
ALPHA = 0.5


def methods(paths: dict, out: str) -> dict[str, list[str]]:
    py = sys.executable
    common = ["--base", paths["base"], "--chat", paths["chat"], "--cp", paths["cp"], "--out", out]
    read_all = (
        f"cat {paths['base']}/*.safetensors {paths['chat']}/*.safetensors {paths['cp']}/*.safetensors > /dev/null"
    )
    write_one = f"mkdir -p {out} && cat {paths['cp']}/*.safetensors | dd of={out}/floor.bin bs=16M iflag=fullblock"
    return {
        "chatvec merge": [py, "-m", "chatvec_fast", "merge", *common, "--alpha", str(ALPHA), "--quiet"],
        "naive PyTorch, bf16 math": [py, os.path.join(HERE, "naive_merge.py"), *common, "--alpha", str(ALPHA)],
        "naive PyTorch, fp32 math": [
            py,
            os.path.join(HERE, "naive_merge.py"),
            *common,
            "--alpha",
            str(ALPHA),
            "--math",
            "fp32",
        ],
        # The floor: read the three inputs, write one output-sized file of real
        # bytes until it is on disk. Two ways to write, as the disk allows.
        "I/O floor, page cache (cat; dd conv=fsync)": ["sh", "-c", f"{read_all} && {write_one} conv=fsync status=none"],
        "I/O floor, direct (cat; dd oflag=direct)": ["sh", "-c", f"{read_all} && {write_one} oflag=direct status=none"],
    }


def run_size(size: str, rounds: int, only_chatvec: bool) -> dict:
    paths = models(size)
    require_free(2 * dir_bytes(paths["cp"]))
    out = os.path.join(CACHE, "out")
    nbytes = sum(dir_bytes(p) for p in paths.values()) + dir_bytes(paths["cp"])
    todo = {name: (cmd, out) for name, cmd in methods(paths, out).items()}
    if only_chatvec:
        todo = {k: v for k, v in todo.items() if k == "chatvec merge"}
    from exactness import measure

    exact = {}

    def check(name, path):
        if not name.startswith("I/O"):
            exact[name] = measure(paths["base"], paths["chat"], paths["cp"], path, ALPHA)

    runs = alternate(todo, rounds, paths.values(), size, check)
    summary = {}
    for name, rs in runs.items():
        s = summarize(rs)
        summary[name] = {
            **s,
            "gbps": nbytes / s["median"] / 1e9,
            "peak_rss": max(r["peak_rss"] for r in rs),
            "cpu_s": summarize(rs, "user")["median"] + summarize(rs, "sys")["median"],
            "exact": exact.get(name),
        }
    return {
        "size": size,
        "bytes_moved": nbytes,
        "params_bytes": dir_bytes(paths["cp"]),
        "runs": runs,
        "summary": summary,
    }


def table(result: dict) -> str:
    s = result["summary"]
    floors = [v for k, v in s.items() if k.startswith("I/O")]
    floor = min(floors, key=lambda v: v["median"]) if floors else None  # the faster way to do the same I/O
    ref = {k: v["median"] for k, v in s.items()}
    lines = [
        "| method | wall s, median (min-max) | GB/s | peak RSS | CPU s | exact share (max ulp) | "
        "vs best I/O floor | chatvec speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours = ref.get("chatvec merge")
    for name, v in s.items():
        ex = v["exact"]
        exact = f"{100 * ex['exact_share']:.4f}% ({ex['max_ulp']})" if ex else "-"
        vs_floor = f"{v['median'] / floor['median']:.2f}x" if floor else "-"
        speedup = f"{v['median'] / ours:.2f}x" if ours else "-"
        timing = f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"
        rss = f"{v['peak_rss'] / 1e9:.2f} GB"
        cells = [name, timing, f"{v['gbps']:.2f}", rss, f"{v['cpu_s']:.1f}", exact, vs_floor, speedup]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", action="append", help="model size(s) from chatvec_fast.synthetic.SHAPES (default 1b)")
    ap.add_argument("--only-chatvec", action="store_true", help="just chatvec merge (e.g. for the RSS-vs-size check)")
    ap.add_argument("--json", default=os.path.join("bench-results", "merge.json"))
    a = ap.parse_args()
    sizes = a.size or ["1b"]
    started = time.strftime("%Y-%m-%d %H:%M")
    results = [run_size(size, a.rounds, a.only_chatvec) for size in sizes]
    doc = {"machine": machine(), "date": started, "alpha": ALPHA, "rounds": a.rounds, "results": results}
    save_json(a.json, doc)
    print(f"\n{machine()}, {started}, alpha {ALPHA}, {a.rounds} alternating rounds")
    for r in results:
        print(
            f"\n{r['size']}: {r['params_bytes'] / 1e9:.2f} GB per model, {r['bytes_moved'] / 1e9:.2f} GB moved "
            f"per merge\n"
        )
        print(table(r))
    print(f"\nraw results: {a.json}")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
