"""The figures of one model (the merge at one alpha, cp alone or the chat model alone) on the tune's inputs.

    bits_per_byte              --text, teacher-forced over windows of the context (bits.py)
    reference_bits_per_byte    --reference-text, the same way (None without one)
    fidelity, line_fidelity    the share of greedy replies, and of their non-empty lines, in --language
    stops                      the share of replies ended by an eos within max_new_tokens
    answer_bits_per_byte       the prompts' reference answers given the prompts, under the chat template: all
                               answers' bits over all answers' UTF-8 bytes (None when no prompt has one)

Everything that depends only on the inputs (tokens, rendered prompts, the language identifier) is prepared
once in Evaluator(); evaluate(model) runs the model. The same model and inputs give the same dict, "seconds"
aside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import InputError
from ..settings import Settings
from .bits import continuation_bits, text_ids, token_bits
from .generate import greedy_replies
from .language import LanguageIdentifier
from .prompts import Prompt
from .template import answer_ids, prompt_ids


@dataclass(frozen=True)
class EvalSettings:
    language: str
    max_new_tokens: int = 256
    batch_size: int = 8
    window: int | None = None  # tokens per bits-per-byte window; None: the model's context
    stride: int | None = None  # tokens between windows' starts; None: half a window
    language_id: str = "lingua"  # the identifier (tuning/language.py)
    spelling: str = "cli"  # how messages name options: --window on the command line, window in Python

    def name(self, option: str) -> str:
        return Settings.describe(option, self.spelling)


@dataclass(frozen=True)
class EvalInputs:
    text: str
    reference_text: str | None
    prompts: tuple[Prompt, ...]


def _window(settings: EvalSettings, context: int) -> tuple[int, int]:
    window = settings.window or context
    return window, settings.stride or max(1, window // 2)


def _where(prompt: Prompt, settings: EvalSettings) -> str:
    return f"{settings.name('prompts')}, prompt {prompt.id!r}"


def check_eval_inputs(tokenizer, inputs: EvalInputs, settings: EvalSettings, context: int) -> None:
    """Refuses, before any work, what the evaluation cannot measure: a text shorter than one window, a tokenizer
    without a chat template, a prompt the template cannot render or that leaves no room for a reply."""
    name, where = settings.name, lambda prompt: _where(prompt, settings)  # noqa: E731
    if settings.max_new_tokens < 1 or settings.batch_size < 1:
        raise InputError(f"{name('max_new_tokens')} {settings.max_new_tokens} and {name('batch_size')} "
                         f"{settings.batch_size} must be at least 1")  # fmt: skip
    if settings.window is not None and settings.window > context:
        raise InputError(f"{name('window')} {settings.window} is longer than the model's context ({context} tokens); "
                         f"give at most {context}, or leave {name('window')} out to use the whole "
                         "context")  # fmt: skip
    window, stride = _window(settings, context)
    if not 0 < stride < window:
        raise InputError(f"stride {stride} must be between 1 and the window ({window} tokens) less one, so that "
                         "every window's first scored token has context in it")  # fmt: skip
    for what, text in ((name("text"), inputs.text), (name("reference_text"), inputs.reference_text)):
        if text is None:
            continue
        n = len(text_ids(tokenizer, text))
        if n < window:
            source = name("window") if settings.window else "the model's context"
            raise InputError(
                f"{what}: {n} tokens, shorter than one window ({window} tokens: {source}), so its bits per byte "
                f"would not measure the model at that context; give a text of at least {window} tokens "
                f"({4 * window} characters of English or so), or a smaller {name('window')}"
            )
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the tokenizer has no chat template, and the replies are generated under one; pass "
                         f"{name('chat_template_from')} chat (the chat model's) or give a tokenizer with "
                         "one")  # fmt: skip
    for prompt in inputs.prompts:
        n = len(prompt_ids(tokenizer, prompt.messages, where(prompt)))
        if n + settings.max_new_tokens > context:
            raise InputError(f"{where(prompt)}: {n} tokens under the chat template, and with "
                             f"{settings.max_new_tokens} new tokens the reply would run past the model's context "
                             f"({context}); shorten the "
                             f"prompt or lower {name('max_new_tokens')}")  # fmt: skip
        if prompt.answer is not None:
            ids, first = answer_ids(tokenizer, prompt.messages, prompt.answer, (), where(prompt))
            if len(ids) > context or first >= len(ids):
                raise InputError(f"{where(prompt)}: the prompt and its answer are {len(ids)} tokens, the answer "
                                 f"{len(ids) - first}; they must fit the model's context ({context}) and the answer "
                                 "must have at least one token")  # fmt: skip


class Evaluator:
    """Measures a model on the inputs; built once per tokenizer (cp's merged model's, or the chat model's).

    >>> ev = Evaluator(tokenizer, EvalInputs(text, None, prompts), EvalSettings("zh"), eos_ids=(2,))   # doctest: +SKIP
    >>> ev.evaluate(model)["fidelity"]   # doctest: +SKIP
    0.95
    """

    def __init__(self, tokenizer, inputs: EvalInputs, settings: EvalSettings, eos_ids: tuple[int, ...],
                 identifier: LanguageIdentifier | None = None):  # fmt: skip
        if not eos_ids:
            raise InputError("the model has no eos token id, so no reply could stop; set eos_token_id in its "
                             "generation_config.json")  # fmt: skip
        self.tokenizer, self.inputs, self.settings = tokenizer, inputs, settings
        self.eos_ids = tuple(eos_ids)
        self.prompt_ids = [prompt_ids(tokenizer, p.messages, _where(p, settings)) for p in inputs.prompts]
        self.answers = [(answer_ids(tokenizer, p.messages, p.answer, self.eos_ids, _where(p, settings)),
                         len(p.answer.encode("utf-8"))) for p in inputs.prompts if p.answer is not None]  # fmt: skip
        # padding is masked out, so any id the embedding has will do: eos has a row (the model generates it);
        # a tokenizer's <pad> may not (one added without resizing the embedding)
        self.pad_id = self.eos_ids[0]
        # one identifier can serve several Evaluators: loading lingua's models takes 4-25 s here
        self.identifier = identifier or LanguageIdentifier(settings.language, identifier=settings.language_id)
        # tokenized once, not at every alpha (1.3 MB of mixed English and Chinese: 1.1 s, 677k tokens, here)
        self.ids = {what: text_ids(tokenizer, getattr(inputs, what)) for what in ("text", "reference_text")
                    if getattr(inputs, what) is not None}  # fmt: skip

    def _bits_per_byte(self, model, what: str, window: int, stride: int) -> float:
        bits, _ = token_bits(model, self.ids[what], window, stride, self.settings.batch_size)
        return bits / len(getattr(self.inputs, what).encode("utf-8"))

    def evaluate(self, model) -> dict:
        """The figures (see the module's docstring) and every reply, for `model` (in eval mode; unchanged)."""
        t0 = time.perf_counter()
        s, inputs = self.settings, self.inputs
        window, stride = _window(s, _context(model.config))
        text_bpb = self._bits_per_byte(model, "text", window, stride)
        reference = None
        if inputs.reference_text is not None:
            reference = self._bits_per_byte(model, "reference_text", window, stride)
        answer = None
        if self.answers:
            bits = sum(continuation_bits(model, ids, first) for (ids, first), _ in self.answers)
            answer = bits / sum(nbytes for _, nbytes in self.answers)
        replies = greedy_replies(model, self.prompt_ids, self.eos_ids, s.max_new_tokens, s.batch_size, self.pad_id)
        texts = [self.tokenizer.decode(_content(r.tokens, self.eos_ids), skip_special_tokens=True) for r in replies]
        found = self.identifier.identify(texts)
        n = len(replies)
        return {
            "bits_per_byte": text_bpb,
            "reference_bits_per_byte": reference,
            "fidelity": sum(code == self.identifier.language for code in found) / n,
            "line_fidelity": self.identifier.line_share(texts),
            "stops": sum(r.stopped for r in replies) / n,
            "answer_bits_per_byte": answer,
            "replies": [
                {"id": p.id, "text": t, "tokens": len(r.tokens), "stopped": r.stopped, "language": code}
                for p, r, t, code in zip(inputs.prompts, replies, texts, found)
            ],  # fmt: skip
            "seconds": time.perf_counter() - t0,
        }


def _context(config) -> int:
    """The model's context in tokens; a multimodal config keeps it in its text_config."""
    found = getattr(config, "max_position_embeddings", None)
    if found is None:
        found = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
    if not isinstance(found, int) or found < 2:
        raise InputError(f"the model's config has no usable max_position_embeddings ({found!r}); the bits per byte "
                         "are measured over windows of the model's context")  # fmt: skip
    return found


def _content(tokens, eos_ids) -> list[int]:
    return list(tokens[:-1] if tokens and tokens[-1] in eos_ids else tokens)
