"""Small text files from users and inputs (JSON, JSON Lines, plain text), read whole but bounded.

One reader for every such file, so each gets the same refusals, each naming the file: unreadable (missing,
no permission), not a regular file (a directory; a named pipe, which would block the read forever), larger
than the cap its kind needs (a hostile or mistaken file would otherwise cost its size in RAM), or not UTF-8.
"""

from __future__ import annotations

import errno
import os

from ..errors import InputError
from ..regular_files import open_regular


def read_utf8(path, where: str, what: str, max_bytes: int, cap_reason: str) -> str:
    """The UTF-8 text of the file at path, at most max_bytes long.

    where starts every message (the file, or the option and the file: "--prompts p.jsonl"); what names the
    kind of file ("tokenizer.json", "prompts file"); cap_reason says why max_bytes is enough, for the
    too-large message ("any real one needs", "a tune's prompts need (...)").

    >>> read_utf8("prompts.jsonl", "--prompts prompts.jsonl", "prompts file", 1 << 20, "a tune needs")  # doctest: +SKIP
    '{"prompt": "你好"}\\n'
    """
    try:
        with open_regular(path, what, where) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise InputError(f"{where}: {what} of {size} bytes, more than the {max_bytes} {cap_reason}")
            raw = f.read(max_bytes + 1)  # + 1: a file that grew after fstat is still caught
    except FileNotFoundError:
        raise InputError(f"{where}: cannot read {what}: no such file; check the path") from None
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0) or str(exc)
        raise InputError(f"{where}: cannot read {what}: {reason}") from None
    if len(raw) > max_bytes:
        raise InputError(f"{where}: {what} grew past {max_bytes} bytes while being read ({cap_reason})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{where}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
