"""What a run records: the provenance in every shard header, chatvec_report.json, and the MergeReport the
API returns.

Everything written into the output is deterministic: no time, host, rank or thread count, so the same
command gives the same bytes however many processes ran it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from .plan.types import Plan
from .units import format_bytes, format_rate, plural

# 2: "files" lists every file of the output (1: the shards only), "fingerprint" identifies the run.
REPORT_FORMAT = 2

FORMULAS = {
    "merge": "cp + alpha * (chat - base)",
    "apply": "cp + alpha * vector",
    "extract": "chat - base",
}


def _version() -> str:
    from . import __version__

    return __version__


def provenance(plan: Plan, inputs: dict[str, str], output: int, math: str) -> dict[str, str]:
    """The __metadata__ of every shard of output `output`. A sweep's outputs are merges, byte for byte: no
    trace of the sweep in them (plan.options.kind is "merge")."""
    command = plan.options.kind
    meta = {
        "format": "pt",
        "chatvec_fast.version": _version(),
        "chatvec_fast.command": command,
        "chatvec_fast.formula": FORMULAS[command],
        "chatvec_fast.math": f"{math}, rounded once to nearest-even",
    }
    for role, path in inputs.items():
        meta[f"chatvec_fast.{role}"] = os.path.abspath(path)
    meta["chatvec_fast.options"] = json.dumps(plan.options.record(), sort_keys=True)
    if command == "extract":
        meta["chatvec_fast.vector_dtype"] = plan.options.dtype
        return meta
    meta["chatvec_fast.alpha"] = repr(plan.options.alphas[output])
    if command == "apply":
        vector_meta = vector_metadata(plan)
        for role in ("base", "chat"):  # where the vector came from, for `verify`
            if f"chatvec_fast.{role}" in vector_meta:
                meta[f"chatvec_fast.vector_{role}"] = vector_meta[f"chatvec_fast.{role}"]
    return meta


def vector_metadata(plan: Plan) -> dict[str, str]:
    vector = plan.inputs["vector"]
    return vector.files[0].metadata if vector.files else {}


def start_report(plan: Plan, inputs: dict[str, str], sources: dict, output: int) -> dict:
    """The start of an output's chatvec_report.json: every choice the run made. The run adds the files.
    sources: the inputs given as Hub ids, by role ({"id", "revision", "commit"})."""
    command = plan.options.kind
    report = {
        "tool": "chatvec-fast",
        "report_format": REPORT_FORMAT,
        "version": _version(),
        "command": command,
        "formula": FORMULAS[command],
        "inputs": {role: os.path.abspath(p) for role, p in inputs.items()},
        **({"sources": sources} if sources else {}),
        "options": plan.options.record(),
        "tensors": dict(sorted(plan.policy_counts().items())),
        "dropped": plan.dropped,
        "notes": plan.notes,
        "warnings": plan.warnings,
        **({"fp8": plan.fp8} if plan.fp8 else {}),
    }
    if command == "extract":
        report["vector_dtype"] = plan.options.dtype
        return report
    alpha = plan.options.alphas[output]
    report["alpha"] = alpha
    groups = plan.alpha_groups(output)
    if any(a != alpha for a in groups):  # --alpha-for changed some tensors
        report["alpha_by_tensor"] = {repr(a): names for a, names in groups.items()}
    if plan.appended:
        report["added_tokens"] = [{"token": t.token, "chat_row": t.chat_row, "row": t.row} for t in plan.appended]
    if plan.special_rows:
        report["special_token_rows"] = [{"token": t, "chat_row": c, "cp_row": p} for t, c, p in plan.special_rows]
    return report


def fingerprint(plan: Plan, metadata: dict, report: dict) -> str:
    """Identifies a run's output: its inputs (paths and the identities their headers were read from: device,
    inode, size, modification time), everything the output's metadata and report record, and the shard
    layout. --resume continues only a run with the same one."""
    files = {}
    for ckpt in plan.inputs.values():
        for f in ckpt.files:
            identity = f.identity
            files[os.path.abspath(f.path)] = (
                [identity.device, identity.inode, identity.size, identity.mtime_ns] if identity else None
            )
    shards = [[s.filename, s.data_nbytes, [t.name for t in s.tensors]] for s in plan.shards]
    doc = {"metadata": metadata, "report": report, "inputs": files, "shards": shards}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class MergeReport:
    """What a run did. `summary()` is the line the CLI prints."""

    command: str
    outputs: list[str]
    alphas: list[float]
    backend: str
    tensors: int
    policy_counts: dict[str, int]
    dropped: list[str]
    notes: list[str]
    bytes_read: int
    bytes_written: int
    seconds: float
    dry_run: bool = False
    inexact: int = 0  # extract: elements the storage dtype rounded
    plan: Plan | None = field(default=None, repr=False)
    reports: list[dict] = field(default_factory=list, repr=False)  # each output's chatvec_report.json
    leader: bool = True  # False on torchrun ranks other than 0, which leave the speaking to rank 0
    warnings: list[str] = field(default_factory=list)  # inputs that look wrong (also logged before the run)

    @property
    def gbps(self) -> float:
        return (self.bytes_read + self.bytes_written) / max(self.seconds, 1e-9) / 1e9

    def summary(self) -> str:
        if self.dry_run:
            return self.plan.describe() + "\n(dry run: nothing written)"
        computed = sum(n for p, n in self.policy_counts.items() if p.startswith(("merge", "extract")))
        scales = sum(n for p, n in self.policy_counts.items() if p.startswith("scales"))
        verb = "extracted" if self.command == "extract" else "merged"
        outputs = self.outputs[0] if len(self.outputs) == 1 else f"{len(self.outputs)} outputs"
        fp8 = f", {scales} FP8 scales" if scales else ""
        return (
            f"{plural(self.tensors, 'tensor')} ({computed} {verb}, {self.tensors - computed - scales} copied{fp8}) | "
            f"read {format_bytes(self.bytes_read)}, wrote {format_bytes(self.bytes_written)} in {self.seconds:.2f} s "
            f"= {format_rate(self.gbps * 1e9)} | {self.backend} | {outputs}"
        )
