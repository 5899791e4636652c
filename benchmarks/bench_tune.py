"""chatvec tune's route against the disk route, per alpha, alternating, in one process.

  tune      the inputs held once (HeldMerge), one model built once; per alpha: the held switch, then the
            evaluation (bits per byte, greedy replies, language, stops) on that model
  disk      `chatvec sweep` of every alpha to disk in one pass (the fastest way to write K models: one read of
            the inputs), then per alpha: transformers' from_pretrained of that output, then the same evaluation
            (the same Evaluator object, on the same tokenizer files)

The disk route's merge is charged per alpha as the sweep's time / K. --disk-route merge instead runs one
`chatvec merge` per alpha and deletes its output after the evaluation: for K models that do not fit the disk
(10 alphas of a 7B triple are 135 GB). The two routes alternate alpha by alpha
(which goes first flips each alpha), so a slow moment of a shared machine hits both. Correctness after timing:
both routes' figures are identical at every alpha (the same weights, bit for bit, give the same numbers).
Reported: per alpha and in total, each route's seconds, and the share of the tune route's time in merging
(the switch) vs evaluating.

    python benchmarks/bench_tune.py                    # a 20M-parameter Llama (4 layers, vocab 32,000)
    python benchmarks/bench_tune.py --size 1b          # the 1.1B triple (TinyLlama's shape)
    python benchmarks/bench_tune.py --size 7b --alphas 0:1:0.1 --device cuda --disk-route merge   # on a GPU

With --device cuda the tune route holds the inputs in the GPU's memory (the triton kernel switches the
weights there) and the disk route loads each output onto the GPU; the evaluation runs on the GPU for both.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from common import CACHE, machine, models, save_json, warm  # noqa: E402

# 4 layers of width 256 with Llama's 32,000-token vocabulary: 20M parameters (41 MB in bf16), small enough that
# a 2-core machine evaluates a 2,048-token window in about a second, large enough that a switch is measurable.
BENCH_SHAPE = {"layers": 4, "hidden": 256, "intermediate": 704, "heads": 4, "kv_heads": 2, "vocab": 32000}
WORDS = ("the model can merge what the chat vector is about and then it will be like that in this language "
         "which we have all seen before so it is time to say hello world").split()  # fmt: skip
PROMPTS = ("hello", "what is the model about", "say something about the world", "how is the time")


def triple(size: str) -> dict[str, str]:
    """The benchmark's own 20M-parameter triple ("bench"), or the shared cached triple of a SHAPES size."""
    from chatvec_fast.testing.synthetic import LlamaShape, make_triple

    if size != "bench":
        return models(size)
    root = os.path.join(CACHE, f"models-tune-{size}")
    done = os.path.join(root, ".complete")
    if not os.path.exists(done):
        shutil.rmtree(root, ignore_errors=True)
        make_triple(root, LlamaShape(**BENCH_SHAPE), shard_bytes=10**9)
        open(done, "w").close()
    return {r: os.path.join(root, r) for r in ("base", "chat", "cp")}


def evaluation_files(directory: str, tokens: int) -> dict:
    """A text of about `tokens` words (at least the model's window) and a prompts file."""
    text = os.path.join(directory, "text.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write(" ".join(WORDS[i % len(WORDS)] for i in range(tokens)))
    prompts = os.path.join(directory, "prompts.jsonl")
    with open(prompts, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"prompt": p}) + "\n" for p in PROMPTS)
    return {"text": text, "prompts": prompts}


def figures(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "seconds"}


