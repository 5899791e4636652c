"""merge_into: the merged tensors written into a loaded model's parameters and buffers, in place.

The merge's pipeline (memory/tensors.py) writes each chunk straight into its parameter where the parameter's
region is contiguous and of the merged dtype, so a model of any size costs only the pipeline's slots; other
regions are staged one tensor at a time (memory/targets.py). Every place is checked before the first write.
"""

from __future__ import annotations

from ..job import Job
from ..report import MergeReport
from .sink import as_bytes
from .targets import model_places, staging
from .tensors import MergedTensors


class ModelPlacement:
    """Where the stream puts each tensor: its parameter's bytes, or a staging tensor copied over when complete."""

    def __init__(self, places: dict):
        self.places = places

    def cost(self, t) -> int:
        return 0 if self.places[t.name].direct else t.out_nbytes

    def target(self, t):
        place = self.places[t.name]
        if place.direct:
            return place.bytes(), None
        staged = staging(t)
        return as_bytes(staged), staged

    def deliver(self, t, staged):
        if staged is not None:
            self.places[t.name].deliver(staged)


def compute_device(model) -> str:
    """Where the kernel's results should land: the first CUDA device the model's parameters use, else the CPU."""
    for p in model.parameters():
        if p.device.type == "cuda":
            return str(p.device)
    return "cpu"


def check_model(model, fn: str):
    if not (hasattr(model, "state_dict") and hasattr(model, "parameters")):
        raise TypeError(f"{fn}: model {type(model).__name__!r} is not a torch module; pass the loaded model, e.g. "
                        "transformers.AutoModelForCausalLM.from_pretrained(cp)")  # fmt: skip


def note_partial(exc: BaseException, written: int, total: int, what: str):
    """Says on the exception (Python 3.11+: as a note) that the model's weights are a mix now."""
    if hasattr(exc, "add_note"):
        exc.add_note(f"chatvec_fast: {what}: the model's weights are partly rewritten ({written} of {total} tensors "
                     "complete, the next one possibly in part); merge into it again, or reload it")  # fmt: skip


def merge_into_job(model, job: Job) -> MergeReport:
    """merge_into with its Job built (memory/__init__.py)."""
    import torch

    check_model(model, "merge_into")
    stream = MergedTensors(job, compute_device(model), where=f"{type(model).__name__} (in memory)")
    places = model_places(model, stream.plan)  # every place checked: nothing is written on a mismatch
    written = 0
    with torch.no_grad():
        try:
            for _ in stream.stream(ModelPlacement(places)):
                written += 1
        except BaseException as exc:
            note_partial(exc, written, len(stream), "merge_into was interrupted")
            raise
    return stream.report
