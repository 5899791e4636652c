"""Bits per byte: the negative log2-likelihood a model gives a text, per UTF-8 byte of that text.

    bits per byte = sum over scored tokens of -log2 p(token | the tokens before it) / UTF-8 bytes of the text

Bytes, not tokens, so that models with different tokenizers (cp's expanded vocabulary, the chat model's) are
compared on the same text. A text longer than the model's context is read in windows of `window` tokens that
start every `stride` tokens (the last one ends at the text's end); each token is scored once, in the first
window that holds it, i.e. with the most left context the windows give it (at least window - stride tokens
past the first window). The model's logits go through log_softmax in float32 (the model's own dtype is often
bfloat16: its 8 bits of mantissa would round every log-probability); the sums are float64.
"""

from __future__ import annotations

import math

LOGITS_BUDGET = 1 << 27  # logits elements per forward (256 MiB in bf16): a 2048-token window of a 32000-token
#                          vocabulary is 6.6e7, so two such windows share a forward
ROWS = 1024  # positions a float32 log_softmax takes at once: 620 MB for a 152k vocabulary (a whole 32k-token
#              window's would take 20 GB beside its logits)
LN2 = math.log(2.0)


def windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[(start, first target)]: window ids[start:start + window] scores the targets first .. start + window - 1
    (target t is token t predicted from the tokens before it; token 0 has no context and is not scored).

    >>> windows(10, 4, 2)
    [(0, 1), (2, 4), (4, 6), (6, 8)]
    """
    if not 0 < stride < window:  # stride == window would leave each window's first target without context
        raise ValueError(f"stride {stride} must be in 1..window - 1 ({window - 1})")
    if n <= window:
        return [(0, 1)]
    out, start, first = [], 0, 1
    while first < n:
        start = min(start, n - window)
        out.append((start, first))
        first = start + window
        start += stride
    return out


def text_ids(tokenizer, text: str) -> list[int]:
    """The text's tokens as the model reads a document: with the tokenizer's bos in front where it has one (the
    first token is then scored too); without one (Qwen's tokenizers), the first token is context only and its
    bytes still count: bits per byte come out low by one token's share, 0.05% of a 2048-token text."""
    # verbose=False: transformers would warn that the text is longer than the model's context (windows read it)
    ids = list(tokenizer(text, add_special_tokens=True, verbose=False).input_ids)
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def _bits(logits, targets) -> float:
    """-sum log2 softmax(logits)[targets] over rows; float32 log_softmax, ROWS rows at a time, float64 sum."""
    total = 0.0
    for k in range(0, len(targets), ROWS):
        log_p = logits[k : k + ROWS].float().log_softmax(-1)
        total -= log_p.gather(-1, targets[k : k + ROWS, None]).double().sum().item()
    return total / LN2


def model_device(model):
    return next(model.parameters()).device


def token_bits(model, ids: list[int], window: int, stride: int, batch_size: int = 8) -> tuple[float, int]:
    """(total bits, tokens scored) of ids[1:] under the model, over windows (see windows()); float64 sums."""
    import torch

    plan = windows(len(ids), window, stride)
    width = min(len(ids), window)
    vocab = model.get_output_embeddings().weight.shape[0]
    per_forward = max(1, min(batch_size, LOGITS_BUDGET // max(1, width * vocab)))
    device = model_device(model)
    all_ids = torch.tensor(ids, dtype=torch.long)
    total, scored = 0.0, 0
    with torch.no_grad():
        for k in range(0, len(plan), per_forward):
            group = plan[k : k + per_forward]
            batch = torch.stack([all_ids[s : s + width] for s, _ in group]).to(device)
            logits = model(input_ids=batch).logits
            for row, (start, first) in enumerate(group):
                # position p predicts token p + 1: targets first .. start + width - 1 come from positions
                # first - 1 - start .. width - 2 of the window
                lo = first - 1 - start
                total += _bits(logits[row, lo : width - 1], batch[row, lo + 1 : width])
                scored += width - 1 - lo
    return total, scored


def bits_per_byte(model, tokenizer, text: str, window: int, stride: int, batch_size: int = 8) -> float:
    """Bits per UTF-8 byte of `text` under the model, over windows of its context.

    >>> bits_per_byte(model, tokenizer, open("zh.txt").read(), window=2048, stride=1024)   # doctest: +SKIP
    0.6123
    """
    bits, _ = token_bits(model, text_ids(tokenizer, text), window, stride, batch_size)
    return bits / len(text.encode("utf-8"))


def continuation_bits(model, ids: list[int], first: int) -> float:
    """Total bits of ids[first:] given everything before them, in one forward (ids must fit the context)."""
    import torch

    with torch.no_grad():
        batch = torch.tensor([ids], dtype=torch.long, device=model_device(model))
        return _bits(model(input_ids=batch).logits[0, first - 1 : -1], batch[0, first:])
