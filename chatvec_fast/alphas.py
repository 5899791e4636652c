"""Alphas as users give them, read and checked once: one float per output, or, for `apply` with several
vectors, one tuple of M floats per output (cp + a1*v1 + ... + aM*vM).

A sweep over several vectors is the grid of the per-vector lists: `--alphas 0.5,1 --alphas 0:1:0.5` makes
2 x 3 outputs, out/alpha-0.5_0.0/ ... out/alpha-1.0_1.0/.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

from .kernel_codes import MAX_VECTORS

# The paper uses alpha 0.5 to 1; a chat vector scaled past +-100 is a typo (1e300 makes every merged
# element Inf, a model nobody asked for, that verify would call exact).
MAX_ALPHA = 100.0
MAX_OUTPUTS = 64  # a sweep's outputs are whole models: 64 of a 70B model are 9 TB
# One kernel call reads every vector of a chunk: the native kernel's limit (kernel_codes.py).
MAX_APPLY_VECTORS = MAX_VECTORS


def check_alpha(value: float, what: str) -> float:
    """A finite alpha within +-MAX_ALPHA; ValueError naming the option otherwise."""
    if not math.isfinite(value):
        raise ValueError(f"{what} {value!r}: an alpha must be a finite number within +-{MAX_ALPHA:g} (the paper uses "
                         "0.5 to 1); NaN or Inf would make every merged element NaN or Inf")  # fmt: skip
    if abs(value) > MAX_ALPHA:
        raise ValueError(
            f"{what} {value!r}: an alpha must be within +-{MAX_ALPHA:g} (the paper uses 0.5 to "
            "1); a chat vector scaled this far drowns cp's weights, which is almost always a typo"
        )
    return value


def parse_alphas(text: str) -> list[float]:
    """'0.25,0.5,1' or 'start:stop:step' (stop included when the steps land on it), in exact decimal steps.
    The cost is bounded before it is paid: at most MAX_OUTPUTS values, numbers of at most 40 characters."""
    shown = text if len(text) <= 60 else text[:60] + "..."
    usage = f"cannot read alphas {shown!r}: expected 0.25,0.5,1.0 or start:stop:step like 0.25:1:0.25"
    parts = text.split(":") if ":" in text else [p for p in text.split(",") if p.strip()]
    if len(parts) > MAX_OUTPUTS:
        raise ValueError(f"alphas {shown!r} make more than {MAX_OUTPUTS} outputs, each a whole model")
    try:
        numbers = [Decimal(p) for p in parts if len(p.strip()) <= 40]
        if len(numbers) != len(parts) or not all(not n.is_finite() or abs(n) <= 10**6 for n in numbers):
            raise ValueError  # NaN and Inf are read, and refused by check_alpha with their name
        if ":" in text:
            finite = all(n.is_finite() for n in numbers)
            if len(numbers) != 3 or not finite or numbers[2] <= 0 or numbers[1] < numbers[0]:
                raise ValueError
            start, stop, step = numbers
            count = int((stop - start) / step) + 1  # bounded: |numbers| <= 1e6, and step's 40 digits
            if count > MAX_OUTPUTS:
                raise ValueError(f"alphas {shown!r} make {count} outputs, each a whole model; at most {MAX_OUTPUTS}")
            values = [float(start + i * step) for i in range(count)]
        else:
            values = [float(n) for n in numbers]
    except ValueError as exc:
        raise ValueError(str(exc) if str(exc).startswith("alphas") else usage) from None
    except ArithmeticError:  # decimal's InvalidOperation, Overflow, DivisionByZero
        raise ValueError(usage) from None
    if not values or len(set(values)) != len(values):
        raise ValueError(f"alphas {shown!r}: need at least one, and no repeats")
    return values


def parse_alpha_for(rules, what: str = "--alpha-for") -> tuple[tuple[str, float], ...]:
    """['embed_tokens|lm_head=0', ...] -> (('embed_tokens|lm_head', 0.0), ...); the value follows the last '='.
    what: the option's name in messages (--alpha-for, or alpha_for in Python)."""
    out = []
    for rule in rules or ():
        if isinstance(rule, (tuple, list)):
            if len(rule) != 2 or not isinstance(rule[0], str):
                raise ValueError(f"{what} {rule!r}: expected (regex, alpha) pairs")
            pattern, value = rule
        else:
            pattern, sep, value = str(rule).rpartition("=")
            if not sep or not pattern:
                raise ValueError(f"{what} {rule!r}: expected REGEX=VALUE, e.g. 'embed_tokens|lm_head=0'")
        try:
            alpha = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} {rule!r}: {value!r} is not a number; expected REGEX=VALUE, e.g. "
                             "'embed_tokens|lm_head=0'") from None  # fmt: skip
        out.append((pattern, check_alpha(alpha, f"{what} {pattern!r}=")))
    return tuple(out)


