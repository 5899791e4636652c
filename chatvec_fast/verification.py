"""`chatvec verify OUT`: re-derives an output from the inputs its report names, with the float64 reference.

The plan is rebuilt from chatvec_report.json (inputs, alpha, options, special
token rows), so copies, shared vocabulary rows and per-tensor alphas are
checked as well as merged elements. By default every tensor is checked at its
first and last elements and at a few seeded random windows; --all checks
every element.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

import torch

from .backends.reference import TORCH_DTYPES, merge_reference, ulp_distance
from .errors import InputError
from .filenames import REPORT_NAME
from .job import Job
from .plan import plan_job
from .plan.types import TensorPlan
from .read.checkpoint import open_checkpoint
from .read.chunks import read_bytes
from .read.header import TensorInfo
from .write.staging import sha256_file

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
    file_problems: list[str] = field(default_factory=list)  # shard files that fail their recorded checksum
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
        return not self.failures and not self.file_problems

    def summary(self) -> str:
        files = "every shard matches its recorded sha256" if not self.file_problems else "CHECKSUMS FAILED"
        if self.checksums_only:
            lines = [f"{self.output}: {files}" + (" -- OK" if self.ok else "")]
            return "\n".join(lines + [f"  {p}" for p in self.file_problems])
        share = self.equal / self.checked if self.checked else 1.0
        head = (
            f"{self.output}: {len(self.tensors)} tensors, {self.checked} elements checked, "
            f"{100 * share:.6f}% bit-identical to the float64 reference, max {self.max_ulp} ulp"
        )
        head += f"; {files}"
        if self.ok:
            return head + " -- OK"
        lines = [head + f" -- FAILED ({len(self.failures)} tensors)"] + [f"  {p}" for p in self.file_problems]
        for t in self.failures[:10]:
            detail = t.problem or f"{t.checked - t.equal} of {t.checked} elements differ, up to {t.max_ulp} ulp"
            lines.append(f"  {t.name}: {detail}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more")
        return "\n".join(lines)


def _load_report(out: str) -> dict:
    path = os.path.join(out, REPORT_NAME)
    if not os.path.isfile(path):
        raise InputError(f"{out}: no {REPORT_NAME}; verify checks outputs written by chatvec-fast")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_elements(info: TensorInfo, start: int, count: int) -> torch.Tensor:
    """Elements [start, start + count) of a float tensor, as a torch tensor."""
    size = torch.empty((), dtype=TORCH_DTYPES[info.dtype]).element_size()
    if count == 0:
        return torch.empty(0, dtype=TORCH_DTYPES[info.dtype])
    return torch.frombuffer(read_bytes(info, start * size, count * size), dtype=TORCH_DTYPES[info.dtype])


def expected_elements(t: TensorPlan, start: int, count: int) -> torch.Tensor:
    """What the reference says elements [start, start + count) of tensor t must be."""
    out_dtype = TORCH_DTYPES[t.out_dtype]
    parts = []
    for seg in t.segments:
        a, b = max(start, seg.start), min(start + count, seg.end)
        if a >= b:
            continue
        n = b - a
        if seg.kind == "copy":
            src = read_elements(seg.source, seg.source_start + (a - seg.start), n)
            parts.append(merge_reference(None, None, src, [0.0], out_dtype)[0])
        elif seg.kind == "extract":
            parts.append(
                merge_reference(read_elements(t.base, a, n), read_elements(t.chat, a, n), None, [1.0], out_dtype)[0]
            )
        else:
            base = read_elements(t.base, a, n) if t.base is not None else None
            parts.append(
                merge_reference(base, read_elements(t.chat, a, n), read_elements(t.cp, a, n), [t.alphas[0]], out_dtype)[
                    0
                ]
            )
    return torch.cat(parts) if parts else torch.empty(0, dtype=out_dtype)


def _windows(name: str, numel: int, every: bool, windows: int) -> list[tuple[int, int]]:
    if every or numel <= WINDOW * (windows + 2):
        return [(0, numel)]
    rng = random.Random(name)
    starts = {0, numel - WINDOW} | {rng.randrange(0, numel - WINDOW) for _ in range(windows)}
    return [(s, WINDOW) for s in sorted(starts)]


def check_checksums(out: str, report: dict) -> list[str]:
    """Each shard file against the size and sha256 its report recorded: fast, and catches any change."""
    problems = []
    for name, record in report.get("files", {}).items():
        path = os.path.join(out, name)
        if not os.path.isfile(path):
            problems.append(f"{name}: missing")
        elif os.path.getsize(path) != record["bytes"]:
            problems.append(f"{name}: {os.path.getsize(path)} bytes, the report says {record['bytes']}")
        elif sha256_file(path) != record["sha256"]:
            problems.append(f"{name}: sha256 differs from the report's (the file changed since it was written)")
    return problems


def verify(out: str, every: bool = False, max_ulp: int = 0, windows: int = 4, checksums_only: bool = False):
    """Checks one output directory (not a sweep's parent; see verify_path): checksums first, then elements."""
    report = _load_report(out)
    result = VerifyReport(os.path.abspath(out), max_ulp_allowed=max_ulp, checksums_only=checksums_only)
    result.file_problems = check_checksums(out, report)
    if checksums_only:
        return result
    plan = plan_job(Job.from_report(report, out))
    got = open_checkpoint(out)
    planned = {t.name for t in plan.tensors}
    for extra in sorted(set(got.tensors) - planned):
        result.tensors.append(TensorCheck(extra, problem="in the output but not in the plan"))
    for t in plan.tensors:
        check = TensorCheck(t.name)
        result.tensors.append(check)
        info = got.tensors.get(t.name)
        if info is None:
            check.problem = "missing from the output"
            continue
        if info.shape != t.shape or info.dtype != t.out_dtype:
            check.problem = f"output has {info.dtype}{info.shape}, the plan says {t.out_dtype}{t.shape}"
            continue
        if t.out_dtype not in TORCH_DTYPES:  # a copied non-float tensor: compare bytes
            source = t.segments[0].source
            same = read_bytes(info) == read_bytes(source)
            check.checked = check.equal = t.numel
            if not same:
                check.problem = f"differs from {source.path}"
            continue
        for start, count in _windows(t.name, t.numel, every, windows):
            want = expected_elements(t, start, count)
            have = read_elements(info, start, count)
            distance = ulp_distance(have, want)
            check.checked += count
            check.equal += int((distance == 0).sum())
            if count:
                check.max_ulp = max(check.max_ulp, int(distance.max()))
    return result


def verify_path(path: str, every: bool = False, max_ulp: int = 0, checksums_only: bool = False):
    """An output directory, or a sweep's directory of alpha-*/ outputs."""
    if os.path.isfile(os.path.join(path, REPORT_NAME)):
        return [verify(path, every, max_ulp, checksums_only=checksums_only)]
    if not os.path.isdir(path):
        raise InputError(f"{path}: no such directory")
    subdirs = sorted(d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, REPORT_NAME)))
    if not subdirs:
        raise InputError(f"{path}: no {REPORT_NAME} here or in its subdirectories; nothing to verify")
    return [verify(os.path.join(path, d), every, max_ulp, checksums_only=checksums_only) for d in subdirs]
