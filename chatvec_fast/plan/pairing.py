"""Pairs tensors across the inputs by name, checks shapes and dtypes, and applies the policies.

Looks at headers only. For every tensor of cp (of chat, for `extract`) it decides a policy and the
segments of the output tensor; problems are collected over all tensors and raised together.
"""

from __future__ import annotations

import re
from collections import Counter

from ..dtypes import MERGEABLE, VECTOR_DTYPES
from ..errors import PlanError
from ..read.checkpoint import Checkpoint
from .added_tokens import added_rows_policy, added_rows_problem, appended_rows_conflicts
from .fp8 import FP8_DTYPES
from .layout import layout
from .options import MergeOptions
from .problems import Problems, listing, raise_unmatched, unmatched_rules
from .roles import config_differences
from .types import (
    COPY_NOT_FLOAT,
    COPY_ONLY_IN_CP,
    COPY_SKIPPED,
    COPY_VOCAB_SKIPPED,
    EXTRACT,
    MERGE,
    SHARED_ROWS,
    Plan,
    Segment,
    TensorPlan,
)
from .vocab import append_rows, is_added_rows, is_expanded_vocab, slice_segments, transplant_rows, vocab_sizes


def _alpha_rule(name: str, rules) -> int | None:
    """Index of the first --alpha-for rule matching name, or None."""
    return next((i for i, (pattern, _) in enumerate(rules) if pattern.search(name)), None)


def _alphas_for(rule: int | None, options: MergeOptions, rules) -> tuple[float, ...]:
    if rule is not None:
        return (float(rules[rule][1]),) * len(options.alphas)
    return tuple(a if isinstance(a, tuple) else float(a) for a in options.alphas)  # a tuple: one per vector


def _matches(patterns, name) -> bool:
    return any(p.search(name) for p in patterns)


# Inputs the formula reads: float tensors, and FP8 weights (their scales are checked and attached in fp8.py)
_MODEL_DTYPES = MERGEABLE | FP8_DTYPES


def _out_dtype(c, options: MergeOptions) -> str:
    """cp's dtype, or --dtype for float tensors. FP8 weights come out in bf16 unless --dtype says otherwise;
    --dtype fp8 (F8_E4M3) keeps cp's FP8 weights FP8, re-quantized, and every other tensor as cp has it."""
    if options.dtype == "F8_E4M3" or c.dtype not in _MODEL_DTYPES:
        return c.dtype
    if c.dtype in FP8_DTYPES:
        return options.dtype or "BF16"
    return options.dtype or c.dtype


def make_plan(base: Checkpoint | None, chat: Checkpoint, cp: Checkpoint, options: MergeOptions, special_rows=(),
              appended=()) -> Plan:  # fmt: skip
    """Plans cp + alpha * (chat - base); with base None, `chat` is a saved chat vector (cp + alpha * vector).
    special_rows: (token, chat row, cp row) whose rows come from chat (--special-tokens-from chat); appended:
    the AddedTokens whose chat rows are appended (--added-tokens append).

    Raises PlanError listing every problem found.
    """
    apply = base is None
    delta_roles = "the vector" if apply else "base/chat"
    skip = [re.compile(p) for p in options.skip]
    rules = [(re.compile(p), a) for p, a in options.alpha_for]
    delta_vocab = vocab_sizes(chat) | (set() if apply else vocab_sizes(base))
    cp_vocab = vocab_sizes(cp)
    special = {cp_row: chat_row for _, chat_row, cp_row in special_rows}
    delta_dtypes = VECTOR_DTYPES if apply else _MODEL_DTYPES
    problems = Problems()
    plans: dict[str, TensorPlan] = {}
    set_by: dict[str, int | None] = {}  # merged tensor -> the --alpha-for rule that set its alpha

    for name, c in cp.tensors.items():
        b = None if apply else base.tensors.get(name)
        h = chat.tensors.get(name)
        out_dtype = _out_dtype(c, options)
        rule = _alpha_rule(name, rules)
        alphas = _alphas_for(rule, options, rules)

        def plan(policy, merged=0, name=name, c=c, b=b, h=h, out_dtype=out_dtype, alphas=alphas, rule=rule):
            """Records the tensor's policy; its first `merged` elements come from the formula, the rest from cp."""
            whole_cp = [Segment("copy", 0, c.numel, c, 0)]
            segments = whole_cp
            if merged:
                segments = [Segment("merge", 0, merged), *slice_segments(whole_cp, merged, c.numel)]
                set_by[name] = rule
            plans[name] = TensorPlan(name, policy, c.shape, out_dtype, c, b, h, alphas, segments)

        added = not apply and b is not None and h is not None and b.shape != h.shape and is_added_rows(name, b, h, c)
        if added and options.added_tokens == "error":  # chat added tokens: stop, whatever else copies the tensor
            problems.add("added", added_rows_problem(name, h.shape[0] - b.shape[0]))
        if _matches(skip, name):
            plan(COPY_SKIPPED)
        elif h is None and (apply or b is None):
            plan(COPY_ONLY_IN_CP)
        elif not apply and (b is None or h is None):
            have, lack = ("chat", "base") if b is None else ("base", "chat")
            problems.add("only-one", f"{name}: in {have} and cp, missing from {lack}")
        elif added:
            decided = added_rows_policy(name, b, c, options, appended, problems)
            if decided is not None:
                plan(*decided)
                if decided[0] != COPY_VOCAB_SKIPPED:
                    append_rows(plans[name], appended)
        elif not apply and b.shape != h.shape:
            problems.add("shape", f"{name}: base has shape {b.shape}, chat has {h.shape}")
        elif (
            c.dtype not in _MODEL_DTYPES
            or h.dtype not in delta_dtypes
            or (b is not None and b.dtype not in _MODEL_DTYPES)
        ):
            if c.dtype not in _MODEL_DTYPES and h.dtype == c.dtype and (b is None or b.dtype == c.dtype):
                plan(COPY_NOT_FLOAT)
            else:
                problems.add("dtype", f"{name}: dtypes {_dtypes(b, h, c, apply)}")
        elif c.shape == h.shape:
            plan(MERGE, c.numel)
        elif is_expanded_vocab(c, h, delta_vocab):
            if options.vocab_mismatch == "shared-rows":
                plan(SHARED_ROWS, h.numel)
            elif options.vocab_mismatch == "skip":
                plan(COPY_VOCAB_SKIPPED)
            else:
                problems.add("vocab", f"{name}: cp has {c.shape[0]} rows, {delta_roles} {h.shape[0]}")
        else:
            problems.add("shape", f"{name}: cp has shape {c.shape}, {delta_roles} {h.shape}")

    notes = []
    if special:
        transplant_rows(plans, special, chat, cp_vocab, skip, problems, notes)
    appended_rows_conflicts(plans, appended, skip, problems)
    problems.raise_if_any(config_differences(base, chat, cp) if not apply else "")
    if not options.allow_unmatched:
        names = {*cp.tensors, *chat.tensors, *(() if apply else base.tensors)}
        raise_unmatched(unmatched_rules(skip, rules, names, set_by))
    delta_names = chat.tensors if apply else [n for n in base.tensors if n in chat.tensors]
    dropped = [n for n in delta_names if n not in cp.tensors and not _matches(skip, n)]
    if not apply:
        lonely = [
            n
            for n in {**base.tensors, **chat.tensors}
            if n not in cp.tensors and (n in base.tensors) != (n in chat.tensors)
        ]
        if lonely:
            notes.append(
                f"{len(lonely)} tensors in only one of base and chat and not in cp are ignored: {listing(lonely)}"
            )
    lm_head = plans.get("lm_head.weight")
    if lm_head is not None and lm_head.policy == COPY_ONLY_IN_CP:
        notes.append(f"lm_head.weight: {delta_roles} tie it to the input embedding; cp's is copied unchanged")
    if not set_by:
        _nothing_merged(plans)
    shards, single = layout(cp, plans, options.max_shard_size)
    inputs = {"vector": chat, "cp": cp} if apply else {"base": base, "chat": chat, "cp": cp}
    return Plan(options, inputs, shards, single, dropped, notes, special_rows=tuple(special_rows),
                appended=tuple(appended))  # fmt: skip


