"""Small files written durably: fsynced JSON and text, atomic replacement, fsynced directories."""

from __future__ import annotations

import json
import os


def write_json(path: str, doc: dict):
    """Writes doc as indented UTF-8 JSON and fsyncs it."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: str, text: str):
    """Replaces path by text in one step: a reader sees the old file or the new one, never a part."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: str):
    """Makes the directory's entries (new, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
