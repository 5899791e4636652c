"""FP8 checkpoints: each F8 weight with the F32 scale that gives its values, found in any shard.

Two layouts are recognised (anything else quantized is refused by quantized.py):

- block-scaled ("fine-grained", DeepSeek-V3, Qwen3-FP8): `X.weight` F8 and `X.weight_scale_inv` F32 of shape
  [ceil(rows / bh), ceil(cols / bw)]; config.json's quantization_config gives weight_block_size [bh, bw];
- per-tensor or per-channel (compressed-tensors "FP8-Dynamic"): `X.weight` F8 and `X.weight_scale` F32 of
  shape [1] (or []) or [rows, 1]; `X.input_scale` (an activation scale) is cp's, kept only in an FP8 output.

value = decode(code) * scale of its group, exact in float64: the merge keeps its single rounding. The scale
tensors are never paired as tensors of their own; they travel with their weight.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from ..errors import InputError
from ..read.checkpoint import Checkpoint
from ..read.header import TensorInfo

FP8_DTYPES = frozenset({"F8_E4M3", "F8_E5M2"})
_SCALE_SUFFIXES = ("_scale_inv", "_scale")
_ACTIVATION_SCALE = re.compile(r"\.input_scale$")


@dataclass(frozen=True)
class ScaleSpec:
    """The scale of one F8 weight: its tensor, and how elements map to its entries."""

    tensor: TensorInfo
    kind: str  # "block", "row" or "tensor"
    cols: int  # the weight's row length
    block_rows: int = 1
    block_cols: int = 1

    @property
    def scale_cols(self) -> int:
        return -(-self.cols // self.block_cols) if self.kind == "block" else 1

    def scale_rows_of(self, first_element: int, count: int) -> tuple[int, int]:
        """(first, end) scale rows that elements [first_element, first_element + count) need."""
        if self.kind == "tensor" or count == 0:
            return 0, 1 if count else 0
        per = self.cols * (self.block_rows if self.kind == "block" else 1)
        return first_element // per, (first_element + count - 1) // per + 1


def block_size(ckpt: Checkpoint) -> tuple[int, int] | None:
    """weight_block_size from config.json's quantization_config (also a multimodal model's text_config)."""
    for cfg in (ckpt.config, ckpt.config.get("text_config") or {}):
        quant = cfg.get("quantization_config") if isinstance(cfg, dict) else None
        size = quant.get("weight_block_size") if isinstance(quant, dict) else None
        if size is not None:
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(x, int) and x > 0 for x in size)):
                raise InputError(f"{ckpt.path}: config.json's weight_block_size {size!r}; expected [rows, cols] > 0")
            return size[0], size[1]
    return None


def fp8_scales(ckpt: Checkpoint) -> dict[str, ScaleSpec]:
    """Every F8 weight's scale, by weight name; InputError naming the tensor where one is missing or does not
    fit its weight."""
    scales = {}
    block = None
    for name, t in ckpt.tensors.items():
        if t.dtype not in FP8_DTYPES:
            continue
        found = [(s, ckpt.tensors[name + s]) for s in _SCALE_SUFFIXES if name + s in ckpt.tensors]
        if not found:
            raise InputError(f"{t.path}: tensor {name!r} is {t.dtype} without a {name}_scale_inv or {name}_scale "
                             f"tensor in {ckpt.path}; FP8 weights need their scales to have values")  # fmt: skip
        suffix, scale = found[0]
        if scale.dtype != "F32":
            raise InputError(f"{scale.path}: scale {scale.name!r} is {scale.dtype}; expected F32")
        cols = t.shape[-1] if t.shape else 1
        rows = math.prod(t.shape[:-1]) if len(t.shape) > 1 else 1
        if suffix == "_scale_inv" and len(t.shape) == 2 and len(scale.shape) == 2:
            block = block or block_size(ckpt)
        # Block scales first: a weight inside one block has a [1, 1] scale_inv, and with --dtype fp8 it must
        # keep its block layout; a [rows, 1] weight_scale is per row even for one row.
        if suffix == "_scale_inv" and len(t.shape) == 2 and len(scale.shape) == 2 and block is not None:
            _check_blocks(ckpt, name, t, scale, rows, cols, block)
            scales[name] = ScaleSpec(scale, "block", cols, block[0], block[1])
        elif suffix == "_scale" and len(t.shape) == 2 and scale.shape == (rows, 1):
            scales[name] = ScaleSpec(scale, "row", cols)
        elif math.prod(scale.shape) == 1:
            scales[name] = ScaleSpec(scale, "tensor", cols)
        elif suffix == "_scale" and scale.shape == (rows,) and len(t.shape) == 2:
            scales[name] = ScaleSpec(scale, "row", cols)
        elif suffix == "_scale_inv" and len(t.shape) == 2:
            if block is None:
                raise InputError(f"{ckpt.path}: {scale.name!r} holds block scales but config.json has no "
                                 "quantization_config.weight_block_size to say the block size")  # fmt: skip
            _check_blocks(ckpt, name, t, scale, rows, cols, block)
        else:
            raise InputError(f"{scale.path}: scale {scale.name!r} of shape {scale.shape} does not fit weight {name!r} "
                             f"{t.shape} (expected one value, one per row, or {name}_scale_inv blocks)")  # fmt: skip
    return scales


def _check_blocks(ckpt: Checkpoint, name: str, t, scale, rows: int, cols: int, block):
    want = (-(-rows // block[0]), -(-cols // block[1]))
    if scale.shape != want:
        raise InputError(f"{scale.path}: scale {scale.name!r} has shape {scale.shape}; weight {name!r} "
                         f"{t.shape} in {block[0]}x{block[1]} blocks (config.json's quantization_config."
                         f"weight_block_size) needs {want}; fix the block size in {ckpt.path}/config.json "
                         "or the scale tensor")  # fmt: skip


def scale_names(ckpt: Checkpoint, scales: dict[str, ScaleSpec]) -> set[str]:
    """The tensors that are scales (of weights, and activation scales): not tensors to merge by themselves."""
    names = {s.tensor.name for s in scales.values()}
    return names | {n for n in ckpt.tensors if _ACTIVATION_SCALE.search(n) and scales}


@dataclass(frozen=True)
class OutScaleSpec:
    """How an FP8 output weight is re-quantized: cp's layout and block size, per output group."""

    kind: str  # "block" or "row"
    cols: int
    rows: int
    block_rows: int = 1
    block_cols: int = 1

    @property
    def unit(self) -> int:
        """Elements of one row of groups: a chunk holds whole ones."""
        return self.cols * (self.block_rows if self.kind == "block" else 1)

    @property
    def scale_cols(self) -> int:
        return -(-self.cols // self.block_cols) if self.kind == "block" else 1

    @property
    def scale_bytes(self) -> int:
        """Bytes of the whole output scale tensor (F32)."""
        groups = -(-self.rows // self.block_rows) if self.kind == "block" else self.rows
        return groups * self.scale_cols * 4


def without_scales(ckpt: Checkpoint, scales: dict[str, ScaleSpec]) -> Checkpoint:
    """The checkpoint as the planner pairs it: its scale tensors travel with their weights."""
    hidden = scale_names(ckpt, scales)
    if not hidden:
        return ckpt
    return replace(ckpt, tensors={n: t for n, t in ckpt.tensors.items() if n not in hidden})
