"""One command for the comparison table and plots: chatvec against the pure-PyTorch merges, mergekit and
the I/O floor, on a generated model triple, alternating contenders, N rounds.

    python -m benchmarks.compare                        # --size small: 0.3 GB per model, 3 rounds
    python -m benchmarks.compare --size 1b --rounds 5   # the README table: TinyLlama shape, 2.2 GB per model
    python -m benchmarks.compare --size 7b              # Llama-2-7B shape, 13.5 GB per model (~70 GB of disk)

Writes OUT/report.md (the Markdown table, with this machine's description), OUT/results.json (every run)
and OUT/throughput.png, OUT/memory.png, OUT/exactness.png. Contenders that cannot run here (mergekit not
installed; triton without CUDA) are listed as skipped. mergekit is found on PATH or in $MERGEKIT_BIN.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from common import (  # noqa: E402
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

ALPHA = 0.5


def contenders(paths: dict, out: str) -> tuple[dict, list[str]]:
    py = sys.executable
    b, c, p = paths["base"], paths["chat"], paths["cp"]
    common = ["--base", b, "--chat", c, "--cp", p, "--out", out, "--alpha", str(ALPHA)]
    naive = os.path.join(HERE, "naive_merge.py")
    todo = {"chatvec (native)": [py, "-m", "chatvec_fast", "merge", *common, "--backend", "native", "--quiet"]}
    skipped = []
    if _cuda():
        todo["chatvec (triton)"] = [py, "-m", "chatvec_fast", "merge", *common, "--backend", "triton", "--quiet"]
    else:
        skipped.append("chatvec (triton): no CUDA GPU here")
    todo["naive PyTorch, bf16 math"] = [py, naive, *common]
    todo["naive PyTorch, fp32 math"] = [py, naive, *common, "--math", "fp32"]
    from mergekit_config import config, find

    tool = find("mergekit-yaml")
    if tool:
        cfg = os.path.join(CACHE, "mergekit-compare.yml")
        with open(cfg, "w") as f:
            f.write(config(b, c, p, ALPHA))
        todo["mergekit-yaml task_arithmetic (bf16)"] = [tool, cfg, out]
    else:
        skipped.append("mergekit: not installed (pip install mergekit, or set MERGEKIT_BIN)")
    todo.update(io_floors(paths, out))
    return todo, skipped


def _cuda() -> bool:
    if not os.path.exists("/proc/driver/nvidia/version"):
        return False
    import torch

    return torch.cuda.is_available()


def run(size: str, rounds: int, only: str | None = None) -> dict:
    paths = models(size)
    require_free(3 * dir_bytes(paths["cp"]))
    out = os.path.join(CACHE, "compare-out")
    todo, skipped = contenders(paths, out)
    if only:
        todo = {k: v for k, v in todo.items() if re.search(only, k)}
    nbytes = sum(dir_bytes(x) for x in paths.values()) + dir_bytes(paths["cp"])
    from exactness import measure

    exact = {}

    def check(name, path):
        if not name.startswith("I/O"):
            exact[name] = measure(paths["base"], paths["chat"], paths["cp"], path, ALPHA)

    runs = alternate({name: (cmd, out) for name, cmd in todo.items()}, rounds, paths.values(), size, check)
    summary = {}
    for name, rs in runs.items():
        s = summarize(rs)
        walls = [r["wall"] for r in rs]
        summary[name] = {**s, "gbps": nbytes / s["median"] / 1e9, "gbps_min": nbytes / max(walls) / 1e9,
                         "gbps_max": nbytes / min(walls) / 1e9, "peak_rss": max(r["peak_rss"] for r in rs),
                         "exact": exact.get(name)}  # fmt: skip
    return {"size": size, "params_bytes": dir_bytes(paths["cp"]), "bytes_moved": nbytes, "runs": runs,
            "summary": summary, "skipped": skipped}  # fmt: skip


def markdown(result: dict, header: str) -> str:
    s = result["summary"]
    ours = s["chatvec (native)"]["median"] if "chatvec (native)" in s else None
    floor = s[OVERLAPPED_FLOOR]["median"] if OVERLAPPED_FLOOR in s else None
    lines = [header, "",
             "| method | wall s, median (min-max) | GB/s | peak RSS | correctly rounded (max ulp) | vs chatvec "
             "| vs overlapped I/O floor |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, v in s.items():
        exact = exact_text(v["exact"])
        lines.append(f"| {name} | {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}) | {v['gbps']:.2f} | "
                     f"{v['peak_rss'] / 1e9:.2f} GB | {exact} | {_ratio(v['median'], ours)} | "
                     f"{_ratio(v['median'], floor)} |")  # fmt: skip
    for skip in result["skipped"]:
        name, why = skip.split(":", 1)
        lines.append(f"| {name} | skipped:{why} | | | | | |")
    return "\n".join(lines)


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if b else "-"


def plots(result: dict, title: str, out_dir: str) -> list[str]:
    """Throughput with min-max whiskers, peak memory, and exactness, as PNGs."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    names = list(s)
    title = "\n".join(textwrap.wrap(title, 95))

    def color(name):
        return "#2b7bba" if name.startswith("chatvec") else "#999999" if name.startswith("I/O") else "#e08a3c"

    def figure(rows, values, xlabel, filename, errors=None, labels=None, room=1.35):
        fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 2.0))
        y = list(range(len(rows)))
        ax.barh(y, values, xerr=errors, color=[color(n) for n in rows], capsize=4)
        ax.set_yticks(y, rows)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=8)
        right = [v + (errors[1][i] if errors else 0) for i, v in enumerate(values)]
        for i, text in enumerate(labels or [f"{v:.2f}" for v in values]):
            ax.text(right[i], i, "  " + text, va="center", fontsize=8)
        ax.set_xlim(0, max(right) * room if max(right) > 0 else 1)
        fig.tight_layout()
        path = os.path.join(out_dir, filename)
        fig.savefig(path, dpi=120, bbox_inches="tight")  # long labels: the figure grows to hold them
        plt.close(fig)
        return path

    gbps = [s[n]["gbps"] for n in names]
    whiskers = [[s[n]["gbps"] - s[n]["gbps_min"] for n in names], [s[n]["gbps_max"] - s[n]["gbps"] for n in names]]
    files = [
        figure(names, gbps, "GB/s moved (3 inputs read + 1 output written); higher is better; whiskers: min-max",
               "throughput.png", whiskers, [f"{v:.2f} GB/s" for v in gbps]),
        figure(names, [s[n]["peak_rss"] / 1e9 for n in names], "peak resident memory (GB); lower is better",
               "memory.png", labels=[f"{s[n]['peak_rss'] / 1e9:.2f} GB" for n in names]),
    ]  # fmt: skip
    measured = [n for n in names if s[n]["exact"]]
    wrong = [100 * (1 - s[n]["exact"]["exact_share"]) for n in measured]
    counts = [round((1 - s[n]["exact"]["exact_share"]) * s[n]["exact"]["elements"]) for n in measured]
    sample = s[measured[0]]["exact"]["elements"] / 1e6 if measured else 0
    labels = [f"{c:,} element{'' if c == 1 else 's'} ({w:.4g}%), max {s[n]['exact']['max_ulp']} ulp"
              for c, w, n in zip(counts, wrong, measured)]  # fmt: skip
    files.append(figure(measured, wrong, f"elements not correctly rounded, % of a {sample:.0f}M-element sample; "
                        "lower is better", "exactness.png", labels=labels, room=1.75))  # fmt: skip
    return files


