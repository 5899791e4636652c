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
from dataclasses import replace

import numpy as np

from .. import faults
from ..plan.chunks import CONVERT, COPY, EXTRACT, WRITE_SCALES, Chunk
from ..read.chunks import InputFiles
from .chunk_call import gather_scales, kernel_call, reads

DEFAULT_SLOTS = 4


class _Slot:
    """One chunk's buffers: an input per role (base, chat, cp; v1, v2, ... for more saved vectors), an
    output per output, and small buffers for FP8 scales (the inputs' scale rows, the outputs' group scales)."""

    def __init__(self, arena: np.ndarray, roles, outputs: int, buffer_bytes: int, scale_bytes: int):
        views, pos = [], 0
        for size in [buffer_bytes] * (len(roles) + outputs) + [scale_bytes] * (len(roles) + outputs):
            views.append(arena[pos : pos + size])
            pos += size
        n = len(roles)
        self.inputs = dict(zip(roles, views[:n]))
        self.outs = views[n : n + outputs]
        self.scales = dict(zip(roles, views[n + outputs : 2 * n + outputs]))
        self.out_scales = views[2 * n + outputs :]
        self.chunk: Chunk | None = None
        self.pending = 0  # writers still to write this slot
        self.result = None  # a device backend's Pending for this slot's chunk

    @staticmethod
    def nbytes(roles, outputs: int, buffer_bytes: int, scale_bytes: int) -> int:
        return (len(roles) + outputs) * (buffer_bytes + scale_bytes)


def _on_target(call, chunk: Chunk):
    """The call, writing straight into its target where the chunk's one output is memory the backend's kernel
    can write and offers itself (chatvec_fast.memory's tensors: a model's parameters, on the CPU or a GPU): no
    copy from the slot afterwards, nor a trip to a host slot and back on a GPU."""
    offer = getattr(chunk.files[0], "output_buffer", None)
    if offer is None or len(chunk.files) != 1 or call.out_scale is not None:
        return call
    view = offer(chunk.offsets[0], chunk.write_nbytes)
    return call if view is None else replace(call, outs=[view])


class Pipeline:
    """Runs chunks through read -> backend -> write with `slots` buffers in flight."""

    def __init__(self, backend, outputs, chunk_elements, slots=DEFAULT_SLOTS, itemsize=4, progress=None,
                 roles=("base", "chat", "cp"), scales=None, scale_bytes=0):  # fmt: skip
        """roles: the input buffers a slot needs; scales: input TensorInfo -> ScaleSpec of FP8 weights
        (plan.scales); scale_bytes: the most scale bytes any chunk reads or writes per operand."""
        self.backend = backend
        self.chunk_elements = chunk_elements
        self.progress = progress
        self.scales = scales or {}
        self.inexact = 0  # extract: elements the output dtype could not hold exactly
        buffer_bytes = chunk_elements * itemsize  # itemsize: the widest dtype of the plan
        self._async = hasattr(backend, "submit")  # a device backend: submit returns before the results land
        if hasattr(backend, "configure"):
            backend.configure(buffer_bytes, outputs)
        # One arena: numpy asks for transparent huge pages on big allocations,
        # and first-touching fresh 4 KiB pages runs at ~0.4 GB/s here.
        scale_bytes = -(-scale_bytes // 64) * 64  # keep every buffer 64-byte aligned
        per_slot = _Slot.nbytes(roles, outputs, buffer_bytes, scale_bytes)
        nbytes = slots * per_slot
        arena = backend.allocate_host(nbytes) if hasattr(backend, "allocate_host") else np.empty(nbytes, np.uint8)
        self._free: queue.Queue = queue.Queue()
        for i in range(slots):
            self._free.put(_Slot(arena[i * per_slot : (i + 1) * per_slot], roles, outputs, buffer_bytes, scale_bytes))
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
        if chunk.kind == COPY:
            self.inputs.read(chunk.segment.source, chunk.first, slot.outs[0][: chunk.count])
            return
        if chunk.kind == WRITE_SCALES:  # nothing to read: the weight's chunks filled the sink
            return
        todo = reads(chunk, slot, self.scales)
        if self._read_pool is None or len(todo) == 1:
            for args in todo:
                self.inputs.read(*args)
        else:  # the inputs are separate files: read them side by side (storage queue depth, copy cores)
            for future in [self._read_pool.submit(self.inputs.read, *args) for args in todo]:
                future.result()

    def _compute(self, slot: _Slot):
        faults.check("compute")
        chunk = slot.chunk
        if chunk.kind in (COPY, WRITE_SCALES):
            return
        call = _on_target(kernel_call(chunk, slot, self.scales), chunk)
        if self._async:
            slot.result = self.backend.submit(call)  # the writers wait on it
            return
        count = self.backend.compute(call)
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
                if chunk.kind == WRITE_SCALES:
                    chunk.files[k].write(chunk.sink[k], chunk.offsets[k])
                else:
                    if chunk.sink is not None:  # an FP8 output: its group scales go to the weight's sink
                        gather_scales(chunk, slot, k)
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
