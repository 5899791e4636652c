"""Conversations as the model reads them: rendered by the tokenizer's chat template, then tokenized.

Rendered text is tokenized without the tokenizer's own specials (add_special_tokens=False), as transformers'
apply_chat_template(tokenize=True) does: a template that wants <s> or <|begin_of_text|> writes it itself.
"""

from __future__ import annotations

from ..errors import InputError


def _render(tokenizer, messages, generation_prompt: bool, where: str) -> str:
    try:
        text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=generation_prompt, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - jinja and transformers raise many kinds; the message says which
        raise InputError(f"{where}: the chat template does not render it ({type(exc).__name__}: {exc}); check "
                         "the roles it allows (some templates refuse a system turn) or pass "
                         "--chat-template-from") from None  # fmt: skip
    if not isinstance(text, str):
        raise InputError(f"{where}: the chat template rendered a {type(text).__name__}, expected text")
    return text


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def prompt_ids(tokenizer, messages, where: str) -> list[int]:
    """The conversation with the assistant's turn opened (add_generation_prompt), as token ids."""
    return _encode(tokenizer, _render(tokenizer, messages, True, where))


def answer_ids(tokenizer, messages, answer: str, eos_ids, where: str) -> tuple[list[int], int]:
    """(ids, first): the conversation with `answer` as the assistant's turn, as the template renders it; the
    answer's tokens are ids[first:]: the reply and the end of its turn (the first eos after the prompt), not
    what the template writes after it (ChatML's newline)."""
    prompt = _render(tokenizer, messages, True, where)
    full = _render(tokenizer, [*messages, {"role": "assistant", "content": answer}], False, where)
    if not full.startswith(prompt):
        raise InputError(f"{where}: the chat template renders the assistant's turn as something other than a "
                         "continuation of the generation prompt, so the answer's tokens cannot be told apart; "
                         "use a template whose add_generation_prompt text starts the assistant turn "
                         "(--chat-template-from), or leave out \"answer\"")  # fmt: skip
    head, ids = _encode(tokenizer, prompt), _encode(tokenizer, full)
    if ids[: len(head)] != head:  # a token spans the boundary: tokenize the two sides apart, as generation sees them
        ids = head + _encode(tokenizer, full[len(prompt) :])
    rest = ids[len(head) :]
    ends = [k for k, t in enumerate(rest) if t in set(eos_ids)]
    if ends:
        rest = rest[: ends[0] + 1]
    return head + rest, len(head)