def normalize_alphas(alphas) -> list:
    """The outputs' alphas from text ('0.25,0.5' or 'start:stop:step'), floats, or tuples of floats (one per
    vector, the same count in every output); each checked, no output twice, at most MAX_OUTPUTS."""
    if isinstance(alphas, str):
        values = parse_alphas(alphas)
    else:
        values = [tuple(float(x) for x in a) if isinstance(a, (tuple, list)) else float(a) for a in alphas]
    widths = {len(a) if isinstance(a, tuple) else 0 for a in values}
    if not values or len(set(values)) != len(values) or len(values) > MAX_OUTPUTS or len(widths) != 1:
        raise ValueError(f"alphas {alphas!r}: need at least one, at most {MAX_OUTPUTS}, no repeats, and the same "
                         "number of values (one per vector) in each")  # fmt: skip
    for a in values:
        for x in a if isinstance(a, tuple) else (a,):
            check_alpha(x, "alpha")
    return values


def vector_alphas(count: int, alpha=None, alphas=None) -> tuple[list, bool]:
    """(the outputs' alphas, whether they make a sweep) for `apply` with `count` vectors: `alpha` one float
    per vector (None: 1.0 each), or `alphas` one list per vector (text as for sweep), whose grid is swept.
    With one vector, alpha and alphas are a float and one list, as for merge and sweep."""
    if not 1 <= count <= MAX_APPLY_VECTORS:
        raise ValueError(f"apply takes 1 to {MAX_APPLY_VECTORS} vectors, got {count}")
    if alphas is not None and alpha is not None:
        raise ValueError("give alpha (one output) or alphas (a sweep), not both")
    if count == 1:
        if alphas is not None:
            if not isinstance(alphas, str) and any(isinstance(a, (str, list, tuple)) for a in alphas):
                raise ValueError(f"one vector takes one alpha list (--alphas once), got {alphas!r}")
            return normalize_alphas(alphas), True
        if isinstance(alpha, (list, tuple)):
            if len(alpha) != 1:
                raise ValueError(f"one vector takes one alpha (--alpha once), got {list(alpha)!r}")
            alpha = alpha[0]
        return normalize_alphas([1.0 if alpha is None else alpha]), False
    if alphas is not None:
        lists = [alphas] if isinstance(alphas, str) else list(alphas)
        if len(lists) != count:
            raise ValueError(f"{count} vectors need {count} alpha lists (--alphas once per --vector, in the same "
                             f"order), got {len(lists)}: {alphas!r}")  # fmt: skip
        per_vector = [normalize_alphas(a if isinstance(a, str) else list(a)) for a in lists]
        outputs = math.prod(len(values) for values in per_vector)  # counted before the grid is built
        if outputs > MAX_OUTPUTS:
            sizes = " x ".join(str(len(values)) for values in per_vector)
            raise ValueError(f"the alphas of {count} vectors make a grid of {sizes} = {outputs} outputs, each a whole "
                             f"model; at most {MAX_OUTPUTS}")  # fmt: skip
        return normalize_alphas(list(itertools.product(*per_vector))), True
    given = [1.0] * count if alpha is None else alpha
    if not isinstance(given, (list, tuple)) or len(given) != count:
        raise ValueError(f"{count} vectors need {count} alphas (--alpha once per --vector, in the same order), "
                         f"got {alpha!r}")  # fmt: skip
    return normalize_alphas([tuple(given)]), False


def describe_alpha(alpha) -> str:
    """0.5, or 0.5, 0.3 for an output of several vectors."""
    return ", ".join(repr(float(a)) for a in alpha) if isinstance(alpha, tuple) else repr(float(alpha))
