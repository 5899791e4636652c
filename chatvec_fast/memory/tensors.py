"""The merged model as a stream of (checkpoint name, tensor): the merge's own pipeline, into memory.

The plan is the merge's (plan.plan_job), the chunks are the merge's (plan/chunks.py), and the pipeline is the
merge's (run/stream.py: the byte reader into reused slots, the backend's kernel, one writer), so every tensor
holds the bits `merge` writes to its file for the same options. Only the output differs: each tensor is its own
"file", a TensorSink over memory (memory/sink.py), and the pipeline runs in a thread of its own while the caller
takes the tensors, complete and in plan order (memory/handover.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .. import faults
from ..backends import get_backend
from ..job import Job
from ..plan import plan_job
from ..plan.chunks import plan_chunks
from ..plan.types import Plan
from ..report import MergeReport
from ..run import check_vectors, pipeline_layout, resolve_inputs
from ..run.stream import Pipeline
from .handover import Handover
from .sink import TORCH_NAMES, TensorSink, as_bytes, new_tensor

log = logging.getLogger("chatvec_fast")


def plan_in_memory(job: Job) -> tuple[Job, Plan]:
    """The job with its inputs resolved (Hub ids downloaded), and its plan; every output dtype one torch has."""
    job = resolve_inputs(job)
    plan = plan_job(job.inputs, job.options)
    faults.check("planned")
    for t in plan.tensors:
        if t.out_dtype not in TORCH_NAMES:
            raise ValueError(f"{t.name}: dtype {t.out_dtype} has no torch dtype; merge to files instead, or pass "
                             f"skip=[{t.name!r}] if the model does without it")  # fmt: skip
    for warning in plan.warnings:  # before any work, as merge says them
        log.warning(warning)
    return job, plan


def backend_for(job: Job, device: str):
    """The merge's backend choice for tensors that end up on `device`: "auto" takes triton for a CUDA device
    (the kernel then writes into device memory), else what merge would take (CHATVEC_BACKEND, native, torch)."""
    name, e = job.engine.backend, job.engine
    if name == "auto" and not os.environ.get("CHATVEC_BACKEND") and device.startswith("cuda"):
        from ..backends.availability import availability

        name = "triton" if availability("triton") is None else "auto"
    return get_backend(name, e.threads, device if name == "triton" else None, e.gpu_memory)


def report_for(job: Job, plan: Plan, backend: str, where: str, seconds: float = 0.0) -> MergeReport:
    """A MergeReport of an in-memory run: outputs names where the tensors went, bytes_written what landed there."""
    return MergeReport(command=job.command, outputs=[where], alphas=list(plan.options.alphas), backend=backend,
                       tensors=len(plan.tensors), policy_counts=dict(plan.policy_counts()), dropped=plan.dropped,
                       notes=plan.notes, bytes_read=plan.read_nbytes, bytes_written=plan.write_nbytes,
                       seconds=seconds, plan=plan, warnings=plan.warnings)  # fmt: skip


class Fresh:
    """Every tensor in new memory on a device, the caller's once handed over (never reused)."""

    def __init__(self, device: str):
        self.device = device

    def cost(self, t) -> int:
        return t.out_nbytes

    def target(self, t):
        """(the bytes the pipeline fills, a handle for deliver)."""
        value = new_tensor(t.out_dtype, t.shape, self.device)
        return as_bytes(value), value

    def deliver(self, t, handle):
        return handle


class MergedTensors:
    """The merged model's tensors, in checkpoint names and plan order, computed when iterated.

    Planned (every option and input checked) when made; each iteration streams the inputs once. `report`
    says what the last iteration did, `names` lists the tensors in the order they come.
    """

    def __init__(self, job: Job, device: str, where: str = ""):
        self.job, self.plan = plan_in_memory(job)
        self.device = device
        self.report = report_for(self.job, self.plan, job.engine.backend, where or f"tensors on {device}")

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.plan.tensors]

    def __len__(self) -> int:
        return len(self.plan.tensors)

    def __iter__(self):
        for t, value in self.stream(Fresh(self.device)):
            yield t.name, value

    def stream(self, placement):
        """Yields (TensorPlan, placement.deliver(...)) for every tensor, complete, in plan order. placement:
        cost(t) (bytes its target newly allocates), target(t) -> (flat uint8 tensor to fill, handle),
        deliver(t, handle) -> what to yield (runs in the caller's thread)."""
        backend = backend_for(self.job, self.device)
        check_vectors(self.plan, backend)
        elements, itemsize, slots = pipeline_layout(self.plan, self.job.settings.chunk_size())
        pipeline = Pipeline(backend, 1, elements, itemsize=itemsize, **slots)
        tensors = self.plan.tensors
        handover = Handover(max((placement.cost(t) for t in tensors), default=0))
        places = _Places(tensors, placement, handover, backend)
        chunks = plan_chunks([[t] for t in tensors], [places], [[[0]] * len(tensors)], elements, itemsize)
        thread = threading.Thread(target=_produce, args=(pipeline, _checked(chunks, handover), handover),
                                  name="chatvec-memory", daemon=True)  # fmt: skip
        self.report.backend = backend.describe()
        t0 = time.perf_counter()
        thread.start()
        try:
            while True:
                item = handover.take()
                if item is None:
                    break
                t, handle, cost = item
                value = placement.deliver(t, handle)
                del item, handle  # a staging tensor is freed here, before the budget lets the next one in
                handover.release(cost)
                yield t, value
        finally:
            handover.cancel()
            thread.join()
        self.report.seconds = time.perf_counter() - t0


def _offer(backend, target) -> str | None:
    """How a target offers its memory to the backend's kernel: a device kernel writes torch tensors on its own
    device, a host kernel numpy views of CPU memory; None where it cannot write there (the writer copies)."""
    if hasattr(backend, "submit"):
        device = getattr(backend, "device", None)
        return "tensor" if device is not None and same_device(target.device, device) else None
    return "numpy" if target.device.type == "cpu" else None


class _Places:
    """The pipeline's output files, one per tensor, made when the reader reaches the tensor's first chunk."""

    def __init__(self, tensors, placement, handover: Handover, backend):
        self.tensors, self.placement, self.handover, self.backend = tensors, placement, handover, backend

    def __getitem__(self, s: int) -> TensorSink:
        t = self.tensors[s]
        cost = self.placement.cost(t)
        self.handover.admit(cost)
        target, handle = self.placement.target(t)
        sink = TensorSink(target, self.handover.completed, offer=_offer(self.backend, target))
        self.handover.add([t, sink, handle, cost])
        return sink


def same_device(a, b) -> bool:
    """Whether two devices are one ('cuda' is the current CUDA device)."""
    import torch

    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


def _checked(chunks, handover: Handover):
    for chunk in chunks:
        handover.check()  # the caller stopped: the reader ends here, and the pipeline with it
        yield chunk


def _produce(pipeline: Pipeline, chunks, handover: Handover):
    try:
        pipeline.run(chunks)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread (Cancelled: it left)
        handover.finish(exc)
    else:
        handover.finish()
