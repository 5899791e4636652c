"""The recommended alpha: each `--pick` rule, stated in words (results.json and results.md carry the statement)
and applied to the measured rows.

    >>> recommend(rows, cp_row, "fidelity-stops", 0.05)["alpha"]
    0.5

Every rule breaks ties by the lower alpha: it changes cp less, so of two alphas that measure the same, the one
closer to cp keeps more of what cp learned. A figure that is NaN or infinite never wins.
"""

from __future__ import annotations

import math

from ..errors import ChatvecError

RULES = ("fidelity-stops", "bits-per-byte", "fidelity", "answer")  # settings.PICK_RULES names the same


def statement(rule: str, max_bpb_increase: float) -> str:
    """The rule in words, as results.json and results.md state it."""
    ties = "; ties go to the lower alpha"
    if rule == "fidelity-stops":
        return (f"the highest language fidelity x stops among the alphas whose bits per byte on --text are at "
                f"most {100 * max_bpb_increase:g}% above cp's (alpha 0){ties}; if none is, the lowest bits per "
                "byte on --text")  # fmt: skip
    if rule == "bits-per-byte":
        return f"the lowest bits per byte on --text{ties}"
    if rule == "fidelity":
        return f"the highest language fidelity (share of replies in --language){ties}"
    if rule == "answer":
        return f"the lowest bits per byte of the prompts' reference answers{ties}"
    raise ValueError(f"pick {rule!r}: expected one of {', '.join(RULES)}")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _best(rows: list[dict], key, highest: bool) -> dict | None:
    """The row with the best finite key; the lower alpha among equals."""
    scored = [r for r in rows if _finite(key(r))]
    if not scored:
        return None
    best = (max if highest else min)(key(r) for r in scored)
    return min((r for r in scored if key(r) == best), key=lambda r: r["alpha"])


def recommend(rows: list[dict], cp_row: dict, rule: str, max_bpb_increase: float) -> dict:
    """{"rule", "statement", "alpha", "reason"} for the measured rows (each with "alpha" and the Evaluator's
    figures); cp_row: cp's reference (alpha 0), whose bits per byte fidelity-stops' limit is relative to."""
    text = statement(rule, max_bpb_increase)
    done = {"rule": rule, "statement": text}
    if not rows:
        return {**done, "alpha": None, "reason": "no alpha was evaluated"}
    if rule == "fidelity-stops":
        cp_bpb = cp_row["bits_per_byte"]
        limit = cp_bpb * (1 + max_bpb_increase)
        within = [r for r in rows if _finite(r["bits_per_byte"]) and r["bits_per_byte"] <= limit]
        chosen = _best(within, lambda r: r["fidelity"] * r["stops"], highest=True)
        if chosen is not None:
            score = chosen["fidelity"] * chosen["stops"]
            return {**done, "alpha": chosen["alpha"],
                    "reason": f"fidelity x stops {score:.4f}, the highest of {len(within)} alphas with bits per byte "
                    f"at most {limit:.4f} (cp's {cp_bpb:.4f} + {100 * max_bpb_increase:g}%)"}  # fmt: skip
        chosen = _best(rows, lambda r: r["bits_per_byte"], highest=False)
        if chosen is None:
            return {**done, "alpha": None, "reason": "every alpha's bits per byte on --text is NaN or infinite"}
        return {**done, "alpha": chosen["alpha"],
                "reason": f"no alpha stays within {limit:.4f} bits per byte (cp's {cp_bpb:.4f} + "
                f"{100 * max_bpb_increase:g}%); alpha {chosen['alpha']!r} has the lowest, "
                f"{chosen['bits_per_byte']:.4f}"}  # fmt: skip
    key, highest, what = {
        "bits-per-byte": (lambda r: r["bits_per_byte"], False, "bits per byte on --text"),
        "fidelity": (lambda r: r["fidelity"], True, "language fidelity"),
        "answer": (lambda r: r["answer_bits_per_byte"], False, "bits per byte of the answers"),
    }[rule]
    chosen = _best(rows, key, highest)
    if chosen is None:
        if rule == "answer":
            raise ChatvecError("--pick answer needs prompts with reference answers (\"answer\" in prompts.jsonl); "
                               "none gave a finite figure")  # fmt: skip
        return {**done, "alpha": None, "reason": f"every alpha's {what} is NaN or infinite"}
    return {**done, "alpha": chosen["alpha"], "reason": f"{what} {key(chosen):.4f}"}
