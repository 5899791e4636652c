"""Fault injection for tests: CHATVEC_FAULT makes a named point of the engine fail on purpose.

    CHATVEC_FAULT=write:ENOSPC#3     the 3rd shard write fails with "No space left on device"
    CHATVEC_FAULT=compute@rank1      rank 1's first kernel call raises
    CHATVEC_FAULT=read:EIO           the first input read fails with an I/O error

Points: read, compute, and every site that writes (WRITE_POINTS). Without an errno name the point raises
RuntimeError. Unset, it costs a dictionary lookup per chunk. Tests use it to prove failures leave no
output behind: tests/test_faults.py runs every CLI command through every write site.

    CHATVEC_SLOW=write:0.01          sleep 10 ms at every shard write (gives kill tests a slow run to hit)
"""

from __future__ import annotations

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
    "patch",  # a header value known only at the end (extract's inexact count)
    "index",  # model.safetensors.index.json
    "aux",  # config, tokenizer and chat template files
    "report",  # chatvec_report.json
    "commit",  # fsyncs and the rename into place
)
POINTS = ("read", "compute", *WRITE_POINTS)

_lock = threading.Lock()
_counts: dict[str, int] = {}


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


def check(point: str):
    """Raises here if CHATVEC_FAULT names this point (and this rank, and this call)."""
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
        _counts[point] = _counts.get(point, 0) + 1
        if _counts[point] != nth:
            return
    if code:
        number = getattr(errno, code)
        raise OSError(number, f"{os.strerror(number)} (injected by CHATVEC_FAULT={spec})")
    raise InjectedFault(f"injected failure at {point} (CHATVEC_FAULT={spec})")
