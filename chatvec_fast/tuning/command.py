"""A tune, run: the inputs held once, one model switched to each alpha, each alpha evaluated and recorded.

    check (check.py) -> hold base, chat and cp (HeldMerge) -> the model's files as merge writes them, the model
    built once (model.py) -> cp's row (alpha 0) -> each alpha: switch, evaluate, rewrite results.json -> the chat
    model's row -> the recommendation (pick.py), results.md, the plot -> --write-best (the ordinary merge)

Everything that can be checked is checked before the inputs are read: the options (as merge checks them), the
evaluation's files against the merged model's tokenizer and chat template (and the chat model's), --out and
--write-best.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
import time

from .. import faults
from ..errors import OutputError
from ..job import Job
from ..memory.options import MEMORY_OPTIONS
from ..report import FORMULAS
from ..units import format_bytes
from . import results as res
from .check import TuneJob, check_outputs
from .model import build_model, context_window, eos_ids, load_chat, load_tokenizer, write_model_files
from .pick import recommend, statement
from .record import check_resumable, inputs_record, options_record, versions
from .vector import inspect_inputs


def run_tune(job: TuneJob) -> res.TuneResults:
    """Runs a checked tune (check.build); returns its results. Interrupted, results.json keeps the finished
    alphas and the exception says so (exc.chatvec_tune: the --out to --resume)."""
    s = job.settings
    held = hold_inputs(job)
    check_outputs(job, held.job.inputs)
    created = not os.path.lexists(job.out)
    scratch = tempfile.mkdtemp(prefix="chatvec-tune-") if s.dry_run else None
    if scratch is None:
        os.makedirs(job.out, exist_ok=True)
    with _locked(scratch or job.out, job.name("out")):
        return _run(job, held, created, scratch)


def hold_inputs(job: TuneJob):
    """The tune's HeldMerge (not loaded yet): in host memory for --device cpu, else on the device."""
    from ..memory import HeldMerge

    hold = "host" if job.settings.device == "cpu" else "device"
    options = {n: getattr(job.merge.settings, n) for n in MEMORY_OPTIONS}
    inputs = job.merge.inputs
    return HeldMerge(inputs["base"], inputs["chat"], inputs["cp"], hold=hold,
                     device=None if hold == "host" else job.settings.device, **options)  # fmt: skip


def _run(job: TuneJob, held, created: bool, scratch: str | None) -> res.TuneResults:
    s = job.settings
    try:
        target = scratch or job.out
        model_dir = write_model_files(held.plan, s.chat_template_from, s.tokenizer_from, target, job.merge.spelling)
        evaluation = _evaluation(job, held, model_dir)
        document = _document(job, held, model_dir, evaluation)
    except BaseException:
        if scratch is None:
            _remove_ours(job.out, created)
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if s.dry_run:
        document["dry_run"] = _dry_run_text(job, held, evaluation)
        return res.TuneResults(job.out, document)
    if s.resume and os.path.exists(os.path.join(job.out, res.RESULTS_NAME)):
        old = res.load(job.out)
        check_resumable(old, document, job.out)
        document["rows"], document["references"] = old["rows"], old["references"]
        if "vector" in old:
            document["vector"] = old["vector"]
    _save(job.out, document)  # the run's options and inputs, before the first alpha
    if "vector" not in document:  # the chat vector by layer (inspect), once: --resume keeps it
        document["vector"] = inspect_inputs(held.job.inputs, job.out, quiet=not s.progress)
        _save(job.out, document)
    try:
        _sweep(job, held, model_dir, evaluation, document)
    except BaseException as exc:
        exc.chatvec_tune = (job.out, len(document["rows"]))
        raise
    finally:
        held.close()
    if s.write_best is not None and document["recommendation"]["alpha"] is not None:
        _write_best(job, document)
    return res.TuneResults(job.out, document)


