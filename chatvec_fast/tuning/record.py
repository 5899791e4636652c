"""What results.json records about a run besides its figures: the options, the inputs' identities, the package
versions; and the check that lets --resume continue only the same run.

The inputs are identified as the merge's report and resume fingerprint identify them (report.py): each
checkpoint by its path, its Hugging Face Hub id, revision and commit when it came from the Hub, and each weight
file by its size and modification time; the evaluation's files (small) by their sha256, as are the merged
model's config and tokenizer files the tune wrote.
"""

from __future__ import annotations

import hashlib
import os
import platform

from ..errors import OutputError
from ..settings import Settings

# Options that change no figure (how the run goes, --write-best's files, the rule applied to the figures):
# --resume may change them.
FREE = ("resume", "progress", "dry_run", "overwrite", "threads", "write_best", "chunk_elements", "devices",
        "gpu_memory", "max_shard_size", "model_card", "pick", "max_bpb_increase")  # fmt: skip
PACKAGES = ("torch", "transformers", "tokenizers", "lingua-language-detector", "py3langid", "numpy", "matplotlib")


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def options_record(settings: Settings) -> dict:
    """Every tune option's value (JSON: tuples as lists)."""
    return {f.name: _plain(getattr(settings, f.name)) for f in Settings.for_command("tune")}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def inputs_record(plan, inputs: dict[str, str], sources: dict, paths: dict, model_dir: str) -> dict:
    """base, chat and cp as the merge identifies them; the evaluation files and the model files by sha256."""
    record = {}
    for role, ckpt in plan.inputs.items():
        files = {}
        for f in ckpt.files:
            identity = f.identity
            files[os.path.relpath(f.path, ckpt.directory)] = (
                {"bytes": identity.size, "modified_ns": identity.mtime_ns} if identity else None
            )
        record[role] = {"path": os.path.abspath(inputs[role]), **({"source": sources[role]} if role in sources else {}),
                        "files": files}  # fmt: skip
    for key, path in paths.items():
        if path is not None:
            record[key] = {"path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    record["model_files"] = {n: sha256_file(os.path.join(model_dir, n)) for n in sorted(os.listdir(model_dir))}
    return record


def versions() -> dict:
    """chatvec-fast, Python and the packages the evaluation runs on (None: not installed)."""
    from importlib import metadata

    from .. import __version__

    found = {"chatvec-fast": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _differences(old, new, where: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _differences(old.get(key), new.get(key), f"{where}.{key}" if where else key)
        return found
    return [] if old == new else [f"{where}: {old!r} then, {new!r} now"]


def check_resumable(old: dict, new: dict, out: str):
    """Refuses to continue a results.json made by other options, alphas or inputs, naming what differs."""
    measured = lambda doc: {k: v for k, v in doc.get("options", {}).items() if k not in FREE}  # noqa: E731
    differences = (
        _differences(measured(old), measured(new), "options")
        + _differences(old.get("alphas"), new["alphas"], "alphas")
        + _differences(old.get("evaluation"), new["evaluation"], "evaluation")
        + _differences(old.get("inputs"), new["inputs"], "inputs")
    )
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise OutputError(f"--resume: {out} holds a tune with other options or inputs ({shown}); run it again "
                          "with the same ones, or start over in a new --out")  # fmt: skip
