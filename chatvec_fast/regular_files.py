"""Opening a file the program reads as input: a regular file, or one clear error, and never a wait.

open() of a named pipe (FIFO) waits for a writer, forever: one left where a config.json or a shard should be,
by mistake or on purpose, would hang a run with no message. A character device such as /dev/zero reads
without end. So every input file is opened with O_NONBLOCK (which changes nothing for a regular file's
reads) and checked with fstat before anything is read from it.
"""

from __future__ import annotations

import os
import stat

from .errors import InputError

FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def special_kind(path) -> str | None:
    """What path is when it exists as neither a regular file nor a directory ("a named pipe (FIFO)", ...);
    None otherwise (following links; a broken link is None)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _kind(mode)


def refuse_special_files(path: str):
    """A named pipe, device or socket as a model's file or in its directory: opened, it would block or never
    end; tested with isfile, it would read as missing ("no config.json") and mislead. InputError naming it."""
    entries = [path] if not os.path.isdir(path) else [os.path.join(path, n) for n in sorted(os.listdir(path))]
    for entry in entries:
        kind = special_kind(entry)
        if kind is not None:
            raise InputError(f"{entry}: {kind}, where a model's files are; a model directory holds regular files "
                             "(or links to them): put the file itself there, or remove it")  # fmt: skip


def open_regular_fd(path, what: str = "file", where: str | None = None) -> int:
    """A read-only descriptor of the regular file at path (the caller closes it); InputError naming the file
    (as `where` says it: "--text t.txt"; default the path) and what it is instead. OSError (missing, no
    permission) is left to the caller to word."""
    fd = os.open(path, FLAGS)
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"{where or path}: {what} is {_kind(mode)}, not a regular file; point to the file itself")
    return fd


def open_regular(path, what: str = "file", where: str | None = None):
    """open_regular_fd as a binary file object (for `with`)."""
    return os.fdopen(open_regular_fd(path, what, where), "rb")


def same_contents(a: str, b: str, what: str = "file", block: int = 1 << 20) -> bool:
    """Whether two regular files hold the same bytes, read a block at a time (memory: two blocks)."""
    with open_regular(a, what) as fa, open_regular(b, what) as fb:
        if os.fstat(fa.fileno()).st_size != os.fstat(fb.fileno()).st_size:
            return False
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return False
            if not x:
                return True