def _evaluation(job: TuneJob, held, model_dir: str) -> dict:
    """The Evaluators of the merged model and of the chat model, their inputs checked now (before any work)."""
    from .evaluate import EvalInputs, EvalSettings, Evaluator, check_eval_inputs

    s = job.settings
    settings = EvalSettings(language=job.language, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size,
                            window=s.window, language_id=s.language_id, spelling=job.merge.spelling)  # fmt: skip
    inputs = EvalInputs(text=job.text, reference_text=job.reference_text, prompts=job.prompts)
    tokenizer, eos = load_tokenizer(model_dir, "the merged model"), eos_ids(model_dir)
    context = context_window(model_dir)
    check_eval_inputs(tokenizer, inputs, settings, context)
    chat_dir = held.job.inputs["chat"]
    chat_tokenizer, chat_eos = load_tokenizer(chat_dir, "the chat model"), eos_ids(chat_dir)
    try:
        check_eval_inputs(chat_tokenizer, inputs, settings, context_window(chat_dir))
    except Exception as exc:
        exc.args = (f"the chat model's reference row (its own tokenizer and chat template): {exc}",)
        raise
    merged = Evaluator(tokenizer, inputs, settings, eos)
    chat = Evaluator(chat_tokenizer, inputs, settings, chat_eos, identifier=merged.identifier)
    return {"merged": merged, "chat": chat, "window": s.window or context, "eos": list(eos),
            "chat_eos": list(chat_eos)}  # fmt: skip


def _document(job: TuneJob, held, model_dir: str, evaluation: dict) -> dict:
    s = job.settings
    return {
        "tool": "chatvec-fast",
        "kind": "tune",
        "format": res.FORMAT,
        "formula": FORMULAS["merge"],
        "options": options_record(s),
        "alphas": list(job.alphas),
        "evaluation": {
            "language": job.language,
            "max_new_tokens": s.max_new_tokens,
            "batch_size": s.batch_size,
            "window": evaluation["window"],
            "eos": evaluation["eos"],
            "chat_eos": evaluation["chat_eos"],
            "model_files": res.MODEL_DIR,
            "references": res.REFERENCE_NOTES,
        },  # fmt: skip
        "inputs": inputs_record(held.plan, held.job.inputs, held.job.sources, job.paths, model_dir),
        "versions": versions(),
        "rows": [],
        "references": {},
        "recommendation": {
            "rule": s.pick,
            "statement": statement(s.pick, s.max_bpb_increase),
            "alpha": None,
            "reason": "the run is unfinished",
        },  # fmt: skip
        "complete": False,
    }


def _row(alpha, figures: dict, seconds: dict) -> dict:
    """A row of results.json: the alpha, the Evaluator's figures and replies, the seconds of each step."""
    return {"alpha": alpha, **{k: v for k, v in figures.items() if k != "seconds"}, "seconds": seconds}


def _sweep(job: TuneJob, held, model_dir: str, evaluation: dict, document: dict):
    """cp's row, every alpha not done yet, the chat model's row; results.json rewritten after each."""
    s, out = job.settings, job.out
    done = {r["alpha"] for r in document["rows"]}
    todo = [a for a in job.alphas if a not in done]
    refs = document["references"]
    steps = len(todo) + ("cp" not in refs and 0.0 not in todo) + ("chat" not in refs)
    clock = _Eta(steps, s.progress)
    if todo or "cp" not in document["references"]:
        _say(s, f"tune: holding {format_bytes(held.nbytes)} of inputs ({held.hold}, {held.device}); "
             f"{len(todo)} of {len(job.alphas)} alphas to evaluate")  # fmt: skip
        t0 = time.perf_counter()
        held.load()
        model = build_model(model_dir, held.plan, s.device)
        document.setdefault("seconds", {})["load"] = time.perf_counter() - t0
        order = ([0.0] if "cp" not in document["references"] else []) + [a for a in todo if a != 0.0 or
                                                                           "cp" in document["references"]]  # fmt: skip
        for alpha in order:
            t0 = time.perf_counter()
            held.apply(model, alpha)
            t1 = time.perf_counter()
            figures = evaluation["merged"].evaluate(model)
            row = _row(alpha, figures, {"merge": t1 - t0, "evaluate": time.perf_counter() - t1})
            if "cp" not in document["references"] and alpha == 0.0:
                document["references"]["cp"] = row
            if alpha in todo:
                document["rows"] = sorted([*document["rows"], row], key=lambda r: r["alpha"])
            _update(document, s)
            _save(out, document)
            clock.step(f"alpha {alpha!r}", row)
            faults.check("tuned", alpha=alpha)
        del model
    held.close()
    if "chat" not in document["references"]:
        t0 = time.perf_counter()
        model = load_chat(held.job.inputs["chat"], s.device)
        t1 = time.perf_counter()
        figures = evaluation["chat"].evaluate(model)
        seconds = {"load": t1 - t0, "evaluate": time.perf_counter() - t1}
        document["references"]["chat"] = _row(None, figures, seconds)
        del model
        _save(out, document)
        clock.step("the chat model", document["references"]["chat"])
    _update(document, s)
    document["complete"] = len(document["rows"]) == len(job.alphas)
    _save(out, document)
    from .plot import plot

    plot(out, document)


