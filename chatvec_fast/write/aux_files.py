"""The output's non-weight files: cp's config and tokenizer files, copied, then edited as the run chose.

The reader (read/model_files.py) decides what to carry and what to change; this module only writes.
"""

from __future__ import annotations

import json
import os
import shutil

from ..dtypes import TORCH_NAMES
from ..filenames import CHAT_TEMPLATE_FILES, CONFIG_NAME, GENERATION_CONFIG_NAME, TOKENIZER_CONFIG
from .durable import write_json


def copy_aux_files(model_dir: str, names: list[str], dest: str, out_dtype: str | None) -> list[str]:
    """Copies model_dir's files `names` into dest; with --dtype, config.json's dtype follows the output."""
    copied = []
    for name in names:
        src, dst = os.path.join(model_dir, name), os.path.join(dest, name)
        if name == CONFIG_NAME and out_dtype is not None:
            with open(src, encoding="utf-8") as f:
                config = json.load(f)
            for key in ("torch_dtype", "dtype"):
                if key in config or key == "torch_dtype":
                    config[key] = TORCH_NAMES[out_dtype]
            with open(dst, "w", encoding="utf-8") as f:
                json.dump(config, f, indent=2, ensure_ascii=False)
                f.write("\n")
        else:
            shutil.copyfile(src, dst)
        with open(dst, "rb") as f:
            os.fsync(f.fileno())
        copied.append(name)
    return copied


def set_chat_template(out_dir: str, template, found_in: str, eos, eos_id: int | None, eos_reason: str | None) -> dict:
    """Puts a chat template (and, given eos_id, its eos token) into the staged tokenizer files.

    template: a string or a list of named templates. eos: the eos entry to write (a string or an
    AddedToken dict), or None to keep cp's. eos_id: its id in the output's vocabulary, or None with
    eos_reason saying why cp's eos stays. Returns what was done, for the report.
    """
    done: dict = {"from": "chat", "found_in": found_in}
    config_path = os.path.join(out_dir, TOKENIZER_CONFIG)
    config = _read(config_path)
    config["chat_template"] = template
    for name in CHAT_TEMPLATE_FILES:  # cp's own template files would compete with the new one
        stale = os.path.join(out_dir, name)
        if os.path.isfile(stale):
            os.unlink(stale)
            done.setdefault("removed", []).append(name)
    if eos is not None:
        text = eos if isinstance(eos, str) else eos.get("content")
        if eos_id is not None:
            config["eos_token"] = eos
            done["eos_token"] = {"token": text, "id": eos_id}
            _set_generation_eos(out_dir, eos_id, done)
        else:
            done["eos_token"] = {"token": text, "kept_cp": True, "reason": eos_reason}
    write_json(config_path, config)
    return done


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _set_generation_eos(out_dir: str, eos_id: int, done: dict):
    path = os.path.join(out_dir, GENERATION_CONFIG_NAME)
    if not os.path.isfile(path):
        return
    config = _read(path)
    current = config.get("eos_token_id")
    ids = current if isinstance(current, list) else ([current] if current is not None else [])
    if eos_id not in ids:
        config["eos_token_id"] = [*ids, eos_id] if ids else eos_id
        write_json(path, config)
        done["generation_eos_token_id"] = config["eos_token_id"]
