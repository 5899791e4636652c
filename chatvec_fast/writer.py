"""Streaming safetensors writer: the header is known before any data exists.

Each output shard is created at its final size with its header in place;
chunks are then written at their offsets, in any order, as they are produced.
Write-back to disk starts as each chunk lands (see csrc/file_io.h for why),
so the final fsync has little left to do.
"""

from __future__ import annotations

import errno
import json
import os
from collections import deque

from . import _native
from .errors import OutputError


def build_header(
    entries: list[tuple[str, str, tuple[int, ...], int]], metadata: dict[str, str]
) -> tuple[bytes, list[int]]:
    """Serialises a safetensors header for (name, dtype, shape, nbytes) entries laid out in order.

    Returns the bytes to put at the start of the file (length prefix + JSON padded
    with spaces so the data starts 8-byte aligned) and each tensor's absolute
    offset in the file.
    """
    doc: dict = {"__metadata__": dict(metadata)} if metadata else {}
    begin = 0
    relative = []
    for name, dtype, shape, size in entries:
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, begin + size]}
        relative.append(begin)
        begin += size
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    prefix = len(text).to_bytes(8, "little") + text
    return prefix, [len(prefix) + r for r in relative]


class _WritebackWindow:
    """Starts write-back of each written range; waits on ranges once more than `limit` bytes are in flight."""

    def __init__(self, fd: int, limit: int):
        self.fd = fd
        self.limit = limit
        self.pending: deque[tuple[int, int]] = deque()
        self.pending_bytes = 0
        self.native = _native.module if _native.available else None

    def written(self, offset: int, size: int):
        if self.native is None or size == 0:
            return
        self.native.start_writeback(self.fd, offset, size)
        self.pending.append((offset, size))
        self.pending_bytes += size
        while self.pending_bytes > self.limit:
            off, n = self.pending.popleft()
            self.pending_bytes -= n
            self.native.wait_writeback(self.fd, off, n)


class ShardFile:
    """One output .safetensors file, pre-sized, written at known offsets."""

    # 64 MiB of dirty pages in flight per file: enough to keep the disk queue
    # full (the 4 MiB x 8 window measured best in a C test), small next to RAM.
    WRITEBACK_WINDOW = 64 << 20

    def __init__(self, path: str, header: bytes, size: int):
        self.path = path
        self.size = size
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create: {exc.strerror}") from exc
        self._window = _WritebackWindow(self.fd, self.WRITEBACK_WINDOW)
        try:
            os.ftruncate(self.fd, size)
            self.write(header, 0)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, data, offset: int):
        """Writes all of `data` (a bytes-like object) at `offset`."""
        view = memoryview(data).cast("B")
        if offset + len(view) > self.size:
            raise OutputError(
                f"{self.path}: write of {len(view)} bytes at {offset} passes the planned size {self.size}"
            )
        done = 0
        try:
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], offset + done)
        except OSError as exc:
            hint = " (the disk is full: free space or choose another --out)" if exc.errno == errno.ENOSPC else ""
            raise OutputError(f"{self.path}: write failed at byte {offset + done}: {exc.strerror}{hint}") from exc
        self._window.written(offset, len(view))

    def close(self, sync: bool = True):
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            if sync:
                os.fsync(fd)
        except OSError as exc:
            raise OutputError(f"{self.path}: fsync failed: {exc.strerror}") from exc
        finally:
            os.close(fd)


def write_json(path: str, doc: dict):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
