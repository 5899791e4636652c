"""`chatvec verify OUT`: checks an output against its report and re-derives its elements from the inputs.

First every file of the directory against the report (none missing, none extra, sizes and sha256), then
every tensor: its expected elements are derived from the inputs the report names and its options alone
(expected.py, with verify's own rules for added tokens and FP8 scales: independent of the planner) in
verify's own float64 arithmetic (compute.py, rounding.py: numpy, independent of the kernels), and the
output is checked to load (loadable.py). By default every tensor is checked at its first and last elements
and at a few seeded random windows; --all checks every element, in windows on a pool of threads
(check.py), so memory does not grow with the model.

(The module is not called `verify`: a submodule of that name would replace the chatvec_fast.verify
function once imported.)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from ..errors import InputError
from ..filenames import REPORT_NAME
from ..progress import Progress
from ..read.checkpoint import open_checkpoint
from ..read.model_files import special_rows
from ..units import plural
from .added import added_tokens
from .check import STREAM_WINDOW, Outcome, Window, run_windows, window_bytes
from .compute import Deriver
from .expected import Rule, rules_for
from .files import check_files
from .loadable import load_problems
from .report_file import load_report
from .scales import find_scales

WINDOW = 16384  # elements per sampled window


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


def _rule_windows(rule: Rule, numel: int, every: bool, windows: int) -> list[tuple[int, int]]:
    """The windows to check; an FP8 output's cover whole rows of its scale groups (the unit it is made in)."""
    if rule.out_scale is None:
        return _windows(rule.name, numel, every, windows)
    o = rule.out_scale
    unit = o.cols * (o.block_rows if o.kind == "block" else 1)
    units = -(-numel // unit)
    step = max(1, STREAM_WINDOW // unit)
    picked = range(0, units, step) if every else sorted({0, units - 1, random.Random(rule.name).randrange(units)})
    return [(u * unit, min((u + (step if every else 1)) * unit, numel) - u * unit) for u in picked]


def _input_problems(report: dict, ckpts) -> tuple[list[str], list]:
    """(problems, tokens to append): the report's special-token rows and added tokens must be what chat's and
    cp's tokenizers give now, by verify's own rules (added.py), not the planner's."""
    problems = []
    recorded = [(r["token"], r["chat_row"], r["cp_row"]) for r in report.get("special_token_rows", [])]
    if recorded:
        found, _ = special_rows(ckpts["chat"].directory, ckpts["cp"].directory)
        if sorted(found) != sorted(recorded):
            problems.append("the report's special-token rows are not those chat's and cp's tokenizers give")
    appended = added_tokens(ckpts, report["options"].get("added_tokens", "append"))
    if [(r["token"], r["chat_row"], r["row"]) for r in report.get("added_tokens", [])] != appended:
        problems.append("the report's added tokens are not those chat's and cp's tokenizers give: "
                        f"{[t for t, _, _ in appended]} after cp's rows")  # fmt: skip
    return problems, appended


def verify(out: str, every: bool = False, max_ulp: int = 0, windows: int = 4, checksums_only: bool = False,
           progress: bool = False) -> VerifyReport:  # fmt: skip
    """Checks one output directory (not a sweep's parent; see verify_path): files first, then elements."""
    report = load_report(out)
    result = VerifyReport(os.path.abspath(out), max_ulp_allowed=max_ulp, checksums_only=checksums_only)
    result.file_problems = check_files(out, report)
    if checksums_only:
        return result
    ckpts = {role: open_checkpoint(path) for role, path in report["inputs"].items()}
    fp8 = {}
    for role, ckpt in ckpts.items():
        fp8[role], scale_problems = find_scales(ckpt)
        result.problems += scale_problems
    input_problems, appended = _input_problems(report, ckpts)
    result.problems += input_problems
    try:
        got = open_checkpoint(out)
    except InputError as exc:
        result.problems += load_problems(out, {}) or [str(exc)]
        return result
    if report["command"] != "extract":  # a saved vector is not a model to load
        result.problems += load_problems(out, got.tensors)
    rules = rules_for(report, ckpts, fp8, appended)
    for extra in sorted(set(got.tensors) - set(rules)):
        result.tensors.append(TensorCheck(extra, problem="in the output but not derived from the inputs"))
    by_weight = {r.scales_of: got.tensors.get(n) for n, r in rules.items() if r.scales_of}
    checks, work = {}, []
    for name, rule in rules.items():
        if rule.scales_of is not None:  # checked with its weight
            continue
        check = checks[name] = TensorCheck(name)
        info = got.tensors.get(name)
        check.problem = _shape_problem(rule, info)
        if check.problem is None:
            numel = info.nbytes if rule.raw else info.numel
            work += [
                Window(rule, info, s, c, by_weight.get(name)) for s, c in _rule_windows(rule, numel, every, windows)
            ]
    result.tensors += checks.values()
    bar = Progress(sum(window_bytes(w) for w in work), enabled=progress, label="verifying")
    deriver = Deriver({ckpt.tensors[w]: r for role, ckpt in ckpts.items() for w, r in fp8[role].items()})

    def done(w: Window, outcome: Outcome):
        check = checks[w.rule.name]
        check.checked, check.equal = check.checked + outcome.checked, check.equal + outcome.equal
        check.max_ulp = max(check.max_ulp, outcome.max_ulp)
        check.problem = check.problem or outcome.problem
        bar.advance(window_bytes(w))

    try:
        run_windows(deriver, work, done)
    finally:
        deriver.close()
        bar.close()
    for name, rule in rules.items():
        if rule.raw and name in checks and checks[name].problem is None:  # copied bytes: every element equal
            checks[name].checked = checks[name].equal = got.tensors[name].numel
    return result


def _shape_problem(rule: Rule, info) -> str | None:
    if info is None:
        return "missing from the output"
    if info.shape != rule.shape or info.dtype != rule.out_dtype:
        return f"output has {info.dtype}{info.shape}, the inputs give {rule.out_dtype}{rule.shape}"
    return None


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
