"""The non-weight files of a model directory that the output takes from cp."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil

from .dtypes import TORCH_NAMES

# Config, generation config, tokenizer (SentencePiece, BPE, tiktoken), chat
# templates, processors, and custom modeling code for trust_remote_code models.
AUX_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.tiktoken",
    "chat_template*",
    "preprocessor_config.json",
    "processor_config.json",
    "*.py",
)


def aux_files(model_dir: str) -> list[str]:
    """Names of the files in model_dir to carry into the output."""
    if not os.path.isdir(model_dir):
        return []
    names = []
    for name in sorted(os.listdir(model_dir)):
        if os.path.isfile(os.path.join(model_dir, name)) and any(fnmatch.fnmatch(name, p) for p in AUX_PATTERNS):
            names.append(name)
    return names


def copy_aux_files(model_dir: str, dest: str, out_dtype: str | None) -> list[str]:
    """Copies cp's config and tokenizer files; with --dtype, config.json's dtype follows the output."""
    copied = []
    for name in aux_files(model_dir):
        src, dst = os.path.join(model_dir, name), os.path.join(dest, name)
        if name == "config.json" and out_dtype is not None:
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
