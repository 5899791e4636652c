"""Stage 2, the planner: pairs tensors across the inputs by name, shape and dtype, applies the policies,
lays the output out in shards (and over ranks and devices), and cuts the work into chunks.

Reads headers and tokenizer files only: never tensor data, never a kernel, never an output file.
"""

from __future__ import annotations

from ..job import Job
from ..read.checkpoint import open_checkpoint
from ..read.model_files import special_rows
from .pairing import make_extract_plan, make_plan
from .types import Plan


def plan_job(job: Job) -> Plan:
    """Opens the job's inputs (headers only, all validated) and plans every output tensor."""
    ckpts = {role: open_checkpoint(path) for role, path in job.inputs.items()}
    if job.command == "extract":
        return make_extract_plan(ckpts["base"], ckpts["chat"], job.merge_options())
    if job.command == "apply":
        return make_plan(None, ckpts["vector"], ckpts["cp"], job.merge_options())
    rows, notes = job.special_rows, []
    if rows is None and job.settings.special_tokens_from == "chat":
        found, missing = special_rows(ckpts["chat"].directory, ckpts["cp"].directory)
        rows = tuple(found)
        if missing:
            notes.append(f"special tokens of chat that cp's tokenizer lacks (left as merged): {', '.join(missing)}")
    plan = make_plan(ckpts["base"], ckpts["chat"], ckpts["cp"], job.merge_options(rows or ()))
    plan.notes.extend(notes)
    return plan
