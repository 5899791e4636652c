"""Alpha-sweep benchmark: one chatvec sweep (K = 4) vs 4 chatvec merges vs the naive one-pass PyTorch sweep
vs mergekit (4 runs, and mergekit-multi) vs the sweep's I/O floor, on the 1.1B triple, in one run.

The I/O floors read the 3 inputs once and write 4 output-sized files of real bytes until they are on
disk: all at once (overlapped, what a perfect one-pass sweep costs), or reads first (sequential).
GB/s = (3 inputs + 4 outputs) / wall. mergekit runs when installed (`pip install mergekit`, or
MERGEKIT_BIN=/path/to/venv/bin); otherwise it is listed as skipped.

    python benchmarks/bench_sweep.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import (
    CACHE,
    OVERLAPPED_FLOOR,
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

HERE = os.path.dirname(os.path.abspath(__file__))
ALPHAS = (0.25, 0.5, 0.75, 1.0)


def methods(paths: dict, out: str) -> tuple[dict, list[str]]:
    py = sys.executable
    b, c, p = paths["base"], paths["chat"], paths["cp"]
    common = ["--base", b, "--chat", c, "--cp", p]
    text = ",".join(map(repr, ALPHAS))
    merges = " && ".join(
        f"{py} -m chatvec_fast merge --base {b} --chat {c} --cp {p} --out {out}/alpha-{a!r} --alpha {a} --quiet"
        for a in ALPHAS
    )
    todo = {
        "chatvec sweep (K=4, one pass)": [
            py,
            "-m",
            "chatvec_fast",
            "sweep",
            *common,
            "--out",
            out,
            "--alphas",
            text,
            "--quiet",
        ],
        "chatvec merge x4": ["sh", "-c", merges],
        "naive PyTorch one-pass sweep, bf16 math": [
            py,
            os.path.join(HERE, "naive_merge.py"),
            *common,
            "--out",
            out,
            "--alphas",
            text,
        ],
    }
    todo.update(io_floors(paths, out, outputs=len(ALPHAS)))
    skipped = []
    from mergekit_config import config, find, multi_config

    yaml_tool, multi_tool = find("mergekit-yaml"), find("mergekit-multi")
    cfg_dir = os.path.join(CACHE, "mergekit-configs")
    os.makedirs(cfg_dir, exist_ok=True)
    if yaml_tool:
        runs = []
        for a in ALPHAS:
            cfg = os.path.join(cfg_dir, f"alpha-{a!r}.yml")
            with open(cfg, "w") as f:
                f.write(config(b, c, p, a))
            runs.append(f"{yaml_tool} {cfg} {out}/alpha-{a!r}")
        todo["mergekit-yaml x4 (bf16)"] = ["sh", "-c", " && ".join(runs)]
    else:
        skipped.append("mergekit-yaml x4: mergekit not installed (pip install mergekit, or set MERGEKIT_BIN)")
    if multi_tool:
        cfg = os.path.join(cfg_dir, "multi.yml")
        with open(cfg, "w") as f:
            f.write(multi_config(b, c, p, ALPHAS))
        todo["mergekit-multi (bf16)"] = [multi_tool, cfg, "--intermediate-dir", out]
    else:
        skipped.append("mergekit-multi: mergekit not installed")
    return todo, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", default="1b")
    ap.add_argument("--json", default=os.path.join("bench-results", "sweep.json"))
    a = ap.parse_args()
    paths = models(a.size)
    require_free(5 * dir_bytes(paths["cp"]))  # four outputs, and slack
    out = os.path.join(CACHE, "sweep-out")
    todo, skipped = methods(paths, out)
    nbytes = sum(dir_bytes(p) for p in paths.values()) + len(ALPHAS) * dir_bytes(paths["cp"])
    started = time.strftime("%Y-%m-%d %H:%M")
    from exactness import measure

    exact = {}

    def check(name, path):
        sub = os.path.join(path, "alpha-0.5")
        if os.path.isdir(sub) and not name.startswith("I/O"):
            exact[name] = measure(paths["base"], paths["chat"], paths["cp"], sub, 0.5)

    runs = alternate({name: (cmd, out) for name, cmd in todo.items()}, a.rounds, paths.values(), a.size, check)
    summary = {}
    for name, rs in runs.items():
        s = summarize(rs)
        summary[name] = {
            **s,
            "gbps": nbytes / s["median"] / 1e9,
            "peak_rss": max(r["peak_rss"] for r in rs),
            "exact": exact.get(name),
        }
    floor = summary[OVERLAPPED_FLOOR]["median"] if OVERLAPPED_FLOOR in summary else None
    ours = summary["chatvec sweep (K=4, one pass)"]["median"]
    print(
        f"\n{machine()}, {started}, {a.size} triple, alphas {ALPHAS}, {a.rounds} alternating rounds, "
        f"{nbytes / 1e9:.2f} GB moved (3 inputs + 4 outputs)\n"
    )
    print(
        "| method | wall s, median (min-max) | GB/s | peak RSS | exact share at alpha 0.5 (max ulp) "
        "| vs chatvec sweep |"
    )
    print("|---|---|---|---|---|---|")
    for name, v in summary.items():
        exact_cell = exact_text(v["exact"])
        print(
            f"| {name} | {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}) | {v['gbps']:.2f} | "
            f"{v['peak_rss'] / 1e9:.2f} GB | {exact_cell} | {v['median'] / ours:.2f}x |"
        )
    for s in skipped:
        print(f"| {s.split(':')[0]} | skipped: {s.split(':', 1)[1].strip()} | | | | |")
    if floor:
        print(f"\nchatvec sweep / overlapped I/O floor = {ours / floor:.2f}")
    save_json(
        a.json,
        {
            "machine": machine(),
            "date": started,
            "alphas": ALPHAS,
            "rounds": a.rounds,
            "bytes_moved": nbytes,
            "runs": runs,
            "summary": summary,
            "skipped": skipped,
        },
    )


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
