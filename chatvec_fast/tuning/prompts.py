"""The prompts file of a tune: JSON Lines, one conversation a line, checked whole before any model is read.

    {"prompt": "你好，请介绍一下你自己"}
    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}], "answer": "..."}
    {"id": "greeting-2", "prompt": "...", "answer": "..."}

"prompt" is one user turn; "messages" a conversation that ends with a user turn (the reply continues it);
"answer", optional, is a reference reply whose bits per byte the tune measures; "id", optional, names the
prompt in results.json (default: its line number). Blank lines are skipped. Any other line is an error that
names the file, the line and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import InputError
from ..read.text_file import read_utf8

ROLES = ("system", "user", "assistant")
MAX_BYTES = 64 << 20  # 64 MiB: 100,000 prompts of 600 bytes; a tune generates a reply to each at every alpha
KEYS = ("id", "prompt", "messages", "answer")


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple[dict, ...]  # [{"role", "content"}], ending with a user turn
    answer: str | None


def read_prompts(path, option: str = "--prompts") -> list[Prompt]:
    """Every prompt of a JSON Lines file, in order; raises InputError at the first bad line (naming the file as
    `option` and its path: "--prompts p.jsonl" on the command line, "prompts p.jsonl" in Python).

    >>> [p.messages for p in read_prompts("prompts.jsonl")]   # doctest: +SKIP
    [({'role': 'user', 'content': '你好'},)]
    """
    where = f"{option} {path}"
    text = read_utf8(path, where, "prompts file", MAX_BYTES,
                     "a tune's prompts need (each is generated at every alpha); give a few hundred")  # fmt: skip
    lines = text.splitlines()
    prompts, ids = [], {}
    for number, line in enumerate(lines, 1):
        if line.strip():
            prompt = _prompt(line, f"{where}, line {number}", number)
            if prompt.id in ids:
                raise InputError(f"{where}, line {number}: id {prompt.id!r} is also line {ids[prompt.id]}'s; "
                                 "give each prompt its own id")  # fmt: skip
            ids[prompt.id] = number
            prompts.append(prompt)
    if not prompts:
        raise InputError(f'{where}: no prompts (the file is empty); write one JSON object a line, e.g. '
                         '{"prompt": "..."}')  # fmt: skip
    return prompts


def _prompt(line: str, where: str, number: int) -> Prompt:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object, "
                         'e.g. {"prompt": "..."}') from None  # fmt: skip
    except RecursionError:  # json's decoder recurses once a level: a line of 100,000 "[" exhausts the stack
        raise InputError(f'{where}: nested deeper than Python can decode; a line is {{"prompt": "..."}} or '
                         '{"messages": [...]}, a few levels deep') from None  # fmt: skip
    if not isinstance(doc, dict):
        raise InputError(f'{where}: a JSON {type(doc).__name__}, expected an object such as {{"prompt": "..."}}')
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a line has {', '.join(KEYS)} "
                         '("prompt" or "messages" required)')  # fmt: skip
    if ("prompt" in doc) == ("messages" in doc):
        got = "both" if "prompt" in doc else "neither"
        raise InputError(f'{where}: has {got} of "prompt" and "messages"; give exactly one')
    if "prompt" in doc:
        messages = ({"role": "user", "content": _text(doc["prompt"], where, '"prompt"')},)
    else:
        messages = _messages(doc["messages"], where)
    answer = doc.get("answer")
    if answer is not None:
        answer = _text(answer, where, '"answer"')
    pid = doc.get("id", str(number))
    if not isinstance(pid, str | int) or isinstance(pid, bool) or str(pid) == "":
        raise InputError(f'{where}: "id" {pid!r} is not a non-empty string or integer; name the prompt with one')
    return Prompt(id=str(pid), messages=messages, answer=answer)


def _text(value, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: {what} is a JSON {type(value).__name__}, expected a string")
    if not value.strip():
        raise InputError(f"{where}: {what} is empty; write the text, or leave the line out")
    return value


def _messages(value, where: str) -> tuple[dict, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f'{where}: "messages" must be a non-empty list of {{"role", "content"}} objects, got '
                         f"{json.dumps(value, ensure_ascii=False)[:60]}")  # fmt: skip
    out = []
    for k, m in enumerate(value):
        at = f'{where}: "messages"[{k}]'
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise InputError(f'{at} is {json.dumps(m, ensure_ascii=False)[:60]}, expected {{"role": ..., '
                             '"content": ...}} and nothing else')  # fmt: skip
        if m["role"] not in ROLES:
            raise InputError(f"{at}: role {m['role']!r}, expected one of {', '.join(ROLES)}")
        out.append({"role": m["role"], "content": _text(m["content"], at, "content")})
    if out[-1]["role"] != "user":
        raise InputError(f'{where}: "messages" ends with a {out[-1]["role"]} turn; the reply continues the '
                         "conversation, so it must end with a user turn (a reference reply goes in "
                         '"answer")')  # fmt: skip
    return tuple(out)
