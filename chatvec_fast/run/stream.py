"""The thread pipeline: read -> compute -> write, overlapped, in fixed buffers.

A reader thread, the calling thread and one writer thread per output share a
small pool of buffer slots (3 inputs + K outputs each):
a reader fills a slot with preadv from the input files, the calling thread
runs the backend kernel on it, and a writer pwrites the outputs at their
offsets and returns the slot. Every stage releases the GIL in its system
call or kernel, so disk reads, arithmetic and writes proceed together; no
tensor, shard or model is ever held whole, and nothing is allocated per
tensor.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import faults
from ..dtypes import itemsize
from ..plan.chunks import CONVERT, COPY, EXTRACT, MERGE, Chunk
from ..read.chunks import InputFiles

DEFAULT_SLOTS = 4


class _Slot:
    def __init__(self, arena: np.ndarray, index: int, buffer_bytes: int, outputs: int):
        views = [arena[(index * (3 + outputs) + j) * buffer_bytes :][:buffer_bytes] for j in range(3 + outputs)]
        self.base, self.chat, self.cp = views[:3]
        self.outs = views[3:]
        self.chunk: Chunk | None = None
        self.pending = 0  # writers still to write this slot
        self.result = None  # a device backend's Pending for this slot's chunk


class Pipeline:
    """Runs chunks through read -> backend -> write with `slots` buffers in flight."""

    def __init__(self, backend, outputs, chunk_elements, slots=DEFAULT_SLOTS, itemsize=4, progress=None):
        self.backend = backend
        self.chunk_elements = chunk_elements
        self.progress = progress
        self.inexact = 0  # extract: elements the output dtype could not hold exactly
        buffer_bytes = chunk_elements * itemsize  # itemsize: the widest dtype of the plan
        self._async = hasattr(backend, "submit")  # a device backend: compute returns before the results land
        if hasattr(backend, "configure"):
            backend.configure(buffer_bytes, outputs)
        # One arena: numpy asks for transparent huge pages on big allocations,
        # and first-touching fresh 4 KiB pages runs at ~0.4 GB/s here.
        nbytes = slots * (3 + outputs) * buffer_bytes
        arena = backend.allocate_host(nbytes) if hasattr(backend, "allocate_host") else np.empty(nbytes, np.uint8)
        self._free: queue.Queue = queue.Queue()
        for i in range(slots):
            self._free.put(_Slot(arena, i, buffer_bytes, outputs))
        self._to_compute: queue.Queue = queue.Queue()
        # The three inputs of a chunk are read side by side: with the page cache evicted, 4.6-5.2 s
        # against 5.3-5.9 s one after the other for the 1.1B merge here; no difference when cached.
        # CHATVEC_SERIAL_READS=1 reads them one after the other.
        serial = os.environ.get("CHATVEC_SERIAL_READS", "0") == "1"
        self._read_pool = None if serial else ThreadPoolExecutor(3, thread_name_prefix="chatvec-read")
        self._to_write: list[queue.Queue] = [queue.Queue() for _ in range(outputs)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self.inputs = InputFiles()

    # -- stages ---------------------------------------------------------------

    def _get(self, q: queue.Queue):
        """Next item of q, or None once any stage has failed."""
        while not self._stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                pass
        return None

    def _read_stage(self, chunks):
        try:
            for chunk in chunks:
                slot = self._get(self._free)
                if slot is None:
                    return
                self._read_chunk(chunk, slot)
                slot.chunk = chunk
                self._to_compute.put(slot)
            self._to_compute.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._fail(exc)

    def _read_chunk(self, chunk: Chunk, slot: _Slot):
        t, n, seg = chunk.tensor, chunk.count, chunk.segment
        if chunk.kind == COPY:
            self.inputs.read(seg.source, chunk.first, slot.outs[0][:n])
            return
        if chunk.kind == CONVERT:
            src = seg.source
            self.inputs.read(
                src, (seg.source_start + chunk.first) * itemsize(src.dtype), slot.cp[: n * itemsize(src.dtype)]
            )
            return
        e = chunk.element
        reads = [(info, e * itemsize(info.dtype), buf[: n * itemsize(info.dtype)])
                 for info, buf in ((t.cp if chunk.kind == MERGE else None, slot.cp), (t.chat, slot.chat),
                                   (t.base, slot.base)) if info is not None]  # fmt: skip
        if self._read_pool is None:
            for args in reads:
                self.inputs.read(*args)
        else:  # the inputs are separate files: read them side by side (storage queue depth, copy cores)
            for future in [self._read_pool.submit(self.inputs.read, *args) for args in reads]:
                future.result()

    def _compute(self, slot: _Slot):
        faults.check("compute")
        chunk = slot.chunk
        if chunk.kind == COPY:
            return
        t, n = chunk.tensor, chunk.count
        out_bytes = n * itemsize(t.out_dtype)
        outs = [o[:out_bytes] for o in slot.outs]
        b = c = p = None
        if chunk.kind == CONVERT:
            p = (slot.cp, chunk.segment.source.dtype)
            outs = outs[:1]  # the same values go to every output
        else:
            c = (slot.chat, t.chat.dtype)
            b = (slot.base, t.base.dtype) if t.base is not None else None
            p = (slot.cp, t.cp.dtype) if chunk.kind == MERGE else None
        none = (None, None)
        args = (*(b or none), *(c or none), *(p or none), n, t.alphas[: len(outs)], outs, t.out_dtype)
        if self._async:
            slot.result = self.backend.submit(*args)  # the writers wait on it
            return
        count = self.backend.compute(*args)
        if chunk.kind == EXTRACT:
            self.inexact += count
            chunk.files[0].inexact += count

    def _write_stage(self, k: int):
        """Writes output k's part of each chunk. One writer per output: a sweep's K files are written
        concurrently (the disk gets K requests in flight, the staging copies use every core), and a
        slot is free again once all K writers are done with it."""
        try:
            while True:
                slot = self._get(self._to_write[k])
                if slot is None:
                    return
                chunk = slot.chunk
                if slot.result is not None:  # a device backend: wait for the results to reach the host
                    count = slot.result.wait()
                    if k == 0 and chunk.kind == EXTRACT:
                        self.inexact += count
                        chunk.files[0].inexact += count
                shared = chunk.kind in (COPY, CONVERT)  # one result for every output
                chunk.files[k].write(slot.outs[0 if shared else k][: chunk.write_nbytes], chunk.offsets[k])
                with self._lock:
                    slot.pending -= 1
                    last = slot.pending == 0
                if last:
                    if self.progress is not None:
                        self.progress.advance(chunk.read_nbytes + chunk.write_nbytes * len(chunk.files))
                    slot.chunk = slot.result = None
                    self._free.put(slot)
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)

    def _fail(self, exc: BaseException):
        self._errors.append(exc)
        self._stop.set()

    # -- driver ---------------------------------------------------------------

    def run(self, chunks):
        """Processes every chunk; raises the first error any stage hit."""
        reader = threading.Thread(target=self._read_stage, args=(chunks,), name="chatvec-reader", daemon=True)
        writers = [
            threading.Thread(target=self._write_stage, args=(k,), name=f"chatvec-writer-{k}", daemon=True)
            for k in range(len(self._to_write))
        ]
        reader.start()
        for w in writers:
            w.start()
        try:
            while True:
                slot = self._get(self._to_compute)
                if slot is None:
                    break
                self._compute(slot)
                slot.pending = len(writers)
                for q in self._to_write:
                    q.put(slot)
        except BaseException as exc:  # noqa: BLE001 - includes KeyboardInterrupt
            self._fail(exc)
        finally:
            for q in self._to_write:
                q.put(None)  # let the writers drain and exit
            reader.join()
            for w in writers:
                w.join()
        if self._read_pool is not None:
            self._read_pool.shutdown()
        try:
            if self._errors:
                raise self._errors[0]
            self.inputs.check_unchanged()
        finally:
            self.inputs.close()
