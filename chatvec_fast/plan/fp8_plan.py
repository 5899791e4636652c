"""FP8 in a plan: the scales of every FP8 input weight, and, with --dtype fp8, each FP8 output weight's
re-quantization and the tensor its new scales go to (right after the weight, in cp's layout).

The pairing (pairing.py) sees FP8 weights as tensors like any other, with their scale tensors hidden
(fp8.without_scales); this module puts the scales back where the kernels and the writer need them.
"""

from __future__ import annotations

from ..read.checkpoint import Checkpoint
from .fp8 import OutScaleSpec, ScaleSpec, scale_names
from .problems import Problems
from .types import COPY_ACTIVATION_SCALE, SCALES, OutputShard, Plan, Segment, TensorPlan

FP8_OUT = "F8_E4M3"


def attach_fp8(plan: Plan, ckpts: dict[str, Checkpoint], fp8: dict[str, dict[str, ScaleSpec]]):
    """Records every FP8 input weight's scale in plan.scales and plans FP8 outputs (--dtype fp8)."""
    for role, scales in fp8.items():
        for name, spec in scales.items():
            plan.scales[ckpts[role].tensors[name]] = spec
    fp8_out = plan.options.dtype == FP8_OUT
    cp_scales = fp8.get("cp", {})
    problems = Problems()
    if fp8_out and not cp_scales:
        problems.add("fp8", "--dtype fp8 keeps cp's FP8 layout, and cp has no FP8 weights; use bf16, f16 or f32")
    extra: dict[str, list[TensorPlan]] = {}  # weight name -> the tensors that follow it in the output
    for t in plan.tensors:
        if not fp8_out or t.name not in cp_scales:
            continue
        spec = cp_scales[t.name]
        after = _scale_output(t, spec, problems)
        activation = ckpts["cp"].tensors.get(t.name.rsplit(".", 1)[0] + ".input_scale")
        if activation is not None:
            after.append(_copy(activation, COPY_ACTIVATION_SCALE))
        extra[t.name] = after
    problems.raise_if_any()
    if extra:
        plan.shards = [OutputShard(s.filename, [x for t in s.tensors for x in (t, *extra.get(t.name, ()))])
                       for s in plan.shards]  # fmt: skip
    _describe(plan, ckpts, fp8, fp8_out)


def _copy(info, policy: str) -> TensorPlan:
    return TensorPlan(info.name, policy, info.shape, info.dtype, info, None, None, (), [Segment("copy", 0, info.numel,
                      info, 0)])  # fmt: skip


def _scale_output(t: TensorPlan, spec: ScaleSpec, problems: Problems) -> list[TensorPlan]:
    """The output scale tensor of FP8 weight t: written by the kernel (merged weights) or cp's (copied)."""
    if t.cp.dtype != FP8_OUT or spec.kind not in ("block", "row"):
        what = f"{t.cp.dtype} with a per-{spec.kind} scale" if spec.kind == "tensor" else t.cp.dtype
        problems.add("fp8", f"{t.name}: cp's weight is {what}; --dtype fp8 re-quantizes F8_E4M3 weights with block "
                     "or per-row scales (a per-tensor scale would need the whole tensor at once)")  # fmt: skip
        return []
    whole_copy = len(t.segments) == 1 and t.segments[0].kind == "copy" and t.segments[0].source is t.cp
    if whole_copy:  # copied (--skip, or not in base/chat): cp's codes and cp's scales, as they are
        return [_copy(spec.tensor, t.policy)]
    if len(t.segments) != 1 or t.segments[0].kind != "merge":
        problems.add("fp8", f"{t.name}: part merged, part copied (shared or special rows); --dtype fp8 needs each FP8 "
                     "weight merged or copied whole: use --dtype bf16")  # fmt: skip
        return []
    rows = t.numel // spec.cols if spec.cols else 0
    t.out_scale = OutScaleSpec(spec.kind, spec.cols, rows, spec.block_rows, spec.block_cols)
    scales = TensorPlan(spec.tensor.name, SCALES, spec.tensor.shape, "F32", None, None, None, t.alphas,
                        [Segment("scales", 0, spec.tensor.numel)], scales_of=t)  # fmt: skip
    return [scales]


def _describe(plan: Plan, ckpts, fp8, fp8_out: bool):
    """plan.fp8 (for the report) and notes (for the dry run): each input's FP8 weights, what the output holds."""
    for role, scales in fp8.items():
        if not scales:
            continue
        layouts = sorted({f"{s.block_rows}x{s.block_cols} blocks" if s.kind == "block" else f"per-{s.kind} scales"
                          for s in scales.values()})  # fmt: skip
        name, spec = next(iter(scales.items()))
        plan.fp8[role] = {"weights": len(scales), "scales": layouts, "example": [name, spec.tensor.name]}
        plan.notes.append(f"{role}: {len(scales)} FP8 weights with {', '.join(layouts)} (e.g. {name} with "
                          f"{spec.tensor.name})")  # fmt: skip
    if plan.fp8:
        out = plan.options.dtype or "BF16"
        plan.fp8["output"] = "F8_E4M3, re-quantized in cp's layout" if fp8_out else f"{out} (scales folded in)"
        plan.notes.append(f"FP8 weights come out as {plan.fp8['output']}")
        hidden = scale_names(ckpts["cp"], fp8.get("cp", {})) if "cp" in ckpts else set()
        if hidden and not fp8_out:
            plan.notes.append(f"cp's {len(hidden)} scale tensors are left out: the output is not quantized")