def run(size: str, alphas: list[float], max_new_tokens: int, window: int | None = None, device: str = "cpu",
        disk_route: str = "sweep", language_id: str = "lingua") -> dict:  # fmt: skip
    import torch
    import transformers

    import chatvec_fast
    from chatvec_fast.tuning.check import build
    from chatvec_fast.tuning.command import _evaluation, hold_inputs
    from chatvec_fast.tuning.model import build_model, write_model_files
    from chatvec_fast.write.names import alpha_dirname

    torch.manual_seed(0)
    paths = triple(size)
    work = tempfile.mkdtemp(prefix="bench-tune-", dir=CACHE)
    try:
        files = evaluation_files(work, 3000 if window is None else 2 * window)  # a window's tokens, or more
        job = build(paths, os.path.join(work, "tune"), alphas, files["text"], files["prompts"], "en",
                    {"max_new_tokens": max_new_tokens, "window": window, "device": device,
                     "language_id": language_id}, "api")  # fmt: skip
        held = hold_inputs(job)  # as tune holds them: host memory, or the device's
        os.makedirs(job.out)
        model_dir = write_model_files(held.plan, None, None, job.out)
        evaluator = _evaluation(job, held, model_dir)["merged"]
        warm(paths.values())
        t0 = time.perf_counter()
        held.load()
        model = build_model(model_dir, held.plan, device)
        synchronize(device)
        setup_tune = time.perf_counter() - t0
        sweep = None
        if disk_route == "sweep":
            t0 = time.perf_counter()
            chatvec_fast.sweep(paths["base"], paths["chat"], paths["cp"], os.path.join(work, "sweep"), alphas)
            sweep = time.perf_counter() - t0
        rows = []
        for k, alpha in enumerate(alphas):
            row = {"alpha": alpha}

            def tune_alpha(alpha=alpha, row=row):
                t0 = time.perf_counter()
                held.apply(model, alpha)
                synchronize(device)
                t1 = time.perf_counter()
                result = evaluator.evaluate(model)
                row["tune"] = {"merge": t1 - t0, "evaluate": time.perf_counter() - t1}
                row["tune_figures"] = figures(result)

            def disk_alpha(alpha=alpha, row=row):
                if sweep is None:  # one merge per alpha, deleted after its evaluation
                    out = os.path.join(work, "merge")
                    t0 = time.perf_counter()
                    chatvec_fast.merge(paths["base"], paths["chat"], paths["cp"], out, alpha=alpha)
                    merge = time.perf_counter() - t0
                else:
                    out, merge = os.path.join(work, "sweep", alpha_dirname(alpha)), sweep / len(alphas)
                t0 = time.perf_counter()
                loaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype="auto").to(device).eval()
                synchronize(device)
                t1 = time.perf_counter()
                result = evaluator.evaluate(loaded)
                row["disk"] = {"merge": merge, "load": t1 - t0, "evaluate": time.perf_counter() - t1}
                row["disk_figures"] = figures(result)
                del loaded
                gc.collect()
                if sweep is None:
                    shutil.rmtree(out)

            for route in (tune_alpha, disk_alpha) if k % 2 == 0 else (disk_alpha, tune_alpha):
                route()
            print(f"alpha {alpha:g}: tune {sum(row['tune'].values()):.2f} s (switch {row['tune']['merge']:.3f}), "
                  f"disk {sum(row['disk'].values()):.2f} s (load {row['disk']['load']:.3f})", flush=True)  # fmt: skip
            rows.append(row)
        for row in rows:  # after timing: the same weights give the same figures
            assert row["tune_figures"] == row["disk_figures"], f"alpha {row['alpha']}: the routes disagree"
        tune_merge = sum(r["tune"]["merge"] for r in rows)
        tune_eval = sum(r["tune"]["evaluate"] for r in rows)
        disk_total = sum(sum(r["disk"].values()) for r in rows)
        return {
            "machine": machine(),
            "size": size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "alphas": alphas,
            "max_new_tokens": max_new_tokens,
            "window": window,
            "device": device,
            "disk_route": disk_route,
            "language_id": language_id,
            "prompts": len(PROMPTS),
            "setup_seconds": {"tune: hold the inputs and build the model": setup_tune, "disk: the sweep": sweep},
            "rows": [{k: v for k, v in r.items() if not k.endswith("figures")} for r in rows],
            "totals": {
                "tune": tune_merge + tune_eval + setup_tune,
                "disk": disk_total,
                "tune_merge_share": tune_merge / (tune_merge + tune_eval),
                "disk_merge_and_load_share": sum(r["disk"]["merge"] + r["disk"]["load"] for r in rows) / disk_total,
            },  # fmt: skip
            "figures_equal": True,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def synchronize(device: str):
    """Waits for the device's queued work, so that a timing ends when the work does (CPU: nothing to wait for)."""
    if device != "cpu":
        import torch

        torch.cuda.synchronize(device)


def table(doc: dict) -> str:
    merge = "sweep / K" if doc["disk_route"] == "sweep" else "merge"
    lines = [f"| alpha | tune: switch s | tune: evaluate s | disk: {merge} s | disk: from_pretrained s | "
             "disk: evaluate s |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in doc["rows"]:
        t, d = r["tune"], r["disk"]
        lines.append(f"| {r['alpha']:g} | {t['merge']:.3f} | {t['evaluate']:.2f} | {d['merge']:.3f} | "
                     f"{d['load']:.3f} | {d['evaluate']:.2f} |")  # fmt: skip
    tot = doc["totals"]
    lines.append(f"\nTotal (setup included): tune {tot['tune']:.2f} s, disk {tot['disk']:.2f} s; the tune route "
                 f"spends {100 * tot['tune_merge_share']:.1f}% of its per-alpha time switching weights, the disk "
                 f"route {100 * tot['disk_merge_and_load_share']:.1f}% merging and loading.")  # fmt: skip
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="bench", help="bench (20M parameters), tiny, small or 1b")
    parser.add_argument("--alphas", default="0:1:0.25")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="tune's --window (default: the model's context; "
        "the 1.1B triple's 2,048-token window takes minutes an alpha on 2 cores)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, or a GPU (cuda, cuda:1): both routes evaluate there")
    parser.add_argument("--disk-route", choices=("sweep", "merge"), default="sweep",
                        help="sweep: one sweep writes every alpha's model (K models on disk); merge: one merge per "
                        "alpha, deleted after its evaluation (one model on disk)")  # fmt: skip
    parser.add_argument("--language-id", default="lingua", help="tune's --language-id: lingua or py3langid")
    parser.add_argument("--json", default=None, help="where to save the figures (default docs/results/tune-SIZE.json)")
    args = parser.parse_args()
    from chatvec_fast.alphas import normalize_alphas

    doc = run(args.size, normalize_alphas(args.alphas), args.max_new_tokens, args.window, args.device,
              args.disk_route, args.language_id)  # fmt: skip
    path = args.json or os.path.join(HERE, "..", "docs", "results", f"tune-{args.size}.json")
    save_json(path, doc)
    print(table(doc))
    print(f"saved {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
