"""verify's own reading of FP8 scales: which F32 tensor scales each F8 weight, and how (not plan/fp8.py's).

The layouts the merge documents (README, backends/call.py's Scale):

- `W_scale_inv` of shape [ceil(rows / bh), ceil(cols / bw)] with config.json's (or text_config's)
  quantization_config.weight_block_size [bh, bw]: one scale per block;
- `W_scale` of shape [rows, 1] or [rows] on a 2-D weight: one per row;
- any scale of one element: one for the tensor.

`.input_scale` tensors are activation scales: never merged, cp's in an FP8 output. A weight whose scale
fits none of these is reported by verify as a problem of its own (the merge refuses such inputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..read.checkpoint import Checkpoint
from ..read.header import TensorInfo

FP8_IN = frozenset({"F8_E4M3", "F8_E5M2"})


@dataclass(frozen=True)
class ScaleRule:
    """How weight element e finds its scale entry: row = e // cols; per row, per block, or one."""

    tensor: TensorInfo
    kind: str  # "block", "row", "tensor"
    cols: int
    rows: int
    block_rows: int = 1
    block_cols: int = 1

    @property
    def scale_cols(self) -> int:
        return -(-self.cols // self.block_cols) if self.kind == "block" else 1

    def entries(self, first: int, count: int) -> tuple[int, int]:
        """[first, end) scale entries (row-major) that elements [first, first + count) need."""
        if count == 0:
            return 0, 0
        if self.kind == "tensor":
            return 0, 1
        per_scale_row = self.cols * (self.block_rows if self.kind == "block" else 1)
        first_row, last_row = first // per_scale_row, (first + count - 1) // per_scale_row
        return first_row * self.scale_cols, (last_row + 1) * self.scale_cols


def _weight_block(config: dict) -> list | None:
    for section in (config, config.get("text_config")):
        quantization = section.get("quantization_config") if isinstance(section, dict) else None
        if isinstance(quantization, dict) and "weight_block_size" in quantization:
            return quantization["weight_block_size"]
    return None


def find_scales(ckpt: Checkpoint) -> tuple[dict[str, ScaleRule], list[str]]:
    """(scale rule by F8 weight name, problems: a weight without a usable scale, named with its file)."""
    rules, problems = {}, []
    block = _weight_block(ckpt.config)
    for name, weight in ckpt.tensors.items():
        if weight.dtype not in FP8_IN:
            continue
        rows = math.prod(weight.shape[:-1]) if len(weight.shape) >= 2 else 1
        cols = weight.shape[-1] if weight.shape else 1
        inverse, direct = ckpt.tensors.get(name + "_scale_inv"), ckpt.tensors.get(name + "_scale")
        scale = inverse if inverse is not None else direct
        if scale is None or scale.dtype != "F32":
            problems.append(f"{weight.path}: {weight.dtype} tensor {name!r} has no F32 {name}_scale_inv or "
                            f"{name}_scale tensor")  # fmt: skip
            continue
        two_d = len(weight.shape) == 2
        if scale is inverse and two_d and len(scale.shape) == 2 and _is_block(block):
            bh, bw = block
            if scale.shape == (-(-rows // bh), -(-cols // bw)):
                rules[name] = ScaleRule(scale, "block", cols, rows, bh, bw)
                continue
        elif (
            scale is direct
            and two_d
            and scale.shape in ((rows, 1), (rows,))
            and not (rows == 1 and scale.shape == (1,))
        ):
            rules[name] = ScaleRule(scale, "row", cols, rows)
            continue
        elif math.prod(scale.shape) == 1:
            rules[name] = ScaleRule(scale, "tensor", cols, rows)
            continue
        problems.append(f"{scale.path}: scale {scale.name!r} of shape {scale.shape} fits none of the layouts of "
                        f"weight {name!r} {weight.shape} (block size from config.json: {block})")  # fmt: skip
    return rules, problems


def _is_block(block) -> bool:
    return isinstance(block, list) and len(block) == 2 and all(type(b) is int and b > 0 for b in block)


def scale_tensors(ckpt: Checkpoint, rules: dict[str, ScaleRule]) -> set[str]:
    """Names of the tensors that are scales (of weights, and activation scales where there are FP8 weights)."""
    names = {r.tensor.name for r in rules.values()}
    if any(t.dtype in FP8_IN for t in ckpt.tensors.values()):
        names |= {n for n in ckpt.tensors if n.endswith(".input_scale")}
    return names