def replot(out_dir: str):
    """Redraws the PNGs from an earlier run's results.json."""
    import json

    with open(os.path.join(out_dir, "results.json")) as f:
        doc = json.load(f)
    return plots(doc, _title(doc, doc["size"], doc["rounds"], doc["date"]), out_dir)


def _title(result: dict, size: str, rounds: int, date: str) -> str:
    return (f"Chat Vector merge of a bf16 model triple, {result['params_bytes'] / 1e9:.2f} GB per model ({size} "
            f"shape), alpha {ALPHA}, {rounds} alternating rounds, {date}. Machine: {machine()}")  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--size", default="small", help="model shape from chatvec_fast.testing.synthetic.SHAPES (tiny, small, 1b, 7b)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out-dir", default=None, help="default: bench-results/compare-SIZE")
    ap.add_argument("--only", default=None, metavar="REGEX", help="run only the contenders matching REGEX")
    ap.add_argument("--replot", action="store_true", help="redraw the plots of OUT-DIR/results.json and exit")
    a = ap.parse_args()
    out_dir = a.out_dir or os.path.join("bench-results", f"compare-{a.size}")
    os.makedirs(out_dir, exist_ok=True)
    if a.replot:
        print("\n".join(replot(out_dir)))
        return
    started = time.strftime("%Y-%m-%d %H:%M")
    result = run(a.size, a.rounds, a.only)
    described = (f"{machine()}; {result['params_bytes'] / 1e9:.2f} GB per model ({a.size} shape), alpha {ALPHA}, "
                 f"{a.rounds} alternating rounds, {started}")  # fmt: skip
    report = markdown(result, f"Merge of a bf16 triple: {described}")
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report + "\n")
    save_json(os.path.join(out_dir, "results.json"), {"machine": machine(), "date": started, "alpha": ALPHA,
                                                      "rounds": a.rounds, **result})  # fmt: skip
    files = plots(result, _title(result, a.size, a.rounds, started), out_dir)
    print("\n" + report)
    print(f"\nwrote {out_dir}/report.md, results.json, " + ", ".join(os.path.basename(f) for f in files))


if __name__ == "__main__":
    main()
