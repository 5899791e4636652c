"""The output's non-weight files: config, tokenizer and chat-template files, each written exactly once.

The run decides what each file is (run/finish.py): copied as it is, or a JSON file with an edit applied
(config.json's dtype, tokenizer_config.json's chat template and eos, generation_config.json's eos id).
Files are created exclusively: a second write of one name is a bug caught here, not a silent overwrite.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

from ..errors import OutputError
from ..regular_files import open_regular
from .durable import writing

Edit = Callable[[dict], dict]


def write_files(sources: list[tuple[str | None, str, Edit | None]], dest: str) -> list[str]:
    """Writes each (source path, name, edit) as dest/name (name may hold one folder, e.g. chat/tokenizer.json):
    a copy of the source, or, with an edit, the source's JSON object (or {} without a source) edited (an edit
    may also return the whole text of the file). Returns the names, in order."""
    written = []
    for src, name, edit in sources:
        dst = os.path.join(dest, name)
        try:
            with writing(dst, "aux"):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                if edit is None:
                    with open_regular(src, "input file") as f, open(dst, "xb") as g:
                        shutil.copyfileobj(f, g, 16 << 20)
                        g.flush()
                        os.fsync(g.fileno())
                else:
                    doc = edit(_read_object(src) if src else {})
                    with open(dst, "x", encoding="utf-8") as g:
                        if isinstance(doc, str):  # a text file made whole (the model card)
                            g.write(doc)
                        else:
                            json.dump(doc, g, indent=2, ensure_ascii=False)
                            g.write("\n")
                        g.flush()
                        os.fsync(g.fileno())
        except OutputError as exc:
            if isinstance(exc.__cause__, FileExistsError):
                raise OutputError(f"{dst}: written twice in one output; this is a bug, please report it") from exc
            raise
        written.append(name)
    return written


def _read_object(path: str) -> dict:
    """A JSON object from an input (checked when the run planned; read again here to edit it)."""
    with open_regular(path, "input file") as f:
        doc = json.loads(f.read().decode("utf-8"))
    if not isinstance(doc, dict):
        raise OutputError(f"{path}: expected a JSON object")
    return doc
