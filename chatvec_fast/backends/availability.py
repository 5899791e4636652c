"""Whether a backend asked for can run here, known before any input is opened or downloaded.

Cheap by design: nothing heavy is imported (find_spec looks for a package without importing it), so a
command with a wrong --backend or --devices stops at once, not after a Hub download and the planning.
"""

from __future__ import annotations

import importlib.util
import os

from .. import _native
from . import DEVICE_BACKENDS


def nvidia_driver() -> bool:
    """An NVIDIA driver on this machine (checked without importing torch)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


def availability(name: str, devices: tuple[str, ...] = ()) -> str | None:
    """None when backend `name` can run with these devices, else what is missing and the fix."""
    if devices and name != "auto" and name not in DEVICE_BACKENDS:
        return f"runs on the CPU; --devices {','.join(devices)} needs a device backend (--backend triton)"
    if name == "native" and not _native.available:
        return (f"the native kernel is not built ({_native.import_error}); reinstall with a C++17 compiler "
                "(`CHATVEC_REQUIRE_NATIVE=1 pip install -e .` shows the error) or pass --backend torch")  # fmt: skip
    if name in ("torch", "torch-fp32", "triton") and importlib.util.find_spec("torch") is None:
        return "needs torch; pip install torch"
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return "needs triton; pip install 'chatvec-fast[gpu]'"
        if not nvidia_driver() and os.environ.get("TRITON_INTERPRET", "0") != "1":
            return ("needs a CUDA GPU (no NVIDIA driver here); use --backend native, or set TRITON_INTERPRET=1 to "
                    "run the kernel on the CPU (slow: for tests)")  # fmt: skip
    return None
