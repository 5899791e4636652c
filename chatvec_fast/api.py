"""The Python API: merge() and its report. The CLI is a thin shell over this."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field

from .checkpoint import INDEX_NAME, open_checkpoint
from .dtypes import parse_user_dtype
from .errors import OutputError
from .model_files import copy_aux_files
from .output_dir import OutputDirectory, check_output_path
from .pipeline import DEFAULT_CHUNK_ELEMENTS, Pipeline, plan_chunks
from .planner import MergeOptions, Plan, make_plan
from .progress import Progress
from .units import format_bytes, parse_size
from .writer import ShardFile, build_header, write_json

FORMULA = "cp + alpha * (chat - base)"


@dataclass
class MergeReport:
    """What a merge did. `summary()` is the line the CLI prints."""

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
    plan: Plan | None = field(default=None, repr=False)

    @property
    def gbps(self) -> float:
        return (self.bytes_read + self.bytes_written) / max(self.seconds, 1e-9) / 1e9

    def summary(self) -> str:
        if self.dry_run:
            return self.plan.describe() + "\n(dry run: nothing written)"
        merged = sum(n for p, n in self.policy_counts.items() if p.startswith("merge"))
        return (
            f"{self.tensors} tensors ({merged} merged, {self.tensors - merged} copied) | "
            f"read {format_bytes(self.bytes_read)}, wrote {format_bytes(self.bytes_written)} in {self.seconds:.2f} s "
            f"= {self.gbps:.2f} GB/s | {self.backend} | {', '.join(self.outputs)}"
        )


def _metadata(plan: Plan, alpha: float, math: str) -> dict[str, str]:
    """Provenance for every output shard. Deterministic: no time, host or rank."""
    o = plan.options
    return {
        "format": "pt",
        "chatvec_fast.version": _version(),
        "chatvec_fast.formula": FORMULA,
        "chatvec_fast.alpha": repr(float(alpha)),
        "chatvec_fast.base": os.path.abspath(plan.base.path),
        "chatvec_fast.chat": os.path.abspath(plan.chat.path),
        "chatvec_fast.cp": os.path.abspath(plan.cp.path),
        "chatvec_fast.math": f"{math}, rounded once to nearest-even",
        "chatvec_fast.options": json.dumps(
            {"skip": list(o.skip), "vocab_mismatch": o.vocab_mismatch, "dtype": o.dtype}, sort_keys=True
        ),
    }


def _version() -> str:
    from . import __version__

    return __version__


def _check_free_space(directory: str, needed: int):
    probe = directory
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise OutputError(
            f"{directory}: the output needs {format_bytes(needed)} but only {format_bytes(free)} is free there; "
            "free space or choose another --out"
        )


def run(
    base: str,
    chat: str,
    cp: str,
    outs: list[str],
    options: MergeOptions,
    backend: str = "auto",
    threads: int | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> MergeReport:
    """Merges one output per alpha (options.alphas[k] -> outs[k]) in a single pass over the inputs."""
    from .backends import get_backend

    if len(outs) != len(options.alphas):
        raise ValueError(f"{len(outs)} output paths for {len(options.alphas)} alphas")
    t0 = time.perf_counter()
    ckpts = {"base": open_checkpoint(base), "chat": open_checkpoint(chat), "cp": open_checkpoint(cp)}
    plan = make_plan(ckpts["base"], ckpts["chat"], ckpts["cp"], options)
    inputs = {"base": base, "chat": chat, "cp": cp}
    for out in outs:
        check_output_path(out, inputs, overwrite)
    if len({os.path.realpath(o) for o in outs}) != len(outs):
        raise OutputError("two outputs share a path; give each alpha its own directory")
    engine = get_backend(backend, threads)
    report = MergeReport(
        outputs=[os.path.abspath(o) for o in outs],
        alphas=list(options.alphas),
        backend=engine.describe(),
        tensors=len(plan.tensors),
        policy_counts=dict(plan.policy_counts()),
        dropped=plan.dropped,
        notes=plan.notes,
        bytes_read=plan.read_nbytes,
        bytes_written=plan.write_nbytes * len(outs),
        seconds=0.0,
        dry_run=dry_run,
        plan=plan,
    )
    if dry_run:
        report.seconds = time.perf_counter() - t0
        return report
    for out in outs:
        _check_free_space(os.path.dirname(os.path.abspath(out)), plan.write_nbytes + (1 << 20))

    math = "float64" if getattr(engine, "exact", True) else "float32"
    bar = Progress(report.bytes_read + report.bytes_written, enabled=progress)
    with contextlib.ExitStack() as stack:
        staged = [stack.enter_context(OutputDirectory(o, inputs, overwrite)) for o in outs]
        files, offsets = [], []
        try:
            for k, out_dir in enumerate(staged):
                metadata = _metadata(plan, options.alphas[k], math)
                files.append([])
                offsets.append([])
                for shard in plan.shards:
                    entries = [(t.name, t.out_dtype, t.shape, t.out_nbytes) for t in shard.tensors]
                    header, tensor_offsets = build_header(entries, metadata)
                    size = len(header) + shard.data_nbytes
                    files[k].append(ShardFile(out_dir.file(shard.filename), header, size))
                    offsets[k].append(tensor_offsets)
            chunks = plan_chunks([s.tensors for s in plan.shards], files, offsets, chunk_elements)
            Pipeline(engine, options.alphas, chunk_elements, progress=bar).run(chunks)
            for shard_files in files:
                for f in shard_files:
                    f.close(sync=True)
        finally:
            bar.close()
            for shard_files in files:
                for f in shard_files:
                    f.close(sync=False)
        for out_dir in staged:
            if not plan.single_file:
                write_json(out_dir.file(INDEX_NAME), _index(plan))
            copy_aux_files(plan.cp.directory, out_dir.path, options.dtype)
        for out_dir in staged:
            out_dir.commit()
    report.seconds = time.perf_counter() - t0
    return report


def _index(plan: Plan) -> dict:
    weight_map = {t.name: s.filename for s in plan.shards for t in s.tensors}
    return {"metadata": {"total_size": plan.write_nbytes}, "weight_map": dict(sorted(weight_map.items()))}


def merge(
    base: str,
    chat: str,
    cp: str,
    out: str,
    alpha: float = 1.0,
    *,
    backend: str = "auto",
    threads: int | None = None,
    skip: tuple[str, ...] | list[str] = (),
    vocab_mismatch: str = "shared-rows",
    max_shard_size: str | int | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = False,
) -> MergeReport:
    """Writes the Chat Vector merge  cp + alpha * (chat - base)  of three checkpoints to `out`.

    Every tensor is computed in float64 and rounded once to its output dtype
    (cp's, or `dtype`). `out` appears only when complete.

    >>> report = merge("llama-2-7b", "llama-2-7b-chat", "my-cp-7b", "merged", alpha=0.5)
    >>> print(report.summary())  # tensors, GB read and written, seconds, GB/s
    """
    options = MergeOptions(
        alphas=(float(alpha),),
        skip=tuple(skip),
        vocab_mismatch=vocab_mismatch,
        dtype=parse_user_dtype(dtype) if dtype else None,
        max_shard_size=parse_size(max_shard_size),
    )
    return run(base, chat, cp, [out], options, backend, threads, overwrite, dry_run, progress)
