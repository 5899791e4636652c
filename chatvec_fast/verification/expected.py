"""What each output element must be, derived from the inputs and the report's options alone.

This deliberately does not use the planner: a bug (or a hostile input) that made the plan wrong would
make a plan-based check agree with it. Each tensor's rule is re-derived from its name and the options
(--skip, --alpha-for, the vocabulary policy, special-token rows and added tokens checked against the
tokenizers, FP8 scales found anew), and each window of elements is computed with the float64 reference
(backends/reference_call.py, the one oracle every backend is tested against).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from ..backends.call import KernelCall, Operand, OutScale, Scale
from ..backends.reference import TORCH_DTYPES
from ..backends.reference_call import reference_call
from ..dtypes import MERGEABLE, itemsize
from ..plan.fp8 import FP8_DTYPES, OutScaleSpec, fp8_scales, scale_names
from ..plan.vocab import VOCAB_NAME, vocab_sizes
from ..read.checkpoint import Checkpoint
from ..read.chunks import InputFiles
from ..read.header import TensorInfo

FP8_OUT = "F8_E4M3"


@dataclass
class Rule:
    """How one output tensor is made: merged elements [0, merged), then cp's up to cp's end, with `rows`
    (output row -> chat row, `row_size` elements each) taken from chat's tensor; raw bytes (`raw`: copied as
    they are); or checked with the FP8 weight whose scales it holds (`scales_of`)."""

    name: str
    out_dtype: str
    cp: TensorInfo | None
    base: TensorInfo | None = None
    deltas: tuple = ()  # chat's tensor, or the saved vectors'
    alphas: tuple = (1.0,)  # one per delta
    merged: int = 0
    raw: bool = False
    rows: dict[int, int] = field(default_factory=dict)
    row_source: TensorInfo | None = None
    row_size: int = 0
    shape: tuple[int, ...] | None = None  # None: cp's (chat's for extract); appended rows make it longer
    out_scale: OutScaleSpec | None = None  # an FP8 output weight: re-quantized per group
    scales_of: str | None = None  # an FP8 output's scale tensor: checked with its weight

    def __post_init__(self):
        if self.shape is None:
            self.shape = (self.cp or self.deltas[0]).shape

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def rules_for(report: dict, ckpts: dict[str, Checkpoint]) -> dict[str, Rule]:
    """The rule of every tensor the output must hold, by name."""
    options = report["options"]
    skip = [re.compile(p) for p in options["skip"]]
    dtype = options["dtype"]
    fp8 = {role: fp8_scales(ckpt) for role, ckpt in ckpts.items()}
    if report["command"] == "extract":
        base, chat = ckpts["base"], ckpts["chat"]
        return {
            name: Rule(name, dtype or "F32", None, base.tensors[name], (h,), merged=h.numel)
            for name, h in chat.tensors.items()
            if name in base.tensors and not any(p.search(name) for p in skip) and not _is_scale(name, fp8, ckpts)
            and h.dtype in MERGEABLE | FP8_DTYPES and base.tensors[name].dtype in MERGEABLE | FP8_DTYPES
        }  # fmt: skip
    return _merge_rules(report, ckpts, fp8, skip)


def _is_scale(name, fp8, ckpts) -> bool:
    return any(name in scale_names(ckpts[role], fp8[role]) for role in ckpts)


def _merge_rules(report: dict, ckpts, fp8, skip) -> dict[str, Rule]:
    options, dtype = report["options"], report["options"]["dtype"]
    alpha_for = [(re.compile(p), float(a)) for p, a in options["alpha_for"]]
    cp = ckpts["cp"]
    vectors = [ckpts[r] for r in sorted(ckpts, key=_vector_order) if r.startswith("vector")]
    deltas = vectors or [ckpts["chat"]]
    special = {r["cp_row"]: r["chat_row"] for r in report.get("special_token_rows", [])}
    appended = {r["row"]: r["chat_row"] for r in report.get("added_tokens", [])}
    cp_vocab, cp_scales = vocab_sizes(cp), fp8["cp"]
    hidden = scale_names(cp, cp_scales)
    fp8_out = dtype == FP8_OUT
    alpha = report["alpha"]
    rules: dict[str, Rule] = {}
    for name, c in cp.tensors.items():
        if name in hidden:
            if fp8_out and name not in rules:  # cp's, unless its weight is merged (then set below, or before)
                rules[name] = Rule(name, c.dtype, c, raw=True)
            continue
        float_in = c.dtype in MERGEABLE | FP8_DTYPES
        out = c.dtype if fp8_out or not float_in else (dtype or ("BF16" if c.dtype in FP8_DTYPES else c.dtype))
        rule = rules[name] = Rule(name, out, c, raw=not float_in or out == c.dtype and c.dtype in FP8_DTYPES)
        hs = [d.tensors.get(name) for d in deltas]
        b = ckpts["base"].tensors.get(name) if "base" in ckpts else None
        if not float_in or any(p.search(name) for p in skip) or None in hs or ("base" in ckpts and b is None):
            continue
        rule.raw, rule.base, rule.deltas = False, b, tuple(hs)
        own = next((a for p, a in alpha_for if p.search(name)), None)
        rule.alphas = tuple(alpha) if isinstance(alpha, list) else (own if own is not None else float(alpha),)
        d = b if b is not None else hs[0]  # the rows the chat vector has: base's (chat's extra rows have no base)
        if d.shape == c.shape:
            rule.merged = c.numel
        elif c.shape and c.shape[1:] == d.shape[1:] and c.shape[0] > d.shape[0]:
            rule.merged = d.numel if options["vocab_mismatch"] == "shared-rows" else 0  # cp's extra rows stay cp's
        if "chat" in ckpts and VOCAB_NAME.search(name) and c.shape and c.shape[0] in cp_vocab and (special or appended):
            rule.rows, rule.row_source = {**special, **appended}, ckpts["chat"].tensors[name]
            rule.row_size = c.numel // c.shape[0]
            rule.shape = (c.shape[0] + len(appended), *c.shape[1:])
        if fp8_out and name in cp_scales and rule.merged == c.numel:
            spec = cp_scales[name]
            rule.out_scale = OutScaleSpec(spec.kind, spec.cols, c.numel // spec.cols, spec.block_rows, spec.block_cols)
            rules[spec.tensor.name] = Rule(spec.tensor.name, "F32", spec.tensor, scales_of=name)
    return rules


def _vector_order(role: str) -> int:
    return int(role[len("vector") :] or 1)


class Expectation:
    """Reads the inputs a rule needs and computes windows of expected elements with the reference."""

    def __init__(self, scales: dict):
        self.files = InputFiles()
        self.scales = scales  # TensorInfo of an F8 weight -> ScaleSpec, for every input

    def read(self, info: TensorInfo, first_byte: int, nbytes: int) -> bytearray:
        buf = bytearray(nbytes)
        self.files.read(info, first_byte, buf)
        return buf

    def raw(self, info: TensorInfo, start: int, nbytes: int) -> bytes:
        return bytes(self.read(info, start, nbytes))

    def elements(self, info: TensorInfo, start: int, count: int) -> torch.Tensor:
        """Stored elements as they are (FP8 as uint8 codes)."""
        dtype = torch.uint8 if info.dtype in FP8_DTYPES else TORCH_DTYPES[info.dtype]
        if count == 0:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(
            self.read(info, start * itemsize(info.dtype), count * itemsize(info.dtype)), dtype=dtype
        )

    def operand(self, info: TensorInfo, start: int, count: int) -> Operand:
        """An input's elements with, for an FP8 weight, the scale rows they need."""
        buf = self.read(info, start * itemsize(info.dtype), count * itemsize(info.dtype))
        spec = self.scales.get(info)
        if spec is None:
            return Operand(buf, info.dtype)
        r0, r1 = spec.scale_rows_of(start, count)
        rows = self.read(spec.tensor, r0 * spec.scale_cols * 4, (r1 - r0) * spec.scale_cols * 4)
        return Operand(buf, info.dtype, Scale(spec.kind, rows, spec.cols, start, spec.block_rows, spec.block_cols, r0))

    def window(self, rule: Rule, start: int, count: int):
        """Expected elements [start, start + count) of the rule's tensor; with an FP8 output, (codes, scales)."""
        end = start + count
        merged_end, parts = min(end, rule.merged), []
        out_dtype = "F64" if rule.out_scale is not None else rule.out_dtype  # re-quantized below
        if start < merged_end:
            n = merged_end - start
            ops = [self.operand(d, start, n) for d in rule.deltas]
            base = self.operand(rule.base, start, n) if rule.base is not None else None
            cp = self.operand(rule.cp, start, n) if rule.cp is not None else None
            if cp is None:
                call = KernelCall(n, "extract", [None], out_dtype, [[1.0]], base=base, chat=ops[0])
            elif base is None:
                call = KernelCall(n, "apply", [None], out_dtype, [list(rule.alphas)], cp=cp, vectors=tuple(ops))
            else:
                call = KernelCall(n, "merge", [None], out_dtype, [[rule.alphas[0]]], base=base, chat=ops[0], cp=cp)
            parts.append(reference_call(call)[0][0])
        copy_start, copy_end = max(start, rule.merged), min(end, rule.cp.numel if rule.cp is not None else 0)
        if copy_start < copy_end:
            parts.append(self._convert(rule.cp, copy_start, copy_end - copy_start, out_dtype))
        filled = max(start, merged_end, copy_end)
        if filled < end:  # appended rows: filled from chat's rows below
            parts.append(torch.full((end - filled,), float("nan"), dtype=TORCH_DTYPES[out_dtype]))
        want = torch.cat(parts) if parts else torch.empty(0, dtype=TORCH_DTYPES[out_dtype])
        for out_row, chat_row in rule.rows.items():
            lo, hi = max(start, out_row * rule.row_size), min(end, (out_row + 1) * rule.row_size)
            if lo < hi:
                source = chat_row * rule.row_size + (lo - out_row * rule.row_size)
                want[lo - start : hi - start] = self._convert(rule.row_source, source, hi - lo, out_dtype)
        if rule.out_scale is None:
            return want
        o = rule.out_scale
        out_scale = OutScale(o.kind, [None], o.cols, start, o.block_rows, o.block_cols, rows=o.rows)
        results = Operand(want.numpy().tobytes(), "F64")
        call = KernelCall(count, "convert", [None], FP8_OUT, [[1.0]], cp=results, out_scale=out_scale)
        codes, scales, _ = reference_call(call)
        return codes[0], scales[0]

    def _convert(self, info: TensorInfo, start: int, count: int, out_dtype: str) -> torch.Tensor:
        call = KernelCall(count, "convert", [None], out_dtype, [[1.0]], cp=self.operand(info, start, count))
        return reference_call(call)[0][0]

    def close(self):
        self.files.close()
