"""A one-line progress bar on stderr: bytes moved and GB/s. Silent when not a TTY."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_bytes: int, enabled: bool, label: str = "merging", stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = max(total_bytes, 1)
        self.done = 0
        self.label = label
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def advance(self, nbytes: int):
        self.done += nbytes
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw >= 0.1 or self.done >= self.total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float):
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        frac = min(self.done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.stream.write(
            f"\r{self.label} [{bar}] {self.done / 1e9:6.2f}/{self.total / 1e9:.2f} GB  {rate / 1e9:5.2f} GB/s  "
            f"ETA {eta:4.0f}s "
        )
        self.stream.flush()

    def close(self):
        if self.enabled:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
