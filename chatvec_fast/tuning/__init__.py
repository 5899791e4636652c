"""tune: one read of the inputs, one model switched to every alpha, the figures that matter for a chat vector
measured at each, and an alpha recommended by a stated rule.

    chatvec tune --base B --chat C --cp P --alphas 0:1:0.1 --text zh.txt --prompts prompts.jsonl --language zh \
        --out tune-out [--write-best DIR]

check.py checks the options (merge's through merge's own Job.build) and files; command.py runs it (model.py:
the model's files as merge writes them and the model built once; HeldMerge switches its weights); the metrics
are prompts.py, language.py, bits.py, generate.py and evaluate.py; pick.py recommends; results.py and plot.py
write results.json, results.md and tune.png; record.py identifies the run for --resume.

Nothing here is imported by `import chatvec_fast`; torch, transformers and the language identifier load when
a tune runs.
"""

from __future__ import annotations


def run(inputs: dict, out, alphas, text, prompts, language, options: dict, spelling: str = "api"):
    """Checks and runs a tune (chatvec_fast.tune and `chatvec tune` end here); returns its TuneResults."""
    from .check import build
    from .command import run_tune

    return run_tune(build(inputs, out, alphas, text, prompts, language, options, spelling))


__all__ = ["run"]
