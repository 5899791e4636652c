"""A job: what one command computes, checked whole before any input is opened or downloaded.

`Job.build` takes a command, its inputs, its output and alphas and its settings (settings.py declares every
option), checks every option (messages name it as the caller spelled it: `overwrite=True` in Python,
`--overwrite` on the command line) and parses what the stages need: the planner's MergeOptions, the
engine's backend, threads, devices and device memory, the outputs' paths.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

from .alphas import normalize_alphas, parse_alpha_for
from .backends.availability import availability
from .dtypes import parse_user_dtype
from .plan.options import MergeOptions
from .settings import COMMANDS, INSPECT, Settings
from .units import parse_size
from .write.names import alpha_dirname

MAX_THREADS = 4096  # more kernel threads than any machine has cores is a typo (a pool of 1e11 cannot start)
_DEVICE = re.compile(r"cuda(:\d{1,3})?|cpu")


@dataclass(frozen=True)
class Engine:
    """Who computes: the backend's name, CPU threads, the GPUs that share the work and their buffer memory."""

    backend: str
    threads: int | None
    devices: tuple[str, ...]
    gpu_memory: int | None


@dataclass(frozen=True)
class Job:
    """One command: its inputs by role (base/chat/cp, vector/cp, or base/chat), its output directories (one
    per alpha), and its settings, checked."""

    command: str
    inputs: dict[str, str]
    outputs: tuple[str, ...]
    alphas: tuple
    settings: Settings
    options: MergeOptions
    engine: Engine
    spelling: str = "api"  # how messages name options: "api" (keywords) or "cli" (flags)
    # Inputs given as Hugging Face Hub ids, once resolved to local snapshots: role -> {"id", "revision", "commit"}
    sources: dict = field(default_factory=dict)
    given_inputs: dict = field(default_factory=dict)  # the inputs as given, before resolution (ids stay ids)

    @property
    def kind(self) -> str:
        return self.options.kind

    @property
    def given(self) -> dict[str, str]:
        return self.given_inputs or self.inputs

    @classmethod
    def build(cls, command: str, inputs: dict[str, str], out: str | None, alphas, settings: Settings, *, sweep: bool,
              spelling: str = "api") -> Job:  # fmt: skip
        """Checks everything; sweep=True puts one output per alpha under out/alpha-A/. out=None: a job whose
        results stay in memory (chatvec_fast.memory), with no output directory."""
        if command not in (*COMMANDS, INSPECT):
            raise ValueError(f"unknown command {command!r}; expected one of {', '.join((*COMMANDS, INSPECT))}")
        name = lambda option: Settings.describe(option, spelling)  # noqa: E731
        if out is not None:
            _check_out(out, name)
        values = tuple(normalize_alphas(alphas))
        s = settings
        if isinstance(values[0], tuple) and s.alpha_for:
            raise ValueError(
                f"{name('alpha_for')} sets one alpha per tensor, and apply with several vectors takes one "
                "per vector; apply the vectors one at a time to give tensors their own alphas"
            )
        outputs = (out,)
        if out is None:
            outputs = ()
        elif sweep:
            outputs = tuple(os.path.join(out, alpha_dirname(a)) for a in values)
        for option in ("vocab_mismatch", "added_tokens", "special_tokens_from", "chat_template_from",
                       "tokenizer_from", "backend"):  # fmt: skip
            choices = Settings.choices(option, command)
            value = getattr(s, option)
            if not (value is None and Settings.default(option, command) is None) and value not in choices:
                raise ValueError(f"{name(option)} {value!r}: expected one of {', '.join(choices)}")
        for option in ("allow_unmatched", "overwrite", "resume", "dry_run", "progress", "model_card"):
            if not isinstance(getattr(s, option), bool):
                raise ValueError(f"{name(option)} {getattr(s, option)!r}: expected True or False")
        dtype = _dtype(command, s.dtype, name)
        options = MergeOptions(
            kind=_planned_kind(command, inputs),
            alphas=values,
            skip=_patterns(s.skip, name("skip")),
            vocab_mismatch=s.vocab_mismatch,
            dtype=dtype,
            max_shard_size=_size(s.max_shard_size, name("max_shard_size")),
            alpha_for=_alpha_for(s.alpha_for, name("alpha_for")),
            allow_unmatched=s.allow_unmatched,
            # inspect compares the rows base has: chat's added rows have no base to differ from
            added_tokens="drop" if command == INSPECT else s.added_tokens,
            special_tokens_from=s.special_tokens_from,
        )
        engine = _engine(s, name)
        if s.revision is not None and (not isinstance(s.revision, str) or not s.revision.strip()):
            raise ValueError(f"{name('revision')} {s.revision!r}: expected a branch, tag or commit")
        return cls(command, dict(inputs), outputs, values, s, options, engine, spelling)

    def command_line(self, output: int) -> str:
        """The command that makes output `output`, in the CLI's spelling: inputs (Hub ids as given, local paths
        absolute), its alpha, every option that differs from its default. The output's own path is left out:
        the same command writes the same bytes wherever its output goes."""
        args = ["chatvec", "apply" if self.kind == "apply" else "merge"]
        for role, ref in self.given.items():
            flag = "--vector" if role.startswith("vector") else f"--{role}"
            args += [flag, ref if role in self.sources else os.path.abspath(ref)]
        alpha = self.alphas[output]
        args += ["--out", "OUT"]
        for value in alpha if isinstance(alpha, tuple) else (alpha,):
            args += ["--alpha", repr(value)]
        recorded = {"skip", "alpha_for", "vocab_mismatch", "dtype", "max_shard_size", "revision", "added_tokens",
                    "special_tokens_from", "chat_template_from", "tokenizer_from", "model_card"}  # fmt: skip
        for f in Settings.for_command(self.command):
            value = getattr(self.settings, f.name)
            if f.name not in recorded or value == Settings.default(f.name, self.command):
                continue
            flag = Settings.flag(f.name)
            if isinstance(value, bool):
                args.append(flag)
            for item in value if isinstance(value, (tuple, list)) else () if isinstance(value, bool) else (value,):
                args += [flag, item if isinstance(item, str) else f"{item[0]}={item[1]}"]
        return shlex.join(str(a) for a in args)


