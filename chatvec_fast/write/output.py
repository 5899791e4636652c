"""One output directory, from the first shard byte to the rename: a context manager.

    with ModelOutput("out", inputs) as out:
        f = out.shard_file("model.safetensors", entries, metadata)   # stream bytes into f.write(...)
        ...
        out.finish(files, index, report, aux)   # index, config/tokenizer files, chatvec_report.json
        out.commit()                           # fsync + rename; without it, exit leaves no output

It owns everything the output holds besides tensor bytes, so the finished directory is assembled in
one place, in the staging directory, and appears at its final path in one rename.
"""

from __future__ import annotations

import os

from ..errors import OutputError
from ..filenames import DONE_DIR, INDEX_NAME, PLAN_FILE, REPORT_NAME, STAGING_MARKER
from .durable import write_json, writing
from .shard import CompletedFile, ShardFile, build_header
from .staging import OutputDirectory, sha256_file

_INTERNAL = {DONE_DIR, PLAN_FILE, STAGING_MARKER}  # the staging directory's own records, never in the output

# A patched header value (see filenames.INEXACT_KEY) is written as this placeholder first.
PLACEHOLDER = "0" * 20


class ModelOutput:
    def __init__(self, path: str, inputs: dict[str, str], overwrite=False, resume=False, join=False):
        """join=True: another process (torchrun's rank 0) owns the staging directory; only write into it.
        resume=True: keep a staging directory left by an interrupted run of the same command."""
        self.staging = OutputDirectory(path, inputs, overwrite, join=join, resume=resume)
        self._shards: set[str] = set()

    def __enter__(self) -> ModelOutput:
        self.staging.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        return self.staging.__exit__(exc_type, exc, tb)

    @property
    def path(self) -> str:
        """The staging directory being filled."""
        return self.staging.path

    def claim(self, fingerprint: str):
        self.staging.claim(fingerprint)

    def shard_file(self, filename: str, entries, metadata: dict, mine: bool = True, patch_key: str | None = None):
        """The writer of one shard, header in place: a ShardFile, or a CompletedFile when an earlier run
        finished it intact (--resume). entries: (name, dtype, shape, nbytes) in file order; patch_key: a
        metadata key whose value is only known at the end (see patch). The result's tensor_offsets gives
        each tensor's absolute offset."""
        if filename in self._shards or filename in _INTERNAL | {INDEX_NAME, REPORT_NAME}:
            raise OutputError(f"{filename}: two shards of one output share a name; this is a bug, please report it")
        self._shards.add(filename)
        metadata = dict(metadata)
        if patch_key is not None:
            metadata[patch_key] = PLACEHOLDER
        header, offsets = build_header(entries, metadata)
        size = len(header) + sum(e[3] for e in entries)
        path = self.staging.file(filename)
        done = self.staging.completed(filename, size) if mine else None
        if done:
            f = CompletedFile(path, size, done["sha256"], done.get("inexact", 0))
        else:
            f = ShardFile(path, header, size)
            f.on_complete = lambda g: self.staging.mark_done(filename, g.size, g.sha256, g.inexact)
        f.tensor_offsets = offsets
        return f

    def recorded(self, filename: str) -> dict | None:
        """The record of a completed shard file (by any rank)."""
        return self.staging.recorded(filename)

    def finish(self, files, index: dict | None, report: dict, aux=None, patch: tuple[str, int] | None = None) -> dict:
        """Completes the staged output: patches headers, writes the index (None: a single file needs none),
        calls aux(staging path) for the config and tokenizer files (it returns report entries), and writes
        chatvec_report.json listing every file of the output with its size and sha256. Returns the report."""
        if patch is not None:
            key, value = patch
            for f in files:
                with writing(f.path, "patch"):
                    changed = _patch_value(f.path, key, value)
                if changed:  # the header changed, and with it the checksum
                    name = os.path.basename(f.path)
                    inexact = self.staging.recorded(name).get("inexact", 0)
                    self.staging.mark_done(name, f.size, sha256_file(f.path), inexact)
        if index is not None:
            write_json(self._new_file(INDEX_NAME), index, point="index")
        report = dict(report)
        if aux is not None:
            report.update(aux(self.staging.path))
        if patch is not None:
            report["inexact_elements"] = patch[1]
        report["files"] = self._file_records(files)
        write_json(self._new_file(REPORT_NAME), report, point="report")
        return report

    def _new_file(self, name: str) -> str:
        path = self.staging.file(name)
        if os.path.lexists(path):
            raise OutputError(f"{path}: written twice in one output; this is a bug, please report it")
        return path

    def _file_records(self, shard_files) -> dict:
        """{name: {"bytes", "sha256"}} for every file of the output (sub-folders as 'chat/x'), the report
        itself excepted; shards from their records, the small files hashed now."""
        shards = {os.path.basename(f.path): f.size for f in shard_files}
        records = {}
        for root, dirs, names in os.walk(self.staging.path):
            dirs[:] = sorted(d for d in dirs if d not in _INTERNAL)
            for name in sorted(names):
                rel = os.path.relpath(os.path.join(root, name), self.staging.path).replace(os.sep, "/")
                if rel in _INTERNAL or rel == REPORT_NAME:
                    continue
                path = os.path.join(root, name)
                if rel in shards:
                    records[rel] = {"bytes": shards[rel], "sha256": self.staging.recorded(rel)["sha256"]}
                else:
                    records[rel] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
        return dict(sorted(records.items()))

    def commit(self):
        self.staging.commit()


def _patch_value(path: str, key: str, count: int) -> bool:
    """Replaces the placeholder digits of `key` in a finished shard's header by `count` (same length).
    Returns False when the header already holds them (a resumed run patched it before)."""
    old = f'"{key}":"{PLACEHOLDER}"'.encode()
    new = f'"{key}":"{count:020d}"'.encode()
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        at = header.find(old)
        if at < 0:
            if new in header:
                return False
            raise OutputError(f"{path}: header lacks the {key} placeholder; this is a bug")
        f.seek(8 + at)
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    return True
