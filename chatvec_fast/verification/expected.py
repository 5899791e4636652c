"""What each output element must be, derived from the inputs and the report's options alone.

This deliberately does not use the planner: a bug (or a hostile input) that made the plan wrong would
make a plan-based check agree with it. Each tensor's rule is re-derived from its name and the options
(--skip, --alpha-for, the vocabulary policy, the special-token rows, checked against the tokenizers), and
each window of elements is computed with the float64 reference (backends/reference.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from ..backends.reference import TORCH_DTYPES, merge_reference
from ..dtypes import MERGEABLE, itemsize
from ..plan.vocab import VOCAB_NAME, vocab_sizes
from ..read.checkpoint import Checkpoint
from ..read.chunks import InputFiles
from ..read.header import TensorInfo


@dataclass
class Rule:
    """How one output tensor is made: merged elements [0, merged), then cp's, with `rows` (cp row -> chat
    row, `row_size` elements each) taken from chat's tensor; or raw bytes (`raw`: not a float tensor)."""

    name: str
    out_dtype: str
    cp: TensorInfo | None
    base: TensorInfo | None = None
    chat: TensorInfo | None = None  # the chat model's tensor, or the saved vector's
    alpha: float = 1.0
    merged: int = 0
    raw: bool = False
    rows: dict[int, int] = field(default_factory=dict)
    row_source: TensorInfo | None = None
    row_size: int = 0
    shape: tuple[int, ...] | None = None  # None: cp's (chat's for extract); appended rows make it longer

    def __post_init__(self):
        if self.shape is None:
            self.shape = (self.cp or self.chat).shape

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def rules_for(report: dict, ckpts: dict[str, Checkpoint]) -> dict[str, Rule]:
    """The rule of every tensor the output must hold, by name."""
    options = report["options"]
    skip = [re.compile(p) for p in options["skip"]]
    dtype = options["dtype"]
    if report["command"] == "extract":
        base, chat = ckpts["base"], ckpts["chat"]
        return {
            name: Rule(name, dtype or "F32", None, base.tensors[name], h, merged=h.numel)
            for name, h in chat.tensors.items()
            if name in base.tensors and not any(p.search(name) for p in skip)
            and h.dtype in MERGEABLE and base.tensors[name].dtype in MERGEABLE
        }  # fmt: skip
    alpha_for = [(re.compile(p), float(a)) for p, a in options["alpha_for"]]
    cp = ckpts["cp"]
    delta = ckpts.get("vector") or ckpts["chat"]
    special = {r["cp_row"]: r["chat_row"] for r in report.get("special_token_rows", [])}
    appended = {r["row"]: r["chat_row"] for r in report.get("added_tokens", [])}
    cp_vocab = vocab_sizes(cp)
    rules = {}
    for name, c in cp.tensors.items():
        float_out = c.dtype in MERGEABLE
        rule = Rule(name, dtype if (dtype and float_out) else c.dtype, c, raw=not float_out)
        rules[name] = rule
        if not float_out or any(p.search(name) for p in skip):
            continue
        h = delta.tensors.get(name)
        b = ckpts["base"].tensors.get(name) if "base" in ckpts else None
        if h is None or ("base" in ckpts and b is None):
            continue
        rule.base, rule.chat = b, h
        rule.alpha = next((a for p, a in alpha_for if p.search(name)), float(report["alpha"]))
        d = b if b is not None else h  # the rows the chat vector has: base's (chat's extra rows have no base)
        if d.shape == c.shape:
            rule.merged = c.numel
        elif c.shape and c.shape[1:] == d.shape[1:] and c.shape[0] > d.shape[0]:
            rule.merged = d.numel if options["vocab_mismatch"] == "shared-rows" else 0  # cp's extra rows stay cp's
        if "chat" in ckpts and VOCAB_NAME.search(name) and c.shape and c.shape[0] in cp_vocab:
            rows = {**special, **appended}
            if rows:
                rule.rows, rule.row_source = rows, ckpts["chat"].tensors[name]
                rule.row_size = c.numel // c.shape[0]
                rule.shape = (c.shape[0] + len(appended), *c.shape[1:])
    return rules


class Expectation:
    """Reads the inputs a rule needs and computes windows of expected elements."""

    def __init__(self):
        self.files = InputFiles()

    def elements(self, info: TensorInfo, start: int, count: int) -> torch.Tensor:
        dtype = TORCH_DTYPES[info.dtype]
        if count == 0:
            return torch.empty(0, dtype=dtype)
        buf = bytearray(count * itemsize(info.dtype))
        self.files.read(info, start * itemsize(info.dtype), buf)
        return torch.frombuffer(buf, dtype=dtype)

    def raw(self, info: TensorInfo, start: int, nbytes: int) -> bytes:
        buf = bytearray(nbytes)
        self.files.read(info, start, buf)
        return bytes(buf)

    def window(self, rule: Rule, start: int, count: int) -> torch.Tensor:
        """Expected elements [start, start + count) of the rule's tensor."""
        out = TORCH_DTYPES[rule.out_dtype]
        end = start + count
        parts = []
        merged_end = min(end, rule.merged)
        if start < merged_end:
            n = merged_end - start
            base = self.elements(rule.base, start, n) if rule.base is not None else None
            chat = self.elements(rule.chat, start, n)
            if rule.cp is None:  # extract
                parts.append(merge_reference(base, chat, None, [1.0], out)[0])
            else:
                cp = self.elements(rule.cp, start, n)
                parts.append(merge_reference(base, chat, cp, [rule.alpha], out)[0])
        copy_start, copy_end = max(start, rule.merged), min(end, rule.cp.numel if rule.cp is not None else 0)
        if copy_start < copy_end:
            cp = self.elements(rule.cp, copy_start, copy_end - copy_start)
            parts.append(merge_reference(None, None, cp, [0.0], out)[0])
        if max(start, copy_end) < end:  # appended rows: filled from chat's rows below
            parts.append(torch.full((end - max(start, copy_end),), float("nan"), dtype=out))
        want = torch.cat(parts) if parts else torch.empty(0, dtype=out)
        for cp_row, chat_row in rule.rows.items():
            lo, hi = max(start, cp_row * rule.row_size), min(end, (cp_row + 1) * rule.row_size)
            if lo < hi:
                source_start = chat_row * rule.row_size + (lo - cp_row * rule.row_size)
                row = self.elements(rule.row_source, source_start, hi - lo)
                want[lo - start : hi - start] = merge_reference(None, None, row, [0.0], out)[0]
        return want

    def close(self):
        self.files.close()
