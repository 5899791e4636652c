"""Runs a Plan into one or more output directories: staging, shard files, the pipeline, finishing touches.

Every command (merge, sweep, extract, apply) ends here. The outputs of one
run share one pass over the inputs: K outputs cost one read of each input
byte and K writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .checkpoint import INDEX_NAME
from .distributed import Ranks, partition
from .dtypes import itemsize
from .errors import OutputError
from .output_dir import OutputDirectory, check_output_path, sha256_file
from .pipeline import DEFAULT_CHUNK_ELEMENTS, Pipeline, plan_chunks
from .planner import Plan
from .progress import Progress
from .units import format_bytes
from .writer import CompletedFile, ShardFile, build_header, write_json

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
    resumed: int = 0  # shard files an earlier run had completed (--resume)
    shard_files: int = 0


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
    engines: list,
    inputs: dict[str, str],
    overwrite: bool = False,
    progress: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ranks: Ranks | None = None,
    resume: bool = False,
) -> RunResult:
    """Writes every output of `plan` in one pass over the inputs; each appears only when complete.

    engines: one backend per worker in this process (several GPUs), each writing a byte-balanced share
    of the shards. ranks: set under torchrun; this rank then writes only its share and rank 0 finishes.
    resume: continue an interrupted run of the same command, skipping its completed, intact shards.
    """
    t0 = time.perf_counter()
    leader = ranks is None or ranks.leader
    check_outputs(outputs, inputs, overwrite)
    if leader:
        for spec in outputs:
            _check_free_space(os.path.dirname(os.path.abspath(spec.path)), plan.write_nbytes + (1 << 20))
    sizes = [s.data_nbytes for s in plan.shards]
    mine = partition(sizes, ranks.world)[ranks.rank] if ranks else list(range(len(plan.shards)))
    groups = [[mine[i] for i in g] for g in partition([sizes[i] for i in mine], len(engines))]
    patch = any(PATCHED_COUNT_KEY in s.metadata for s in outputs)
    share = sum(plan.shards[i].data_nbytes for i in mine) / max(plan.write_nbytes, 1)
    bar = Progress(int((plan.read_nbytes + plan.write_nbytes * len(outputs)) * share), enabled=progress and leader)
    with contextlib.ExitStack() as stack:
        staged, prepared = _enter_all(stack, plan, outputs, inputs, overwrite, ranks, resume)
        if not prepared:
            raise OutputError("rank 0 could not prepare the output directory; see its error")
        files = [
            [_shard_file(out_dir, shard, spec, i in mine) for i, shard in enumerate(plan.shards)]
            for spec, out_dir in zip(outputs, staged)
        ]
        # Shards complete in every output (--resume) need no reading at all.
        todo = [[i for i in g if not all(isinstance(f[i], CompletedFile) for f in files)] for g in groups]
        error, inexact = None, 0
        try:
            inexact = _run_workers(plan, files, todo, engines, len(outputs), chunk_elements, bar)
            for shard_files in files:
                for i in mine:
                    shard_files[i].close(sync=True)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the ranks agree
            error = exc
        finally:
            bar.close()
            for shard_files in files:
                for f in shard_files:
                    f.close(sync=False)
        if ranks is not None:
            all_ok = ranks.all_succeeded(error is None)
            if error is None and not all_ok:
                error = OutputError("another rank failed (see its error); no output was written")
        if error is not None:
            raise error
        if patch and leader:  # every shard's count, this run's or an earlier one's, from any rank
            records = [staged[0].recorded(os.path.basename(f.path)) for f in files[0]]
            inexact = sum(r.get("inexact", 0) for r in records if r)
        result, finish_error = RunResult(0.0, inexact), None
        result.resumed = sum(isinstance(f, CompletedFile) for shard_files in files for f in shard_files)
        result.shard_files = sum(len(shard_files) for shard_files in files)
        if leader:
            try:
                for spec, out_dir, shard_files in zip(outputs, staged, files):
                    result.reports.append(_finish_output(plan, spec, out_dir, shard_files, inexact if patch else None))
                for out_dir in staged:
                    out_dir.commit()
            except BaseException as exc:  # noqa: BLE001 - the other ranks must hear of it first
                finish_error = exc
    finished = ranks.all_succeeded(finish_error is None) if ranks is not None else finish_error is None
    if finish_error is not None:
        raise finish_error
    if not finished:
        raise OutputError("rank 0 could not finish the output (see its error); no output was written")
    result.seconds = time.perf_counter() - t0
    return result


def _enter_all(stack, plan, outputs, inputs, overwrite, ranks, resume):
    """Rank 0 (or the only process) locks and creates the staging directories; other ranks join them."""
    staged, error = [], None
    if ranks is None or ranks.leader:
        try:
            staged = [stack.enter_context(OutputDirectory(s.path, inputs, overwrite, resume=resume)) for s in outputs]
            for spec, out_dir in zip(outputs, staged):
                out_dir.claim(fingerprint(plan, spec))
        except BaseException as exc:  # noqa: BLE001
            error = exc
    ok = error is None
    if ranks is not None:
        ok = ranks.all_succeeded(ok)  # doubles as the barrier: staging exists before anyone writes
        if not ranks.leader and ok:
            staged = [stack.enter_context(OutputDirectory(s.path, inputs, overwrite, join=True)) for s in outputs]
    if error is not None:
        raise error
    return staged, ok


def fingerprint(plan: Plan, spec: OutputSpec) -> str:
    """Identifies a run's output: its inputs (paths, sizes, modification times), everything the output's
    metadata and report record, and the shard layout. --resume continues only a run with the same one."""
    files = {}
    for ckpt in plan.inputs.values():
        for f in ckpt.files:
            st = os.stat(f.path)
            files[f.path] = [st.st_size, st.st_mtime_ns]
    shards = [[s.filename, s.data_nbytes, [t.name for t in s.tensors]] for s in plan.shards]
    doc = {"metadata": spec.metadata, "report": spec.report, "inputs": files, "shards": shards}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _shard_file(out_dir, shard, spec, mine: bool):
    """The shard's output file: a CompletedFile when an earlier run finished it intact (--resume)."""
    metadata = dict(spec.metadata)
    if PATCHED_COUNT_KEY in metadata:
        metadata[PATCHED_COUNT_KEY] = _PLACEHOLDER
    entries = [(t.name, t.out_dtype, t.shape, t.out_nbytes) for t in shard.tensors]
    header, offsets = build_header(entries, metadata)
    size = len(header) + shard.data_nbytes
    path = out_dir.file(shard.filename)
    done = out_dir.completed(shard.filename, size) if mine else None
    if done:
        f = CompletedFile(path, size, done["sha256"], done.get("inexact", 0))
    else:
        f = ShardFile(path, header, size)
        f.on_complete = lambda g: out_dir.mark_done(shard.filename, g.size, g.sha256, g.inexact)
    f.tensor_offsets = offsets
    return f


