"""Small files written durably: fsynced JSON and text, atomic replacement, fsynced directories.

Every write here is a named fault point (faults.py) and turns an OSError (a full disk, a read-only
filesystem) into a one-line OutputError naming the file, so no write site ends in a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os

from .. import faults
from ..errors import OutputError


@contextlib.contextmanager
def writing(path: str, point: str):
    """Runs the block as write site `point` for `path`: injected faults fire here, and OSError becomes
    OutputError."""
    try:
        faults.check(point)
        yield
    except OSError as exc:
        raise OutputError(f"{path}: {describe_os_error(exc)}") from exc


def describe_os_error(exc: OSError) -> str:
    hint = " (the disk is full: free space or choose another --out)" if exc.errno == errno.ENOSPC else ""
    return f"cannot write: {exc.strerror or exc}{hint}"


def write_json(path: str, doc: dict, point: str = "report"):
    """Writes doc as indented UTF-8 JSON and fsyncs it."""
    with writing(path, point), open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: str, text: str, point: str = "marker"):
    """Replaces path by text in one step: a reader sees the old file or the new one, never a part."""
    tmp = path + ".tmp"
    with writing(path, point):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def fsync_dir(path: str):
    """Makes the directory's entries (new, renamed, removed files) durable."""
    with writing(path, "commit"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
