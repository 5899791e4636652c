"""inspect: the chat vector chat - base, measured. Per tensor and per layer, its size against base's weights
and, with cp, its cosine with cp's own change (cp - base): where the chat skills live, and where cp's
training pulled the other way (what --alpha-for rules are chosen from).

    run_inspection(job) -> VectorInspection     (chatvec_fast.inspect builds the job)

The inputs are resolved and planned exactly as merge's (extract's without cp): the same name matching and
checks, the same errors. Then every compared tensor is read once, in chunks (scan.py), its sums of squares
and products kept in float64 (sums.py), and the figures made from the sums (figures.py, result.py).

This stage is `inspection/`, not `inspect/`: a subpackage named `inspect` would replace the
`chatvec_fast.inspect` function on the package once imported (as `verification/` avoids `verify`).
"""

from __future__ import annotations

import logging
import time

from .._native import usable_cpus
from ..job import Job
from ..plan import plan_job
from ..progress import Progress
from ..run import resolve_inputs
from .files import check_out, open_out, write_files
from .result import VectorInspection, build
from .scan import compared_nbytes, scan_plan

log = logging.getLogger("chatvec_fast")
__all__ = ["run_inspection", "VectorInspection"]
# The native sums take ~3 ns an element of a bf16 triple a core, so 8 cores sum ~2.7 G elements (16 GB) a
# second, past what reads from the page cache deliver here (8 GB/s); more threads would only add buffers
# (each holds one chunk of every input: 6 MB for a bf16 triple at the default chunk size).
MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """Every core this process may use, at most MAX_DEFAULT_THREADS."""
    return max(1, min(usable_cpus(), MAX_DEFAULT_THREADS))


def run_inspection(job: Job) -> VectorInspection:
    """Plans the inputs, reads them once and, when the job has an output directory, writes inspect.json,
    inspect.md and inspect.png there (all three or none)."""
    out = job.outputs[0] if job.outputs else None
    if out is not None:
        check_out(out)  # before anything is downloaded or read
    given = dict(job.inputs)
    job = resolve_inputs(job)
    plan = plan_job(job.inputs, job.options)
    for warning in plan.warnings:
        log.warning(warning)
    total = sum(compared_nbytes(plan, t) for t in plan.tensors)
    # The output's paths are checked now (not inside an input, ...), its staging directory made only after the
    # read: an interrupted read leaves nothing behind, and writing three small files takes milliseconds.
    staged = open_out(out, job.inputs) if out is not None else None
    t0 = time.perf_counter()
    bar = Progress(total, enabled=job.settings.progress, label="inspecting")
    try:
        scanned = scan_plan(plan, job.settings.chunk_size(), bar, job.engine.threads or default_threads())
    finally:
        bar.close()
    inspection = build(plan, scanned, given)
    inspection.seconds = time.perf_counter() - t0
    if staged is not None:
        with staged:
            write_files(inspection, staged)
            staged.commit()
    return inspection
