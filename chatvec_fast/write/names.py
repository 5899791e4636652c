"""The names an output directory and its neighbours get: each alpha's directory in a sweep, and, beside an
output while a run works, the staging directory, the lock and the set-aside name; inside the staging
directory, its own records.

    .NAME.chatvec-partial/     the output being built (renamed to NAME when complete)
        .chatvec-staging       marker: holds the output path (a directory without it is not ours to touch)
        .chatvec-plan          the fingerprint of the run that owns it (--resume)
        .chatvec-done/         one record per completed shard file (--resume)
    .NAME.chatvec-lock         the flock that keeps two runs off one output
    .NAME.chatvec-old          an output being replaced (--overwrite), while the new one is renamed in
"""

from __future__ import annotations

import os

STAGING_MARKER = ".chatvec-staging"
DONE_DIR = ".chatvec-done"
PLAN_FILE = ".chatvec-plan"
INTERNAL = frozenset({STAGING_MARKER, DONE_DIR, PLAN_FILE})  # the staging directory's records, never in an output


def alpha_dirname(alpha) -> str:
    """alpha-0.25, alpha-1.0, alpha--0.5 (the shortest text that reads back as the same float); with several
    vectors, the values joined by '_': alpha-0.5_1.0."""
    if isinstance(alpha, tuple):
        return "alpha-" + "_".join(repr(float(a)) for a in alpha)
    return f"alpha-{float(alpha)!r}"


def staging_path(out: str) -> str:
    """Where the output is built before it is renamed into place: .NAME.chatvec-partial."""
    parent, name = _split(out)
    return os.path.join(parent, f".{name}.chatvec-partial")


def lock_path(out: str) -> str:
    """The flock that keeps two runs off one output: .NAME.chatvec-lock."""
    parent, name = _split(out)
    return os.path.join(parent, f".{name}.chatvec-lock")


def set_aside_path(out: str) -> str:
    """Where an output being replaced (--overwrite) waits while the new one is renamed in: .NAME.chatvec-old."""
    parent, name = _split(out)
    return os.path.join(parent, f".{name}.chatvec-old")


def _split(out: str) -> tuple[str, str]:
    return os.path.split(os.path.abspath(out).rstrip(os.sep))
