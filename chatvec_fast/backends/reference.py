"""The float64 reference's pieces in plain PyTorch: the correct rounding, and the measures the tests use.

The oracle itself is backends/reference_call.py: every kernel call computed in float64 in the order of
backends/call.py (product rounded, then sum rounded; no fused multiply-add), then rounded ONCE, to
nearest-even, to the output dtype. torch's own float64 -> bfloat16/float16 casts go through float32 and
round twice (wrong on ~0.016% of elements at alpha = 0.7), so round_float64() does the final rounding with
integer operations instead. It uses a different method from the native kernel (variable shifts and an
explicit sticky bit), which makes the two independent checks of each other.
"""

from __future__ import annotations

import torch

# mantissa bits, smallest normal exponent, Inf bits, canonical quiet NaN bits
_FORMATS = {
    torch.bfloat16: (7, -126, 0x7F80, 0x7FC0),
    torch.float16: (10, -14, 0x7C00, 0x7E00),
}

TORCH_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


def as_torch(raw, dtype: str, shape=None) -> torch.Tensor:
    """A tensor viewing raw safetensors bytes of a float dtype (copied, so it owns its memory)."""
    if len(raw) == 0:  # torch.frombuffer refuses empty buffers
        return torch.empty(shape if shape is not None else (0,), dtype=TORCH_DTYPES[dtype])
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(TORCH_DTYPES[dtype])
    return t.reshape(shape) if shape is not None else t


def round_float64(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Correctly rounded (nearest-even) conversion of a float64 tensor to bf16, f16 or f32.

    NaN becomes the positive quiet NaN of the target (every backend emits the same bits).

    >>> round_float64(torch.tensor([1.00390625], dtype=torch.float64), torch.bfloat16)  # a tie: to even
    tensor([1.], dtype=torch.bfloat16)
    """
    if x.dtype != torch.float64:
        raise TypeError(f"round_float64 takes float64, got {x.dtype}")
    if dtype == torch.float64:
        return torch.where(torch.isnan(x), torch.full_like(x, float("nan")), x)
    if dtype == torch.float32:
        out = x.to(torch.float32)  # one hardware rounding, nearest-even
        return torch.where(torch.isnan(out), torch.full_like(out, float("nan")), out)
    flat = x.contiguous().view(-1)
    if flat.numel() > _PIECE:
        # ~25 int64 passes: in 64K-element pieces the temporaries stay in cache
        # and in reused heap memory (fresh pages fault in at ~0.4 GB/s here),
        # which makes this 10x faster on large tensors.
        out = torch.empty(flat.shape, dtype=dtype)
        for start in range(0, flat.numel(), _PIECE):
            out[start : start + _PIECE] = _round_piece(flat[start : start + _PIECE], dtype)
        return out.view(x.shape)
    return _round_piece(flat, dtype).view(x.shape)


_PIECE = 1 << 16


def _round_piece(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mant, emin, inf_bits, qnan_bits = _FORMATS[dtype]
    out = round_bits(x, mant, emin, inf_bits, qnan_bits, 15)
    return out.to(torch.int32).to(torch.int16).view(dtype)


def round_bits(x: torch.Tensor, mant: int, emin: int, top: int, qnan: int, sign_bit: int) -> torch.Tensor:
    """int64 bit patterns of float64 x rounded once, to nearest-even, to a binary format with `mant` stored
    mantissa bits and smallest normal exponent `emin`; magnitudes past the largest finite value clamp to
    `top` (the Inf pattern, or the largest finite one for a saturating format), NaN becomes `qnan`, the sign
    goes to bit `sign_bit`."""
    bits = x.view(torch.int64)
    negative = bits < 0
    magnitude = bits & 0x7FFF_FFFF_FFFF_FFFF
    biased = magnitude >> 52
    fraction = magnitude & ((1 << 52) - 1)
    is_nan = (biased == 0x7FF) & (fraction != 0)
    significand = fraction | ((biased != 0).to(torch.int64) << 52)
    min_normal = 1023 + emin
    shift = ((min_normal - biased).clamp(min=0) + (52 - mant)).clamp(max=63)
    # Keep one extra bit (the round bit); anything below it is sticky.
    with_round_bit = significand >> (shift - 1)
    sticky = (with_round_bit << (shift - 1)) != significand
    truncated = with_round_bit >> 1
    round_up = ((with_round_bit & 1) == 1) & (sticky | ((truncated & 1) == 1))
    rounded = truncated + round_up.to(torch.int64)
    exp_field = (biased - min_normal).clamp(min=0)
    out = ((exp_field << mant) + rounded).clamp(max=top)
    out = out | (negative.to(torch.int64) << sign_bit)
    return torch.where(is_nan, torch.full_like(out, qnan), out)


def count_inexact(stored: torch.Tensor, exact64: torch.Tensor) -> int:
    """Elements of `stored` that differ from the float64 values they were rounded from (NaN counts as exact)."""
    back = stored.to(torch.float64)
    differs = back.view(torch.int64) != exact64.view(torch.int64)
    return int((differs & ~torch.isnan(exact64)).sum())


def ordered_bits(t: torch.Tensor) -> torch.Tensor:
    """int64 keys in the order of the float values: sign-magnitude bits mapped to two's complement, so that
    the difference of two keys is the distance in ulps of t's dtype (16, 32 or 64 bits)."""
    width = t.element_size()
    b = t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[width]).to(torch.int64)
    if width == 8:
        return torch.where(b < 0, -(b & 0x7FFF_FFFF_FFFF_FFFF), b)
    return torch.where(b < 0, -(b + (1 << (8 * width - 1))), b)


def ulp_distance(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """|got - want| in ulps of their dtype, element by element; 0 where both are NaN."""
    distance = (ordered_bits(got) - ordered_bits(want)).abs()
    both_nan = torch.isnan(got) & torch.isnan(want)
    return torch.where(both_nan, torch.zeros_like(distance), distance)
