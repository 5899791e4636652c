"""FP8 inputs: the 1.1B merge of block-scaled FP8 checkpoints (base, chat and cp: the layers' linear weights
F8_E4M3 in 128x128 blocks with F32 scale_inv; embeddings, norms and lm_head bf16) to bf16, against the bf16
merge of the same shape, and FP8 in -> FP8 out (--dtype fp8, re-quantized in cp's layout), alternating, in
one run, beside the I/O floor of the FP8 -> bf16 merge (its inputs read while a bf16 cp's bytes are written
with O_DIRECT, all at once).

GB/s counts the bytes moved: the 3 inputs as stored (FP8 codes, scales and headers included) + the output
as written (bf16, or FP8 codes and scales). Inputs are warm (page cache), outputs timed until on disk.

    python -m benchmarks.bench_fp8 --rounds 5                # 1b: the TinyLlama shape of the other benchmarks
    python -m benchmarks.bench_fp8 --rounds 5 --no-fp8-out   # without the FP8 -> FP8 row
    python -m benchmarks.bench_fp8 --smoke                   # tiny models, 1 round: checks the script (CI)
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ALPHA = 0.5
ROLES = ("base", "chat", "cp")
FP8, BF16, FP8_OUT = "FP8 in -> bf16 out", "bf16 in -> bf16 out", "FP8 in -> FP8 out (--dtype fp8)"
# What moving FP8 -> bf16's bytes costs with no arithmetic: the 3 FP8 inputs read while a bf16 cp's bytes
# are written with O_DIRECT, all at once (benchmarks/common.py's overlapped floor).
FP8_FLOOR = "I/O floor of FP8 in -> bf16 out, overlapped"


def fp8_layout(block: int):
    from chatvec_fast.testing.quantize import layout_quantizer
    from chatvec_fast.testing.synthetic import FP8Layout

    return FP8Layout("block", layout_quantizer, (block, block))


def stored_bytes(size: str, layout) -> int:
    """Bytes of one model of the FP8 triple (tensor data; headers aside), to check the disk before writing."""
    from chatvec_fast.testing.synthetic import SHAPES, tensor_specs

    return sum(math.prod(s) + 4 * math.prod(layout.scale_shape(s)) if layout.applies(n) else 2 * math.prod(s)
               for n, s in tensor_specs(SHAPES[size]))  # fmt: skip


def fp8_models(size: str, block: int) -> dict[str, str]:
    """The FP8 triple of `size`, every role quantized in block x block blocks by the package's quantizer;
    generated once and cached beside the bf16 triples (the .complete marker: a killed run starts over)."""
    from common import CACHE, SHARD_BYTES, require_free

    from chatvec_fast.testing.synthetic import make_triple

    layout = fp8_layout(block)
    root = os.path.join(CACHE, f"models-{size}-fp8-block{block}")
    done = os.path.join(root, ".complete")
    paths = {r: os.path.join(root, r) for r in ROLES}
    if not os.path.exists(done):
        shutil.rmtree(root, ignore_errors=True)
        require_free(3 * stored_bytes(size, layout))
        t0 = time.perf_counter()
        print(f"generating the {size} FP8 triple ({block}x{block} blocks) in {root} (once) ...", flush=True)
        make_triple(root, size, shard_bytes=SHARD_BYTES, fp8=dict.fromkeys(ROLES, layout))
        open(done, "w").close()
        print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def merge(paths: dict, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chatvec_fast", "merge", *(x for r in ROLES for x in (f"--{r}", paths[r])),
            "--out", out, "--alpha", str(ALPHA), "--quiet", *extra]  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1b", help="model shape from chatvec_fast.testing.synthetic.SHAPES")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, help="FP8 block rows = cols (default 128, DeepSeek-V3's; tiny: 32)")
    ap.add_argument("--no-fp8-out", action="store_true", help="leave out the FP8 in -> FP8 out row")
    ap.add_argument("--smoke", action="store_true", help="tiny models, 1 round, every row: checks the script")
    ap.add_argument("--json", default=os.path.join("bench-results", "fp8.json"))
    a = ap.parse_args()
    if a.smoke:
        os.environ["CHATVEC_BENCH_DIR"] = os.environ.get("CHATVEC_BENCH_DIR", "/tmp/chatvec-bench-smoke")
        a.size, a.rounds, a.no_fp8_out = "tiny", 1, False
    if a.block is None:
        # tiny: 32x32, so that its small matrices (64x64, 32x64, 64x176) span several blocks, partial ones
        # included, as the 1.1B's do in 128x128 blocks.
        a.block = 32 if a.size == "tiny" else 128
    if HERE not in sys.path:  # `python -m benchmarks.bench_fp8` and `python benchmarks/bench_fp8.py` alike
        sys.path.insert(0, HERE)
    # common reads CHATVEC_BENCH_DIR when imported: after --smoke has set it.
    from common import (
        CACHE,
        OVERLAPPED_FLOOR,
        alternate,
        dir_bytes,
        io_floors,
        machine,
        models,
        require_free,
        save_json,
        summarize,
    )

    bf16, fp8 = models(a.size), fp8_models(a.size, a.block)
    require_free(2 * dir_bytes(bf16["cp"]))  # the largest output (bf16), and room to spare
    out = os.path.join(CACHE, "fp8-out")
    floor = io_floors(fp8, out, page_cache=False, write_from=bf16["cp"])[OVERLAPPED_FLOOR]
    todo = {FP8: (merge(fp8, out), out), BF16: (merge(bf16, out), out), FP8_FLOOR: (floor, out)}
    if not a.no_fp8_out:
        todo[FP8_OUT] = (merge(fp8, out, "--dtype", "fp8"), out)
    read = {FP8: sum(dir_bytes(p) for p in fp8.values()), BF16: sum(dir_bytes(p) for p in bf16.values())}
    read[FP8_OUT] = read[FP8_FLOOR] = read[FP8]
    written = {}

    def check(name, path):
        # The bytes each merge wrote (its last round; the same every round), and that they are right:
        # chatvec verify recomputes a sample of every tensor from the inputs (untimed).
        if name == FP8_FLOOR:  # dd's floor0.bin: bytes to count, nothing to verify
            written[name] = dir_bytes(path, suffix=".bin")
            return
        written[name] = dir_bytes(path)
        r = subprocess.run([sys.executable, "-m", "chatvec_fast", "verify", path, "--quiet"], capture_output=True,
                           text=True)  # fmt: skip
        if r.returncode != 0:
            raise SystemExit(f"{name}: chatvec verify failed:\n{r.stdout}{r.stderr}")

    started = time.strftime("%Y-%m-%d %H:%M")
    # Every run starts with both triples warm in the page cache (as bench_formats.py does with its two).
    runs = alternate(todo, a.rounds, [*fp8.values(), *bf16.values()], a.size, check)
    summary = {}
    for name, rs in runs.items():
        s = summarize(rs)
        moved = read[name] + written[name]
        summary[name] = {**s, "read": read[name], "written": written[name], "gbps": moved / s["median"] / 1e9,
                         "peak_rss": max(r["peak_rss"] for r in rs)}  # fmt: skip
    ref = summary[BF16]
    ratios = {name: {"gbps": v["gbps"] / ref["gbps"], "time": v["median"] / ref["median"]}
              for name, v in summary.items() if name != BF16}  # fmt: skip
    print(f"\n{machine()}, {started}, {a.size} triples, FP8 in {a.block}x{a.block} blocks, alpha {ALPHA}, "
          f"{a.rounds} alternating rounds\n")  # fmt: skip
    print("| merge | read GB | written GB | wall s, median (min-max) | GB/s | peak RSS |\n|---|---|---|---|---|---|")
    for name, v in summary.items():
        print(f"| {name} | {v['read'] / 1e9:.3f} | {v['written'] / 1e9:.3f} | {v['median']:.2f} "
              f"({v['min']:.2f}-{v['max']:.2f}) | {v['gbps']:.2f} | {v['peak_rss'] / 1e9:.2f} GB |")  # fmt: skip
    print()
    for name, r in ratios.items():
        print(f"{name} / {BF16}: GB/s {r['gbps']:.2f}x, time {r['time']:.2f}x")
    print(f"{FP8} / its I/O floor: time {summary[FP8]['median'] / summary[FP8_FLOOR]['median']:.2f}x")
    save_json(a.json, {"machine": machine(), "date": started, "size": a.size, "block": a.block, "alpha": ALPHA,
                       "rounds": a.rounds, "runs": runs, "summary": summary, "ratios": ratios})  # fmt: skip


if __name__ == "__main__":
    main()
