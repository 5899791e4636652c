"""`chatvec verify OUT`: checks an output against its report and re-derives its elements from the inputs.

First every file of the directory against the report (none missing, none extra, sizes and sha256), then
every tensor: its expected elements are derived from the inputs the report names and its options alone
(verification/expected.py, independent of the planner) with the float64 reference. By default every
tensor is checked at its first and last elements and at a few seeded random windows; --all checks every
element, streaming in windows, so memory does not grow with the tensor.

(The module is not called `verify`: a submodule of that name would replace the chatvec_fast.verify
function once imported.)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import torch

from ..backends.reference import ulp_distance
from ..dtypes import itemsize
from ..errors import InputError
from ..filenames import REPORT_NAME
from ..plan.added_tokens import find_added_tokens
from ..plan.fp8 import fp8_scales
from ..progress import Progress
from ..read.checkpoint import open_checkpoint
from ..read.model_files import special_rows
from ..units import plural
from .expected import Expectation, Rule, rules_for
from .files import check_files
from .report_file import load_report

WINDOW = 16384  # elements per sampled window
STREAM_WINDOW = 1 << 20  # elements per window with --all: ~40 MB of float64 temporaries, whatever the tensor


@dataclass
class TensorCheck:
    name: str
    checked: int = 0
    equal: int = 0
    max_ulp: int = 0
    problem: str | None = None


@dataclass
class VerifyReport:
    output: str
    tensors: list[TensorCheck] = field(default_factory=list)
    max_ulp_allowed: int = 0
    file_problems: list[str] = field(default_factory=list)  # files missing, extra, or not as recorded
    problems: list[str] = field(default_factory=list)  # the report disagrees with the inputs
    checksums_only: bool = False

    @property
    def checked(self) -> int:
        return sum(t.checked for t in self.tensors)

    @property
    def equal(self) -> int:
        return sum(t.equal for t in self.tensors)

    @property
    def max_ulp(self) -> int:
        return max((t.max_ulp for t in self.tensors), default=0)

    @property
    def failures(self) -> list[TensorCheck]:
        return [t for t in self.tensors if t.problem or t.max_ulp > self.max_ulp_allowed]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.file_problems and not self.problems

    def summary(self) -> str:
        files = "every file matches its recorded size and sha256" if not self.file_problems else "FILES CHANGED"
        if self.checksums_only:
            lines = [f"{self.output}: {files}" + (" -- OK" if self.ok else " -- FAILED")]
            return "\n".join(lines + [f"  {p}" for p in self.file_problems])
        share = self.equal / self.checked if self.checked else 1.0
        head = (
            f"{self.output}: {plural(len(self.tensors), 'tensor')}, {self.checked} elements checked, "
            f"{100 * share:.6f}% bit-identical to the float64 reference, max {self.max_ulp} ulp; {files}"
        )
        if self.ok:
            return head + " -- OK"
        lines = [head + f" -- FAILED ({plural(len(self.failures), 'tensor')})"]
        lines += [f"  {p}" for p in (*self.problems, *self.file_problems)]
        for t in self.failures[:10]:
            detail = t.problem or f"{t.checked - t.equal} of {t.checked} elements differ, up to {t.max_ulp} ulp"
            lines.append(f"  {t.name}: {detail}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more")
        return "\n".join(lines)


def _windows(name: str, numel: int, every: bool, windows: int) -> list[tuple[int, int]]:
    if every:
        return [(s, min(STREAM_WINDOW, numel - s)) for s in range(0, numel, STREAM_WINDOW)] or [(0, 0)]
    if numel <= WINDOW * (windows + 2):
        return [(0, numel)]
    rng = random.Random(name)
    starts = {0, numel - WINDOW} | {rng.randrange(0, numel - WINDOW) for _ in range(windows)}
    return [(s, WINDOW) for s in sorted(starts)]


def _special_rows_problem(report: dict, ckpts) -> str | None:
    """The recorded special-token rows and added tokens must be what chat's and cp's tokenizers give now."""
    recorded = [(r["token"], r["chat_row"], r["cp_row"]) for r in report.get("special_token_rows", [])]
    if recorded:
        found, _ = special_rows(ckpts["chat"].directory, ckpts["cp"].directory)
        if sorted(found) != sorted(recorded):
            return "the report's special-token rows are not those chat's and cp's tokenizers give"
    added = [(r["token"], r["chat_row"], r["row"]) for r in report.get("added_tokens", [])]
    if added:
        found, _ = find_added_tokens(ckpts["base"], ckpts["chat"], ckpts["cp"])
        if [(t.token, t.chat_row, t.row) for t in found] != added:
            return "the report's added tokens are not those chat's and cp's tokenizers give"
    return None


def verify(out: str, every: bool = False, max_ulp: int = 0, windows: int = 4, checksums_only: bool = False,
           progress: bool = False) -> VerifyReport:  # fmt: skip
    """Checks one output directory (not a sweep's parent; see verify_path): files first, then elements."""
    report = load_report(out)
    result = VerifyReport(os.path.abspath(out), max_ulp_allowed=max_ulp, checksums_only=checksums_only)
    result.file_problems = check_files(out, report)
    if checksums_only:
        return result
    ckpts = {role: open_checkpoint(path) for role, path in report["inputs"].items()}
    rows_problem = _special_rows_problem(report, ckpts)
    if rows_problem:
        result.problems.append(rows_problem)
    rules = rules_for(report, ckpts)
    got = open_checkpoint(out)
    for extra in sorted(set(got.tensors) - set(rules)):
        result.tensors.append(TensorCheck(extra, problem="in the output but not derived from the inputs"))
    total = sum(_planned_bytes(r, got.tensors.get(n), every, windows) for n, r in rules.items())
    bar = Progress(total, enabled=progress, label="verifying")
    scales = {ckpt.tensors[w]: spec for ckpt in ckpts.values() for w, spec in fp8_scales(ckpt).items()}
    expect = Expectation(scales)
    by_weight = {r.scales_of: got.tensors.get(n) for n, r in rules.items() if r.scales_of}
    try:
        for name, rule in rules.items():
            if rule.scales_of is not None:  # checked with its weight
                continue
            check = _check_tensor(rule, got.tensors.get(name), expect, every, windows, bar, by_weight.get(name))
            result.tensors.append(check)
    finally:
        expect.close()
        bar.close()
    return result


def _planned_bytes(rule: Rule, info, every: bool, windows: int) -> int:
    if info is None or rule.scales_of is not None:
        return 0
    if rule.raw:
        return info.nbytes
    return sum(c for _, c in _rule_windows(rule, info.numel, every, windows)) * itemsize(info.dtype)


def _rule_windows(rule: Rule, numel: int, every: bool, windows: int) -> list[tuple[int, int]]:
    """The windows to check; an FP8 output's cover whole rows of its scale groups (the unit it is made in)."""
    if rule.out_scale is None:
        return _windows(rule.name, numel, every, windows)
    unit = rule.out_scale.unit
    units = -(-numel // unit)
    step = max(1, STREAM_WINDOW // unit)
    picked = range(0, units, step) if every else sorted({0, units - 1, random.Random(rule.name).randrange(units)})
    return [(u * unit, min((u + (step if every else 1)) * unit, numel) - u * unit) for u in picked]


def _check_fp8(rule: Rule, info, scale_info, expect: Expectation, start: int, count: int, check: TensorCheck):
    """An FP8 output window: its codes and its group scales, bit for bit."""
    codes, scales = expect.window(rule, start, count)
    o = rule.out_scale
    first = start // o.unit * o.scale_cols
    have_scales = expect.elements(scale_info, first, scales.numel()) if scale_info is not None else None
    same = expect.elements(info, start, count) == codes
    check.checked += count
    check.equal += int(same.sum())
    if have_scales is None or not torch.equal(have_scales.view(torch.int32), scales.view(torch.int32)):
        check.problem = "its scales differ from the re-quantization of the float64 results"
    elif not bool(same.all()):
        check.max_ulp = max(check.max_ulp, 1)  # codes are compared exactly; any difference fails


def _check_tensor(rule: Rule, info, expect: Expectation, every: bool, windows: int, bar,
                  scale_info=None) -> TensorCheck:  # fmt: skip
    check = TensorCheck(rule.name)
    shape = rule.shape
    if info is None:
        check.problem = "missing from the output"
        return check
    if info.shape != shape or info.dtype != rule.out_dtype:
        check.problem = f"output has {info.dtype}{info.shape}, the inputs give {rule.out_dtype}{shape}"
        return check
    if rule.raw:  # a copied non-float tensor: compare bytes, window by window
        for start in range(0, info.nbytes, STREAM_WINDOW):
            n = min(STREAM_WINDOW, info.nbytes - start)
            if expect.raw(info, start, n) != expect.raw(rule.cp, start, n):
                check.problem = f"differs from {rule.cp.path}"
            bar.advance(n)
        check.checked = check.equal = 0 if check.problem else info.numel
        return check
    for start, count in _rule_windows(rule, info.numel, every, windows):
        if rule.out_scale is not None:
            _check_fp8(rule, info, scale_info, expect, start, count, check)
            bar.advance(count * itemsize(info.dtype))
            continue
        want = expect.window(rule, start, count)
        have = expect.elements(info, start, count)
        distance = ulp_distance(have, want)
        check.checked += count
        check.equal += int((distance == 0).sum())
        if count:
            check.max_ulp = max(check.max_ulp, int(distance.max()))
        bar.advance(count * itemsize(info.dtype))
    return check


def verify_path(path: str, every: bool = False, max_ulp: int = 0, checksums_only: bool = False,
                progress: bool = False) -> list[VerifyReport]:  # fmt: skip
    """An output directory, or a sweep's directory of alpha-*/ outputs."""
    if os.path.isfile(os.path.join(path, REPORT_NAME)):
        return [verify(path, every, max_ulp, checksums_only=checksums_only, progress=progress)]
    if not os.path.isdir(path):
        raise InputError(f"{path}: no such directory")
    subdirs = sorted(d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, REPORT_NAME)))
    if not subdirs:
        raise InputError(f"{path}: no {REPORT_NAME} here or in its subdirectories; nothing to verify")
    return [verify(os.path.join(path, d), every, max_ulp, checksums_only=checksums_only, progress=progress)
            for d in subdirs]  # fmt: skip
