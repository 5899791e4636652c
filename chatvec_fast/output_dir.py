"""The output directory: checked before work starts, staged, renamed into place when complete.

Work happens in a hidden sibling directory (".NAME.chatvec-partial"). Only a
finished, fsynced output is renamed to NAME, so a crash or an error never
leaves a directory at NAME that looks complete. A lock file beside it stops a
second run from writing the same output at the same time; the lock is an
flock, which the kernel releases when a process dies.
"""

from __future__ import annotations

import fcntl
import os
import shutil

from .errors import OutputError


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def check_output_path(out: str, inputs: dict[str, str], overwrite: bool):
    """Refuses an output that is, contains or lies inside an input, or that would clobber data."""
    real_out = _real(out)
    for role, path in inputs.items():
        real_in = _real(path)
        if os.path.isfile(real_in):
            real_in = os.path.dirname(real_in)
        if _inside(real_out, real_in):
            raise OutputError(f"--out {out} is inside (or is) the {role} checkpoint {path}; choose a path outside it")
        if _inside(real_in, real_out):
            raise OutputError(f"--out {out} contains the {role} checkpoint {path}; choose a path that does not")
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            raise OutputError(f"--out {out} exists and is not a directory; remove it or choose another path")
        if os.listdir(out) and not overwrite:
            raise OutputError(f"--out {out} is not empty; pass --overwrite to replace it, or choose another path")


class OutputDirectory:
    """Context manager around a staged output directory.

    >>> with OutputDirectory("out", inputs, overwrite=False) as staged:
    ...     write files under staged.path ...
    ...     staged.commit()        # fsync + rename; without it, exit removes everything
    """

    def __init__(self, out: str, inputs: dict[str, str], overwrite: bool = False, join: bool = False):
        """join=True: another process (torchrun's rank 0) owns the staging directory; only write into it."""
        check_output_path(out, inputs, overwrite)
        self.join = join
        self.final = os.path.abspath(out)
        parent, name = os.path.split(self.final.rstrip(os.sep))
        self.parent = parent
        self.path = os.path.join(parent, f".{name}.chatvec-partial")
        self._lock_path = os.path.join(parent, f".{name}.chatvec-lock")
        self.overwrite = overwrite
        self._lock_fd = -1
        self.committed = False

    def __enter__(self) -> OutputDirectory:
        if self.join:
            if not os.path.isdir(self.path):
                raise OutputError(f"{self.path}: the staging directory rank 0 should have made is missing")
            return self
        try:
            os.makedirs(self.parent, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.parent}: {exc.strerror}") from exc
        self._lock()
        try:
            if os.path.lexists(self.path):  # left by a crashed run
                shutil.rmtree(self.path)
            os.mkdir(self.path)
        except OSError as exc:
            self._unlock()
            raise OutputError(f"cannot create the staging directory {self.path}: {exc.strerror}") from exc
        return self

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def commit(self):
        """Makes the staged output durable and moves it to its final path."""
        _fsync_dir(self.path)
        old = None
        if os.path.lexists(self.final):
            # Checked empty or --overwrite at start; move it aside, then swap.
            old = os.path.join(self.parent, f".{os.path.basename(self.final)}.chatvec-old")
            if os.path.lexists(old):
                shutil.rmtree(old)
            os.rename(self.final, old)
        os.rename(self.path, self.final)
        _fsync_dir(self.parent)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb):
        if self.join:
            return False
        try:
            if not self.committed:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._unlock()
        return False

    def _lock(self):
        # Retry until the locked file is still the one at the path: a run that
        # finishes unlinks it, and a locked-but-unlinked file protects nothing.
        while True:
            try:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise OutputError(f"cannot create {self._lock_path}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(
                    f"another chatvec run is writing {self.final} (lock {self._lock_path} is held); "
                    "wait for it to finish or choose another --out"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self._lock_path))
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)

    def _unlock(self):
        if self._lock_fd >= 0:
            try:
                os.unlink(self._lock_path)
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = -1


def _fsync_dir(path: str):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
