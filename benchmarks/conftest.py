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

SMOKE = os.environ.get("CHATVEC_BENCH_SMOKE", "") not in ("", "0")
ROUNDS = 1 if SMOKE else int(os.environ.get("CHATVEC_BENCH_ROUNDS", "3"))
