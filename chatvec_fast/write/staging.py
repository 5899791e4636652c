"""The output directory: checked before work starts, staged, renamed into place when complete.

Work happens in a hidden sibling directory (".NAME.chatvec-partial"). Only a
finished, fsynced output is renamed to NAME, so a crash or an error never
leaves a directory at NAME that looks complete. A lock file beside it stops a
second run from writing the same output at the same time; the lock is an
flock, which the kernel releases when a process dies.

Resuming: the staging directory records the run's fingerprint (inputs, with
their sizes and times; options; layout) and, for every shard file once it is
complete and fsynced, its size and sha256 (one small file each, so torchrun
ranks never write the same file). `--resume` keeps a matching staging
directory and skips the shards whose checksums still match; anything else is
redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil

from ..errors import OutputError
from ..filenames import DONE_DIR, PLAN_FILE, lock_path, set_aside_path, staging_path
from .durable import fsync_dir, write_atomic


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

    def __init__(self, out: str, inputs: dict[str, str], overwrite: bool = False, join: bool = False,
                 resume: bool = False):  # fmt: skip
        """join=True: another process (torchrun's rank 0) owns the staging directory; only write into it.
        resume=True: keep a staging directory left by an interrupted run of the same command."""
        check_output_path(out, inputs, overwrite)
        self.join = join
        self.resume = resume
        self.final = os.path.abspath(out)
        self.parent = os.path.dirname(self.final.rstrip(os.sep))
        self.path = staging_path(out)
        self._lock_path = lock_path(out)
        self._done_dir = os.path.join(self.path, DONE_DIR)
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
            if os.path.lexists(self.path) and not self.resume:  # left by an earlier run
                shutil.rmtree(self.path)
            os.makedirs(self._done_dir, exist_ok=True)
        except OSError as exc:
            self._unlock()
            raise OutputError(f"cannot create the staging directory {self.path}: {exc.strerror}") from exc
        return self

    # -- resume state ---------------------------------------------------------

    def claim(self, fingerprint: str):
        """Records the run's fingerprint. With resume, a staging directory of another command is an error."""
        path = os.path.join(self.path, PLAN_FILE)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                previous = f.read().strip()
            if previous != fingerprint:
                raise OutputError(
                    f"{self.path} holds a partial output of a different command (other inputs, options or "
                    "input files changed since); run without --resume to start over"
                )
        else:
            write_atomic(path, fingerprint)
            fsync_dir(self.path)

    def completed(self, name: str, size: int) -> dict | None:
        """The record of shard file `name` ({"bytes", "sha256", "inexact"}) if an earlier run completed it and
        it is intact, else None (and any partial file is removed, so it is written again)."""
        record = self.recorded(name)
        target = self.file(name)
        if record is not None:
            if record.get("bytes") == size and os.path.isfile(target) and os.path.getsize(target) == size:
                if sha256_file(target) == record.get("sha256"):
                    return record
            os.unlink(os.path.join(self._done_dir, name + ".json"))
        if os.path.lexists(target):
            os.unlink(target)
        return None

    def mark_done(self, name: str, size: int, sha256: str, inexact: int = 0):
        """Records a complete, fsynced shard file."""
        record = {"bytes": size, "sha256": sha256, "inexact": inexact}
        write_atomic(os.path.join(self._done_dir, name + ".json"), json.dumps(record))

    def recorded(self, name: str) -> dict | None:
        """The record of a completed shard file (by any rank), without re-reading the file."""
        marker = os.path.join(self._done_dir, name + ".json")
        if not os.path.exists(marker):
            return None
        with open(marker, encoding="utf-8") as f:
            return json.load(f)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def commit(self):
        """Makes the staged output durable and moves it to its final path."""
        shutil.rmtree(self._done_dir, ignore_errors=True)
        plan = os.path.join(self.path, PLAN_FILE)
        if os.path.exists(plan):
            os.unlink(plan)
        fsync_dir(self.path)
        old = None
        if os.path.lexists(self.final):
            # Checked empty or --overwrite at start; move it aside, then swap.
            old = set_aside_path(self.final)
            if os.path.lexists(old):
                shutil.rmtree(old)
            os.rename(self.final, old)
        os.rename(self.path, self.final)
        fsync_dir(self.parent)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb):
        if self.join:
            return False
        try:
            if not self.committed:
                # Interrupted (Ctrl-C, SIGTERM), or failed with --resume: keep the completed shards for
                # the next run. Any other failure leaves nothing behind.
                interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
                if not ((interrupted or self.resume) and exc_type is not None):
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


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()
