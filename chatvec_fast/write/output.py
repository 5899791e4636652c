"""One output directory, owned from its path checks to the rename: a context manager.

    check_outputs(paths, inputs, overwrite, nbytes)       # before any work: paths, free space
    with ModelOutput("out", inputs) as out:
        out.claim(fingerprint)                             # --resume continues only the same command
        f = out.shard_file("model.safetensors", entries, metadata)   # stream bytes into f.write(...)
        ...
        out.finish(files, index, report, aux)   # index, config/tokenizer files, chatvec_report.json
        out.commit()                           # fsync + rename; without it, exit leaves no output

It owns everything the output holds besides tensor bytes (the staging directory, its lock and resume
records, the index, the report listing every file with its sha256, the other files), so the finished
directory is assembled in one place and appears at its final path in one rename. mergekit's
io/tensor_writer.py is the shape; staging, fsync, the atomic commit and resume are ours.
"""

from __future__ import annotations

import os
import shutil

from ..errors import OutputError
from ..filenames import INDEX_NAME, REPORT_NAME
from ..units import format_bytes
from .durable import write_json
from .names import INTERNAL
from .paths import check_output_path, read_report
from .records import sha256_file
from .shard import CompletedFile, ShardFile, build_header
from .staging import OutputDirectory

SPARE_BYTES = 1 << 20  # headers, index, report and small files: well under 1 MB for any model


def check_outputs(paths, inputs: dict[str, str], overwrite: bool, nbytes: int = 0):
    """Before any work: every path may be written (write/paths.py), no two outputs share one, and the disk
    has room for each (nbytes of tensor data, plus headers and small files)."""
    for path in paths:
        check_output_path(path, inputs, overwrite)
    if len({os.path.realpath(p) for p in paths}) != len(paths):
        raise OutputError("two outputs share a path; give each alpha its own directory")
    if nbytes:
        for path in paths:
            _check_free_space(os.path.dirname(os.path.abspath(path)), (nbytes + SPARE_BYTES) * len(paths))
            break  # a sweep's outputs share their parent: one check for all


def _check_free_space(directory: str, needed: int):
    probe = directory
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise OutputError(f"{directory}: the output needs {format_bytes(needed)} but only {format_bytes(free)} is "
                          "free there; free space or choose another --out")  # fmt: skip


def already_complete(out: str, fingerprint: str) -> bool:
    """Whether `out` is the finished output of a run with this fingerprint (--resume after the end): its
    report says so and every file it lists is there with its recorded size."""
    report = read_report(out)
    if not isinstance(report, dict) or report.get("fingerprint") != fingerprint:
        return False
    files = report.get("files")
    if not isinstance(files, dict):
        return False
    for name, record in files.items():
        path = os.path.join(out, name)
        if not os.path.isfile(path) or not isinstance(record, dict) or os.path.getsize(path) != record.get("bytes"):
            return False
    return True


class ModelOutput(OutputDirectory):
    """An output directory being written (OutputDirectory: the staging directory, its lock and commit)."""

    def __init__(self, path: str, inputs: dict[str, str], overwrite=False, resume=False, join=False):
        """join=True: another process (torchrun's rank 0) owns the staging directory; only write into it.
        resume=True: keep a staging directory left by an interrupted run of the same command."""
        super().__init__(path, inputs, overwrite, join=join, resume=resume)
        self._shards: set[str] = set()

    def claim(self, fingerprint: str):
        self.records.claim(fingerprint)

    def shard_file(self, filename: str, entries, metadata: dict, mine: bool = True):
        """The writer of one shard, header in place: a ShardFile, or a CompletedFile when an earlier run
        finished it intact (--resume). entries: (name, dtype, shape, nbytes) in file order. The result's
        tensor_offsets gives each tensor's absolute offset."""
        if filename in self._shards or filename in INTERNAL | {INDEX_NAME, REPORT_NAME}:
            raise OutputError(f"{filename}: two shards of one output share a name; this is a bug, please report it")
        self._shards.add(filename)
        header, offsets = build_header(entries, metadata)
        size = len(header) + sum(e[3] for e in entries)
        path = self.file(filename)
        done = self.records.completed(filename, size) if mine else None
        if done:
            f = CompletedFile(path, size, done["sha256"], done.get("inexact", 0))
        else:
            f = ShardFile(path, header, size)
            f.on_complete = lambda g: self.records.mark_done(filename, g.size, g.sha256, g.inexact)
        f.tensor_offsets = offsets
        return f

    def inexact(self, files) -> int:
        """A saved vector's count of elements its dtype rounded, over every shard (this run's, an earlier run's
        with --resume, any rank's)."""
        records = [self.records.recorded(os.path.basename(f.path)) for f in files]
        return sum(r.get("inexact", 0) for r in records if r)

    def finish(self, files, index: dict | None, report: dict, aux=None) -> dict:
        """Completes the staged output: writes the index (None: a single file needs none), calls aux(staging
        path) for the config and tokenizer files (it returns report entries), and writes chatvec_report.json
        listing every file of the output with its size and sha256. Returns the report."""
        if index is not None:
            write_json(self._new_file(INDEX_NAME), index, point="index")
        report = dict(report)
        if aux is not None:
            report.update(aux(self.path))
        report["files"] = self._file_records(files)
        write_json(self._new_file(REPORT_NAME), report, point="report")
        return report

    def _new_file(self, name: str) -> str:
        path = self.file(name)
        if os.path.lexists(path):
            raise OutputError(f"{path}: written twice in one output; this is a bug, please report it")
        return path

    def _file_records(self, shard_files) -> dict:
        """{name: {"bytes", "sha256"}} for every file of the output (sub-folders as 'chat/x'), the report
        itself excepted; shards from their records, the small files hashed now."""
        shards = {os.path.basename(f.path): f.size for f in shard_files}
        records = {}
        for root, dirs, names in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if d not in INTERNAL)
            for name in sorted(names):
                rel = os.path.relpath(os.path.join(root, name), self.path).replace(os.sep, "/")
                if rel in INTERNAL or rel == REPORT_NAME:
                    continue
                path = os.path.join(root, name)
                if rel in shards:
                    records[rel] = {"bytes": shards[rel], "sha256": self.records.recorded(rel)["sha256"]}
                else:
                    records[rel] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
        return dict(sorted(records.items()))
