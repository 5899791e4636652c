"""chatvec-fast: exact, streaming Chat Vector merges of safetensors checkpoints.

    merged = cp + alpha * (chat - base)

for every tensor (Huang et al., "Chat Vector", arXiv 2310.04799), computed in
float64 and rounded once to the output dtype, file to file, in one pass.

Example:
    >>> import chatvec_fast
    >>> report = chatvec_fast.merge("llama-2-13b", "llama-2-13b-chat", "cp-13b", "out", alpha=1.0)
    >>> print(report.summary())
    >>> chatvec_fast.merge_into(model, "llama-2-13b", "llama-2-13b-chat", "cp-13b", alpha=0.5)  # no disk
    >>> print(chatvec_fast.inspect("llama-2-13b", "llama-2-13b-chat", "cp-13b").table())  # the vector by layer

This module stays light: the names below are loaded on first use (PEP 562), and
nothing here imports torch or triton (the torch backend and the GPU kernels load
on first use).
"""

__version__ = "0.1.0"

# name -> the module that defines it, or (module, the name it has there)
_EXPORTS = {
    "merge": "api",
    "sweep": "api",
    "extract": "api",
    "apply": "api",
    "tune": "api",
    "verify": "api",
    "inspect": ("api", "inspect_vector"),  # api.py imports the standard library's inspect under that name
    "inspect_vector": "api",
    "VectorInspection": "inspection",
    "merged_tensors": "memory",
    "merge_into": "memory",
    "HeldMerge": "memory",
    "MergeReport": "report",
    "ChatvecError": "errors",
}

# `from chatvec_fast import *` leaves out `inspect`: it would shadow the standard library's module of that name
# in the importing module (inspect_vector is the same function).
__all__ = [*(name for name in _EXPORTS if name != "inspect"), "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chatvec_fast' has no attribute {name!r}")
    import importlib

    module, there = module if isinstance(module, tuple) else (module, name)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), there)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
