"""What a staging directory records for --resume: the run's fingerprint, and each completed shard file.

The fingerprint (inputs with their identities, options, layout) says which command the staging directory
belongs to; `--resume` continues only that one. Each shard file, once complete and fsynced, gets a record
of its size, sha256 and (a saved vector) how many elements its dtype rounded: one small file each, so
torchrun ranks never write the same file. A shard whose file still matches its record is kept; anything
else is written again.
"""

from __future__ import annotations

import hashlib
import json
import os

from ..errors import OutputError
from .durable import fsync_dir, write_atomic, writing
from .names import DONE_DIR, PLAN_FILE


class ShardRecords:
    """The resume records inside one staging directory."""

    def __init__(self, staging: str):
        self.staging = staging
        self.done_dir = os.path.join(staging, DONE_DIR)

    def claim(self, fingerprint: str):
        """Records the run's fingerprint. With resume, a staging directory of another command is an error."""
        path = os.path.join(self.staging, PLAN_FILE)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                previous = f.read().strip()
            if previous != fingerprint:
                raise OutputError(
                    f"{self.staging} holds a partial output of a different command (other inputs, options or "
                    "input files changed since); run without --resume to start over"
                )
        else:
            write_atomic(path, fingerprint, point="fingerprint")
            fsync_dir(self.staging)

    def completed(self, name: str, size: int) -> dict | None:
        """The record of shard file `name` ({"bytes", "sha256", "inexact"}) if an earlier run completed it and
        it is intact, else None (and any partial file is removed, so it is written again)."""
        record = self.recorded(name)
        target = os.path.join(self.staging, name)
        with writing(target, "staging"):
            if record is not None:
                if record.get("bytes") == size and os.path.isfile(target) and os.path.getsize(target) == size:
                    if sha256_file(target) == record.get("sha256"):
                        return record
                os.unlink(self._marker(name))
            if os.path.lexists(target):
                os.unlink(target)
        return None

    def mark_done(self, name: str, size: int, sha256: str, inexact: int = 0):
        """Records a complete, fsynced shard file."""
        record = {"bytes": size, "sha256": sha256, "inexact": inexact}
        write_atomic(self._marker(name), json.dumps(record), point="marker")

    def _marker(self, name: str) -> str:
        return os.path.join(self.done_dir, name + ".json")

    def recorded(self, name: str) -> dict | None:
        """The record of a completed shard file (by any rank), without re-reading the file."""
        marker = self._marker(name)
        try:
            with open(marker, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()
