"""chatvec-fast: exact, streaming Chat Vector merges of safetensors checkpoints.

    merged = cp + alpha * (chat - base)

for every tensor (Huang et al., "Chat Vector", arXiv 2310.04799), computed in
float64 and rounded once to the output dtype, file to file, in one pass.

Example:
    >>> import chatvec_fast
    >>> report = chatvec_fast.merge("llama-2-13b", "llama-2-13b-chat", "cp-13b", "out", alpha=1.0)
    >>> print(report.summary())

This module stays light: it imports neither torch nor triton (the torch
backend and the GPU kernels load on first use).
"""

__version__ = "0.1.0"

from .api import MergeReport, apply, extract, merge, sweep
from .errors import ChatvecError

__all__ = ["merge", "sweep", "extract", "apply", "MergeReport", "ChatvecError", "__version__"]
