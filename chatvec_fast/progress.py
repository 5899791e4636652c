"""Progress on stderr: bytes moved, GB/s and ETA.

On a terminal, one line redrawn in place (10 times a second at most), cut to the terminal's width so it
never wraps. Elsewhere (nohup, Slurm, `2>log`), a plain line every LOG_INTERVAL seconds, so a long run
shows it is alive and how far it got.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time

from .units import format_rate

LOG_INTERVAL = 10.0  # seconds between lines when stderr is not a terminal
_DRAW_INTERVAL = 0.1


class Progress:
    def __init__(self, total_bytes: int, enabled: bool, label: str = "merging", stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.total = max(total_bytes, 1)
        self.done = 0
        self.label = label
        self.clock = clock
        self.start = clock()
        self._last_draw = self.start
        self._drawn = False
        self._lock = threading.Lock()  # several pipelines (devices) advance one bar

    def advance(self, nbytes: int):
        with self._lock:
            self.done += nbytes
            if not self.enabled:
                return
            now = self.clock()
            interval = _DRAW_INTERVAL if self.tty else LOG_INTERVAL
            if now - self._last_draw >= interval or (self.tty and self.done >= self.total):
                self._last_draw = now
                self._draw(now)

    def _text(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        frac = min(self.done / self.total, 1.0)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        numbers = (f"{self.done / 1e9:.2f}/{self.total / 1e9:.2f} GB ({100 * frac:.0f}%)  {format_rate(rate)}  "
                   f"ETA {eta:.0f} s")  # fmt: skip
        if not self.tty:
            return f"{self.label}: {numbers}"
        width = shutil.get_terminal_size((80, 24)).columns - 1  # the last column would wrap on some terminals
        room = width - len(self.label) - len(numbers) - 5
        bar = ""
        if room >= 10:
            bar_width = min(room, 30)
            filled = int(frac * bar_width)
            bar = " [" + "#" * filled + "." * (bar_width - filled) + "]"
        return f"{self.label}{bar} {numbers}"[:width]

    def _draw(self, now: float):
        text = self._text(now)
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")  # erase what a longer line left
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self):
        if not self.enabled:
            return
        with self._lock:
            if self.tty:
                self._draw(self.clock())
                self.stream.write("\n")
                self.stream.flush()
            elif self._drawn:  # a long run already logged: log its end too
                self._draw(self.clock())
