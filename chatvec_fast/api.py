"""The Python API: merge, sweep, extract, apply, and their reports. The CLI is a thin shell over this."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .checkpoint import open_checkpoint
from .dtypes import parse_user_dtype
from .engine import PATCHED_COUNT_KEY, OutputSpec, execute
from .errors import ChatvecError
from .model_files import copy_aux_files
from .pipeline import DEFAULT_CHUNK_ELEMENTS
from .planner import MergeOptions, Plan, make_extract_plan, make_plan
from .units import format_bytes, parse_size

FORMULA = "cp + alpha * (chat - base)"
APPLY_FORMULA = "cp + alpha * vector"
EXTRACT_FORMULA = "chat - base"


@dataclass
class MergeReport:
    """What a run did. `summary()` is the line the CLI prints."""

    command: str
    outputs: list[str]
    alphas: list[float]
    backend: str
    tensors: int
    policy_counts: dict[str, int]
    dropped: list[str]
    notes: list[str]
    bytes_read: int
    bytes_written: int
    seconds: float
    dry_run: bool = False
    inexact: int = 0  # extract: elements the storage dtype rounded
    plan: Plan | None = field(default=None, repr=False)
    reports: list[dict] = field(default_factory=list, repr=False)  # each output's chatvec_report.json

    @property
    def gbps(self) -> float:
        return (self.bytes_read + self.bytes_written) / max(self.seconds, 1e-9) / 1e9

    def summary(self) -> str:
        if self.dry_run:
            return self.plan.describe() + "\n(dry run: nothing written)"
        computed = sum(n for p, n in self.policy_counts.items() if p.startswith(("merge", "extract")))
        verb = "extracted" if self.command == "extract" else "merged"
        outputs = self.outputs[0] if len(self.outputs) == 1 else f"{len(self.outputs)} outputs"
        return (
            f"{self.tensors} tensors ({computed} {verb}, {self.tensors - computed} copied) | "
            f"read {format_bytes(self.bytes_read)}, wrote {format_bytes(self.bytes_written)} in {self.seconds:.2f} s "
            f"= {self.gbps:.2f} GB/s | {self.backend} | {outputs}"
        )


def _version() -> str:
    from . import __version__

    return __version__


def _options_record(o: MergeOptions) -> dict:
    return {
        "skip": list(o.skip),
        "vocab_mismatch": o.vocab_mismatch,
        "dtype": o.dtype,
        "max_shard_size": o.max_shard_size,
        "alpha_for": [[p, a] for p, a in o.alpha_for],
    }


def _provenance(command: str, formula: str, inputs: dict[str, str], options: MergeOptions, math: str) -> dict:
    """Header metadata every output shard carries. Deterministic: no time, host, rank or thread count."""
    meta = {
        "format": "pt",
        "chatvec_fast.version": _version(),
        "chatvec_fast.command": command,
        "chatvec_fast.formula": formula,
        "chatvec_fast.math": f"{math}, rounded once to nearest-even",
    }
    for role, path in inputs.items():
        meta[f"chatvec_fast.{role}"] = os.path.abspath(path)
    meta["chatvec_fast.options"] = json.dumps(_options_record(options), sort_keys=True)
    return meta


def _report(command: str, formula: str, inputs: dict[str, str], plan: Plan, output: int | None) -> dict:
    """The start of chatvec_report.json: every choice the run made."""
    report = {
        "tool": "chatvec-fast",
        "version": _version(),
        "command": command,
        "formula": formula,
        "inputs": {role: os.path.abspath(p) for role, p in inputs.items()},
        "options": _options_record(plan.options),
        "tensors": dict(sorted(plan.policy_counts().items())),
        "dropped": plan.dropped,
        "notes": plan.notes,
    }
    if output is not None:
        alpha = plan.options.alphas[output]
        report["alpha"] = alpha
        groups = plan.alpha_groups(output)
        if any(a != alpha for a in groups):  # --alpha-for changed some tensors
            report["alpha_by_tensor"] = {repr(a): names for a, names in groups.items()}
    if plan.options.special_rows:
        report["special_token_rows"] = [
            {"token": t, "chat_row": c, "cp_row": p} for t, c, p in plan.options.special_rows
        ]
    return report


def _finisher(cp_dir: str | None, dtype: str | None, chat_template_from: str | None, chat_dir: str | None, report):
    """Copies cp's config/tokenizer files into a staged output, then applies the tokenizer choices."""

    def finish(staging: str):
        if cp_dir is not None:
            report["copied_files"] = copy_aux_files(cp_dir, staging, dtype)
        if chat_template_from == "chat" and chat_dir is not None:
            from .tokenizer_files import take_chat_template

            report["chat_template"] = take_chat_template(chat_dir, cp_dir, staging)
        elif cp_dir is not None:
            report["chat_template"] = {"from": "cp"}

    return finish


