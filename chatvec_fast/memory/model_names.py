"""Where a checkpoint tensor lives in a loaded model: a view of one of its parameters or persistent buffers.

For a transformers model the names map exactly as from_pretrained maps them, with transformers' own mapping
(nothing copied from it): `get_model_conversion_mapping(model)` and `rename_source_key` turn a checkpoint
name into a parameter name (renamings, the base model's prefix added or dropped); where a converter fuses
several checkpoint tensors into one parameter (transformers 5's MoE experts: experts.N.gate_proj and up_proj
-> experts.gate_up_proj), `revert_weight_conversion`, which save_pretrained uses, is run once per layer on
index tensors, so each checkpoint tensor is found as a strided slice of its parameter. Any other torch module
is mapped by its state_dict names as they are (vLLM's models take checkpoint names in load_weights instead).

Tied parameters are one tensor under several names: writing either fills it. Non-persistent buffers (rotary
inv_freq) are not in checkpoints and are left alone, as from_pretrained leaves them.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass


@dataclass
class Target:
    """A checkpoint tensor's place: param.as_strided(shape, strides, param's offset + offset), or, where the
    conversion is not a strided slice, the flat `index` of each element in the parameter."""

    param: str  # the parameter's first name in model.state_dict() (a tied one has several)
    shape: tuple
    offset: int = 0
    strides: tuple | None = None
    index: object = None  # a torch int64 tensor, or None


def _layer_of(name: str) -> str:
    """'model.layers.3.mlp.experts.gate_up_proj' -> 'model.layers.3': conversions never cross a layer."""
    found = re.match(r"^(.*?\.\d+)\.", name)
    return found.group(1) if found else name


def _strided(idx) -> tuple[int, tuple] | None:
    """(offset, strides) when idx (flat positions in a contiguous parameter) is an affine grid, else None."""
    import torch

    if idx.numel() == 0:
        return None
    first = int(idx.reshape(-1)[0])
    strides, expected = [], torch.full_like(idx, first)
    for d, size in enumerate(idx.shape):
        if size == 1:
            strides.append(1)
            continue
        step = [0] * idx.dim()
        step[d] = 1
        stride = int(idx[tuple(step)]) - first
        if stride < 0:
            return None
        strides.append(stride)
        shape = [1] * idx.dim()
        shape[d] = size
        expected = expected + (torch.arange(size) * stride).view(shape)
    return (first, tuple(strides)) if torch.equal(expected, idx) else None


class ModelNames:
    """Checkpoint name -> Target for one model (resolved lazily, a layer's conversions built once)."""

    def __init__(self, model):
        self.model = model
        self.state = model.state_dict(keep_vars=True)  # persistent parameters and buffers, every name
        first: dict[int, str] = {}
        self.alias = {n: first.setdefault(id(t), n) for n, t in self.state.items()}  # a tied name -> the first
        self.renamings, self.converters, self.prefix = [], [], None
        self._table: dict[str, Target] = {}
        self._built: set[str] = set()
        self._layers: dict[str, list[str]] = {}
        self._templates: dict[tuple, list] = {}  # a layer's (suffix, shape)s -> its (checkpoint suffix, Target)s
        for n in self.state:
            if self.alias[n] == n:
                self._layers.setdefault(_layer_of(n), []).append(n)
        if _is_transformers(model):
            from transformers.conversion_mapping import get_model_conversion_mapping
            from transformers.core_model_loading import WeightConverter, WeightRenaming

            mapping = get_model_conversion_mapping(model)  # the list from_pretrained builds
            self.renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
            self.converters = [m for m in mapping if isinstance(m, WeightConverter)]
            self.prefix = model.base_model_prefix

    def params(self) -> list[str]:
        """Every parameter and persistent buffer, once (a tied one by its first name)."""
        return [n for n in self.state if self.alias[n] == n]

    def resolve(self, name: str) -> Target | None:
        """Where checkpoint tensor `name` goes, or None when the model has no place for it."""
        if not self.renamings and not self.converters:
            return self._whole(name) if name in self.state else None
        from transformers.core_model_loading import rename_source_key

        renamed, pattern = rename_source_key(name, self.renamings, self.converters, self.prefix, self.state)
        if renamed not in self.state and name in self.state:
            renamed, pattern = name, None
        if renamed not in self.state:
            return None
        if pattern is None:
            return self._whole(renamed)
        self._build(_layer_of(renamed))  # a converter matched: the layer's slices
        canonical = self._canonical(name)
        for key in (canonical, f"{self.prefix}.{canonical}", canonical.removeprefix(f"{self.prefix}.")):
            if key in self._table:
                return self._table[key]
        return None

    def _whole(self, name: str) -> Target:
        param = self.alias[name]
        t = self.state[param]
        return Target(param, tuple(t.shape), 0, tuple(t.stride()))

    def _canonical(self, name: str) -> str:
        from transformers.core_model_loading import apply_renamings

        return apply_renamings(name, self.renamings)

    def _build(self, layer: str):
        """Runs transformers' reverse conversion on index tensors of one layer's parameters: checkpoint name ->
        its slice. Costs one int32 copy of the layer's parameters, once per layout (layers alike share it)."""
        if layer in self._built:
            return
        self._built.add(layer)
        import torch
        from transformers.core_model_loading import revert_weight_conversion

        names = self._layers.get(layer, [])
        signature = tuple((n[len(layer) :], tuple(self.state[n].shape)) for n in names)
        if signature in self._templates:
            for suffix, t in self._templates[signature]:
                self._table[layer + suffix] = Target(layer + t.param, t.shape, t.offset, t.strides, t.index)
            return
        template = []
        total = sum(self.state[n].numel() for n in names)
        itype = torch.int32 if total < 2**31 else torch.int64
        index, bounds, start = {}, [], 0
        for n in names:
            t = self.state[n]
            index[n] = torch.arange(start, start + t.numel(), dtype=itype).view(t.shape)
            bounds.append((start, start + t.numel(), n))
            start += t.numel()
        with self._default_conversions():
            reverted = revert_weight_conversion(self.model, index)
        for ckpt_name, idx in reverted.items():
            lo, hi = int(idx.min()), int(idx.max())
            owner = next(((b, n) for b, e, n in bounds if b <= lo and hi < e), None)
            if owner is None:  # e.g. a fused qkv checkpoint tensor split into q, k and v parameters
                raise NotImplementedError(f"{ckpt_name} spans several parameters of {layer}; such models are not "
                                          "supported in memory yet: merge to files and load them")  # fmt: skip
            base, param = owner
            local = (idx - base).long()
            found = _strided(local) if self.state[param].is_contiguous() else None
            target = Target(param, tuple(idx.shape))
            if found is None:
                target.index = local.reshape(-1).clone()
            else:
                target.offset, target.strides = found
            key = self._canonical(ckpt_name)
            self._table[key] = target
            if key.startswith(layer + ".") and param.startswith(layer + "."):
                template.append((key[len(layer) :], Target(param[len(layer) :], *_fields(target))))
        if len(template) == len(reverted):
            self._templates[signature] = template

    @contextlib.contextmanager
    def _default_conversions(self):
        """revert_weight_conversion prefers model._weight_conversions (those the last from_pretrained used);
        hidden, it takes the model's full default mapping, whatever format the model was loaded from."""
        d = self.model.__dict__
        had, old = "_weight_conversions" in d, d.get("_weight_conversions")
        self.model._weight_conversions = None
        try:
            yield
        finally:
            if had:
                self.model._weight_conversions = old
            else:
                d.pop("_weight_conversions", None)


def _fields(t: Target) -> tuple:
    return t.shape, t.offset, t.strides, t.index


def _is_transformers(model) -> bool:
    """A transformers PreTrainedModel (checked without importing transformers for other modules)."""
    mro = type(model).__mro__
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers.") for c in mro)
