"""Runs a Plan into one or more output directories: staging, shard files, the pipeline, finishing touches.

Every command (merge, sweep, extract, apply) ends here. The outputs of one
run share one pass over the inputs: K outputs cost one read of each input
byte and K writes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .checkpoint import INDEX_NAME
from .dtypes import itemsize
from .errors import OutputError
from .output_dir import OutputDirectory, check_output_path
from .pipeline import DEFAULT_CHUNK_ELEMENTS, Pipeline, plan_chunks
from .planner import Plan
from .progress import Progress
from .units import format_bytes
from .writer import ShardFile, build_header, write_json

REPORT_NAME = "chatvec_report.json"
# A header value patched once the run knows it (extract's inexact count):
# written as 20 zeros, replaced in place by the same number of digits.
PATCHED_COUNT_KEY = "chatvec_fast.inexact_elements"
_PLACEHOLDER = "0" * 20


@dataclass
class OutputSpec:
    path: str
    metadata: dict[str, str]  # each shard header's __metadata__
    report: dict  # the start of chatvec_report.json; the engine adds files and counts
    finish: Callable[[str], None] | None = None  # called with the staging directory (aux files, tokenizer edits)


@dataclass
class RunResult:
    seconds: float
    inexact: int = 0
    reports: list[dict] = field(default_factory=list)


def check_outputs(outputs: list[OutputSpec], inputs: dict[str, str], overwrite: bool):
    for spec in outputs:
        check_output_path(spec.path, inputs, overwrite)
    if len({os.path.realpath(s.path) for s in outputs}) != len(outputs):
        raise OutputError("two outputs share a path; give each alpha its own directory")


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


def _buffer_itemsize(plan: Plan) -> int:
    """Bytes per element the slot buffers need: the widest dtype any chunk reads or writes."""
    widest = 2
    for t in plan.tensors:
        for info in (t.base, t.chat, t.cp):
            if info is not None and info.dtype in ("F32", "F64", "F16", "BF16"):
                widest = max(widest, itemsize(info.dtype))
        if t.out_dtype in ("F32", "F64"):
            widest = max(widest, itemsize(t.out_dtype))
    return widest


def execute(
    plan: Plan,
    outputs: list[OutputSpec],
    engine,
    inputs: dict[str, str],
    overwrite: bool = False,
    progress: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> RunResult:
    """Writes every output of `plan` in one pass over the inputs; each appears only when complete."""
    t0 = time.perf_counter()
    check_outputs(outputs, inputs, overwrite)
    for spec in outputs:
        _check_free_space(os.path.dirname(os.path.abspath(spec.path)), plan.write_nbytes + (1 << 20))
    patch = any(PATCHED_COUNT_KEY in s.metadata for s in outputs)
    bar = Progress(plan.read_nbytes + plan.write_nbytes * len(outputs), enabled=progress)
    buffer_itemsize = _buffer_itemsize(plan)
    pipeline = Pipeline(engine, len(outputs), chunk_elements, itemsize=buffer_itemsize, progress=bar)
    with contextlib.ExitStack() as stack:
        staged = [stack.enter_context(OutputDirectory(s.path, inputs, overwrite)) for s in outputs]
        files, offsets = [], []
        try:
            for spec, out_dir in zip(outputs, staged):
                metadata = dict(spec.metadata)
                if PATCHED_COUNT_KEY in metadata:
                    metadata[PATCHED_COUNT_KEY] = _PLACEHOLDER
                files.append([])
                offsets.append([])
                for shard in plan.shards:
                    entries = [(t.name, t.out_dtype, t.shape, t.out_nbytes) for t in shard.tensors]
                    header, tensor_offsets = build_header(entries, metadata)
                    files[-1].append(ShardFile(out_dir.file(shard.filename), header, len(header) + shard.data_nbytes))
                    offsets[-1].append(tensor_offsets)
            chunks = plan_chunks([s.tensors for s in plan.shards], files, offsets, chunk_elements, buffer_itemsize)
            pipeline.run(chunks)
            for shard_files in files:
                for f in shard_files:
                    f.close(sync=True)
        finally:
            bar.close()
            for shard_files in files:
                for f in shard_files:
                    f.close(sync=False)
        result = RunResult(0.0, pipeline.inexact)
        for spec, out_dir, shard_files in zip(outputs, staged, files):
            if patch:
                for f in shard_files:
                    _patch_count(f.path, pipeline.inexact)
            if not plan.single_file:
                write_json(out_dir.file(INDEX_NAME), _index(plan, pipeline.inexact if patch else None))
            if spec.finish is not None:
                spec.finish(out_dir.path)
            report = dict(spec.report)
            if patch:
                report["inexact_elements"] = pipeline.inexact
            report["files"] = {os.path.basename(f.path): f.size for f in shard_files}
            write_json(out_dir.file(REPORT_NAME), report)
            result.reports.append(report)
        for out_dir in staged:
            out_dir.commit()
    result.seconds = time.perf_counter() - t0
    return result


def _index(plan: Plan, inexact: int | None) -> dict:
    weight_map = {t.name: s.filename for s in plan.shards for t in s.tensors}
    metadata: dict = {"total_size": plan.write_nbytes}
    if inexact is not None:
        metadata[PATCHED_COUNT_KEY] = inexact
    return {"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}


def _patch_count(path: str, count: int):
    """Replaces the placeholder digits in a finished shard's header by `count` (same length)."""
    old = f'"{PATCHED_COUNT_KEY}":"{_PLACEHOLDER}"'.encode()
    new = f'"{PATCHED_COUNT_KEY}":"{count:020d}"'.encode()
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        at = header.find(old)
        if at < 0:
            raise OutputError(f"{path}: header lacks the {PATCHED_COUNT_KEY} placeholder; this is a bug")
        f.seek(8 + at)
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
