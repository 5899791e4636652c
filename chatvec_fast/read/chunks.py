"""THE byte reader: every read of tensor data goes through InputFiles.read.

The pipeline, verify and the tests all read tensor bytes here, with preadv into a buffer the caller
owns (a pipeline slot, or a fresh bytearray). Reads rather than mmap: a file truncated while mapped
raises SIGBUS, while a short read is an ordinary error naming the file and the tensor.
"""

from __future__ import annotations

import os

from .. import faults
from ..errors import InputError
from .header import TensorInfo


class InputFiles:
    """Open input files, read with preadv; detects files that change while we read them."""

    def __init__(self):
        self.fds: dict[str, int] = {}
        self.stamps: dict[str, tuple[int, int]] = {}

    def fd(self, path: str) -> int:
        fd = self.fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
            st = os.fstat(fd)
            self.fds[path], self.stamps[path] = fd, (st.st_size, st.st_mtime_ns)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return fd

    def read(self, info: TensorInfo, first_byte: int, buf):
        """Fills buf (all of it) from tensor `info` starting at its byte `first_byte`."""
        fd = self.fd(info.path)
        view = memoryview(buf).cast("B")
        done, offset = 0, info.offset + first_byte
        while done < len(view):
            try:
                faults.check("read")
                n = os.preadv(fd, [view[done:]], offset + done)
            except OSError as exc:
                raise InputError(f"{info.path}: reading tensor {info.name!r} failed: {exc.strerror}") from exc
            if n == 0:
                raise InputError(
                    f"{info.path}: ends before the data of tensor {info.name!r} (byte {offset + done}); "
                    "the file was truncated after its header was read"
                )
            done += n

    def check_unchanged(self):
        for path, fd in self.fds.items():
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != self.stamps[path]:
                raise InputError(
                    f"{path}: changed while it was being read (size {self.stamps[path][0]} -> {st.st_size}); "
                    "the output would mix old and new data, so it was discarded. Run again once the file is stable"
                )

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __enter__(self) -> InputFiles:
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def read_bytes(info: TensorInfo, first_byte: int = 0, nbytes: int | None = None) -> bytearray:
    """Bytes [first_byte, first_byte + nbytes) of one tensor (all of it by default), in a new buffer.

    For checks and tests; the merge itself streams through reused pipeline slots.
    """
    if nbytes is None:
        nbytes = info.nbytes - first_byte
    buf = bytearray(nbytes)
    with InputFiles() as files:
        files.read(info, first_byte, buf)
    return buf


def read_tensor_bytes(info: TensorInfo) -> bytes:
    """The raw bytes of one whole tensor."""
    return bytes(read_bytes(info))
