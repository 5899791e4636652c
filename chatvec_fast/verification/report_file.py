"""An output's chatvec_report.json, read as untrusted input: every field verify relies on is checked, and a
report it cannot use is a clear error, never a traceback or a silent pass."""

from __future__ import annotations

import os

from ..errors import InputError
from ..filenames import REPORT_NAME
from ..read.json_file import load_json
from ..report import REPORT_FORMAT
from ..settings import COMMANDS

_OPTION_TYPES = {"skip": list, "vocab_mismatch": str, "dtype": (str, type(None)), "max_shard_size": (int, type(None)),
                 "alpha_for": list}  # fmt: skip


def load_report(out: str) -> dict:
    """The report of output directory `out`, checked field by field; InputError naming what is wrong."""
    path = os.path.join(out, REPORT_NAME)
    if not os.path.isfile(path):
        raise InputError(f"{out}: no {REPORT_NAME}; verify checks outputs written by chatvec-fast")
    try:
        report = load_json(path, "report")
    except InputError as exc:
        raise InputError(f"{path}: cannot read the report ({exc}); it is damaged: re-run the merge") from None

    def bad(what: str):
        return InputError(f"{path}: {what}; this is not a report verify can use (re-run the command that wrote it)")

    if not isinstance(report, dict) or report.get("tool") != "chatvec-fast":
        raise bad("not a chatvec-fast report")
    if report.get("report_format") != REPORT_FORMAT:
        raise InputError(
            f"{path}: report format {report.get('report_format', 1)}, written by chatvec-fast "
            f"{report.get('version', '?')}; this version verifies format {REPORT_FORMAT}, which records every file "
            "of the output. Re-run the command that wrote it (with --overwrite) to verify it"
        )
    command = report.get("command")
    if command not in COMMANDS:
        raise bad(f"command {command!r} is not one of {', '.join(COMMANDS)}")
    inputs = report.get("inputs")
    if not isinstance(inputs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()):
        raise bad("'inputs' must map roles to paths")
    needed = {"merge": {"base", "chat", "cp"}, "apply": {"vector", "cp"}, "extract": {"base", "chat"}}[command]
    vectors = sorted(r for r in inputs if r.startswith("vector"))
    if command == "apply" and vectors[1:] == [f"vector{m}" for m in range(2, len(vectors) + 1)]:
        needed |= set(vectors)  # several vectors: vector, vector2, ...
    if set(inputs) != needed:
        raise bad(f"'inputs' has {sorted(inputs)}, a {command} has {sorted(needed)}")
    options = report.get("options")
    if not isinstance(options, dict) or any(not isinstance(options.get(k), t) for k, t in _OPTION_TYPES.items()):
        raise bad("'options' is missing or has fields of the wrong type")
    alpha = report.get("alpha")
    several = isinstance(alpha, list) and len(alpha) == len(vectors) > 1 and all(_is_number(a) for a in alpha)
    if command != "extract" and not (_is_number(alpha) or several):
        raise bad("'alpha' is missing or not a number (a list of one per vector for apply with several)")
    files = report.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(r, dict) and isinstance(r.get("bytes"), int) and isinstance(r.get("sha256"), str)
        for r in files.values()
    ):
        raise bad("'files' must map every file of the output to its bytes and sha256")
    rows = report.get("special_token_rows", [])
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get("token"), str) and _is_index(r.get("chat_row"))
        and _is_index(r.get("cp_row")) for r in rows
    ):  # fmt: skip
        raise bad("'special_token_rows' must list tokens with non-negative integer rows")
    added = report.get("added_tokens", [])
    if not isinstance(added, list) or not all(
        isinstance(r, dict) and isinstance(r.get("token"), str) and _is_index(r.get("chat_row"))
        and _is_index(r.get("row")) for r in added
    ):  # fmt: skip
        raise bad("'added_tokens' must list tokens with non-negative integer rows")
    return report


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_index(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
