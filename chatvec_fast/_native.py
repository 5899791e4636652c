"""The compiled kernel module, if it was built.

`available` says whether it loaded; `require()` returns it or explains how to
build it. Import errors are kept so the message can show them.
"""

from __future__ import annotations

try:
    from . import _C as module  # type: ignore[attr-defined]

    available = True
    import_error: Exception | None = None
except ImportError as exc:  # not compiled, or compiled for another Python
    module = None
    available = False
    import_error = exc


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where the OS has one)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def require():
    """Returns the native module; raises a clear error when it is missing."""
    if module is None:
        raise RuntimeError(
            "chatvec-fast's native kernel is not built "
            f"({import_error}). Reinstall with a C++17 compiler available: "
            "`CHATVEC_REQUIRE_NATIVE=1 pip install -e .` shows the compiler error; "
            "or pass --backend torch to use the (slower) PyTorch reference."
        )
    return module
