"""The Python API: merge, sweep, extract, apply, tune, verify, inspect_vector. Each builds a Job and runs it; the
CLI is a thin shell over these.

    >>> import chatvec_fast
    >>> report = chatvec_fast.merge("llama-2-7b", "llama-2-7b-chat", "my-cp-7b", "merged", alpha=0.5)
    >>> print(report.summary())  # tensors, GB read and written, seconds, GB/s

Every keyword option is declared once, with its default and meaning, in settings.Settings: each function's
signature (as help() and inspect show it) and docstring list the ones it takes, built from there.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

from .alphas import vector_alphas
from .errors import ChatvecError
from .job import Job
from .plan.options import vector_roles
from .report import MergeReport
from .settings import INSPECT, Settings, unknown_option

if TYPE_CHECKING:
    from .inspection import VectorInspection

Alphas = Union[Sequence[float], str]


def _takes_options(command: str):
    """Gives the function `command`'s options: its signature gains them as keyword-only parameters (defaults
    and types from Settings), its docstring their meanings; an unknown keyword is a TypeError naming it."""

    def decorate(fn):
        signature = inspect.signature(fn)
        own = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
        options = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=Settings.default(f.name, command),
                                     annotation=f.type) for f in Settings.for_command(command)]  # fmt: skip
        fn.__signature__ = signature.replace(parameters=[*own, *options])
        fn.__doc__ = f"{fn.__doc__.rstrip()}\n\n    Options:\n{Settings.documentation(command)}\n"
        fn.__chatvec_command__ = command
        return fn

    return decorate


def run_command(command: str, inputs: dict, out, alphas, options: dict, *, sweep: bool,
                spelling: str = "api") -> MergeReport:  # fmt: skip
    """Checks and runs one command (the functions below, and the CLI with spelling="cli", end here)."""
    from .run import run

    known = {f.name for f in Settings.for_command(command)}
    for name in options:
        if name not in known:
            raise TypeError(unknown_option(command, name))
    job = Job.build(command, inputs, out, alphas, Settings.build(command, options), sweep=sweep, spelling=spelling)
    return run(job)


@_takes_options("merge")
def merge(base: str, chat: str, cp: str, out: str, alpha: float = 1.0, **options) -> MergeReport:
    """Writes the Chat Vector merge  cp + alpha * (chat - base)  of three checkpoints to `out`.

    Every tensor is computed in float64 and rounded once to its output dtype (cp's, or `dtype`). `out`
    appears only when complete.

    >>> report = merge("llama-2-7b", "llama-2-7b-chat", "my-cp-7b", "merged", alpha=0.5)
    >>> print(report.summary())  # tensors, GB read and written, seconds, GB/s
    """
    return run_command("merge", {"base": base, "chat": chat, "cp": cp}, out, [alpha], options, sweep=False)


@_takes_options("sweep")
def sweep(base: str, chat: str, cp: str, out: str, alphas: Alphas, **options) -> MergeReport:
    """Merges every alpha in one pass over the inputs: out/alpha-0.25/, out/alpha-0.5/, ...

    alphas: a list of floats, or text as the CLI takes it ("0.25,0.5" or "0.25:1:0.25"). Each output is
    bit-identical to merge() with that alpha.

    >>> sweep("base", "chat", "cp", "sweep-out", "0.25:1:0.25")
    """
    return run_command("sweep", {"base": base, "chat": chat, "cp": cp}, out, alphas, options, sweep=True)


@_takes_options("extract")
def extract(base: str, chat: str, out: str, **options) -> MergeReport:
    """Saves the chat vector chat - base as a safetensors checkpoint (float32 by default), with chat's tokenizer
    files in its chat/ folder (apply takes the chat template and eos from there, as merge does from chat).

    float32 holds a bf16 or f16 difference exactly when the two values' exponents are close; the elements it
    had to round are counted (report.inexact, and the vector's chatvec_report.json). float64 always holds the
    float64 difference the merge itself uses, so `apply` with it reproduces `merge` exactly.
    """
    return run_command("extract", {"base": base, "chat": chat}, out, [1.0], options, sweep=False)


@_takes_options("apply")
def apply(vector: str | Sequence[str], cp: str, out: str, alpha: float | Sequence[float] | None = None,
          alphas: Alphas | Sequence[Alphas] | None = None, **options) -> MergeReport:  # fmt: skip
    """Applies a saved chat vector: cp + alpha * vector (alpha 1.0 by default). With `alphas`, a sweep into
    out/alpha-*/.

    With a vector extracted exactly (inexact count 0, or float64) the result is bit-identical to merge()
    from the three models, and the output's other files are the same: the vector carries chat's tokenizer
    files (its chat/ folder), so the chat template and eos come from chat as in merge().

    Several vectors (a list) give cp + a1*v1 + ... + aM*vM, summed in float64 and rounded once, each vector
    read once: `alpha` is then one float per vector (default 1.0 each), `alphas` one list per vector, whose
    grid is swept (out/alpha-0.5_1.0/, ...). The chat template and eos come from the first vector's chat.

    >>> apply(["vec-chat", "vec-code"], "my-cp-7b", "merged", alpha=[0.5, 0.3])
    """
    inputs, values, sweep = apply_inputs(vector, cp, alpha, alphas)
    return run_command("apply", inputs, out, values, options, sweep=sweep)


def apply_inputs(vector, cp: str, alpha=None, alphas=None) -> tuple[dict, list, bool]:
    """apply's (inputs by role, the outputs' alphas, whether they make a sweep) from its arguments."""
    vectors = [vector] if isinstance(vector, (str, os.PathLike)) else list(vector)
    values, sweep = vector_alphas(len(vectors), alpha, alphas)
    inputs = {**{role: os.fspath(v) for role, v in zip(vector_roles(len(vectors)), vectors)}, "cp": cp}
    return inputs, values, sweep


@_takes_options("tune")
def tune(base: str, chat: str, cp: str, out: str, alphas: Alphas, text: str, prompts: str, language: str,
         **options):  # fmt: skip
    """Measures the merge at every alpha on one model in memory and recommends one; returns the TuneResults.

    The inputs are read once (HeldMerge) and one model, as `merge` would write it (cp's tokenizer, chat's
    template and eos by default; every merge option applies), is switched to each alpha and evaluated:
    bits per byte of `text` (a file in the target language) and of reference_text, the share of greedy replies
    to `prompts` (a JSON-lines file) in `language` (an ISO 639-1 code) and of reply lines, the share that stop
    at eos, and the bits per byte of the prompts' reference answers; cp alone (alpha 0) and the chat model
    alone are reference rows. out/results.json (every figure and reply), out/results.md and out/tune.png are
    written, results.json after every alpha; alphas as for sweep ("0:1:0.1" or a list).

    >>> results = tune("base", "chat", "cp", "tune-out", "0:1:0.25", "zh.txt", "prompts.jsonl", "zh")
    >>> results.alpha, results.rows[0]["fidelity"]
    """
    return run_tune({"base": base, "chat": chat, "cp": cp}, out, alphas, text, prompts, language, options)


def run_tune(inputs: dict, out, alphas, text, prompts, language, options: dict, spelling: str = "api"):
    """Checks and runs a tune (tune() above, and the CLI with spelling="cli")."""
    from .tuning import run

    return run(inputs, out, alphas, text, prompts, language, options, spelling)


def verify(
    output: str, every: bool = False, max_ulp: int = 0, checksums_only: bool = False, progress: bool = False
) -> list:
    """Re-derives an output (or each output of a sweep's directory) from the inputs its report names, in
    float64 by verify's own rules and arithmetic (apart from the planner and the kernels), compares bit for
    bit, and checks that the output loads (config, vocab_size, token and eos ids). Returns one VerifyReport
    per output; `.ok` says whether it passed.

    every: check every element (default: the first and last elements and seeded random windows of every
    tensor). max_ulp: tolerated distance in ulps of the output dtype (0: bit-identical). checksums_only:
    only compare every file with the size and sha256 in its report (fast). progress: a progress line on stderr.
    """
    from .verification import verify_path

    return verify_path(output, every=every, max_ulp=max_ulp, checksums_only=checksums_only, progress=progress)


@_takes_options("inspect")
def inspect_vector(base: str, chat: str, cp: str | None = None, out: str | None = None,
                   **options) -> VectorInspection:  # fmt: skip
    """Measures the chat vector chat - base: per tensor and per layer ||chat - base|| / ||base|| and, with cp,
    the cosine of chat - base with cp - base (where cp's training went the chat vector's way, or against it).
    Also `chatvec_fast.inspect`. Returns a VectorInspection (rows, .to_dict(), .markdown(), .plot(path)).

    The inputs are resolved and checked as merge's are; every compared tensor is read once, in chunks (memory
    does not grow with the model). out: a new or empty directory to write inspect.json, inspect.md and
    inspect.png into (the plot needs matplotlib: pip install 'chatvec-fast[tune]').

    >>> inspection = inspect_vector("llama-2-7b", "llama-2-7b-chat", "my-cp-7b")
    >>> print(inspection.table())
    """
    inputs = {"base": base, "chat": chat, **({"cp": cp} if cp is not None else {})}
    return run_inspect(inputs, out, options)


def run_inspect(inputs: dict, out, options: dict, spelling: str = "api") -> VectorInspection:
    """Checks and runs inspect (inspect_vector, and the CLI with spelling="cli")."""
    from .inspection import run_inspection

    known = {f.name for f in Settings.for_command(INSPECT)}
    for name in options:
        if name not in known:
            raise TypeError(unknown_option(INSPECT, name))
    job = Job.build(INSPECT, inputs, out, [1.0], Settings.build(INSPECT, options), sweep=False, spelling=spelling)
    return run_inspection(job)


def failure_hint(exc: BaseException) -> str:
    """What a failed or interrupted run left behind (only what this run made), and how to go on."""
    from .run import kept_outputs

    tuned = getattr(exc, "chatvec_tune", None)
    if tuned is not None:
        out, rows = tuned
        return (f"{out}/results.json keeps the {rows} finished alphas; run the same command with --resume to "
                "continue")  # fmt: skip

    kept = kept_outputs(exc)
    finished = [path for path, why in kept if why == "finished"]
    partial = [path for path, why in kept if why != "finished"]
    if finished:
        return f"the finished output is kept in {', '.join(finished)}; move it where you want it"
    if partial:
        return (f"the partial output is kept in {', '.join(partial)}; run the same command with --resume to "
                "continue (completed shards are checked and kept), or without it to start over")  # fmt: skip
    return "no output was written"


__all__ = [
    "merge",
    "sweep",
    "extract",
    "apply",
    "tune",
    "verify",
    "inspect_vector",
    "failure_hint",
    "MergeReport",
    "ChatvecError",
]
