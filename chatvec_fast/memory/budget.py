"""How much memory a device has free, asked before anything is held there.

Host: psutil's `available` when it is installed, else MemAvailable from /proc/meminfo (the kernel's estimate
of what can be allocated without swapping, page cache it can drop included). A CUDA device:
torch.cuda.mem_get_info (free bytes, other processes' use counted).
"""

from __future__ import annotations

from ..units import format_bytes

MEMINFO = "/proc/meminfo"


def available(device: str) -> tuple[int | None, str]:
    """(free bytes, where the figure comes from) on a device; (None, why) where it cannot be known."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return free, f"torch.cuda.mem_get_info({device!r})"
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.virtual_memory().available, "psutil.virtual_memory().available"
    try:
        with open(MEMINFO, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, f"MemAvailable in {MEMINFO}"
    except OSError:
        pass
    return None, f"neither psutil nor {MEMINFO} is available here"


def check_fits(nbytes: int, device: str, what: str, parts: str, limit: int | None = None):
    """Raises MemoryError, saying what would be held where and the fixes, when nbytes exceed `limit` (when
    given) or the device's free memory."""
    free, source = (limit, "max_memory") if limit is not None else available(device)
    if free is None or nbytes <= free:
        return
    where = "host memory" if device == "cpu" else device
    raise MemoryError(f"{what} would hold {format_bytes(nbytes)} ({parts}) in {where}; {format_bytes(free)} is "
                      f"free ({source}). Free memory, hold the inputs elsewhere (hold='device' on a GPU with room, "
                      "hold='host'), or stream them instead: merge_into(model, ...) holds one tensor at a time and "
                      "reads the files per alpha")  # fmt: skip
