"""A job: what one command computes, declared once and validated before any work.

`Settings` holds every keyword option of the Python API and the CLI, with its default and its meaning
(the API's docstrings are built from it). `Job` ties settings to a command's inputs, outputs and alphas.
`MergeOptions` is the part the planner needs, recorded in every output's metadata and report, from
which `Job.from_report` rebuilds a job for `verify`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace

from .alphas import alpha_dirname, normalize_alphas, parse_alpha_for
from .dtypes import parse_user_dtype
from .units import parse_size

VOCAB_POLICIES = ("shared-rows", "skip", "error")
ADDED_TOKEN_POLICIES = ("append", "drop", "error")
TOKEN_SOURCES = ("cp", "chat")
TOKENIZER_SOURCES = ("cp", "chat", "base")
COMMANDS = ("merge", "sweep", "extract", "apply")

# 1M elements per chunk (2 MiB per bf16 input): big enough that the Python hand-offs (~30 us a chunk) are
# noise, small enough that the slots (4 x (3 + K) x 4 MiB for models up to f32) stay RSS-friendly.
DEFAULT_CHUNK_ELEMENTS = int(os.environ.get("CHATVEC_CHUNK_ELEMENTS", 1 << 20))  # the variable: for tests


def _option(default, doc: str, default_factory=None):
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """The keyword options of merge, sweep, extract and apply (each takes the ones that apply to it)."""

    backend: str = _option("auto", "kernel: auto (triton on a CUDA machine, else native), native, triton, "
                           "torch (the float64 reference) or torch-fp32 (float32 math, not exact)")  # fmt: skip
    threads: int | None = _option(None, "CPU kernel threads (default: every core the process may use)")
    skip: tuple[str, ...] = _option((), "regexes (re.search) of tensors to copy from cp unchanged")
    vocab_mismatch: str = _option("shared-rows", "cp with more vocabulary rows than base/chat: merge the shared "
                                  "rows and keep cp's extra rows (shared-rows), copy those tensors (skip), or stop "
                                  "(error)")  # fmt: skip
    max_shard_size: str | int | None = _option(None, "re-shard the output, e.g. '5GB' or '2GiB' (GB = 10^9); "
                                               "default: the same shards as cp")  # fmt: skip
    dtype: str | None = _option(None, "output dtype of float tensors: bf16, f16 or f32 (default: cp's, tensor by "
                                "tensor; extract: f32, or f64 to keep every difference exactly)")  # fmt: skip
    overwrite: bool = _option(False, "replace a non-empty output directory")
    resume: bool = _option(False, "continue an interrupted run of the same command, keeping completed shards "
                           "whose checksums still match")  # fmt: skip
    dry_run: bool = _option(False, "plan only: report what would be written, write nothing")
    progress: bool = _option(False, "a progress line on stderr")
    alpha_for: tuple = _option((), "per-tensor alphas, 'REGEX=VALUE' strings or (regex, value) pairs; the first "
                               "match sets a tensor's alpha")  # fmt: skip
    added_tokens: str = _option("append", "a chat model with tokens its base lacks (ChatML tokens added to a "
                                "32,000-row model): append chat's rows and tokens to cp where cp lacks them "
                                "(append), leave them out (drop), or stop (error)")  # fmt: skip
    special_tokens_from: str = _option("cp", "chat: the rows of the special tokens in the vocabulary tensors come "
                                       "from the chat model, matched by token string")  # fmt: skip
    chat_template_from: str | None = _option(None, "whose chat template and eos the output's tokenizer gets: chat "
                                             "or cp (default: chat's when it has one)")  # fmt: skip
    tokenizer_from: str | None = _option(None, "whose tokenizer files the output gets: cp, chat or base (default: "
                                         "cp's; a cp without tokenizer files gives an output without them, and a "
                                         "warning)")  # fmt: skip
    revision: str | None = _option(None, "the revision (branch, tag or commit) of every Hugging Face Hub id given "
                                   "without one ('org/name@rev' sets an input's own)")  # fmt: skip
    model_card: bool = _option(True, "write a README.md model card (Hugging Face format) into the output; cp's own "
                               "card is kept as README.cp.md")  # fmt: skip
    allow_unmatched: bool = _option(False, "accept --skip and --alpha-for rules that match no tensor (by default "
                                    "they are errors: a rule that does nothing is usually a typo)")  # fmt: skip
    chunk_elements: int = _option(DEFAULT_CHUNK_ELEMENTS, "elements per pipeline chunk (tests use small values)")
    devices: str | tuple[str, ...] | None = _option(None, "triton: GPUs that share the output shards, e.g. "
                                                    "'cuda:0,cuda:1'")  # fmt: skip
    gpu_memory: str | int | None = _option(None, "triton: device memory for buffers per GPU (default 2GiB)")

    @classmethod
    def documentation(cls, names) -> str:
        """The 'Options' section of an API docstring, for the given option names."""
        docs = {f.name: f.metadata["doc"] for f in fields(cls)}
        return "\n".join(f"    {name}: {docs[name]}" for name in names)


def option_defaults() -> dict:
    return {f.name: f.default for f in fields(Settings)}


@dataclass(frozen=True)
class MergeOptions:
    """What the planner needs, as the output records it."""

    alphas: tuple[float, ...] = (1.0,)
    skip: tuple[str, ...] = ()  # regexes (re.search) of tensors to copy from cp
    vocab_mismatch: str = "shared-rows"
    dtype: str | None = None  # output dtype for float tensors; None keeps cp's (F32 for extract)
    max_shard_size: int | None = None  # bytes; None mirrors the input's sharding
    alpha_for: tuple[tuple[str, float], ...] = ()  # (regex, alpha): first match sets the tensor's alpha
    # Rows copied from the chat model into every vocabulary tensor: (token, chat row, cp row).
    special_rows: tuple[tuple[str, int, int], ...] = ()
    allow_unmatched: bool = False  # --skip / --alpha-for rules that change nothing are errors unless set
    added_tokens: str = "append"  # chat's rows beyond base's: append, drop or error
    appended: tuple = ()  # the plan's AddedTokens (found through the tokenizers) with --added-tokens append

    def __post_init__(self):
        if not self.alphas:
            raise ValueError("need at least one alpha")
        if self.added_tokens not in ADDED_TOKEN_POLICIES:
            raise ValueError(f"added_tokens must be one of {ADDED_TOKEN_POLICIES}, got {self.added_tokens!r}")
        if self.vocab_mismatch not in VOCAB_POLICIES:
            raise ValueError(f"vocab_mismatch must be one of {VOCAB_POLICIES}, got {self.vocab_mismatch!r}")
        if self.max_shard_size is not None and self.max_shard_size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {self.max_shard_size}")
        for pattern in (*self.skip, *(p for p, _ in self.alpha_for)):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None

    def record(self) -> dict:
        """The options as chatvec_report.json and the shard metadata record them."""
        return {
            "skip": list(self.skip),
            "vocab_mismatch": self.vocab_mismatch,
            "dtype": self.dtype,
            "max_shard_size": self.max_shard_size,
            "alpha_for": [[p, a] for p, a in self.alpha_for],
            "added_tokens": self.added_tokens,
        }


@dataclass(frozen=True)
class Job:
    """One command: its inputs by role (base/chat/cp, vector/cp, or base/chat), its output directories (one
    per alpha), and its settings."""

    command: str
    inputs: dict[str, str]
    outputs: tuple[str, ...]
    alphas: tuple[float, ...]
    settings: Settings
    special_rows: tuple[tuple[str, int, int], ...] | None = None  # None: found through the tokenizers
    # Inputs given as Hugging Face Hub ids, once resolved to local snapshots: role -> {"id", "revision", "commit"}
    sources: dict = field(default_factory=dict)
    given_inputs: dict = field(default_factory=dict)  # the inputs as given, before resolution (ids stay ids)

    @property
    def given(self) -> dict[str, str]:
        return self.given_inputs or self.inputs

    @classmethod
    def build(cls, command: str, inputs: dict[str, str], out: str, alphas, settings: Settings, *, sweep: bool):
        """Validates the alphas and options; sweep=True puts one output per alpha under out/alpha-A/."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
        values = normalize_alphas(alphas)
        if isinstance(values[0], tuple) and settings.alpha_for:
            raise ValueError("alpha_for sets one alpha per tensor, and apply with several vectors takes one per "
                             "vector; apply the vectors one at a time to give tensors their own alphas")  # fmt: skip
        outputs = tuple(os.path.join(out, alpha_dirname(a)) for a in values) if sweep else (out,)
        if settings.special_tokens_from not in TOKEN_SOURCES:
            raise ValueError(f"special_tokens_from must be 'cp' or 'chat', got {settings.special_tokens_from!r}")
        if settings.chat_template_from not in (None, *TOKEN_SOURCES):
            raise ValueError(f"chat_template_from must be 'cp' or 'chat', got {settings.chat_template_from!r}")
        if settings.tokenizer_from not in (None, *TOKENIZER_SOURCES):
            raise ValueError(f"tokenizer_from must be 'cp', 'chat' or 'base', got {settings.tokenizer_from!r}")
        if command == "extract" and settings.dtype and parse_user_dtype(settings.dtype) == "F8_E4M3":
            raise ValueError("extract --dtype fp8: a chat vector is stored in f32, f64, bf16 or f16")
        _check_count(settings.threads, "threads", allow_none=True)
        _check_count(settings.chunk_elements, "chunk_elements")
        job = cls(command, dict(inputs), outputs, tuple(values), settings)
        job.merge_options()  # validates the regexes, sizes and policies now, before any input is opened
        return job

    def merge_options(self, special_rows=(), appended=()) -> MergeOptions:
        s = self.settings
        dtype = s.dtype if s.dtype is not None else ("f32" if self.command == "extract" else None)
        return MergeOptions(
            alphas=self.alphas,
            skip=tuple(s.skip),
            vocab_mismatch=s.vocab_mismatch,
            dtype=parse_user_dtype(dtype) if dtype else None,
            max_shard_size=parse_size(s.max_shard_size),
            alpha_for=parse_alpha_for(s.alpha_for),
            special_rows=tuple(special_rows),
            allow_unmatched=s.allow_unmatched,
            added_tokens=s.added_tokens,
            appended=tuple(appended),
        )

    @classmethod
    def from_report(cls, report: dict, out: str) -> Job:
        """The job that wrote an output, from its chatvec_report.json (for verify)."""
        o = report["options"]
        command = report["command"]
        settings = replace(
            Settings(),
            skip=tuple(o["skip"]),
            vocab_mismatch=o["vocab_mismatch"],
            dtype=o["dtype"],
            max_shard_size=o["max_shard_size"],
            alpha_for=tuple((p, float(a)) for p, a in o["alpha_for"]),
            added_tokens=o.get("added_tokens", "append"),
            allow_unmatched=True,  # the run that wrote the output checked its rules
        )
        rows = tuple((r["token"], r["chat_row"], r["cp_row"]) for r in report.get("special_token_rows", []))
        alpha = report.get("alpha", 1.0)
        alphas = (tuple(float(a) for a in alpha) if isinstance(alpha, list) else float(alpha),)
        return cls(command, dict(report["inputs"]), (out,), alphas, settings, special_rows=rows)


def vector_roles(count: int) -> list[str]:
    """The input roles of apply's vectors: vector, vector2, vector3, ... (the report's inputs use them)."""
    return ["vector", *(f"vector{m}" for m in range(2, count + 1))]


def _check_count(value, what: str, allow_none: bool = False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} {value!r}: expected a whole number of at least 1")
