"""Every merged tensor's place in a model, all checked before a byte is written.

Each tensor of the plan must land in exactly one parameter (or persistent buffer) region of its shape, and
every parameter must be filled, once, by the tensors: a tensor with no parameter, a parameter no tensor fills,
two tensors on one region (a tied embedding the checkpoint also stores as lm_head) and a shape or dtype that
differs are refused together, in one message naming both sides.

A place is written in place: the pipeline writes straight into the parameter's bytes when the region is
contiguous and of the merged dtype (`direct`), otherwise into a staging tensor copied over once complete (a
dtype that holds the merged one exactly, such as a float32 parameter of a bf16 merge, or a region that is not
contiguous).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import PlanError
from .model_names import ModelNames, Target
from .sink import as_bytes, new_tensor, torch_dtype

# Casts that change no value: the merged dtype -> the parameter dtypes that hold it exactly.
_EXACT = {"BF16": ("float32", "float64"), "F16": ("float32", "float64"), "F32": ("float64",)}


class ModelMismatch(PlanError):
    """The model's parameters and the merged tensors do not pair up."""


@dataclass
class Place:
    name: str  # the checkpoint name
    param: str  # the parameter's name in the model
    view: object  # the region (a torch view of the parameter), or the whole parameter for an index target
    index: object = None  # flat element positions in the parameter, where the region is not strided
    direct: bool = False  # the pipeline writes view's bytes itself

    def bytes(self):
        return as_bytes(self.view)

    def deliver(self, staged):
        """Copies a complete staging tensor into the region (casting exactly, across devices)."""
        if self.index is None:
            self.view.copy_(staged)
        else:
            flat = self.view.reshape(-1)
            flat.index_copy_(0, self.index.to(flat.device), staged.reshape(-1).to(flat))


def model_places(model, plan) -> dict[str, Place]:
    """{checkpoint name: Place} for every tensor of the plan; ModelMismatch naming every problem otherwise."""
    names = ModelNames(model)
    places, unplaced, problems, regions = {}, [], [], {}
    for t in plan.tensors:
        target = names.resolve(t.name)
        if target is None:
            unplaced.append(t.name)
            continue
        holder = _holder(model, names, target.param)
        merged = torch_dtype(t.out_dtype, t.name)
        if tuple(target.shape) != tuple(t.shape):
            rows = len(t.shape) == len(target.shape) > 1 and tuple(t.shape[1:]) == tuple(target.shape[1:])
            hint = f" (model.resize_token_embeddings({t.shape[0]}) makes room for its rows)" if rows else ""
            problems.append(f"{t.name}: merged shape {tuple(t.shape)}, parameter {target.param} takes "
                            f"{tuple(target.shape)}{hint}")  # fmt: skip
            continue
        if holder.dtype != merged and str(holder.dtype).removeprefix("torch.") not in _EXACT.get(t.out_dtype, ()):
            problems.append(f"{t.name}: merged {t.out_dtype}, parameter {target.param} is {holder.dtype}, which "
                            f"would round it again; load the model in {merged} (dtype={merged}) or pass "
                            f"dtype= the parameter's")  # fmt: skip
            continue
        places[t.name] = _place(t.name, target, holder, merged)
        regions.setdefault(target.param, []).append((t.name, target))
    filled = set()
    for param, found in regions.items():
        problem = _coverage(param, names.state[param].numel(), found)
        if problem:
            problems.append(problem)
        filled.add(param)
    unfilled = [p for p in names.params() if p not in filled]
    if unplaced or unfilled or problems:
        raise ModelMismatch(_message(type(model).__name__, unplaced, unfilled, problems, names, plan))
    return places


def _holder(model, names: ModelNames, param: str):
    """The tensor that holds a parameter's values: itself, or, for one accelerate offloaded to CPU memory (the
    parameter on the meta device), the hook's copy in weights_map."""
    t = names.state[param]
    if t.device.type != "meta":
        return t
    module_name, _, local = param.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    weights = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
    found = weights[local] if weights is not None and local in weights else None
    again = weights[local] if found is not None else None
    if found is None or found.device.type == "meta" or found.data_ptr() != again.data_ptr():
        raise ModelMismatch(f"parameter {param} is on the meta device and its values are not held in memory (not "
                            "loaded, or offloaded to disk): load the model onto devices or CPU memory, or merge to "
                            "files and load those")  # fmt: skip
    return found


def _place(name: str, target: Target, holder, merged) -> Place:
    if target.index is not None:
        return Place(name, target.param, holder.detach(), target.index)
    view = holder.detach().as_strided(target.shape, target.strides, holder.storage_offset() + target.offset)
    return Place(name, target.param, view, None, holder.dtype == merged and view.is_contiguous())


def _coverage(param: str, numel: int, found: list) -> str | None:
    """Whether the tensors placed in a parameter fill it exactly once; the problem otherwise."""
    spans, counted = [], 0
    for name, t in found:
        size = 1
        for d in t.shape:
            size *= d
        contiguous = t.index is None and list(t.strides) == _contiguous_strides(t.shape)
        if contiguous:
            spans.append((t.offset, t.offset + size, name))
        counted += size
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            return (f"{first} and {second} both fill parameter {param} (tied in the model?); transformers unties "
                    "them when their values differ: load the model with tie_word_embeddings=False")  # fmt: skip
    if counted != numel:
        return f"parameter {param}: the merged tensors fill {counted} of its {numel} elements"
    return None


def _contiguous_strides(shape) -> list[int]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return strides[::-1]


def _message(model: str, unplaced, unfilled, problems, names: ModelNames, plan) -> str:
    lines = [f"the merged tensors and {model}'s parameters do not pair up; nothing was written:"]
    params = names.params()
    tensors = [t.name for t in plan.tensors]
    for name in unplaced[:20]:
        near = difflib.get_close_matches(name, params, n=1, cutoff=0.5)
        lines.append(f"  merged tensor {name}: no parameter of the model takes it"
                     + (f" (nearest parameter: {near[0]})" if near else ""))  # fmt: skip
    for param in unfilled[:20]:
        near = difflib.get_close_matches(param, tensors, n=1, cutoff=0.5)
        lines.append(f"  parameter {param}: no merged tensor fills it"
                     + (f" (nearest merged tensor: {near[0]})" if near else ""))  # fmt: skip
    lines += [f"  {p}" for p in problems[:20]]
    hidden = max(len(unplaced) - 20, 0) + max(len(unfilled) - 20, 0) + max(len(problems) - 20, 0)
    if hidden:
        lines.append(f"  ... and {hidden} more")
    lines.append("fix: load the model from cp (the merge has cp's tensor names and shapes: with an added or expanded "
                 "vocabulary, cp's config with the merged vocab_size), in the merged dtype")  # fmt: skip
    return "\n".join(lines)


def staging(t):
    """A host tensor for a place that is not written in place: freed once copied over."""
    return new_tensor(t.out_dtype, t.shape, "cpu")
