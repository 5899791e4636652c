"""The Python API: merge, sweep, extract, apply, verify. Each builds a Job and runs it; the CLI is a thin
shell over these.

    >>> import chatvec_fast
    >>> report = chatvec_fast.merge("llama-2-7b", "llama-2-7b-chat", "my-cp-7b", "merged", alpha=0.5)
    >>> print(report.summary())  # tensors, GB read and written, seconds, GB/s

Every keyword option is declared once, with its default and meaning, in job.Settings; each function's
docstring lists the ones it takes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Union

from .alphas import vector_alphas
from .errors import ChatvecError
from .job import DEFAULT_CHUNK_ELEMENTS, Job, Settings, vector_roles
from .report import MergeReport

Alphas = Union[Sequence[float], str]


def _documented(*names: str):
    """Appends the options `names` (from job.Settings) to the function's docstring."""

    def decorate(fn):
        fn.__doc__ = f"{fn.__doc__.rstrip()}\n\n    Options:\n{Settings.documentation(names)}\n"
        return fn

    return decorate


_ENGINE = ("backend", "threads", "devices", "gpu_memory", "chunk_elements")
_RUN = ("revision", "overwrite", "resume", "dry_run", "progress")
_MERGE = ("skip", "allow_unmatched", "vocab_mismatch", "alpha_for", "dtype", "max_shard_size")
_TOKENIZER = ("chat_template_from", "tokenizer_from", "model_card")


def _run(command: str, inputs: dict, out: str, alphas, sweep: bool, **options) -> MergeReport:
    """options: the calling entry point's keyword parameters (its locals(), minus inputs and alphas)."""
    from .run import run

    return run(Job.build(command, inputs, out, alphas, Settings(**options), sweep=sweep))


