"""Which file a path named when we read it: device, inode, size and modification time.

Taken from the open descriptor when a header is read, and compared every time the file is opened again
and at the end of a run. A shard replaced by `mv` (new inode) or rewritten in place (new size or time)
between planning and reading would otherwise be read at the old header's offsets: a wrong model with
exit 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def describe_change(self, now: FileIdentity) -> str:
        if (now.device, now.inode) != (self.device, self.inode):
            return "it was replaced by another file (new inode)"
        if now.size != self.size:
            return f"its size changed from {self.size} to {now.size} bytes"
        return "it was modified (new modification time)"


def check_identity(path: str, expected: FileIdentity | None, now: FileIdentity, when: str):
    """InputError naming the file when it is no longer the file whose header was read."""
    if expected is None or now == expected:
        return
    raise InputError(
        f"{path}: changed {when}: {expected.describe_change(now)}. The output would mix the old header with new "
        "data, so nothing was written; run again once the input files are stable"
    )
