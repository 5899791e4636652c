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
        return f"runs on the CPU; --devices {','.join(devices)} needs a device backend (--backend triton or cuda)"
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
    if name == "cuda":
        if importlib.util.find_spec("chatvec_fast._cuda") is None:
            return ("needs the CUDA extension chatvec_fast._cuda, which is not built; reinstall where nvcc is found "
                    "(`CHATVEC_CUDA=1 pip install -e .`), or use --backend triton or native")  # fmt: skip
        host = os.environ.get("CHATVEC_CUDA_HOST", "0") == "1"
        if not host and (importlib.util.find_spec("torch") is None or not nvidia_driver()):
            return ("needs a CUDA GPU and torch (no NVIDIA driver here, or no torch); use --backend native, or set "
                    "CHATVEC_CUDA_HOST=1 to run the kernel's code on the CPU (one thread: for tests)")  # fmt: skip
    return None