def _nothing_merged(plans: dict[str, TensorPlan]):
    counts = Counter(t.policy for t in plans.values())
    why = ", ".join(f"{n} {policy}" for policy, n in counts.most_common()) or "cp has no tensors"
    raise PlanError(
        f"nothing to merge: every output tensor would be copied from cp ({why}); the output would be cp "
        "itself. Check that --base, --chat and --cp are the models you mean, and the --skip rules"
    )


def _dtypes(b, h, c, apply) -> str:
    if apply:
        return f"vector {h.dtype}, cp {c.dtype}"
    return f"base {b.dtype}, chat {h.dtype}, cp {c.dtype}"


def make_extract_plan(base: Checkpoint, chat: Checkpoint, options: MergeOptions) -> Plan:
    """Plans the chat vector chat - base, laid out like chat's shards (or --max-shard-size)."""
    skip = [re.compile(p) for p in options.skip]
    out_dtype = options.dtype or "F32"
    problems = Problems()
    plans: dict[str, TensorPlan] = {}
    notes = []
    not_float = []
    for name, h in chat.tensors.items():
        b = base.tensors.get(name)
        if _matches(skip, name):
            continue
        if b is None:
            problems.add("only-one", f"{name}: in chat, missing from base")
        elif options.added_tokens == "drop" and b.shape != h.shape and is_added_rows(name, b, h, b):
            # inspect without cp (added_tokens "drop"): the rows base has; chat's added rows have no base.
            # `extract` keeps refusing (its vector must hold every row of chat's)
            plans[name] = TensorPlan(name, EXTRACT, b.shape, out_dtype, None, b, h, (1.0,),
                                     [Segment("extract", 0, b.numel)])  # fmt: skip
        elif b.shape != h.shape:
            problems.add("shape", f"{name}: base has shape {b.shape}, chat has {h.shape}")
        elif b.dtype not in _MODEL_DTYPES or h.dtype not in _MODEL_DTYPES:
            not_float.append(name)
        else:
            plans[name] = TensorPlan(
                name, EXTRACT, h.shape, out_dtype, None, b, h, (1.0,), [Segment("extract", 0, h.numel)]
            )
    for name in (n for n in base.tensors if n not in chat.tensors and not _matches(skip, n)):
        problems.add("only-one", f"{name}: in base, missing from chat")
    problems.raise_if_any(config_differences(base, chat))
    if not options.allow_unmatched:
        raise_unmatched(unmatched_rules(skip, [], {*chat.tensors, *base.tensors}, {}))
    if not plans:
        raise PlanError(f"nothing to extract: no float tensor is in both base and chat ({len(not_float)} non-float)")
    if not_float:
        notes.append(f"{len(not_float)} non-float tensors have no chat vector and are left out: {listing(not_float)}")
    shards, single = layout(chat, plans, options.max_shard_size)
    return Plan(options, {"base": base, "chat": chat}, shards, single, [], notes)
