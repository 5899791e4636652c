"""inspect.json, inspect.md and inspect.png in --out, by merge's rules for an output directory.

The files are written into the staging directory write/staging.py owns and renamed into place together,
so --out appears only when all three are complete; a failed run leaves nothing behind. --out must be
absent or an empty directory: inspect never replaces or changes a file it did not create.
"""

from __future__ import annotations

import os

from ..errors import OutputError
from ..write.durable import write_atomic, write_json, writing
from ..write.staging import OutputDirectory
from .plot import require_matplotlib

FILES = ("inspect.json", "inspect.md", "inspect.png")


def check_out(out: str):
    """Before any input is read or downloaded: --out is free, and the plot can be drawn."""
    if os.path.lexists(out) and (not os.path.isdir(out) or os.path.islink(out) or os.listdir(out)):
        what = "is not empty" if os.path.isdir(out) and not os.path.islink(out) else "exists and is not a directory"
        raise OutputError(f"--out {out} {what}; inspect writes {', '.join(FILES)} into a new or empty directory "
                          "and never replaces files. Choose another path")  # fmt: skip
    require_matplotlib()


def open_out(out: str, inputs: dict[str, str]) -> OutputDirectory:
    """The staged output (checked again: not inside an input, not the current directory); enter it, then
    `write_files` and `commit()`."""
    return OutputDirectory(out, inputs, overwrite=False)


def write_files(inspection, staged: OutputDirectory):
    write_json(staged.file("inspect.json"), inspection.to_dict())
    write_atomic(staged.file("inspect.md"), inspection.markdown(), point="report")
    with writing(staged.file("inspect.png"), "report"):
        inspection.plot(staged.file("inspect.png"))
