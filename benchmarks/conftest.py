"""pytest-benchmark suite (`pytest benchmarks/ --benchmark-only`), kept out of the default test run.

CHATVEC_BENCH_SMOKE=1 shrinks everything (tiny models, 1M-element buffers, one round) so CI can run the
suite in seconds and it cannot rot. CHATVEC_BENCH_SIZE picks the file-level model (default 1b).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

# Without a GPU, the Triton smoke runs in triton's interpreter; set before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SMOKE = os.environ.get("CHATVEC_BENCH_SMOKE", "") not in ("", "0")
ROUNDS = 1 if SMOKE else int(os.environ.get("CHATVEC_BENCH_ROUNDS", "3"))