def _update(document: dict, s):
    document["recommendation"] = recommend(document["rows"], document["references"]["cp"], s.pick,
                                           s.max_bpb_increase)  # fmt: skip


def _save(out: str, document: dict):
    res.save(out, document)
    res.write_table(out, document)


def _write_best(job: TuneJob, document: dict):
    """The ordinary merge of the recommended alpha with the same options, to --write-best."""
    from ..run import run

    alpha = document["recommendation"]["alpha"]
    m = job.merge
    best = Job.build("merge", m.given, job.settings.write_best, [alpha], m.settings, sweep=False, spelling=m.spelling)
    report = run(best)
    document["write_best"] = {"path": os.path.abspath(job.settings.write_best), "alpha": alpha}
    _save(job.out, document)
    _say(job.settings, report.summary())


@contextlib.contextmanager
def _locked(out: str, out_name: str):
    """Holds an exclusive flock on --out (the directory itself: no lock file to leave behind) for the run, so a
    second tune (a --resume started twice) cannot write the same results; the kernel releases it if killed."""
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"another tune is writing {out}; wait for it to finish or choose another {out_name}"
            ) from None
        yield
    finally:
        os.close(fd)


class _Eta:
    """One line per finished step (an alpha or a reference row) on stderr, with the time left estimated from
    the steps so far (every step evaluates the same prompts and text, so they cost about the same)."""

    def __init__(self, steps: int, enabled: bool, stream=None):
        self.steps, self.enabled, self.stream = max(steps, 1), enabled, stream or sys.stderr
        self.done, self.start = 0, time.monotonic()

    def step(self, what: str, row: dict):
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * max(self.steps - self.done, 0)
        seconds = row["seconds"]
        made = f"merged {seconds['merge']:.3f} s" if "merge" in seconds else f"loaded {seconds['load']:.3f} s"
        self.stream.write(f"tune: {what} ({self.done}/{self.steps}): {made}, evaluated "
                          f"{seconds['evaluate']:.2f} s | fidelity {row['fidelity']:.3f}, stops {row['stops']:.3f}, "
                          f"bits/byte {row['bits_per_byte']:.4f} | ETA {eta:.0f} s\n")  # fmt: skip
        self.stream.flush()


def _say(s, text: str):
    if s.progress:
        print(text, file=sys.stderr)


def _remove_ours(out: str, created: bool):
    """After a failed check: the directory this run created, or the model files it wrote; nothing else."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
    elif not os.path.exists(os.path.join(out, res.RESULTS_NAME)):
        shutil.rmtree(os.path.join(out, res.MODEL_DIR), ignore_errors=True)


def _dry_run_text(job: TuneJob, held, evaluation: dict) -> str:
    s = job.settings
    return (f"tune (dry run): {len(job.alphas)} alphas {list(job.alphas)}; would hold {format_bytes(held.nbytes)} "
            f"({held.hold}, {held.device}); {len(job.prompts)} prompts, language {job.language}, window "
            f"{evaluation['window']} tokens; rule {s.pick}; nothing written")  # fmt: skip
