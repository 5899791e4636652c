"""Fault injection for tests: CHATVEC_FAULT makes a named point of the engine fail on purpose.

    CHATVEC_FAULT=write:ENOSPC#3     the 3rd shard write fails with "No space left on device"
    CHATVEC_FAULT=compute@rank1      rank 1's first kernel call raises
    CHATVEC_FAULT=read:EIO           the first input read fails with an I/O error

Points: read, compute, and every site that writes (WRITE_POINTS). Without an errno name the point raises
RuntimeError. Unset, it costs a dictionary lookup per chunk. Tests use it to prove failures leave no
output behind: tests/test_faults.py runs every CLI command through every write site.

    CHATVEC_SLOW=write:0.01          sleep 10 ms at every shard write (gives kill tests a slow run to hit)

In-process tests can also act at a point instead of failing there, through a public hook rather than by
patching private functions:

    with faults.hooked("planned", lambda **_: os.replace(impostor, shard)):   # after planning, before reading
        chatvec_fast.merge(...)
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time

# Every place the engine writes, by the name CHATVEC_FAULT uses (a test checks that each faults.check call
# in the package names one of these or read/compute):
WRITE_POINTS = (
    "lock",  # the lock file beside the output
    "staging",  # the staging directory and its marker
    "fingerprint",  # the resume fingerprint in the staging directory
    "write",  # tensor bytes into a shard file
    "marker",  # a completed shard's record (resume)
    "index",  # model.safetensors.index.json
    "aux",  # config, tokenizer and chat template files
    "report",  # chatvec_report.json
    "commit",  # fsyncs and the rename into place
)
# Where a hook may act (besides every point above): the plan is made and no tensor byte read yet; an input
# file was opened for reading (context: path); the finished output is about to be renamed (context: path); a
# tune recorded an alpha's results (context: alpha).
HOOK_POINTS = ("planned", "opened", "committing", "tuned")
POINTS = ("read", "compute", *WRITE_POINTS, *HOOK_POINTS)

_lock = threading.Lock()
_counts: dict[str, int] = {}
_counted_spec = None  # the CHATVEC_FAULT the counts belong to: a new one starts them again
_hooks: dict[str, list] = {}


class InjectedFault(RuntimeError):
    pass


def _parse(spec: str) -> tuple[str, str | None, int | None, int]:
    """'write:ENOSPC@rank1#3' -> ('write', 'ENOSPC', 1, 3)."""
    text, nth = spec, 1
    if "#" in text:
        text, count = text.split("#", 1)
        nth = int(count)
    rank = None
    if "@rank" in text:
        text, number = text.split("@rank", 1)
        rank = int(number)
    point, _, code = text.partition(":")
    return point, code or None, rank, nth


@contextlib.contextmanager
def hooked(point: str, action):
    """For tests: calls action(**context) each time the engine passes `point` in this process."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}; expected one of {', '.join(POINTS)}")
    _hooks.setdefault(point, []).append(action)
    try:
        yield
    finally:
        _hooks[point].remove(action)


def check(point: str, **context):
    """Runs the hooks at this point, then raises here if CHATVEC_FAULT names it (and this rank, and this call)."""
    global _counted_spec
    for action in _hooks.get(point, ()):
        action(**context)
    slow = os.environ.get("CHATVEC_SLOW")
    if slow and slow.partition(":")[0] == point:
        time.sleep(float(slow.partition(":")[2] or 0.01))
    spec = os.environ.get("CHATVEC_FAULT")
    if not spec:
        return
    name, code, rank, nth = _parse(spec)
    if name != point or (rank is not None and int(os.environ.get("RANK", "0")) != rank):
        return
    with _lock:
        if spec != _counted_spec:
            _counts.clear()
            _counted_spec = spec
        _counts[point] = _counts.get(point, 0) + 1
        if _counts[point] != nth:
            return
    if code:
        number = getattr(errno, code)
        raise OSError(number, f"{os.strerror(number)} (injected by CHATVEC_FAULT={spec})")
    raise InjectedFault(f"injected failure at {point} (CHATVEC_FAULT={spec})")
