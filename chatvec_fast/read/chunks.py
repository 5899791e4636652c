"""THE byte reader: every read of tensor data goes through InputFiles.read.

The pipeline, verify and the tests all read tensor bytes here, with preadv into a buffer the caller
owns (a pipeline slot, or a fresh bytearray). Reads rather than mmap: a file truncated while mapped
raises SIGBUS, while a short read is an ordinary error naming the file and the tensor.

Three guarantees, checked here because this is where reads are issued:
- every read lies inside the byte range the validated header gave its tensor;
- every file is the one whose header was read (FileIdentity), when it is opened and at the end;
- at most MAX_OPEN descriptors are open, however many shards the inputs have.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from .. import faults
from ..errors import InputError
from ..regular_files import FLAGS as REGULAR_FLAGS
from .header import TensorInfo
from .identity import FileIdentity, check_identity

# Descriptors kept open per reader: a chunk reads 3 files, and the pipeline walks the shards in order, so
# a handful suffices; a 405B triple has ~570 input shards, more than a 256-descriptor ulimit allows.
MAX_OPEN = 12


class _Open:
    __slots__ = ("fd", "users")

    def __init__(self, fd: int):
        self.fd, self.users = fd, 0


class InputFiles:
    """Reads tensor bytes with preadv, keeping at most `max_open` input files open (least recently used
    closed first), and checks that each file is still the one its header came from."""

    def __init__(self, max_open: int = MAX_OPEN):
        self.max_open = max_open
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._identities: dict[str, FileIdentity | None] = {}  # every file read, for check_unchanged
        self._lock = threading.Lock()

    def _acquire(self, info: TensorInfo) -> _Open:
        with self._lock:
            entry = self._open.get(info.path)
            if entry is not None:
                self._open.move_to_end(info.path)
                entry.users += 1
                return entry
            self._close_idle(keep=self.max_open - 1)
        try:
            fd = os.open(info.path, REGULAR_FLAGS)  # O_NONBLOCK: a FIFO swapped in since is refused, not waited on
        except OSError as exc:
            raise InputError(f"{info.path}: cannot open: {exc.strerror}") from exc
        try:
            check_identity(info.path, info.identity, FileIdentity.of(os.fstat(fd)), "since its header was read")
        except BaseException:
            os.close(fd)
            raise
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        faults.check("opened", path=info.path)
        with self._lock:
            self._identities.setdefault(info.path, info.identity)
            entry = self._open.get(info.path)
            if entry is None:  # another thread may have opened it meanwhile: keep one
                entry = self._open[info.path] = _Open(fd)
            else:
                os.close(fd)
            entry.users += 1
            return entry

    def _release(self, entry: _Open):
        with self._lock:
            entry.users -= 1

    def _close_idle(self, keep: int):
        """Closes least recently used files nobody is reading until at most `keep` stay open (lock held)."""
        for path in list(self._open):
            if len(self._open) <= keep:
                break
            if self._open[path].users == 0:
                os.close(self._open.pop(path).fd)

    def read(self, info: TensorInfo, first_byte: int, buf):
        """Fills buf (all of it) from tensor `info` starting at its byte `first_byte`."""
        view = memoryview(buf).cast("B")
        if first_byte < 0 or first_byte + len(view) > info.nbytes:
            raise InputError(
                f"{info.path}: a read of bytes {first_byte}..{first_byte + len(view)} of tensor {info.name!r} "
                f"falls outside its {info.nbytes} bytes; refusing it (an input names rows the tensor does not have)"
            )
        entry = self._acquire(info)
        try:
            done, offset = 0, info.offset + first_byte
            while done < len(view):
                try:
                    faults.check("read")
                    n = os.preadv(entry.fd, [view[done:]], offset + done)
                except OSError as exc:
                    raise InputError(f"{info.path}: reading tensor {info.name!r} failed: {exc.strerror}") from exc
                if n == 0:
                    raise InputError(
                        f"{info.path}: ends before the data of tensor {info.name!r} (byte {offset + done}); "
                        "the file was truncated after its header was read"
                    )
                done += n
        finally:
            self._release(entry)

    def check_unchanged(self):
        """Every file read is still the file whose header was read (replaced, resized or rewritten: error)."""
        with self._lock:
            identities = dict(self._identities)
        for path, identity in identities.items():
            try:
                now = FileIdentity.of(os.stat(path))
            except OSError as exc:
                raise InputError(f"{path}: disappeared while it was being read ({exc.strerror})") from exc
            check_identity(path, identity, now, "while it was being read")

    @property
    def open_count(self) -> int:
        return len(self._open)

    def close(self):
        with self._lock:
            for entry in self._open.values():
                os.close(entry.fd)
            self._open.clear()

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
    with InputFiles(max_open=1) as files:
        files.read(info, first_byte, buf)
    return buf


def read_tensor_bytes(info: TensorInfo) -> bytes:
    """The raw bytes of one whole tensor."""
    return bytes(read_bytes(info))