@dataclass
class _Engines:
    """The backends of this process: one per device (several GPUs), or one; and the torchrun ranks."""

    backends: list
    ranks: object | None

    @property
    def math(self) -> str:
        return "float64" if getattr(self.backends[0], "exact", True) else "float32"

    def describe(self) -> str:
        text = self.backends[0].describe()
        if len(self.backends) > 1:
            text += f" x {len(self.backends)} devices"
        if self.ranks is not None:
            text += f", rank {self.ranks.rank} of {self.ranks.world}"
        return text


def _engines(name: str, threads: int | None, devices, gpu_memory) -> _Engines:
    from .backends import get_backend
    from .distributed import Ranks

    ranks = Ranks.from_env()
    gpu_memory = parse_size(gpu_memory)
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    if ranks is not None:
        # One process per GPU (or per share of the CPU cores) on each machine.
        if devices:
            devices = [devices[ranks.local_rank % len(devices)]]
        elif name in ("auto", "triton") and _cuda_devices():
            devices = [f"cuda:{ranks.local_rank % _cuda_devices()}"]
        if threads is None:
            from . import _native

            cpus = _native.module.available_cpus() if _native.available else (os.cpu_count() or 1)
            threads = max(1, cpus // max(ranks.local_world, 1))
    if devices and len(devices) > 1 and name not in ("auto", "triton"):
        raise ValueError(f"--devices lists {len(devices)} devices; only --backend triton runs on several")
    if devices:
        return _Engines(
            [get_backend("triton" if name == "auto" else name, threads, d, gpu_memory) for d in devices], ranks
        )
    return _Engines([get_backend(name, threads, None, gpu_memory)], ranks)


def _cuda_devices() -> int:
    if not (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")):
        return 0
    import torch

    return torch.cuda.device_count()


def _resolve_tokenizer_choices(base, chat, cp, special_tokens_from, chat_template_from):
    """Returns (special rows, notes, chat_template_from resolved)."""
    rows, notes = (), []
    if special_tokens_from not in ("cp", "chat"):
        raise ValueError(f"special_tokens_from must be 'cp' or 'chat', got {special_tokens_from!r}")
    if special_tokens_from == "chat":
        from .tokenizer_files import special_rows

        found, missing = special_rows(chat.directory, cp.directory)
        rows = tuple(found)
        if missing:
            notes.append(f"special tokens of chat that cp's tokenizer lacks (left as merged): {', '.join(missing)}")
    if chat_template_from is None:  # default: the chat model's template when it has one
        from .tokenizer_files import chat_template

        chat_template_from = "chat" if chat_template(chat.directory)[0] is not None else "cp"
    if chat_template_from not in ("cp", "chat"):
        raise ValueError(f"chat_template_from must be 'cp' or 'chat', got {chat_template_from!r}")
    return rows, notes, chat_template_from


def alpha_dirname(alpha: float) -> str:
    """alpha-0.25, alpha-1.0, alpha--0.5 (the shortest text that reads back as the same float)."""
    return f"alpha-{float(alpha)!r}"


def parse_alphas(text: str) -> list[float]:
    """'0.25,0.5,1' or 'start:stop:step' (stop included when the steps land on it), in exact decimal steps."""
    try:
        if ":" in text:
            parts = [Decimal(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            start, stop, step = parts
            count = int((stop - start) / step) + 1
            values = [float(start + i * step) for i in range(count)]
        else:
            values = [float(Decimal(p)) for p in text.split(",") if p.strip()]
    except (InvalidOperation, ValueError):
        raise ValueError(
            f"cannot read alphas {text!r}: expected 0.25,0.5,1.0 or start:stop:step like 0.25:1:0.25"
        ) from None
    if not values or len(set(values)) != len(values):
        raise ValueError(f"alphas {text!r}: need at least one, and no repeats")
    return values


def parse_alpha_for(rules) -> tuple[tuple[str, float], ...]:
    """['embed_tokens|lm_head=0', ...] -> (('embed_tokens|lm_head', 0.0), ...); the value follows the last '='."""
    out = []
    for rule in rules or ():
        if isinstance(rule, (tuple, list)):
            out.append((str(rule[0]), float(rule[1])))
            continue
        pattern, sep, value = str(rule).rpartition("=")
        try:
            out.append((pattern, float(value)))
        except ValueError:
            sep = ""
        if not sep or not pattern:
            raise ValueError(f"--alpha-for {rule!r}: expected REGEX=VALUE, e.g. 'embed_tokens|lm_head=0'")
    return tuple(out)


def _merge_options(alphas, skip, vocab_mismatch, dtype, max_shard_size, alpha_for, special_rows=()):
    return MergeOptions(
        alphas=tuple(float(a) for a in alphas),
        skip=tuple(skip),
        vocab_mismatch=vocab_mismatch,
        dtype=parse_user_dtype(dtype) if dtype else None,
        max_shard_size=parse_size(max_shard_size),
        alpha_for=parse_alpha_for(alpha_for),
        special_rows=tuple(special_rows),
    )


def _run_merge(
    command,
    base,
    chat,
    cp,
    outs,
    alphas,
    *,
    backend,
    threads,
    skip,
    vocab_mismatch,
    max_shard_size,
    dtype,
    overwrite,
    dry_run,
    progress,
    alpha_for,
    special_tokens_from,
    chat_template_from,
    chunk_elements,
    devices=None,
    gpu_memory=None,
    resume=False,
) -> MergeReport:
    ckpts = {"base": open_checkpoint(base), "chat": open_checkpoint(chat), "cp": open_checkpoint(cp)}
    rows, notes, template_from = _resolve_tokenizer_choices(
        ckpts["base"], ckpts["chat"], ckpts["cp"], special_tokens_from, chat_template_from
    )
    options = _merge_options(alphas, skip, vocab_mismatch, dtype, max_shard_size, alpha_for, rows)
    plan = make_plan(ckpts["base"], ckpts["chat"], ckpts["cp"], options)
    plan.notes.extend(notes)
    inputs = {"base": base, "chat": chat, "cp": cp}
    engine = _engines(backend, threads, devices, gpu_memory)
    outputs = []
    for k, (out, alpha) in enumerate(zip(outs, options.alphas)):
        # Each output of a sweep is a merge with its alpha, byte for byte: no trace of the sweep in it.
        meta = _provenance("merge", FORMULA, inputs, options, engine.math)
        meta["chatvec_fast.alpha"] = repr(alpha)
        report = _report("merge", FORMULA, inputs, plan, k)
        finish = _finisher(ckpts["cp"].directory, options.dtype, template_from, ckpts["chat"].directory, report)
        outputs.append(OutputSpec(out, meta, report, finish))
    return _execute(command, plan, outputs, engine, inputs, overwrite, dry_run, progress, chunk_elements, resume)


def _execute(
    command, plan, outputs, engine, inputs, overwrite, dry_run, progress, chunk_elements, resume=False
) -> MergeReport:
    report = MergeReport(
        command=command,
        outputs=[os.path.abspath(o.path) for o in outputs],
        alphas=list(plan.options.alphas),
        backend=engine.describe(),
        tensors=len(plan.tensors),
        policy_counts=dict(plan.policy_counts()),
        dropped=plan.dropped,
        notes=plan.notes,
        bytes_read=plan.read_nbytes,
        bytes_written=plan.write_nbytes * len(outputs),
        seconds=0.0,
        dry_run=dry_run,
        plan=plan,
    )
    if dry_run:
        from .engine import check_outputs

        check_outputs(outputs, inputs, overwrite)
        return report
    try:
        result = execute(
            plan, outputs, engine.backends, inputs, overwrite, progress, chunk_elements, engine.ranks, resume
        )
    finally:
        if engine.ranks is not None:
            engine.ranks.close()
    report.seconds, report.inexact, report.reports = result.seconds, result.inexact, result.reports
    if resume:
        report.notes.append(f"resumed: {result.resumed} of {result.shard_files} shard files were already complete")
    return report


def merge(
    base: str,
    chat: str,
    cp: str,
    out: str,
    alpha: float = 1.0,
    *,
    backend: str = "auto",
    threads: int | None = None,
    skip=(),
    vocab_mismatch: str = "shared-rows",
    max_shard_size: str | int | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    alpha_for=(),
    special_tokens_from: str = "cp",
    chat_template_from: str | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    devices=None,
    gpu_memory: str | int | None = None,
) -> MergeReport:
    """Writes the Chat Vector merge  cp + alpha * (chat - base)  of three checkpoints to `out`.

    Every tensor is computed in float64 and rounded once to its output dtype
    (cp's, or `dtype`). `out` appears only when complete.

    >>> report = merge("llama-2-7b", "llama-2-7b-chat", "my-cp-7b", "merged", alpha=0.5)
    >>> print(report.summary())  # tensors, GB read and written, seconds, GB/s
    """
    return _run_merge(
        "merge",
        base,
        chat,
        cp,
        [out],
        [alpha],
        backend=backend,
        threads=threads,
        skip=skip,
        vocab_mismatch=vocab_mismatch,
        max_shard_size=max_shard_size,
        dtype=dtype,
        overwrite=overwrite,
        dry_run=dry_run,
        progress=progress,
        alpha_for=alpha_for,
        special_tokens_from=special_tokens_from,
        chat_template_from=chat_template_from,
        chunk_elements=chunk_elements,
        devices=devices,
        gpu_memory=gpu_memory,
        resume=resume,
    )


def sweep(base: str, chat: str, cp: str, out: str, alphas, **kwargs) -> MergeReport:
    """Merges every alpha in one pass over the inputs: out/alpha-0.25/, out/alpha-0.5/, ...

    alphas: a list of floats, or text as the CLI takes it ("0.25,0.5" or "0.25:1:0.25").
    Each output is bit-identical to merge() with that alpha.

    >>> sweep("base", "chat", "cp", "sweep-out", "0.25:1:0.25")
    """
    values = parse_alphas(alphas) if isinstance(alphas, str) else [float(a) for a in alphas]
    if not values or len(set(values)) != len(values):
        raise ValueError(f"alphas {alphas!r}: need at least one, and no repeats")
    outs = [os.path.join(out, alpha_dirname(a)) for a in values]
    kwargs.setdefault("backend", "auto")
    defaults = {
        "threads": None,
        "skip": (),
        "vocab_mismatch": "shared-rows",
        "max_shard_size": None,
        "dtype": None,
        "overwrite": False,
        "dry_run": False,
        "progress": False,
        "alpha_for": (),
        "special_tokens_from": "cp",
        "chat_template_from": None,
        "chunk_elements": DEFAULT_CHUNK_ELEMENTS,
        "devices": None,
        "gpu_memory": None,
        "resume": False,
    }
    unknown = set(kwargs) - set(defaults) - {"backend"}
    if unknown:
        raise TypeError(f"sweep() got unexpected arguments {sorted(unknown)}")
    return _run_merge("sweep", base, chat, cp, outs, values, **{**defaults, **kwargs})


def extract(
    base: str,
    chat: str,
    out: str,
    *,
    dtype: str = "f32",
    backend: str = "auto",
    threads: int | None = None,
    skip=(),
    max_shard_size: str | int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    devices=None,
    gpu_memory: str | int | None = None,
) -> MergeReport:
    """Saves the chat vector chat - base as a safetensors checkpoint (float32 by default).

    float32 holds a bf16 or f16 difference exactly when the two values' exponents are close; the
    elements it had to round are counted (report.inexact, and the artifact's metadata). float64 always
    holds the float64 difference the merge itself uses, so `apply` with it reproduces `merge` exactly.
    """
    options = _merge_options((1.0,), skip, "shared-rows", dtype, max_shard_size, ())
    b, c = open_checkpoint(base), open_checkpoint(chat)
    plan = make_extract_plan(b, c, options)
    inputs = {"base": base, "chat": chat}
    engine = _engines(backend, threads, devices, gpu_memory)
    meta = _provenance("extract", EXTRACT_FORMULA, inputs, options, engine.math)
    meta["chatvec_fast.vector_dtype"] = options.dtype
    meta[PATCHED_COUNT_KEY] = "0"
    report = _report("extract", EXTRACT_FORMULA, inputs, plan, None)
    report["vector_dtype"] = options.dtype
    spec = OutputSpec(out, meta, report, None)
    return _execute("extract", plan, [spec], engine, inputs, overwrite, dry_run, progress, chunk_elements, resume)


def apply(
    vector: str,
    cp: str,
    out: str,
    alpha: float | None = 1.0,
    *,
    alphas=None,
    backend: str = "auto",
    threads: int | None = None,
    skip=(),
    vocab_mismatch: str = "shared-rows",
    max_shard_size: str | int | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    alpha_for=(),
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    devices=None,
    gpu_memory: str | int | None = None,
) -> MergeReport:
    """Applies a saved chat vector: cp + alpha * vector. With `alphas`, a sweep into out/alpha-*/.

    With a vector extracted exactly (inexact count 0, or float64) the result is bit-identical to
    merge() from the three models.
    """
    values = (
        [float(alpha)]
        if alphas is None
        else (parse_alphas(alphas) if isinstance(alphas, str) else [float(a) for a in alphas])
    )
    outs = [out] if alphas is None else [os.path.join(out, alpha_dirname(a)) for a in values]
    vec, cp_ckpt = open_checkpoint(vector), open_checkpoint(cp)
    options = _merge_options(values, skip, vocab_mismatch, dtype, max_shard_size, alpha_for)
    plan = make_plan(None, vec, cp_ckpt, options)
    vector_meta = vec.files[0].metadata if vec.files else {}
    inexact = vector_meta.get(PATCHED_COUNT_KEY)
    if inexact is not None and inexact.isdigit() and int(inexact) > 0:
        plan.notes.append(
            f"the vector rounded {int(inexact)} elements when it was saved: the result differs from "
            "a merge of the three models there; extract with --dtype f64 to avoid it"
        )
    inputs = {"vector": vector, "cp": cp}
    engine = _engines(backend, threads, devices, gpu_memory)
    outputs = []
    for k, (o, a) in enumerate(zip(outs, values)):
        meta = _provenance("apply", APPLY_FORMULA, inputs, options, engine.math)
        meta["chatvec_fast.alpha"] = repr(a)
        for role in ("base", "chat"):  # where the vector came from, for `verify`
            if f"chatvec_fast.{role}" in vector_meta:
                meta[f"chatvec_fast.vector_{role}"] = vector_meta[f"chatvec_fast.{role}"]
        report = _report("apply", APPLY_FORMULA, inputs, plan, k)
        outputs.append(OutputSpec(o, meta, report, _finisher(cp_ckpt.directory, options.dtype, "cp", None, report)))
    return _execute("apply", plan, outputs, engine, inputs, overwrite, dry_run, progress, chunk_elements, resume)


__all__ = ["merge", "sweep", "extract", "apply", "MergeReport", "ChatvecError", "parse_alphas", "alpha_dirname"]
