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

# (format, what gives it away in tensor names or dtypes). FP8 weights with their scales are supported
# (fp8.py finds them); F8_E8M0 is MXFP4's shared exponent, not a weight.
_FORMATS = (
    ("FP8 (F8_E8M0 shared exponents)", lambda name, dtype: dtype == "F8_E8M0"),
    ("GPTQ/AWQ (packed integer weights with scales and zero points)",
     lambda name, dtype: re.search(r"\.(qweight|qzeros|g_idx)$", name)),
    ("bitsandbytes (4-bit or 8-bit)", lambda name, dtype: re.search(r"\.(absmax|quant_map|SCB|weight_format)$|"
                                                                    r"\.quant_state\.", name)),
    ("MXFP4 (blocks with shared exponents)", lambda name, dtype: re.search(r"_blocks$", name) and dtype == "U8"),
)  # fmt: skip


# quantization_config methods that are FP8 weights with scales (checked tensor by tensor in fp8.py)
FP8_METHODS = ("fp8", "compressed-tensors", "fbgemm_fp8")


def quantization(ckpt: Checkpoint, fp8_weights: int = 0) -> tuple[str, list[str]] | None:
    """(format, tensors that show it) when the checkpoint is quantized in a way chatvec does not merge."""
    for fmt, matches in _FORMATS:
        names = [name for name, t in ckpt.tensors.items() if matches(name, t.dtype)]
        if names:
            return fmt, names
    config = ckpt.config.get("quantization_config")
    if isinstance(config, dict) and not (fp8_weights and config.get("quant_method") in FP8_METHODS):
        return f"{config.get('quant_method', 'unknown method')} (config.json quantization_config)", []
    return None


def refuse_quantized(ckpts: dict[str, Checkpoint], fp8: dict | None = None):
    """InputError naming the first input quantized in an unsupported way, its format and tensors."""
    for role, ckpt in ckpts.items():
        found = quantization(ckpt, len((fp8 or {}).get(role, {})))
        if found is None:
            continue
        fmt, names = found
        shown = f" (tensors {listing(names)})" if names else ""
        raise InputError(
            f"{role} {ckpt.path} is a quantized checkpoint: {fmt}{shown}. chatvec merges unquantized weights: "
            "pairing these tensors by name would copy the quantized codes and merge their scales. Use the "
            "unquantized (bf16/f16/f32) release of this model, or dequantize it first"
        )
