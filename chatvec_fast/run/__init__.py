"""Runs a job: open and plan -> stream every chunk through the backends -> finish each output.

Every command (merge, sweep, extract, apply) ends here. The outputs of one run share one pass over the
inputs: K outputs cost one read of each input byte and K writes. Each output appears at its path only
when complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from functools import partial

from .. import faults
from ..errors import OutputError
from ..job import Job
from ..plan import plan_job
from ..plan.chunks import buffer_itemsize, chunk_elements_for, plan_chunks, scale_bytes
from ..plan.layout import split_work
from ..plan.types import Plan
from ..progress import Progress
from ..read.hub import resolve
from ..report import MergeReport, fingerprint, provenance, start_report
from ..write.output import ModelOutput, already_complete, check_outputs
from ..write.shard import CompletedFile
from ..write.staging import kept_outputs
from .finish import aux_writer, index_document
from .model_card import model_card
from .workers import Workers, run_pipelines

log = logging.getLogger("chatvec_fast")
__all__ = ["run", "kept_outputs", "resolve_inputs", "check_vectors", "pipeline_layout"]


@dataclass
class _Output:
    path: str
    metadata: dict[str, str]  # each shard header's __metadata__
    report: dict  # the start of chatvec_report.json
    aux: object = None  # writes the config and tokenizer files (run/finish.py)


@dataclass
class _Result:
    inexact: int = 0
    reports: list[dict] = field(default_factory=list)
    resumed: int = 0  # shard files an earlier run had completed (--resume)
    shard_files: int = 0


def resolve_inputs(job: Job) -> Job:
    """The job with every input a local directory: Hugging Face Hub ids resolved (the cache first, then a
    download of what the merge needs), their commits recorded in job.sources. Local paths always win."""
    sources, inputs = {}, {}
    for role, ref in job.inputs.items():
        # --revision is for ids given without their own '@REV'; a local path has none
        revision = None if os.path.exists(ref) or "@" in ref else job.settings.revision
        found = resolve(ref, revision, role=role)
        inputs[role] = found.path
        if found.repo_id is not None:
            sources[role] = {"id": found.repo_id, "revision": found.revision, "commit": found.commit}
    return replace(job, inputs=inputs, sources=sources, given_inputs=dict(job.inputs))


def run(job: Job) -> MergeReport:
    """Plans the job and, unless it is a dry run, writes every output. Returns what was done."""
    job = resolve_inputs(job)
    plan = plan_job(job.inputs, job.options)
    faults.check("planned")
    s = job.settings
    card = None
    if s.model_card and job.kind != "extract":
        card = lambda k, has_cp_card: model_card(plan, k, job.sources, job.command_line(k), has_cp_card)  # noqa: E731
    aux = aux_writer(plan, s.chat_template_from, s.tokenizer_from, card)
    workers = Workers.start(job.engine)
    try:
        for backend in workers.backends:
            check_vectors(plan, backend)
        outputs = []
        for k, path in enumerate(job.outputs):
            metadata = provenance(plan, job.inputs, k, workers.math)
            report = start_report(plan, job.inputs, job.sources, k)
            report["fingerprint"] = fingerprint(plan, metadata, report)
            outputs.append(_Output(path, metadata, report, aux and partial(aux, output=k)))
        report = MergeReport(
            command=job.command,
            outputs=[os.path.abspath(o.path) for o in outputs],
            alphas=list(plan.options.alphas),
            backend=workers.describe(),
            tensors=len(plan.tensors),
            policy_counts=dict(plan.policy_counts()),
            dropped=plan.dropped,
            notes=plan.notes,
            bytes_read=plan.read_nbytes,
            bytes_written=plan.write_nbytes * len(outputs),
            seconds=0.0,
            dry_run=s.dry_run,
            plan=plan,
            leader=workers.leader,
            warnings=plan.warnings,
        )
        if workers.leader:
            for warning in plan.warnings:  # before any work: a wrong input costs nothing yet
                log.warning(warning)
        if s.dry_run:
            check_outputs(job.outputs, job.inputs, s.overwrite)
            return report
        if s.resume and all(already_complete(o.path, o.report["fingerprint"]) for o in outputs):
            report.notes.append("already complete: the same command finished this output before; nothing to do")
            return report
        t0 = time.perf_counter()
        result = _execute(plan, outputs, workers, job)
        report.seconds = time.perf_counter() - t0
    finally:
        workers.close()
    report.inexact, report.reports = result.inexact, result.reports
    if s.resume:
        report.notes.append(f"resumed: {result.resumed} of {result.shard_files} shard files were already complete")
    return report


def _execute(plan: Plan, outputs: list[_Output], workers: Workers, job: Job) -> _Result:
    """Writes every output of `plan` in one pass over the inputs; each appears only when complete.

    Each backend writes a byte-balanced share of this rank's shards; under torchrun, rank 0 prepares the
    staging directories, every rank writes its shards, and rank 0 finishes once all succeeded.
    """
    s, ranks, leader = job.settings, workers.ranks, workers.leader
    check_outputs(job.outputs, job.inputs, s.overwrite, plan.write_nbytes if leader else 0)
    sizes = [sh.data_nbytes for sh in plan.shards]
    world, rank = (ranks.world, ranks.rank) if ranks else (1, 0)
    mine, groups = split_work(sizes, rank, world, len(workers.backends))
    share = sum(plan.shards[i].data_nbytes for i in mine) / max(plan.write_nbytes, 1)
    bar = Progress(int((plan.read_nbytes + plan.write_nbytes * len(outputs)) * share), enabled=s.progress and leader)
    with contextlib.ExitStack() as stack:
        staged = _enter_all(stack, outputs, job, ranks)
        files = [
            [out.shard_file(sh.filename, _entries(sh), spec.metadata, i in mine) for i, sh in enumerate(plan.shards)]
            for spec, out in zip(outputs, staged)
        ]
        # Shards complete in every output (--resume) need no reading at all.
        todo = [[i for i in g if not all(isinstance(f[i], CompletedFile) for f in files)] for g in groups]
        error = None
        try:
            _stream(plan, files, todo, workers.backends, s.chunk_size(), bar)
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
        result, finish_error = _Result(), None
        result.resumed = sum(isinstance(f, CompletedFile) for shard_files in files for f in shard_files)
        result.shard_files = sum(len(shard_files) for shard_files in files)
        if leader:
            try:
                index = index_document(plan)
                for spec, out, shard_files in zip(outputs, staged, files):
                    report = spec.report
                    if plan.options.kind == "extract":  # every shard's count, this run's or an earlier one's
                        result.inexact = out.inexact(shard_files)
                        report = {**report, "inexact_elements": result.inexact}
                    result.reports.append(out.finish(shard_files, index, report, spec.aux))
                for out in staged:
                    out.commit()
            except BaseException as exc:  # noqa: BLE001 - the other ranks must hear of it first
                finish_error = exc
        finished = ranks.all_succeeded(finish_error is None) if ranks is not None else finish_error is None
        if finish_error is not None:
            raise finish_error  # inside the `with`: the staging directories decide what stays
        if not finished:
            raise OutputError("rank 0 could not finish the output (see its error); no output was written")
    return result


def _entries(shard) -> list:
    return [(t.name, t.out_dtype, t.shape, t.out_nbytes) for t in shard.tensors]


def _enter_all(stack, outputs: list[_Output], job: Job, ranks) -> list[ModelOutput]:
    """Rank 0 (or the only process) locks and creates the staging directories; other ranks join them."""
    s = job.settings
    staged, error = [], None
    if ranks is None or ranks.leader:
        try:
            for spec in outputs:
                out = stack.enter_context(ModelOutput(spec.path, job.inputs, s.overwrite, resume=s.resume))
                out.claim(spec.report["fingerprint"])
                staged.append(out)
        except BaseException as exc:  # noqa: BLE001
            error = exc
    ok = error is None
    if ranks is not None:
        ok = ranks.all_succeeded(ok)  # doubles as the barrier: staging exists before anyone writes
        if not ranks.leader and ok:
            staged = [stack.enter_context(ModelOutput(o.path, job.inputs, s.overwrite, join=True)) for o in outputs]
    if error is not None:
        raise error
    if not ok:
        raise OutputError("rank 0 could not prepare the output directory; see its error")
    return staged


def check_vectors(plan: Plan, backend):
    """Refuses a plan with more saved vectors per tensor than the backend applies in one call."""
    vectors = max((len(t.deltas) for t in plan.tensors), default=1)
    if vectors > backend.max_vectors:
        raise ValueError(f"the {backend.name} backend applies at most {backend.max_vectors} vectors in one call, "
                         f"got {vectors}; use --backend native (up to 16), or apply them in two steps")  # fmt: skip


def pipeline_layout(plan: Plan, chunk_elements: int) -> tuple[int, int, dict]:
    """(elements per chunk, bytes per element, the slots' other Pipeline arguments) for a plan's pipelines:
    every pipeline over this plan, to files or to memory (chatvec_fast.memory), sizes its slots here."""
    itemsize = buffer_itemsize(plan.tensors)
    elements = chunk_elements_for(plan.tensors, chunk_elements)
    vectors = max((len(t.deltas) for t in plan.tensors), default=1)
    roles = ("base", "chat", "cp", *(f"v{m}" for m in range(1, vectors)))
    return elements, itemsize, {"roles": roles, "scales": plan.scales, "scale_bytes": scale_bytes(plan, elements)}


def _stream(plan: Plan, files, groups, backends, chunk_elements: int, bar) -> int:
    """One pipeline per backend, each over its group of shards; returns the extract count."""
    elements, itemsize, slots = pipeline_layout(plan, chunk_elements)
    jobs = []
    for backend, group in zip(backends, groups):
        if not group:
            continue
        tensors = [plan.shards[i].tensors for i in group]
        group_files = [[shard_files[i] for i in group] for shard_files in files]
        offsets = [[f.tensor_offsets for f in g] for g in group_files]
        jobs.append((backend, plan_chunks(tensors, group_files, offsets, elements, itemsize)))
    if not jobs:
        return 0
    return run_pipelines(jobs, len(files), elements, itemsize, bar, **slots)
