"""Quantized checkpoints: recognised by their tensors and config, and refused.

A quantized weight is a tensor of codes plus other tensors (scales, zero points, group indices) that
only together give its values. Pairing them by name as plain tensors half-merges the model: the F8 or
I32 codes are copied as "not a float dtype" while their F32 scales are merged. So every input is checked
first, and a quantized one stops the run with the format and the tensors named.
"""

from __future__ import annotations

import re

from ..errors import InputError
from ..read.checkpoint import Checkpoint
from .problems import listing

# (format, what gives it away in tensor names or dtypes)
_FORMATS = (
    ("FP8 (block-scaled or per-tensor scales)", lambda name, dtype: dtype.startswith("F8_")
     or re.search(r"\.(weight_scale_inv|weight_scale|input_scale)$", name)),
    ("GPTQ/AWQ (packed integer weights with scales and zero points)",
     lambda name, dtype: re.search(r"\.(qweight|qzeros|g_idx)$", name)),
    ("bitsandbytes (4-bit or 8-bit)", lambda name, dtype: re.search(r"\.(absmax|quant_map|SCB|weight_format)$|"
                                                                    r"\.quant_state\.", name)),
    ("MXFP4 (blocks with shared exponents)", lambda name, dtype: re.search(r"_blocks$", name) and dtype == "U8"),
)  # fmt: skip


def quantization(ckpt: Checkpoint) -> tuple[str, list[str]] | None:
    """(format, tensors that show it) when the checkpoint is quantized, else None."""
    for fmt, matches in _FORMATS:
        names = [name for name, t in ckpt.tensors.items() if matches(name, t.dtype)]
        if names:
            return fmt, names
    config = ckpt.config.get("quantization_config")
    if isinstance(config, dict):
        return f"{config.get('quant_method', 'unknown method')} (config.json quantization_config)", []
    return None


def refuse_quantized(ckpts: dict[str, Checkpoint]):
    """InputError naming the first quantized input, its format and tensors."""
    for role, ckpt in ckpts.items():
        found = quantization(ckpt)
        if found is None:
            continue
        fmt, names = found
        shown = f" (tensors {listing(names)})" if names else ""
        raise InputError(
            f"{role} {ckpt.path} is a quantized checkpoint: {fmt}{shown}. chatvec merges unquantized weights: "
            "pairing these tensors by name would copy the quantized codes and merge their scales. Use the "
            "unquantized (bf16/f16/f32) release of this model, or dequantize it first"
        )
