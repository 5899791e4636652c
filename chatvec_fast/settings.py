"""Every option of the Python API and the command line, declared once.

`Settings` holds each keyword option with its default, its meaning, the commands that take it and its
command-line spelling. The API's signatures and docstrings (api.py), the argparse parser (cli/arguments.py),
the command line recorded in each model card and the checks of Job.build all read it from here.

    >>> Settings.describe("max_shard_size", "cli")   # how an error message names the option
    '--max-shard-size'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from .backends import NAMES as BACKEND_NAMES

COMMANDS = ("merge", "sweep", "extract", "apply", "tune")
# commands whose outputs are models (extract writes a vector; tune's --write-best is a merge)
MODEL_OUTPUTS = ("merge", "sweep", "apply", "tune")
MERGES = ("merge", "sweep", "tune")  # commands that read base, chat and cp
INSPECT = "inspect"  # reads the models and writes figures, not a model: it takes only the options that say so
VOCAB_POLICIES = ("shared-rows", "skip", "error")
ADDED_TOKEN_POLICIES = ("append", "drop", "error")
TOKEN_SOURCES = ("cp", "chat")
TOKENIZER_SOURCES = ("cp", "chat", "base")
OUTPUT_DTYPES = ("bf16", "f16", "f32", "fp8")
VECTOR_DTYPES = ("f32", "f64", "bf16", "f16")
# tune's recommendation rules (tuning/pick.py states and applies them)
PICK_RULES = ("fidelity-stops", "bits-per-byte", "fidelity", "answer")
LANGUAGE_IDS = ("lingua", "py3langid")  # tuning/language.py; docs/NOTES.md section 9 compares them
_TUNE = ("tune",)

# 1M elements per chunk (2 MiB per bf16 input): big enough that the Python hand-offs (~30 us a chunk) are
# noise, small enough that the slots (4 x (3 + K) x 4 MiB for models up to f32) stay RSS-friendly.
DEFAULT_CHUNK_ELEMENTS = 1 << 20
CHUNK_ELEMENTS_VARIABLE = "CHATVEC_CHUNK_ELEMENTS"  # read at each run (tests and benchmarks set it)


def _option(default, doc: str, *, commands=COMMANDS, cli: dict | None = None, flag: str | None = None,
            per_command: dict | None = None):  # fmt: skip
    """A Settings field. cli: argparse keyword arguments (None: the option is the API's only; "help" replaces
    doc on the command line, for a flag that turns the option off); flag: its command-line spelling when not
    --name-with-dashes; per_command: {command: {"default", "choices", "doc"}}."""
    meta = {"doc": doc, "commands": commands, "cli": cli, "flag": flag, "per_command": per_command or {}}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """The keyword options of merge, sweep, extract, apply and inspect (each takes the ones that apply to it)."""

    skip: tuple = _option((), "regexes (re.search) of tensors to copy from cp unchanged (repeatable)",
                          cli={"action": "append", "metavar": "REGEX"})  # fmt: skip
    allow_unmatched: bool = _option(
        False, "accept --skip and --alpha-for rules that change no tensor (by default such a rule is an error: it is "
        "usually a typo)", cli={"action": "store_true"})  # fmt: skip
    vocab_mismatch: str = _option(
        "shared-rows", "cp with more vocabulary rows than base and chat (an expanded vocabulary): merge the shared "
        "rows and keep cp's extra rows (shared-rows), copy those tensors from cp (skip), or stop (error)",
        commands=MODEL_OUTPUTS, cli={"choices": VOCAB_POLICIES})  # fmt: skip
    alpha_for: tuple = _option(
        (), "per-tensor alphas, 'REGEX=VALUE' (or (regex, value) pairs in Python); the first match sets a "
        "tensor's alpha, e.g. 'embed_tokens|lm_head=0'", commands=MODEL_OUTPUTS,
        cli={"action": "append", "metavar": "REGEX=VALUE"})  # fmt: skip
    dtype: str | None = _option(
        None, "output dtype of float tensors: bf16, f16, f32, or fp8 (an FP8 cp's weights stay FP8, re-quantized "
        "in cp's layout); default: cp's, tensor by tensor (FP8 weights come out bf16)", cli={"choices": OUTPUT_DTYPES},
        per_command={"extract": {"default": "f32", "choices": VECTOR_DTYPES,
                                 "doc": "the vector's storage: f32 (elements it rounds are counted and reported), f64 "
                                 "(always reproduces merge), bf16 or f16 (round most differences)"}})  # fmt: skip
    max_shard_size: str | int | None = _option(
        None, "re-shard the output, e.g. '5GB' or '2GiB' (GB = 10^9); default: the same shards as cp",
        cli={"metavar": "SIZE"},
        per_command={"tune": {"doc": "--write-best's shards, as merge's --max-shard-size"}})  # fmt: skip
    added_tokens: str = _option(
        "append", "a chat model with tokens its base lacks (ChatML's tokens added to a 32,000-row model): append "
        "chat's rows and tokens to cp where cp lacks them (append), leave them out (drop), or stop (error)",
        commands=MERGES, cli={"choices": ADDED_TOKEN_POLICIES})  # fmt: skip
    special_tokens_from: str = _option(
        "cp", "chat: the rows of the special tokens (bos, eos, pad, the chat template's tokens) in the vocabulary "
        "tensors come from the chat model, matched by token string (cp: leave them merged)",
        commands=MERGES, cli={"choices": TOKEN_SOURCES})  # fmt: skip
    chat_template_from: str | None = _option(
        None, "whose chat template and eos the output's tokenizer gets: chat or cp (default: chat's when it has "
        "one)", commands=MODEL_OUTPUTS, cli={"choices": TOKEN_SOURCES})  # fmt: skip
    tokenizer_from: str | None = _option(
        None, "whose tokenizer files the output gets: cp, chat or base (default: cp's; a cp without any gets none, "
        "with a warning)", commands=MODEL_OUTPUTS, cli={"choices": TOKENIZER_SOURCES})  # fmt: skip
    model_card: bool = _option(
        True, "write a README.md model card (Hugging Face format); cp's own card is kept as README.cp.md",
        commands=MODEL_OUTPUTS, flag="--no-model-card",
        cli={"action": "store_false", "help": "no README.md model card in the output"},
        per_command={"tune": {"doc": "a README.md model card in --write-best's output, as merge writes "
                              "it"}})  # fmt: skip
    revision: str | None = _option(
        None, "the revision (branch, tag or commit) of every Hugging Face Hub id given without one "
        "('org/name@rev' sets an input's own)", commands=(*COMMANDS, INSPECT), cli={"metavar": "REV"})  # fmt: skip
    overwrite: bool = _option(
        False, "replace an existing output: only a directory holding a model output (anything else in it is "
        "refused, listed)", cli={"action": "store_true"},
        per_command={"tune": {"doc": "replace an existing --write-best output, as merge's --overwrite (the tune's "
                              "own --out is never replaced: --resume continues it)"}})  # fmt: skip
    resume: bool = _option(
        False, "continue an interrupted run of the same command: completed shards whose checksums still match "
        "are kept", cli={"action": "store_true"},
        per_command={"tune": {"doc": "continue an interrupted tune in the same --out: the alphas it finished are "
                              "kept, when its options and inputs are the same (else an error says what "
                              "differs)"}})  # fmt: skip
    dry_run: bool = _option(False, "plan only: print what would be written, write nothing",
                            cli={"action": "store_true"},
                            per_command={"tune": {"doc": "check the inputs, options and evaluation files, print "
                                                  "the plan, write nothing"}})  # fmt: skip
    progress: bool = _option(False, "a progress line on stderr (the command line shows it unless --quiet)",
                             commands=(*COMMANDS, INSPECT), cli={"action": "store_false", "help": "no progress output"},
                             flag="--quiet")  # fmt: skip
    backend: str = _option(
        "auto", "kernel: auto (the native C++ kernel, on GPU machines too: file-to-file work is disk-bound and "
        "16+ native cores keep up with NVMe; see docs/PERFORMANCE.md; triton when --devices names GPUs), native, "
        "triton (on a GPU), cuda (the CUDA C++ kernel, on a GPU; by name only), torch (the float64 reference: "
        "exact, slow) or torch-fp32 (float32 math, not exact)",
        cli={"choices": BACKEND_NAMES})  # fmt: skip
    threads: int | None = _option(
        None, "CPU kernel threads (default: every core the process may use)", commands=(*COMMANDS, INSPECT),
        cli={"type": int, "metavar": "N"}, per_command={INSPECT: {
            "doc": "tensors read and summed at once, each by its own thread with its own chunk buffers (6 MB a "
                   "thread for a bf16 triple; default: every core, at most 8)"}})  # fmt: skip
    devices: str | tuple | None = _option(
        None, "GPUs that share the output shards, e.g. 'cuda:0,cuda:1' (a device backend: triton or cuda)",
        cli={"metavar": "LIST"},
        per_command={"tune": {"doc": "GPUs that share --write-best's shards, as merge's"}})  # fmt: skip
    gpu_memory: str | int | None = _option(None, "device memory for buffers per GPU, e.g. '2GiB' (the default)",
                                           cli={"metavar": "SIZE"})  # fmt: skip
    chunk_elements: int | None = _option(
        None, f"elements per pipeline chunk (default {DEFAULT_CHUNK_ELEMENTS}, or ${CHUNK_ELEMENTS_VARIABLE}; tests "
        "use small values)", commands=(*COMMANDS, INSPECT))  # fmt: skip
    # tune's own options (tuning/): what is measured at each alpha, and how the recommended alpha is chosen
    reference_text: str | None = _option(
        None, "a text in the language base knew (e.g. English): its bits per byte at each alpha too",
        commands=_TUNE, cli={"metavar": "FILE"})  # fmt: skip
    max_new_tokens: int = _option(256, "the longest reply generated per prompt, in tokens (greedy decoding)",
                                  commands=_TUNE, cli={"type": int, "metavar": "N"})  # fmt: skip
    window: int | None = _option(
        None, "tokens in each bits-per-byte window, windows overlapping by half (default: the model's whole "
        "context, max_position_embeddings; a smaller one measures a long-context model on a shorter text)",
        commands=_TUNE, cli={"type": int, "metavar": "TOKENS"})  # fmt: skip
    batch_size: int = _option(8, "prompts generated together (one batch, padded on the left)", commands=_TUNE,
                              cli={"type": int, "metavar": "N"})  # fmt: skip
    device: str = _option(
        "cpu", "where the model runs and the inputs are held: cpu (host memory; the native kernel switches the "
        "weights) or cuda / cuda:N (the GPU's memory; the triton kernel)", commands=_TUNE,
        cli={"metavar": "DEVICE"})  # fmt: skip
    language_id: str = _option(
        "lingua", "the language identifier of fidelity: lingua (lingua-language-detector, the [tune] extra: 95 "
        "MB, a few seconds to load) or py3langid (4.5 MB, under a second: pip install py3langid); equally "
        "accurate on short replies (docs/NOTES.md section 9)", commands=_TUNE,
        cli={"choices": LANGUAGE_IDS})  # fmt: skip
    pick: str = _option(
        "fidelity-stops", "the rule that recommends an alpha: fidelity-stops (the highest language fidelity x stops "
        "among alphas whose bits per byte on --text stay within --max-bpb-increase of cp's), bits-per-byte (the "
        "lowest on --text), fidelity (the highest), answer (the lowest bits per byte of the prompts' answers); ties "
        "go to the lower alpha", commands=_TUNE, cli={"choices": PICK_RULES})  # fmt: skip
    max_bpb_increase: float = _option(
        0.05, "fidelity-stops' limit: an alpha's bits per byte on --text at most this fraction above cp's "
        "(0.05: 1.05 x cp's)",
        commands=_TUNE, cli={"type": float, "metavar": "FRACTION"})  # fmt: skip
    write_best: str | None = _option(
        None, "write the merge of the recommended alpha to DIR, bit-identical to `chatvec merge` with that alpha "
        "and the same options", commands=_TUNE, cli={"metavar": "DIR"})  # fmt: skip

    @classmethod
    def for_command(cls, command: str) -> list:
        """The dataclass fields of the options `command` takes, in declaration order."""
        return [f for f in fields(cls) if command in f.metadata["commands"]]

    @classmethod
    def default(cls, name: str, command: str):
        f = _field(name)
        return f.metadata["per_command"].get(command, {}).get("default", f.default)

    @classmethod
    def doc(cls, name: str, command: str) -> str:
        f = _field(name)
        return f.metadata["per_command"].get(command, {}).get("doc", f.metadata["doc"])

    @classmethod
    def choices(cls, name: str, command: str):
        f = _field(name)
        return f.metadata["per_command"].get(command, {}).get("choices", (f.metadata["cli"] or {}).get("choices"))

    @classmethod
    def flag(cls, name: str) -> str | None:
        """The option's command-line flag, or None for an option of the API only."""
        f = _field(name)
        if f.metadata["cli"] is None:
            return None
        return f.metadata["flag"] or "--" + name.replace("_", "-")

    @classmethod
    def describe(cls, name: str, spelling: str) -> str:
        """How messages name an option: its flag on the command line, its keyword in Python."""
        if spelling != "cli":
            return name
        if name in ARGUMENTS:
            return "--" + name
        return cls.flag(name) or name

    @classmethod
    def documentation(cls, command: str) -> str:
        """The 'Options' section of an API docstring."""
        return "\n".join(f"    {f.name}: {cls.doc(f.name, command)}" for f in cls.for_command(command))

    @classmethod
    def build(cls, command: str, options: dict) -> Settings:
        """Settings from a command's keyword options (the command's own defaults for the rest)."""
        given = {f.name: options[f.name] if f.name in options else cls.default(f.name, command)
                 for f in cls.for_command(command)}  # fmt: skip
        return cls(**given)

    def chunk_size(self) -> int:
        """Elements per pipeline chunk: the option, the environment variable, or the default."""
        if self.chunk_elements is not None:
            return self.chunk_elements
        return int(os.environ.get(CHUNK_ELEMENTS_VARIABLE) or DEFAULT_CHUNK_ELEMENTS)


# the commands' required arguments that are not options (no default, so not Settings fields), described like
# options: --text on the command line, text= in Python
ARGUMENTS = ("out", "text", "prompts", "language")


def _field(name: str):
    for f in fields(Settings):
        if f.name == name:
            return f
    raise KeyError(name)


def unknown_option(command: str, name: str) -> str:
    """The message for a keyword that is not one of the command's options, with the nearest names."""
    import difflib

    known = [f.name for f in Settings.for_command(command)]
    close = difflib.get_close_matches(name, known, n=3)
    elsewhere = [c for c in (*COMMANDS, INSPECT) if name in [f.name for f in Settings.for_command(c)]]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if elsewhere and not close:
        hint = f"; {name} is an option of {', '.join(elsewhere)}"
    return f"{command}() got an unexpected keyword argument {name!r}{hint} (its options: {', '.join(known)})"
