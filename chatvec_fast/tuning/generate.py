"""Greedy replies, batched with left padding: the argmax token at every step, nothing else.

Our own loop over the model's forward with its KV cache, not model.generate(do_sample=False): transformers 5
fills every generation option left unset from the model's generation_config.json (a chat model's often sets
repetition_penalty, temperature, top_p ...), and the tune decodes the merged model (built from its config) and
the chat model (loaded with its files) the same way at every alpha. The loop applies no logits processor, so a
reply depends only on the weights and the prompt. Ties go to the lowest token id (torch.argmax).

Left padding: prompts of a batch end at the same column, so each step appends one column; the attention mask
hides the padding and position ids count only real tokens, so a batched reply is the reply alone (a test
checks it token for token on a small model).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    tokens: tuple[int, ...]  # generated, the eos that ended it included
    stopped: bool  # ended by an eos within max_new_tokens


def _forward_keywords(model) -> tuple[dict, str]:
    """(keywords for every forward, the name of the KV cache's argument and output)."""
    names = inspect.signature(model.forward).parameters
    # logits_to_keep=1: the prefill keeps the last position's logits only (a 256-token batch of 8 with a
    # 152k vocabulary would otherwise hold 0.6 GB of bf16 logits, 1.2 GB in float32)
    keep = {"logits_to_keep": 1} if "logits_to_keep" in names else {}
    # transformers 5.25 renamed past_key_values to cache (the old name warns, and goes in 5.40)
    return keep, "cache" if "cache" in names else "past_key_values"


def greedy_batch(model, prompts: list[list[int]], eos_ids, max_new_tokens: int, pad_id: int) -> list[Reply]:
    """Greedy replies to prompts (token ids) in one batch, each up to max_new_tokens or an eos."""
    import torch

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)
    keep, cache = _forward_keywords(model)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    columns = []
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep)
        for step in range(max_new_tokens):
            token = torch.where(done, pad_id, out.logits[:, -1].argmax(-1))
            columns.append(token)
            done |= torch.isin(token, eos)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                        use_cache=True, **{cache: getattr(out, cache)}, **keep)  # fmt: skip
    table = torch.stack(columns, dim=1).tolist() if columns else [[] for _ in prompts]
    eos_set = set(eos.tolist())
    replies = []
    for row in table:
        end = next((k for k, t in enumerate(row) if t in eos_set), None)
        replies.append(Reply(tuple(row if end is None else row[: end + 1]), end is not None))
    return replies


def greedy_replies(model, prompts: list[list[int]], eos_ids, max_new_tokens: int, batch_size: int,
                   pad_id: int) -> list[Reply]:  # fmt: skip
    """Greedy replies to every prompt, `batch_size` at a time, in the prompts' order.

    Prompts are batched in order of length (longest first), so a batch pads little; the replies do not
    depend on the batching.
    """
    order = sorted(range(len(prompts)), key=lambda k: (-len(prompts[k]), k))
    replies: list[Reply | None] = [None] * len(prompts)
    for k in range(0, len(order), batch_size):
        chunk = order[k : k + batch_size]
        for index, reply in zip(chunk, greedy_batch(model, [prompts[i] for i in chunk], eos_ids, max_new_tokens,
                                                    pad_id)):  # fmt: skip
            replies[index] = reply
    return replies
