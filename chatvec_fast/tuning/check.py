"""A tune's options and files, checked whole before any model is read: the merge's options through the merge's
own Job.build (every merge option applies, and is refused, as `merge` refuses it), tune's own options, the
evaluation's files (--text, --reference-text, --prompts, --language) and the output directories.

--out belongs to the tune: it must be new or empty, or, with --resume, a tune's earlier output holding nothing
else. Nothing in it is deleted or changed that a tune did not write; --write-best is a merge output, checked
now as merge checks its --out.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..alphas import normalize_alphas
from ..errors import InputError, OutputError
from ..job import Job
from ..memory.options import device_name
from ..read.text_file import read_utf8
from ..settings import LANGUAGE_IDS, PICK_RULES, Settings, unknown_option
from ..write.paths import check_not_in_inputs, check_output_path
from .results import OURS

MERGE_OPTIONS = tuple(f.name for f in Settings.for_command("merge"))
# merge's options that are about --write-best's files or how the run goes: the held merge does not take them
NOT_HELD = ("max_shard_size", "chat_template_from", "tokenizer_from", "model_card", "overwrite", "resume", "dry_run",
            "progress", "devices")  # fmt: skip
MAX_TOKENS = 1 << 20  # a reply of a million tokens is a typo
# a text is read whole and tokenized once, then scored at every alpha: 256 MiB is ~64M tokens, hours an alpha
# for a 7B model even on a GPU; a larger file is a mistake (a corpus, not a sample) that would cost its size in RAM
MAX_TEXT_BYTES = 256 << 20


@dataclass(frozen=True)
class TuneJob:
    """One tune: the merge's job (its inputs, options and engine, checked), tune's settings and evaluation files."""

    merge: Job  # the merge every alpha is, as `merge` would run it (its out: --write-best or None)
    settings: Settings  # every tune option
    out: str
    alphas: tuple[float, ...]
    text: str  # the files' contents, read now: a missing or unreadable file costs nothing yet
    reference_text: str | None
    paths: dict  # the evaluation files as given: text, prompts, reference_text
    prompts: tuple  # tuning.prompts.Prompt
    language: str

    def name(self, option: str) -> str:
        return Settings.describe(option, self.merge.spelling)

    def held_options(self) -> dict:
        """HeldMerge's keywords: merge's options that change the weights or the engine, as given."""
        s = self.merge.settings
        return {n: getattr(s, n) for n in MERGE_OPTIONS if n not in NOT_HELD}


def build(inputs: dict, out, alphas, text, prompts, language, options: dict, spelling: str) -> TuneJob:
    """Checks everything a tune can check without reading a model; returns its TuneJob."""
    known = {f.name for f in Settings.for_command("tune")}
    for key in options:
        if key not in known:
            raise TypeError(unknown_option("tune", key))
    s = Settings.build("tune", options)
    name = lambda option: Settings.describe(option, spelling)  # noqa: E731
    given = {n: getattr(s, n) for n in MERGE_OPTIONS}
    merge = Job.build("merge", inputs, s.write_best, [0.0], Settings.build("merge", given), sweep=False,
                      spelling=spelling)  # fmt: skip
    values = normalize_alphas(alphas)
    if any(isinstance(a, tuple) for a in values):
        raise ValueError(f"alphas {alphas!r}: tune sweeps one chat vector, one alpha per model")
    if s.language_id not in LANGUAGE_IDS:
        raise ValueError(f"{name('language_id')} {s.language_id!r}: expected one of {', '.join(LANGUAGE_IDS)}")
    if s.pick not in PICK_RULES:
        raise ValueError(f"{name('pick')} {s.pick!r}: expected one of {', '.join(PICK_RULES)}")
    bound = s.max_bpb_increase
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound < 0:
        raise ValueError(f"{name('max_bpb_increase')} {bound!r}: expected a fraction of 0 or more, e.g. 0.05 for 5%")
    for option, most in (("max_new_tokens", MAX_TOKENS), ("batch_size", 4096)):
        value = getattr(s, option)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ValueError(f"{name(option)} {value!r}: expected a whole number from 1 to {most}")
    if s.window is not None and (isinstance(s.window, bool) or not isinstance(s.window, int) or
                                 not 2 <= s.window <= MAX_TOKENS):  # fmt: skip
        raise ValueError(
            f"{name('window')} {s.window!r}: expected a whole number of tokens from 2 (a window "
            f"scores its tokens after the first) to {MAX_TOKENS}, or none for the model's context"
        )
    device_name(s.device)
    if s.device != "cpu" and s.backend not in ("auto", "triton"):
        raise ValueError(f"{name('device')} {s.device}: the weights are switched on the GPU by the triton kernel; "
                         f"{name('backend')} {s.backend} runs on the CPU (use {name('device')} cpu with "
                         "it)")  # fmt: skip
    _check_out(out)
    reference = None if s.reference_text is None else _path(s.reference_text, name("reference_text"))
    paths = {"text": _path(text, name("text")), "prompts": _path(prompts, name("prompts")), "reference_text": reference}
    from .language import check_language
    from .prompts import read_prompts

    prompt_list = read_prompts(paths["prompts"], name("prompts"))
    if s.pick == "answer" and not any(p.answer for p in prompt_list):
        raise InputError(f"{name('pick')} answer ranks the alphas by the prompts' reference answers, and "
                         f"{paths['prompts']} has none; add \"answer\" to its lines, or pick another rule")  # fmt: skip
    reference_text = None if reference is None else _read_text(reference, name("reference_text"))
    return TuneJob(merge, s, os.fspath(out), tuple(values), _read_text(paths["text"], name("text")), reference_text,
                   paths, tuple(prompt_list), check_language(language, name("language"), s.language_id))  # fmt: skip


def _path(value, what: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise ValueError(f"{what} {value!r}: expected a file path")
    return os.fspath(value)


def _check_out(out):
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out).strip():
        raise ValueError(f"the output path is empty ({out!r}): an unset shell variable? Name the output "
                         "directory, e.g. --out tune-out")  # fmt: skip


def _read_text(path: str, what: str) -> str:
    return read_utf8(path, f"{what} {path}", "text", MAX_TEXT_BYTES,
                     "a tune measures (at every alpha); a sample of a few MB measures a model well")  # fmt: skip


def check_outputs(job: TuneJob, inputs: dict[str, str]):
    """--out (new, empty, or with --resume a tune's output holding only a tune's files) and --write-best (as
    merge checks its --out), against the resolved inputs."""
    out, s = job.out, job.settings
    check_not_in_inputs(out, inputs, "--out")
    if os.path.lexists(out):
        if os.path.islink(out) or not os.path.isdir(out):
            raise OutputError(f"--out {out} exists and is not a directory; remove it or choose another path")
        entries = sorted(os.listdir(out))
        if entries and not s.resume:
            raise OutputError(f"--out {out} is not empty; pass {job.name('resume')} to continue the tune it holds, "
                              "or choose another path")  # fmt: skip
        foreign = [e for e in entries if e not in OURS]
        if foreign:
            raise OutputError(f"--out {out} holds files a tune does not write ({', '.join(foreign[:5])}); a tune "
                              "never touches them: choose another path, or move them away")  # fmt: skip
    if s.write_best is not None:
        best = os.path.abspath(s.write_best)
        if best == os.path.abspath(out) or best.startswith(os.path.abspath(out) + os.sep):
            raise OutputError(f"--write-best {s.write_best} is inside --out {out}; give it a path of its own")
        check_output_path(s.write_best, inputs, s.overwrite)
