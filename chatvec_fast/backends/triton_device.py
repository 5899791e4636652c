"""The triton backend's device side: buffer sets on the device, and CPU stand-ins for streams and events.

Without CUDA but with TRITON_INTERPRET=1 the backend runs with the CPU standing in for the device:
streams and events become no-ops and the kernels run in triton's interpreter.
"""

from __future__ import annotations

import torch


class Done:
    """A CPU stand-in for a CUDA event: everything issued is already done."""

    def synchronize(self):
        pass

    def query(self) -> bool:
        return True


class Now:
    """A CPU stand-in for a CUDA stream."""

    def wait_event(self, event):
        pass

    def record_event(self):
        return Done()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Pending:
    """A submitted chunk: wait() blocks until its outputs are in the host buffers; returns the extract count."""

    def __init__(self, event, count_host: torch.Tensor | None):
        self.event = event
        self.count_host = count_host
        self._count: int | None = None

    def wait(self) -> int:
        if self._count is None:
            self.event.synchronize()
            self._count = int(self.count_host.item()) if self.count_host is not None else 0
        return self._count


class DeviceSet:
    """One chunk's device buffers: inputs, outputs, FP8 temporaries, scales, alphas and the extract count.

    configure() sizes the usual ones up front; a call that needs more (more vectors, an FP8 output's
    float64 results) grows them once, after the set's previous chunk has left the device.
    """

    def __init__(self, device, buffer_bytes: int, outputs: int, pin: bool):
        self.device, self.pin = device, pin
        self._buffers: dict[str, torch.Tensor] = {}
        for slot in range(3):
            self.buffer(f"in{slot}", buffer_bytes)
        self.buffer("out", outputs * buffer_bytes)
        self.count = torch.zeros(1, dtype=torch.int64, device=device)
        self.count_host = torch.zeros(1, dtype=torch.int64, pin_memory=pin)
        self.last: Pending | None = None  # the chunk that used this set last

    def buffer(self, name: str, nbytes: int) -> torch.Tensor:
        """A device uint8 tensor of nbytes, kept for the next chunks (grown when too small)."""
        have = self._buffers.get(name)
        if have is None or have.numel() < nbytes:
            have = self._buffers[name] = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=self.device)
        return have[:nbytes]

    def staged(self, name: str, values: torch.Tensor, non_blocking: bool) -> torch.Tensor:
        """values (a small CPU tensor) copied to this set's device buffer `name`, as values' dtype."""
        nbytes = values.numel() * values.element_size()
        dev = self.buffer(name, nbytes)
        if nbytes:
            host = values.contiguous().view(-1).view(torch.uint8)
            if self.pin:
                host = host.pin_memory()
            dev.copy_(host, non_blocking=non_blocking)
        return dev.view(values.dtype) if nbytes else dev[:0].view(values.dtype)
