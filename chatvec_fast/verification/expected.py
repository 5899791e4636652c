"""What each output element must be, derived from the inputs and the report's options alone.

This deliberately does not use the planner: a bug (or a hostile input) that made the plan wrong would
make a plan-based check agree with it. Each tensor's rule is re-derived from its name and the options
(--skip, --alpha-for, the vocabulary policy, special-token rows checked against the tokenizers), with
verify's own rules for the tokens a chat model added (added.py) and for FP8 scales (scales.py); compute.py
computes the elements with verify's own float64 arithmetic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..dtypes import MERGEABLE
from ..read.checkpoint import Checkpoint
from ..read.header import TensorInfo
from .added import EMBEDDING, VOCABULARY
from .scales import FP8_IN, ScaleRule, scale_tensors

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
    out_scale: ScaleRule | None = None  # an FP8 output weight: re-quantized per group, in cp's layout
    scales_of: str | None = None  # an FP8 output's scale tensor: checked with its weight

    def __post_init__(self):
        if self.shape is None:
            self.shape = (self.cp or self.deltas[0]).shape

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def rules_for(report: dict, ckpts: dict[str, Checkpoint], fp8: dict[str, dict[str, ScaleRule]],
              appended: list[tuple[str, int, int]]) -> dict[str, Rule]:  # fmt: skip
    """The rule of every tensor the output must hold, by name; fp8: each role's scale rules (scales.py),
    appended: the tokens added after cp's rows (added.py)."""
    options = report["options"]
    skip = [re.compile(p) for p in options["skip"]]
    dtype = options["dtype"]
    if report["command"] == "extract":
        base, chat = ckpts["base"], ckpts["chat"]
        return {
            name: Rule(name, dtype or "F32", None, base.tensors[name], (h,), merged=h.numel)
            for name, h in chat.tensors.items()
            if name in base.tensors and not any(p.search(name) for p in skip) and not _is_scale(name, fp8, ckpts)
            and h.dtype in MERGEABLE | FP8_IN and base.tensors[name].dtype in MERGEABLE | FP8_IN
        }  # fmt: skip
    return _merge_rules(report, ckpts, fp8, skip, appended)


def _is_scale(name, fp8, ckpts) -> bool:
    return any(name in scale_tensors(ckpts[role], fp8[role]) for role in ckpts)


def vocab_sizes(ckpt: Checkpoint) -> set[int]:
    """The vocabulary sizes a checkpoint declares (config.json's vocab_size) or has (embedding rows)."""
    sizes = set()
    for section in (ckpt.config, ckpt.config.get("text_config")):
        size = section.get("vocab_size") if isinstance(section, dict) else None
        if type(size) is int:
            sizes.add(size)
    return sizes | {t.shape[0] for n, t in ckpt.tensors.items() if EMBEDDING.search(n) and t.shape}


def _merge_rules(report: dict, ckpts, fp8, skip, added) -> dict[str, Rule]:
    options, dtype = report["options"], report["options"]["dtype"]
    alpha_for = [(re.compile(p), float(a)) for p, a in options["alpha_for"]]
    cp = ckpts["cp"]
    vectors = [ckpts[r] for r in sorted(ckpts, key=_vector_order) if r.startswith("vector")]
    deltas = vectors or [ckpts["chat"]]
    special = {r["cp_row"]: r["chat_row"] for r in report.get("special_token_rows", [])}
    appended = {row: chat_row for _, chat_row, row in added}
    cp_vocab, cp_scales = vocab_sizes(cp), fp8["cp"]
    hidden = scale_tensors(cp, cp_scales)
    fp8_out = dtype == FP8_OUT
    alpha = report["alpha"]
    rules: dict[str, Rule] = {}
    for name, c in cp.tensors.items():
        if name in hidden:
            if fp8_out and name not in rules:  # cp's, unless its weight is merged (then set below, or before)
                rules[name] = Rule(name, c.dtype, c, raw=True)
            continue
        float_in = c.dtype in MERGEABLE | FP8_IN
        out = c.dtype if fp8_out or not float_in else (dtype or ("BF16" if c.dtype in FP8_IN else c.dtype))
        rule = rules[name] = Rule(name, out, c, raw=not float_in or out == c.dtype and c.dtype in FP8_IN)
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
        if "chat" in ckpts and VOCABULARY.search(name) and c.shape and c.shape[0] in cp_vocab and (special or appended):
            rule.rows, rule.row_source = {**special, **appended}, ckpts["chat"].tensors[name]
            rule.row_size = c.numel // c.shape[0]
            rule.shape = (c.shape[0] + len(appended), *c.shape[1:])
        if fp8_out and name in cp_scales and rule.merged == c.numel:
            rule.out_scale = cp_scales[name]
            rules[rule.out_scale.tensor.name] = Rule(rule.out_scale.tensor.name, "F32", rule.out_scale.tensor,
                                                     scales_of=name)  # fmt: skip
    return rules


def _vector_order(role: str) -> int:
    return int(role[len("vector") :] or 1)
