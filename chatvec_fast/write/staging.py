"""The staging directory: checked before work starts, locked, renamed into place when complete.

Work happens in a hidden sibling directory (".NAME.chatvec-partial") that this run creates with a marker
file naming the output. Only a finished, fsynced output is renamed to NAME, so a crash or an error never
leaves a directory at NAME that looks complete. A lock file beside it stops a second run from writing
the same output at the same time; the lock is an flock, which the kernel releases when a process dies.

Nothing this run did not write is ever deleted: a staging directory without our marker (or a symlink) is
refused, never removed; --out is replaced only if it is still the model directory it was at the start.

Directories a run creates to hold its output (missing parents of --out, a sweep's parent) are removed
again when the run fails, if they are empty: a failed run leaves what it found. Resuming (--resume) keeps a
matching staging directory and the shards its records (records.py) say are complete.
"""

from __future__ import annotations

import fcntl
import os
import shutil

from .. import faults
from ..errors import OutputError
from .durable import fsync_dir, write_atomic, writing
from .names import INTERNAL, STAGING_MARKER, lock_path, set_aside_path, staging_path
from .paths import OutState, check_output_path, check_unchanged
from .records import ShardRecords


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
        self.records = ShardRecords(self.path)
        self.overwrite = overwrite
        self._made: list[str] = []  # directories this run created to hold the output, outermost first
        self._lock_fd = -1
        self.committed = False
        self.kept = None  # why the staging directory stays after exit, if it does

    def __enter__(self) -> OutputDirectory:
        if self.join:
            if not self._is_ours():
                raise OutputError(f"{self.path}: the staging directory rank 0 should have made is missing")
            return self
        try:
            self._make_parents()
            self._lock()
        except BaseException:
            self._remove_made_parents()
            raise
        try:
            # Again, under the lock: a run that held it may have finished this output meanwhile.
            self.state = check_output_path(self.final, self.inputs, self.overwrite)
            self._prepare_staging()
        except BaseException:
            self._unlock()
            self._remove_made_parents()
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
        with writing(self.records.done_dir, "staging"):
            os.makedirs(self.records.done_dir, exist_ok=True)

    def _make_parents(self):
        """Creates the missing directories above the output, remembering them (removed again on failure)."""
        missing, probe = [], self.parent
        while probe and not os.path.lexists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe.rstrip(os.sep))
        for directory in reversed(missing):
            with writing(directory, "staging"):
                try:
                    os.mkdir(directory)
                except FileExistsError:  # another output of the same sweep, or another run, made it first
                    continue
            self._made.append(directory)

    def _remove_made_parents(self):
        for directory in reversed(self._made):
            try:
                os.rmdir(directory)  # only when empty: never anything another run or the user put there
            except OSError:
                break
        self._made = []

    def _keep_only_completed_shards(self):
        """--resume keeps the shards an earlier run completed; everything written after them (index, config
        and tokenizer files, the report) is written again at the end, exactly once."""
        for name in os.listdir(self.path):
            path = os.path.join(self.path, name)
            if name in INTERNAL or (self.records.recorded(name) is not None and os.path.isfile(path)):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def commit(self):
        """Makes the staged output durable and moves it to its final path, if --out is as the run found it."""
        with writing(self.path, "commit"):
            for name in INTERNAL:
                path = os.path.join(self.path, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.unlink(path)
        fsync_dir(self.path)
        faults.check("committing", path=self.final)
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
        if not self.committed and self.kept is None:
            self._remove_made_parents()
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
