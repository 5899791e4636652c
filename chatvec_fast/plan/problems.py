"""What the planner tells the user: the catalogue of pairing problems (each with its fix) and the dry-run
text."""

from __future__ import annotations

import difflib

from ..errors import PlanError
from ..units import format_bytes, plural

# How many offending names an error lists before "... and N more".
MAX_LISTED = 5

_FIXES = {
    "only-one": "base and chat must come from the same architecture; pass --skip REGEX to copy such tensors from cp",
    "shape": "pass --skip REGEX to copy these tensors from cp unchanged, or check that the models share "
    "an architecture",
    "dtype": "non-float tensors are only copied when all inputs agree on their dtype; pass --skip REGEX "
    "to copy them from cp",
    "vocab": "cp's vocabulary is expanded; choose --vocab-mismatch shared-rows (merge the shared rows, keep cp's "
    "extra rows) or skip (copy these tensors from cp)",
    "special": "check that --chat is the chat model whose tokenizer was read, or drop --special-tokens-from",
    "added": "pass --added-tokens append (chat's rows and tokens are appended to cp's) or drop (left out)",
    "appended": "appended rows go to every vocabulary tensor or to none; --added-tokens drop leaves chat's added "
    "tokens out",
    "fp8": "use --dtype bf16 (the default for FP8 inputs), which holds every merged value's rounding exactly once",
    "vectors": "the vectors of one apply must be extracted from models of one architecture (same tensor names and "
    "shapes); apply them one at a time otherwise",
}

_TITLES = {
    "only-one": "tensors present in only one of base and chat",
    "shape": "tensors whose shapes differ",
    "dtype": "tensors whose dtypes cannot be merged",
    "vocab": "vocabulary tensors with more rows in cp (--vocab-mismatch error)",
    "special": "vocabulary tensors that cannot take special-token rows from chat",
    "added": "vocabulary tensors where chat has rows base lacks (--added-tokens error)",
    "appended": "vocabulary tensors that would keep cp's rows while tokens are appended (--added-tokens append)",
    "fp8": "FP8 weights that cannot come out as FP8 (--dtype fp8)",
    "vectors": "tensors the vectors do not agree on",
}


class Problems:
    """Pairing problems collected over all tensors, so one error lists them all."""

    def __init__(self):
        self.by_kind: dict[str, list[str]] = {}

    def add(self, kind: str, text: str):
        self.by_kind.setdefault(kind, []).append(text)

    def has(self, kind: str) -> bool:
        return bool(self.by_kind.get(kind))

    def raise_if_any(self, preface: str = ""):
        """PlanError listing every problem; preface (how the inputs' configs differ) comes first."""
        if not self.by_kind:
            return
        parts = [f"cannot pair the checkpoints: {preface}" if preface else "cannot pair the checkpoints:"]
        for kind, items in self.by_kind.items():
            parts.append(f"{len(items)} {_TITLES[kind]}:")
            parts.extend(f"  - {item}" for item in items[:MAX_LISTED])
            if len(items) > MAX_LISTED:
                parts.append(f"  ... and {len(items) - MAX_LISTED} more")
            parts.append(f"  fix: {_FIXES[kind]}")
        raise PlanError("\n".join(parts))


def listing(names: list[str]) -> str:
    """'a, b, c, d, e ... and 7 more'."""
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def _fmt_alpha(a) -> str:
    return f"({', '.join(map(_fmt_alpha, a))})" if isinstance(a, tuple) else repr(float(a))


def describe_plan(plan) -> str:
    """The --dry-run report of a Plan."""
    alphas = ", ".join(map(_fmt_alpha, plan.options.alphas))
    lines = [f"plan: {plural(len(plan.tensors), 'tensor')}, alpha {alphas}"]
    for policy, count in sorted(plan.policy_counts().items()):
        lines.append(f"  {count:6d}  {policy}")
    if plan.dropped:
        lines.append(f"  {len(plan.dropped):6d}  left out (not in cp): {listing(plan.dropped)}")
    groups = plan.alpha_groups()
    if len(groups) > 1 or (groups and next(iter(groups)) != tuple(plan.options.alphas)):
        lines.append("alphas by tensor:")
        for a, names in groups.items():
            lines.append(f"  {', '.join(map(_fmt_alpha, a))}: {plural(len(names), 'tensor')} ({listing(names)})")
    for token, chat_row, cp_row in plan.special_rows:
        lines.append(f"  special token {token!r}: row {cp_row} of the vocabulary tensors from chat's row {chat_row}")
    for t in plan.appended:
        lines.append(f"  added token {t.token!r}: appended as row {t.row} of the vocabulary tensors, chat's row "
                     f"{t.chat_row} as it is")  # fmt: skip
    for note in plan.notes:
        lines.append(f"  note: {note}")
    kind = "1 file" if plan.single_file else f"{len(plan.shards)} shards + index"
    lines.append(f"output: {kind}, {format_bytes(plan.write_nbytes)} per output")
    for shard in plan.shards:
        lines.append(f"  {shard.filename}: {plural(len(shard.tensors), 'tensor')}, {format_bytes(shard.data_nbytes)}")
    lines.append(f"reads {format_bytes(plan.read_nbytes)} from the inputs")
    return "\n".join(lines)


def unmatched_rules(skip, alpha_for, skip_names, alpha_names) -> list[str]:
    """One line per --skip rule that matches none of skip_names and per --alpha-for rule that sets the alpha of
    none of alpha_names (tensor name -> index of the rule that set it), with the nearest names."""
    lines = []
    for pattern in skip:
        if not any(pattern.search(n) for n in skip_names):
            lines.append(f"--skip {pattern.pattern!r} matches no tensor{_nearest(pattern.pattern, skip_names)}")
    used = set(alpha_names.values())
    for i, (pattern, value) in enumerate(alpha_for):
        if i not in used:
            shadowed = any(pattern.search(n) for n in alpha_names)
            why = "only tensors an earlier rule already set" if shadowed else "no merged tensor"
            lines.append(f"--alpha-for '{pattern.pattern}={value:g}' matches {why}"
                         f"{_nearest(pattern.pattern, list(alpha_names))}")  # fmt: skip
    return lines


def _nearest(pattern: str, names) -> str:
    hint = ""
    if "\\|" in pattern:
        hint = " ('\\|' is a literal '|' in a regular expression; for either side write 'a|b' without the backslash)"
    close = difflib.get_close_matches(pattern.replace("\\", ""), list(names), n=3, cutoff=0.3)
    return hint + (f"; nearest names: {', '.join(close)}" if close else "")


def raise_unmatched(lines: list[str]):
    if lines:
        raise PlanError(
            "rules that change nothing:\n"
            + "\n".join(f"  - {line}" for line in lines)
            + "\n  fix: correct the rules (tensor names are matched with re.search), or pass --allow-unmatched"
        )
