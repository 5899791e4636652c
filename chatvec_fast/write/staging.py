"""The staging directory: checked before work starts, locked, renamed into place when complete.

Work happens in a hidden sibling directory (".NAME.chatvec-partial") that this run creates with a marker
file naming the output. Only a finished, fsynced output is renamed to NAME, so a crash or an error never
leaves a directory at NAME that looks complete. A lock file beside it stops a second run from writing
the same output at the same time; the lock is an flock, which the kernel releases when a process dies.

Nothing this run did not write is ever deleted: a staging directory without our marker (or a symlink) is
refused, never removed; --out is replaced only if it is still the model directory it was at the start.

Resuming: the staging directory records the run's fingerprint (inputs, with their identities; options;
layout) and, for every shard file once it is complete and fsynced, its size and sha256 (one small file
each, so torchrun ranks never write the same file). `--resume` keeps a matching staging directory and
skips the shards whose checksums still match; anything else is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil

from ..errors import OutputError
from ..filenames import DONE_DIR, PLAN_FILE, STAGING_MARKER, lock_path, set_aside_path, staging_path
from .durable import fsync_dir, write_atomic, writing
from .paths import OutState, check_output_path, check_unchanged


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
        self.inputs = inputs
        self.state: OutState = check_output_path(out, inputs, overwrite)
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
        self.kept = None  # why the staging directory stays after exit, if it does

    def __enter__(self) -> OutputDirectory:
        if self.join:
            if not self._is_ours():
                raise OutputError(f"{self.path}: the staging directory rank 0 should have made is missing")
            return self
        with writing(self.parent, "staging"):
            os.makedirs(self.parent, exist_ok=True)
        self._lock()
        try:
            # Again, under the lock: a run that held it may have finished this output meanwhile.
            self.state = check_output_path(self.final, self.inputs, self.overwrite)
            self._prepare_staging()
        except BaseException:
            self._unlock()
            raise
        return self

    def _is_ours(self) -> bool:
        if os.path.islink(self.path) or not os.path.isdir(self.path):
            return False
        try:
            with open(os.path.join(self.path, STAGING_MARKER), encoding="utf-8") as f:
                return f.read() == self.final
        except OSError:
            return False

    def _prepare_staging(self):
        if os.path.lexists(self.path):
            if not self._is_ours():
                raise OutputError(
                    f"{self.path} exists but was not made by chatvec for {self.final} (no {STAGING_MARKER} naming "
                    "it); it is left alone. Remove it or choose another --out"
                )
            with writing(self.path, "staging"):
                if not self.resume:  # left by an earlier run of ours
                    shutil.rmtree(self.path)
                else:
                    self._keep_only_completed_shards()
        if not os.path.isdir(self.path):
            with writing(self.path, "staging"):
                os.mkdir(self.path)
                write_atomic(os.path.join(self.path, STAGING_MARKER), self.final, point="staging")
        with writing(self._done_dir, "staging"):
            os.makedirs(self._done_dir, exist_ok=True)

    def _keep_only_completed_shards(self):
        """--resume keeps the shards an earlier run completed; everything written after them (index, config
        and tokenizer files, the report) is written again at the end, exactly once."""
        keep = {DONE_DIR, PLAN_FILE, STAGING_MARKER}
        for name in os.listdir(self.path):
            path = os.path.join(self.path, name)
            if name in keep or (self.recorded(name) is not None and os.path.isfile(path)):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

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
            write_atomic(path, fingerprint, point="fingerprint")
            fsync_dir(self.path)

    def completed(self, name: str, size: int) -> dict | None:
        """The record of shard file `name` ({"bytes", "sha256", "inexact"}) if an earlier run completed it and
        it is intact, else None (and any partial file is removed, so it is written again)."""
        record = self.recorded(name)
        target = self.file(name)
        with writing(target, "staging"):
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
        write_atomic(os.path.join(self._done_dir, name + ".json"), json.dumps(record), point="marker")

    def recorded(self, name: str) -> dict | None:
        """The record of a completed shard file (by any rank), without re-reading the file."""
        marker = os.path.join(self._done_dir, name + ".json")
        try:
            with open(marker, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def commit(self):
        """Makes the staged output durable and moves it to its final path, if --out is as the run found it."""
        with writing(self.path, "commit"):
            shutil.rmtree(self._done_dir, ignore_errors=True)
            for name in (PLAN_FILE, STAGING_MARKER):
                if os.path.exists(os.path.join(self.path, name)):
                    os.unlink(os.path.join(self.path, name))
        fsync_dir(self.path)
        try:
            check_unchanged(self.final, self.state, self.path)
        except OutputError as exc:
            self.kept = "finished"
            _record_kept(exc, self.path, self.kept)
            raise
        old = None
        with writing(self.final, "commit"):
            if self.state.kind == "model":  # checked at the start and just now: a model output to replace
                old = set_aside_path(self.final)
                os.rename(self.final, old)
            os.rename(self.path, self.final)  # onto an empty directory: rename(2) replaces it
        fsync_dir(self.parent)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb):
        if self.join:
            return False
        try:
            if not self.committed:
                # Interrupted (Ctrl-C, SIGTERM), or failed with --resume: keep the completed shards for the next
                # run; a finished output that could not be put in place stays too. Else nothing stays behind.
                failed = exc_type is not None
                if failed and self.kept is None and (issubclass(exc_type, KeyboardInterrupt) or self.resume):
                    self.kept = "partial"
                    _record_kept(exc, self.path, self.kept)
                if self.kept is None:
                    shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._unlock()
        return False

    def _lock(self):
        # Retry until the locked file is still the one at the path: a run that
        # finishes unlinks it, and a locked-but-unlinked file protects nothing.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        while True:
            with writing(self._lock_path, "lock"):
                fd = os.open(self._lock_path, flags, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(
                    f"another chatvec run is writing {self.final} (lock {self._lock_path} is held); "
                    "wait for it to finish or choose another --out"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self._lock_path, follow_symlinks=False))
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


def _record_kept(exc, path: str, why: str):
    """Tells the caller (the CLI's hint) which staging directories this run left, and why."""
    try:
        exc.chatvec_kept = [*getattr(exc, "chatvec_kept", []), (path, why)]
    except AttributeError:  # an exception type without a __dict__
        pass


def kept_outputs(exc) -> list[tuple[str, str]]:
    """(staging directory, "partial" or "finished") for each staging directory the failed run kept."""
    return list(getattr(exc, "chatvec_kept", []))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()