def _run_workers(plan, files, groups, engines, outputs, chunk_elements, bar) -> int:
    """One pipeline per engine, each over its group of shards, in parallel; returns the extract count."""
    buffer_itemsize = _buffer_itemsize(plan)
    pipelines, threads, errors = [], [], []
    for engine, group in zip(engines, groups):
        if not group:
            continue
        tensors = [plan.shards[i].tensors for i in group]
        group_files = [[shard_files[i] for i in group] for shard_files in files]
        offsets = [[f.tensor_offsets for f in g] for g in group_files]
        pipeline = Pipeline(engine, outputs, chunk_elements, itemsize=buffer_itemsize, progress=bar)
        chunks = plan_chunks(tensors, group_files, offsets, chunk_elements, buffer_itemsize)
        pipelines.append((pipeline, chunks))
    if len(pipelines) == 1:
        pipelines[0][0].run(pipelines[0][1])
    else:

        def work(pipeline, chunks):
            try:
                pipeline.run(chunks)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=pc, name=f"chatvec-device-{i}") for i, pc in enumerate(pipelines)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return sum(p.inexact for p, _ in pipelines)


def _finish_output(plan, spec, out_dir, shard_files, inexact) -> dict:
    if inexact is not None:
        for f in shard_files:
            if _patch_count(f.path, inexact):  # the header changed, and with it the checksum
                name = os.path.basename(f.path)
                out_dir.mark_done(name, f.size, sha256_file(f.path), out_dir.recorded(name).get("inexact", 0))
    if not plan.single_file:
        write_json(out_dir.file(INDEX_NAME), _index(plan, inexact))
    if spec.finish is not None:
        spec.finish(out_dir.path)
    report = dict(spec.report)
    if inexact is not None:
        report["inexact_elements"] = inexact
    report["files"] = {}
    for f in shard_files:
        name = os.path.basename(f.path)
        report["files"][name] = {"bytes": f.size, "sha256": out_dir.recorded(name)["sha256"]}
    write_json(out_dir.file(REPORT_NAME), report)
    return report


def _index(plan: Plan, inexact: int | None) -> dict:
    weight_map = {t.name: s.filename for s in plan.shards for t in s.tensors}
    metadata: dict = {"total_size": plan.write_nbytes}
    if inexact is not None:
        metadata[PATCHED_COUNT_KEY] = inexact
    return {"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}


def _patch_count(path: str, count: int) -> bool:
    """Replaces the placeholder digits in a finished shard's header by `count` (same length).
    Returns False when the header already holds them (a resumed run patched it before)."""
    old = f'"{PATCHED_COUNT_KEY}":"{_PLACEHOLDER}"'.encode()
    new = f'"{PATCHED_COUNT_KEY}":"{count:020d}"'.encode()
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        at = header.find(old)
        if at < 0:
            if new in header:
                return False
            raise OutputError(f"{path}: header lacks the {PATCHED_COUNT_KEY} placeholder; this is a bug")
        f.seek(8 + at)
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    return True
