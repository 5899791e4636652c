"""The paths a run writes, checked before any work: the output, and beside it the staging directory, the
lock and the set-aside name.

No path we write may be, contain or lie inside an input (symlinks resolved); none of the side paths may
be a symlink; an existing output is replaced only when it is a model (our report, or model files alone)
and --overwrite says so; the output must be renameable into place (not a mount point) and must not be, or
contain, the current directory (replacing it would pull the directory from under the caller's shell). The state of
--out found here is checked again at commit, so that nothing this run did not write is ever deleted.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass

from ..errors import ChatvecError, OutputError
from ..filenames import MODEL_FILE_PATTERNS, REPORT_NAME
from ..regular_files import open_regular
from .names import lock_path, set_aside_path, staging_path

_MAX_LISTED = 5


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class OutState:
    """--out as a run found it: absent, an empty directory, or a model output it may replace."""

    kind: str  # "absent", "empty" or "model"
    identity: tuple[int, int] | None = None  # (device, inode) of the directory
    entries: frozenset[str] = frozenset()

    def describe(self) -> str:
        return {"absent": "did not exist", "empty": "was an empty directory", "model": "held a model"}[self.kind]


def check_not_in_inputs(path: str, inputs: dict[str, str], what: str):
    real = _real(path)
    for role, source in inputs.items():
        real_in = _real(source)
        if os.path.isfile(real_in):
            real_in = os.path.dirname(real_in)
        if _inside(real, real_in):
            raise OutputError(
                f"{what} {path} is inside (or is) the {role} checkpoint {source}; choose a path outside it"
            )
        if _inside(real_in, real):
            raise OutputError(f"{what} {path} contains the {role} checkpoint {source}; choose a path that does not")


def check_output_path(out: str, inputs: dict[str, str], overwrite: bool) -> OutState:
    """Refuses an output that is, contains or lies inside an input, or whose replacement would lose data;
    refuses side paths (staging, lock, set-aside) that are symlinks or point into an input. Returns --out's
    state, to compare at commit."""
    if not os.fspath(out).strip():
        raise OutputError(f"the output path is empty ({out!r}): an unset shell variable? Name the output directory")
    here = _real(os.curdir)
    if _inside(here, _real(out)):
        what = "is" if _real(out) == here else "contains"
        raise OutputError(
            f"--out {out} {what} the current directory ({here}); the output replaces --out as "
            "a whole, which would pull the directory from under this shell. Choose another path"
        )
    check_not_in_inputs(out, inputs, "--out")
    for side, what in ((staging_path(out), "the staging directory"), (lock_path(out), "the lock file"),
                       (set_aside_path(out), "the set-aside path")):  # fmt: skip
        if os.path.islink(side):
            raise OutputError(f"{what} {side} is a symbolic link, which chatvec never makes; remove it")
        check_not_in_inputs(side, inputs, what)
    if os.path.lexists(set_aside_path(out)):
        raise OutputError(
            f"{set_aside_path(out)} exists: a previous replacement of {out} was interrupted, or something else "
            "put it there. Check what it holds, then remove it (chatvec never deletes what it did not write)"
        )
    return out_state(out, overwrite)


def out_state(out: str, overwrite: bool) -> OutState:
    if not os.path.lexists(out):
        return OutState("absent")
    if not os.path.isdir(out) or os.path.islink(out):
        raise OutputError(f"--out {out} exists and is not a directory; remove it or choose another path")
    st, parent = os.stat(out), os.stat(os.path.dirname(os.path.abspath(out).rstrip(os.sep)) or ".")
    if st.st_dev != parent.st_dev or os.path.ismount(out):
        raise OutputError(
            f"--out {out} is a mount point (another filesystem than its parent): the output is built beside it "
            "and renamed into place, which cannot cross filesystems. Choose a directory inside it, e.g. "
            f"{os.path.join(out, 'merged')}"
        )
    entries = frozenset(os.listdir(out))
    identity = (st.st_dev, st.st_ino)
    if not entries:
        return OutState("empty", identity)
    if not overwrite:
        raise OutputError(f"--out {out} is not empty; pass --overwrite to replace it, or choose another path")
    in_the_way = foreign_entries(out, entries)
    if in_the_way:
        shown = ", ".join(sorted(in_the_way)[:_MAX_LISTED]) + (" ..." if len(in_the_way) > _MAX_LISTED else "")
        raise OutputError(
            f"--out {out} holds files that are not a model output ({len(in_the_way)}: {shown}); --overwrite "
            "only replaces a model directory. Move them away or choose another path"
        )
    return OutState("model", identity, entries)


def foreign_entries(out: str, entries) -> list[str]:
    """Entries of `out` that are not part of a model: anything a chatvec report does not list, or, without a
    report, anything but regular files with model-file names (sub-folders, notes, data)."""
    listed = _reported_files(out)
    if listed is not None:
        tops = {name.split("/")[0] for name in listed} | {REPORT_NAME}
        return [e for e in entries if e not in tops]
    foreign = []
    for name in entries:
        path = os.path.join(out, name)
        if os.path.islink(path) or not os.path.isfile(path):
            foreign.append(name + "/" if os.path.isdir(path) else name)
        elif not any(fnmatch.fnmatch(name, p) for p in MODEL_FILE_PATTERNS):
            foreign.append(name)
    return foreign


def read_report(out: str):
    """The JSON document of out's chatvec report, or None where there is none readable (missing, not JSON, or
    not a regular file: a named pipe would block the read)."""
    try:
        with open_regular(os.path.join(out, REPORT_NAME), "report") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError, ChatvecError):
        return None


def _reported_files(out: str) -> set[str] | None:
    """The files a chatvec report in `out` lists (None without a readable report)."""
    report = read_report(out)
    files = report.get("files") if isinstance(report, dict) else None
    return set(files) if isinstance(files, dict) and report.get("tool") == "chatvec-fast" else None


def check_unchanged(out: str, before: OutState, staging: str):
    """At commit: --out must still be as the run found it; otherwise stop without touching it."""
    now = None
    try:
        now = out_state(out, overwrite=True)
    except OutputError:
        pass
    same = now is not None and now.kind == before.kind and now.identity == before.identity
    if same and (before.kind != "model" or not foreign_entries(out, now.entries)):
        return
    raise OutputError(
        f"--out {out} changed while the run worked (it {before.describe()} at the start); chatvec does not "
        f"touch what it did not write. The finished output is kept in {staging}: move it where you want it"
    )
