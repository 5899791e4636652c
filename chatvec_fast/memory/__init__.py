"""Merged weights straight into memory: the merge's pipeline with tensors in memory as its outputs, no disk.

Three forms, each with the bits `merge` writes for the same options:

    for name, tensor in merged_tensors(base, chat, cp, alpha=0.5): ...   # a stream, in checkpoint names
    merge_into(model, base, chat, cp, alpha=0.5)                          # into a loaded model, in place
    held = HeldMerge(base, chat, cp); held.apply(model, 0.5); held.switch(0.7)   # inputs held once

Nothing here imports torch until tensors are made; transformers only when a model is mapped.
"""

from __future__ import annotations

from .held import HeldMerge
from .into import merge_into_job
from .options import alpha_values, build_job, device_name, roles, takes_memory_options
from .tensors import MergedTensors

__all__ = ["merged_tensors", "merge_into", "HeldMerge", "MergedTensors"]


@takes_memory_options
def merged_tensors(base=None, chat=None, cp=None, alpha=1.0, *, vector=None, device="cpu", **options) -> MergedTensors:
    """The merged model as (checkpoint name, tensor) pairs, in cp's tensor order, each tensor new memory on
    `device` (cp's dtype, or `dtype`) and the caller's once yielded. Bit-identical to the tensors `merge` writes
    with the same options; vector= (with cp) gives apply's cp + alpha * vector instead (alpha: one per vector).

    Planned now (options and inputs checked); the inputs are read when it is iterated, through the merge's own
    pipeline, holding its slots and at most one tensor besides the one being handed over. Iterate it once
    per use (vLLM's `model.load_weights(...)` takes it as it is):

    >>> for name, tensor in merged_tensors("base", "chat", "cp", alpha=0.5):
    ...     state[name] = tensor
    """
    command, inputs, vectors = roles(base, chat, cp, vector)
    job = build_job("merged_tensors", command, inputs, alpha_values(command, vectors, alpha), options)
    return MergedTensors(job, device_name(device))


@takes_memory_options
def merge_into(model, base=None, chat=None, cp=None, alpha=1.0, *, vector=None, **options):
    """Writes the merge into `model`'s parameters and buffers in place (a transformers model loaded from cp, on
    any devices, with any device_map) and returns a MergeReport. Names map as transformers maps checkpoint
    names (prefixes, tied embeddings, fused MoE experts); before anything is written, every parameter must
    receive exactly one merged tensor of its shape and dtype (or a dtype that holds it exactly), and every
    merged tensor a parameter: a mismatch is an error naming both sides.

    Peak memory: the pipeline's slots, plus at most one tensor where a parameter cannot be written in place
    (another dtype, a layout that is not contiguous). Interrupted, the model holds a mix: the exception says so.

    >>> model = transformers.AutoModelForCausalLM.from_pretrained("cp", dtype=torch.bfloat16)
    >>> merge_into(model, "base", "chat", "cp", alpha=0.5)
    """
    command, inputs, vectors = roles(base, chat, cp, vector)
    job = build_job("merge_into", command, inputs, alpha_values(command, vectors, alpha), options)
    return merge_into_job(model, job)
