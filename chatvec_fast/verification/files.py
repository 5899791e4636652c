"""Every file of an output against its report: none missing, none extra, none changed (size and sha256)."""

from __future__ import annotations

import os

from ..filenames import REPORT_NAME
from ..write.records import sha256_file


def check_files(out: str, report: dict) -> list[str]:
    """One line per file that is missing, extra, or differs from what the report recorded."""
    recorded = report["files"]
    present = set()
    for root, dirs, names in os.walk(out):
        dirs.sort()
        for name in names:
            present.add(os.path.relpath(os.path.join(root, name), out).replace(os.sep, "/"))
    present.discard(REPORT_NAME)
    problems = [f"{name}: in the directory but not in the report (added after the run?)"
                for name in sorted(present - set(recorded))]  # fmt: skip
    for name, record in recorded.items():
        path = os.path.join(out, *name.split("/"))
        if name not in present or not os.path.isfile(path):
            problems.append(f"{name}: missing")
        elif os.path.getsize(path) != record["bytes"]:
            problems.append(f"{name}: {os.path.getsize(path)} bytes, the report says {record['bytes']}")
        elif sha256_file(path) != record["sha256"]:
            problems.append(f"{name}: sha256 differs from the report's (the file changed since it was written)")
    return problems