@_documented(*_MERGE, "added_tokens", "special_tokens_from", *_TOKENIZER, *_RUN, *_ENGINE)
def merge(
    base: str,
    chat: str,
    cp: str,
    out: str,
    alpha: float = 1.0,
    *,
    skip: Sequence[str] = (),
    allow_unmatched: bool = False,
    vocab_mismatch: str = "shared-rows",
    alpha_for: Sequence = (),
    dtype: str | None = None,
    max_shard_size: str | int | None = None,
    added_tokens: str = "append",
    special_tokens_from: str = "cp",
    chat_template_from: str | None = None,
    tokenizer_from: str | None = None,
    model_card: bool = True,
    revision: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    backend: str = "auto",
    threads: int | None = None,
    devices: str | Sequence[str] | None = None,
    gpu_memory: str | int | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> MergeReport:
    """Writes the Chat Vector merge  cp + alpha * (chat - base)  of three checkpoints to `out`.

    Every tensor is computed in float64 and rounded once to its output dtype (cp's, or `dtype`). `out`
    appears only when complete.

    >>> report = merge("llama-2-7b", "llama-2-7b-chat", "my-cp-7b", "merged", alpha=0.5)
    >>> print(report.summary())  # tensors, GB read and written, seconds, GB/s
    """
    options = {k: v for k, v in locals().items() if k not in ("base", "chat", "cp", "out", "alpha")}
    return _run("merge", {"base": base, "chat": chat, "cp": cp}, out, [alpha], False, **options)


@_documented(*_MERGE, "added_tokens", "special_tokens_from", *_TOKENIZER, *_RUN, *_ENGINE)
def sweep(
    base: str,
    chat: str,
    cp: str,
    out: str,
    alphas: Alphas,
    *,
    skip: Sequence[str] = (),
    allow_unmatched: bool = False,
    vocab_mismatch: str = "shared-rows",
    alpha_for: Sequence = (),
    dtype: str | None = None,
    max_shard_size: str | int | None = None,
    added_tokens: str = "append",
    special_tokens_from: str = "cp",
    chat_template_from: str | None = None,
    tokenizer_from: str | None = None,
    model_card: bool = True,
    revision: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    backend: str = "auto",
    threads: int | None = None,
    devices: str | Sequence[str] | None = None,
    gpu_memory: str | int | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> MergeReport:
    """Merges every alpha in one pass over the inputs: out/alpha-0.25/, out/alpha-0.5/, ...

    alphas: a list of floats, or text as the CLI takes it ("0.25,0.5" or "0.25:1:0.25"). Each output is
    bit-identical to merge() with that alpha.

    >>> sweep("base", "chat", "cp", "sweep-out", "0.25:1:0.25")
    """
    options = {k: v for k, v in locals().items() if k not in ("base", "chat", "cp", "out", "alphas")}
    return _run("sweep", {"base": base, "chat": chat, "cp": cp}, out, alphas, True, **options)


@_documented("skip", "allow_unmatched", "max_shard_size", *_RUN, *_ENGINE)
def extract(
    base: str,
    chat: str,
    out: str,
    *,
    dtype: str = "f32",
    skip: Sequence[str] = (),
    allow_unmatched: bool = False,
    max_shard_size: str | int | None = None,
    revision: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    backend: str = "auto",
    threads: int | None = None,
    devices: str | Sequence[str] | None = None,
    gpu_memory: str | int | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> MergeReport:
    """Saves the chat vector chat - base as a safetensors checkpoint (float32 by default), with chat's tokenizer
    files in its chat/ folder (apply takes the chat template and eos from there, as merge does from chat).

    dtype: f32 (default), f64, bf16 or f16. float32 holds a bf16 or f16 difference exactly when the two
    values' exponents are close; the elements it had to round are counted (report.inexact, and the
    artifact's metadata). float64 always holds the float64 difference the merge itself uses, so `apply`
    with it reproduces `merge` exactly.
    """
    options = {k: v for k, v in locals().items() if k not in ("base", "chat", "out")}
    return _run("extract", {"base": base, "chat": chat}, out, [1.0], False, **options)


@_documented(*_MERGE, *_TOKENIZER, *_RUN, *_ENGINE)
def apply(
    vector: str | Sequence[str],
    cp: str,
    out: str,
    alpha: float | Sequence[float] | None = None,
    *,
    alphas: Alphas | Sequence[Alphas] | None = None,
    skip: Sequence[str] = (),
    allow_unmatched: bool = False,
    vocab_mismatch: str = "shared-rows",
    alpha_for: Sequence = (),
    dtype: str | None = None,
    max_shard_size: str | int | None = None,
    chat_template_from: str | None = None,
    tokenizer_from: str | None = None,
    model_card: bool = True,
    revision: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    backend: str = "auto",
    threads: int | None = None,
    devices: str | Sequence[str] | None = None,
    gpu_memory: str | int | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> MergeReport:
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
    options = {k: v for k, v in locals().items() if k not in ("vector", "cp", "out", "alpha", "alphas")}
    vectors = [vector] if isinstance(vector, (str, os.PathLike)) else list(vector)
    values, sweep = vector_alphas(len(vectors), alpha, alphas)
    inputs = {**{role: os.fspath(v) for role, v in zip(vector_roles(len(vectors)), vectors)}, "cp": cp}
    return _run("apply", inputs, out, values, sweep, **options)


def verify(
    output: str, every: bool = False, max_ulp: int = 0, checksums_only: bool = False, progress: bool = False
) -> list:
    """Re-derives an output (or each output of a sweep's directory) from the inputs its report names, with
    the float64 reference, and compares. Returns one VerifyReport per output; `.ok` says whether it passed.

    every: check every element (default: the first and last elements and seeded random windows of every
    tensor). max_ulp: tolerated distance in ulps of the output dtype (0: bit-identical). checksums_only:
    only compare every file with the size and sha256 in its report (fast). progress: a progress line on stderr.
    """
    from .verification import verify_path

    return verify_path(output, every=every, max_ulp=max_ulp, checksums_only=checksums_only, progress=progress)


def failure_hint(exc: BaseException) -> str:
    """What a failed or interrupted run left behind (only what this run made), and how to go on."""
    from .run import kept_outputs

    kept = kept_outputs(exc)
    finished = [path for path, why in kept if why == "finished"]
    partial = [path for path, why in kept if why != "finished"]
    if finished:
        return f"the finished output is kept in {', '.join(finished)}; move it where you want it"
    if partial:
        return (f"the partial output is kept in {', '.join(partial)}; run the same command with --resume to "
                "continue (completed shards are checked and kept), or without it to start over")  # fmt: skip
    return "no output was written"


__all__ = ["merge", "sweep", "extract", "apply", "verify", "failure_hint", "MergeReport", "ChatvecError"]