def _planned_kind(command: str, inputs: dict) -> str:
    """What the planner plans: inspect reads what merge reads (base, chat, cp) or, without cp, what extract
    reads (base, chat); a sweep's outputs are merges."""
    if command == INSPECT:
        return "merge" if "cp" in inputs else "extract"
    return "merge" if command == "sweep" else command


def _check_out(out, name):
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out).strip():
        raise ValueError(f"the output path is empty ({out!r}): an unset shell variable? Name the output "
                         "directory, e.g. --out merged")  # fmt: skip


def _dtype(command: str, value, name) -> str | None:
    if value is None:
        return None
    choices = Settings.choices("dtype", command)
    if not isinstance(value, str) or value.lower() not in choices:
        what = "a chat vector is stored in" if command == "extract" else "expected one of"
        raise ValueError(f"{name('dtype')} {value!r}: {what} {', '.join(choices[:-1])} or {choices[-1]}")
    return parse_user_dtype(value)


def _patterns(patterns, what: str) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = (patterns,)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ValueError(f"{what} {pattern!r}: not a regular expression ({exc})") from None
    return tuple(patterns)


def _alpha_for(rules, what: str):
    if isinstance(rules, str):
        rules = (rules,)
    parsed = parse_alpha_for(rules, what)
    _patterns([p for p, _ in parsed], what)
    return parsed


def _size(text, what: str) -> int | None:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _count(value, what: str, most: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ValueError(f"{what} {value!r}: expected a whole number from 1 to {most}")
    return value


def _engine(s: Settings, name) -> Engine:
    threads = _count(s.threads, name("threads"), MAX_THREADS)
    _count(s.chunk_elements, name("chunk_elements"), 1 << 31)
    devices = s.devices
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    devices = tuple(devices or ())
    bad = [d for d in devices if not isinstance(d, str) or not _DEVICE.fullmatch(d)]
    cuda = [d for d in devices if d != "cpu"]  # "cpu": the Triton interpreter's stand-in for a device (tests)
    if bad or len(set(cuda)) != len(cuda):
        raise ValueError(f"{name('devices')} {s.devices!r}: expected distinct CUDA devices, e.g. cuda:0,cuda:1")
    problem = availability(s.backend, devices)
    if problem:
        raise ValueError(f"{name('backend')} {s.backend}: {problem}")
    return Engine(s.backend, threads, devices, _size(s.gpu_memory, name("gpu_memory")))
