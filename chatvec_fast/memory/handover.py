"""Tensors between the pipeline's thread and the caller's: in plan order, and a bounded number of bytes ahead.

The pipeline runs in a thread of its own; its reader asks for each tensor's place as it reaches the tensor's
first chunk (`admit`), and the caller takes tensors, complete, in plan order (`take`). At most `budget` bytes of
newly allocated tensors wait between the two (one whole tensor always may: the budget is the plan's largest),
so a caller that is slower than the pipeline stalls it instead of piling tensors up; a caller that stops
(`cancel`: an exception, Ctrl-C, a loop left early) stops the pipeline at its next chunk.
"""

from __future__ import annotations

import threading
from collections import deque


class Cancelled(Exception):
    """Raised inside the pipeline's thread once the caller stopped taking tensors."""


class Handover:
    def __init__(self, budget: int):
        self.budget = budget
        self._cond = threading.Condition()
        self._queue: deque = deque()  # [tensor plan, sink, handle, cost], in plan order
        self._waiting = 0  # bytes admitted and not yet taken
        self._error: BaseException | None = None
        self._finished = False
        self._cancelled = False

    # -- the pipeline's side ---------------------------------------------------------------------------------

    def admit(self, cost: int):
        """Blocks until `cost` more bytes fit (or nothing waits); raises Cancelled once the caller stopped."""
        with self._cond:
            while self._waiting and self._waiting + cost > self.budget and not self._cancelled:
                self._cond.wait(0.05)
            if self._cancelled:
                raise Cancelled()
            self._waiting += cost

    def add(self, entry: list):
        with self._cond:
            self._queue.append(entry)

    def check(self):
        if self._cancelled:
            raise Cancelled()

    def completed(self):
        """A sink received its last byte (the writer thread calls this)."""
        with self._cond:
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None):
        with self._cond:
            self._finished = True
            if error is not None and not isinstance(error, Cancelled):
                self._error = error
            self._cond.notify_all()

    # -- the caller's side -----------------------------------------------------------------------------------

    def take(self):
        """The next complete (tensor plan, handle, cost) in plan order; None after the last; raises the
        pipeline's error as soon as there is one (an input that changed makes every tensor suspect)."""
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._queue and self._queue[0][1].done:
                    t, _, handle, cost = self._queue.popleft()
                    return t, handle, cost
                if self._finished:
                    if self._queue:
                        raise RuntimeError(f"the pipeline ended with {self._queue[0][0].name} incomplete; this is "
                                           "a bug, please report it")  # fmt: skip
                    return None
                self._cond.wait(0.05)

    def release(self, cost: int):
        """The caller took a tensor: its bytes are the caller's now."""
        with self._cond:
            self._waiting -= cost
            self._cond.notify_all()

    def cancel(self):
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()
