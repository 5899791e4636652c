"""The streaming engine: read -> compute -> write, overlapped, in fixed buffers.

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
from dataclasses import dataclass

import numpy as np

from . import faults
from .dtypes import itemsize, nbytes
from .errors import InputError
from .planner import Segment, TensorPlan
from .safetensors_header import TensorInfo
from .writer import ShardFile

# 1M elements per chunk (2 MiB per bf16 input): big enough that the Python
# hand-offs (~30 us a chunk) are noise, small enough that the slots
# (4 x (3 + K) x 4 MiB for models up to f32) stay RSS-friendly.
DEFAULT_CHUNK_ELEMENTS = int(os.environ.get("CHATVEC_CHUNK_ELEMENTS", 1 << 20))  # the variable: for tests
DEFAULT_SLOTS = 4

_MERGE, _EXTRACT, _CONVERT, _COPY = "merge", "extract", "convert", "copy"


@dataclass
class _Chunk:
    kind: str
    tensor: TensorPlan
    segment: Segment
    first: int  # offset into the segment: elements (merge, extract, convert) or bytes (copy)
    count: int  # elements, or bytes for a copy
    files: list[ShardFile]  # one per output
    offsets: list[int]  # absolute byte offset of this chunk in each output file
    read_nbytes: int = 0
    write_nbytes: int = 0  # per output

    @property
    def element(self) -> int:
        """First element of the chunk in the tensor's element numbering (merge, extract)."""
        return self.segment.start + self.first


class _Slot:
    def __init__(self, arena: np.ndarray, index: int, buffer_bytes: int, outputs: int):
        views = [arena[(index * (3 + outputs) + j) * buffer_bytes :][:buffer_bytes] for j in range(3 + outputs)]
        self.base, self.chat, self.cp = views[:3]
        self.outs = views[3:]
        self.chunk: _Chunk | None = None
        self.pending = 0  # writers still to write this slot
        self.result = None  # a device backend's Pending for this slot's chunk


def plan_chunks(tensors_by_shard, files_by_output, tensor_offsets, chunk_elements, buffer_itemsize=8):
    """Yields the chunks of every tensor segment, shard by shard, in file order.

    tensors_by_shard[s] lists shard s's TensorPlans; files_by_output[k][s] is
    output k's ShardFile for shard s; tensor_offsets[k][s][i] is the absolute
    offset of tensor i of shard s in output k. Copies move up to
    chunk_elements * buffer_itemsize bytes a chunk (one slot buffer).
    """
    outputs = range(len(files_by_output))
    chunk_bytes = chunk_elements * buffer_itemsize
    for s, tensors in enumerate(tensors_by_shard):
        files = [files_by_output[k][s] for k in outputs]
        for i, t in enumerate(tensors):
            starts = [tensor_offsets[k][s][i] for k in outputs]
            for seg in t.segments:
                if seg.kind == "copy" and seg.source.dtype == t.out_dtype:  # bytes as they are
                    src = nbytes(t.out_dtype, seg.source_start)
                    dst = nbytes(t.out_dtype, seg.start)
                    total = nbytes(t.out_dtype, seg.count)
                    for first in range(0, total, chunk_bytes):
                        n = min(chunk_bytes, total - first)
                        yield _Chunk(_COPY, t, seg, src + first, n, files, [o + dst + first for o in starts], n, n)
                    continue
                kind = _CONVERT if seg.kind == "copy" else seg.kind
                out_size = itemsize(t.out_dtype)
                in_size = _input_itemsize(t, seg)
                for first in range(0, seg.count, chunk_elements):
                    n = min(chunk_elements, seg.count - first)
                    offsets = [o + (seg.start + first) * out_size for o in starts]
                    yield _Chunk(kind, t, seg, first, n, files, offsets, n * in_size, n * out_size)


def _input_itemsize(t: TensorPlan, seg: Segment) -> int:
    if seg.kind == "copy":
        return itemsize(seg.source.dtype)
    inputs = (t.base, t.chat, t.cp if seg.kind == "merge" else None)
    return sum(itemsize(x.dtype) for x in inputs if x is not None)


