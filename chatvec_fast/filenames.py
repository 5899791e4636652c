"""Every file name chatvec-fast reads by convention or writes, in one place.

Readers (read/), writers (write/), verify and the CLI's hints all take names from here, so a name
can change in one line and no stage has to know another stage's naming.
"""

from __future__ import annotations

import re

# Hugging Face model directories.
SINGLE_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
BIN_SINGLE_NAME = "pytorch_model.bin"  # PyTorch's format (transformers 4 and earlier)
BIN_INDEX_NAME = "pytorch_model.bin.index.json"
SHARD_NAME = re.compile(r"(?P<prefix>.+)-(?P<index>\d+)-of-(?P<count>\d+)\.(?P<ext>safetensors|bin)")
CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
# A tokenizer loads only with one of these (a tokenizer_config.json alone does not).
VOCABULARY_FILES = (TOKENIZER_JSON, "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "*.tiktoken")
WEIGHT_SUFFIXES = (".safetensors", ".bin")  # files a checkpoint directory's weights may be in
INDEX_SUFFIX = ".index.json"
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
# The model's own files, which must match its weights: config, generation config, processors, and custom
# modeling code for trust_remote_code models. An output always takes cp's.
CONFIG_PATTERNS = ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json", "*.py")
# The tokenizer (SentencePiece, BPE, WordPiece, tiktoken) and its chat templates.
TOKENIZER_PATTERNS = (
    "tokenizer*",
    SPECIAL_TOKENS_MAP,
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "*.tiktoken",
    "chat_template*",
)
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.index.json")
# What a directory may hold and still be a model that --overwrite may replace (anything else is the user's).
MODEL_FILE_PATTERNS = (
    *WEIGHT_PATTERNS,
    *CONFIG_PATTERNS,
    *TOKENIZER_PATTERNS,
    "README.md",  # CARD_NAME
    "LICENSE*",
    ".gitattributes",
)

# What a run adds to its output.
REPORT_NAME = "chatvec_report.json"
VECTOR_CHAT_DIR = "chat"  # a saved vector's copy of chat's tokenizer files, for apply
CARD_NAME = "README.md"  # the model card (Hugging Face format)
CP_CARD_NAME = "README.cp.md"  # cp's own card, kept beside ours


def shard_name(index: int, count: int) -> str:
    """model-00002-of-00005.safetensors (1-based index), as save_pretrained names shards."""
    return f"model-{index:05d}-of-{count:05d}.safetensors"