class _InputFiles:
    """Open input files, read with preadv; detects files that change while we read them."""

    def __init__(self):
        self.fds: dict[str, int] = {}
        self.stamps: dict[str, tuple[int, int]] = {}

    def fd(self, path: str) -> int:
        fd = self.fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
            st = os.fstat(fd)
            self.fds[path], self.stamps[path] = fd, (st.st_size, st.st_mtime_ns)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return fd

    def read(self, info: TensorInfo, first_byte: int, buf: np.ndarray):
        """Fills buf (all of it) from tensor `info` starting at its byte `first_byte`."""
        fd = self.fd(info.path)
        view = memoryview(buf)
        done, offset = 0, info.offset + first_byte
        while done < len(view):
            try:
                faults.check("read")
                n = os.preadv(fd, [view[done:]], offset + done)
            except OSError as exc:
                raise InputError(f"{info.path}: reading tensor {info.name!r} failed: {exc.strerror}") from exc
            if n == 0:
                raise InputError(
                    f"{info.path}: ends before the data of tensor {info.name!r} (byte {offset + done}); "
                    "the file was truncated after its header was read"
                )
            done += n

    def check_unchanged(self):
        for path, fd in self.fds.items():
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != self.stamps[path]:
                raise InputError(
                    f"{path}: changed while it was being read (size {self.stamps[path][0]} -> {st.st_size}); "
                    "the output would mix old and new data, so it was discarded. Run again once the file is stable"
                )

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class Pipeline:
    """Runs chunks through read -> backend -> write with `slots` buffers in flight."""

    def __init__(
        self, backend, outputs, chunk_elements=DEFAULT_CHUNK_ELEMENTS, slots=DEFAULT_SLOTS, itemsize=4, progress=None
    ):
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
        # CHATVEC_PARALLEL_READS=1 turns it off.
        parallel = os.environ.get("CHATVEC_PARALLEL_READS", "3") != "1"
        self._read_pool = ThreadPoolExecutor(3, thread_name_prefix="chatvec-read") if parallel else None
        self._to_write: list[queue.Queue] = [queue.Queue() for _ in range(outputs)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self.inputs = _InputFiles()

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

    def _read_chunk(self, chunk: _Chunk, slot: _Slot):
        t, n, seg = chunk.tensor, chunk.count, chunk.segment
        if chunk.kind == _COPY:
            self.inputs.read(seg.source, chunk.first, slot.outs[0][:n])
            return
        if chunk.kind == _CONVERT:
            src = seg.source
            self.inputs.read(
                src, (seg.source_start + chunk.first) * itemsize(src.dtype), slot.cp[: n * itemsize(src.dtype)]
            )
            return
        e = chunk.element
        reads = [(info, e * itemsize(info.dtype), buf[: n * itemsize(info.dtype)])
                 for info, buf in ((t.cp if chunk.kind == _MERGE else None, slot.cp), (t.chat, slot.chat),
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
        if chunk.kind == _COPY:
            return
        t, n = chunk.tensor, chunk.count
        out_bytes = n * itemsize(t.out_dtype)
        outs = [o[:out_bytes] for o in slot.outs]
        b = c = p = None
        if chunk.kind == _CONVERT:
            p = (slot.cp, chunk.segment.source.dtype)
            outs = outs[:1]  # the same values go to every output
        else:
            c = (slot.chat, t.chat.dtype)
            b = (slot.base, t.base.dtype) if t.base is not None else None
            p = (slot.cp, t.cp.dtype) if chunk.kind == _MERGE else None
        none = (None, None)
        args = (*(b or none), *(c or none), *(p or none), n, t.alphas[: len(outs)], outs, t.out_dtype)
        if self._async:
            slot.result = self.backend.submit(*args)  # the writers wait on it
            return
        count = self.backend.merge(*args)
        if chunk.kind == _EXTRACT:
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
                    if k == 0 and chunk.kind == _EXTRACT:
                        self.inexact += count
                        chunk.files[0].inexact += count
                shared = chunk.kind in (_COPY, _CONVERT)  # one result for every output
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
