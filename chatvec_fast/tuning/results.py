"""What a tune writes: results.json (every figure and every reply, the options, versions and input identities),
results.md (a table), and the TuneResults the API returns.

results.json is rewritten whole, atomically, after every alpha (a reader, or a run interrupted by Ctrl-C, sees
the previous complete version or the new one, never a part), so the finished alphas survive an interruption and
`--resume` continues from them. Everything in it is deterministic except the figures named "seconds".
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from ..errors import OutputError
from ..write.durable import write_atomic
from .vector import VECTOR_DIR
from .vector import markdown as vector_markdown

RESULTS_NAME = "results.json"
TABLE_NAME = "results.md"
PLOT_NAME = "tune.png"
MODEL_DIR = "model"  # the merged model's files without weights: config, tokenizer, chat template, eos
FORMAT = 1
OURS = (RESULTS_NAME, TABLE_NAME, PLOT_NAME, MODEL_DIR, VECTOR_DIR, RESULTS_NAME + ".tmp", MODEL_DIR + ".partial")
FIGURES = ("bits_per_byte", "reference_bits_per_byte", "fidelity", "line_fidelity", "stops", "answer_bits_per_byte")
REFERENCE_NOTES = {
    "cp": "cp alone: the merge at alpha 0 (cp's weights) with the merged model's tokenizer, chat template and eos",
    "chat": "the chat model alone, loaded from chat with its own tokenizer, chat template and eos",
}


@dataclass
class TuneResults:
    """A tune's results: `alpha` is the recommended alpha, `document` what results.json holds.

    >>> results = chatvec_fast.tune("base", "chat", "cp", "tune-out", "0:1:0.25", text="zh.txt",
    ...                             prompts="prompts.jsonl", language="zh")
    >>> results.alpha, results.rows[0]["fidelity"]
    """

    out: str
    document: dict

    @property
    def alpha(self):
        return (self.document.get("recommendation") or {}).get("alpha")

    @property
    def rows(self) -> list[dict]:
        return self.document["rows"]

    @property
    def references(self) -> dict:
        return self.document["references"]

    def summary(self) -> str:
        if self.document.get("dry_run"):
            return self.document["dry_run"]
        rec = self.document.get("recommendation") or {}
        done = f"{len(self.rows)} of {len(self.document['alphas'])} alphas"
        if rec.get("alpha") is None:
            return f"tune: {done} evaluated; no recommendation ({rec.get('reason', 'unfinished')}) | {self.out}"
        return (f"tune: {done} evaluated; recommended alpha {rec['alpha']!r} by {rec['rule']} ({rec['reason']}) | "
                f"{os.path.join(self.out, TABLE_NAME)}")  # fmt: skip


def save(out: str, document: dict):
    """results.json, replaced in one step."""
    write_atomic(os.path.join(out, RESULTS_NAME), json.dumps(document, indent=2, ensure_ascii=False) + "\n",
                 point="report")  # fmt: skip


def load(out: str) -> dict:
    """An earlier run's results.json (for --resume): ours, readable, of this format."""
    path = os.path.join(out, RESULTS_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise OutputError(f"--resume: {out} holds no {RESULTS_NAME}, so it is not a tune's output; choose the "
                          "--out of the run to continue, or an empty or new directory") from None  # fmt: skip
    except (OSError, ValueError) as exc:
        raise OutputError(f"--resume: {path} cannot be read ({exc}); start again in a new --out") from None
    if not isinstance(document, dict) or document.get("tool") != "chatvec-fast" or document.get("kind") != "tune":
        raise OutputError(f"--resume: {path} is not a chatvec tune's results; choose another --out")
    if document.get("format") != FORMAT:
        raise OutputError(f"--resume: {path} has format {document.get('format')!r}, this version writes {FORMAT}; "
                          "start again in a new --out")  # fmt: skip
    return document


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(document: dict) -> str:
    """results.md: one row per alpha and the two references, the rule, the recommendation."""
    rec = document.get("recommendation") or {}
    heads = ["", "alpha", "bits/byte --text", "bits/byte --reference-text", "fidelity", "line fidelity", "stops",
             "bits/byte of answers", "merge s", "evaluate s"]  # fmt: skip
    lines = [f"# chatvec tune: {document['formula']}", "",
             f"Language `{document['evaluation']['language']}`; {len(document['rows'])} of "
             f"{len(document['alphas'])} alphas evaluated.", "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]  # fmt: skip

    def line(label, row):
        seconds = row.get("seconds") or {}
        alpha = "-" if row.get("alpha") is None else f"{row['alpha']:g}"
        cells = [label, alpha, *(_cell(row.get(k)) for k in FIGURES),
                 _cell(seconds.get("merge")), _cell(seconds.get("evaluate"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")

    refs = document["references"]
    if "cp" in refs:
        line("cp alone", refs["cp"])
    for row in document["rows"]:
        line("**recommended**" if row["alpha"] == rec.get("alpha") else "", row)
    if "chat" in refs:
        line("chat alone", refs["chat"])
    lines += ["", "Fidelity: the share of replies (line fidelity: of non-empty reply lines) identified as the "
              "language; stops: the share of replies that end with eos before --max-new-tokens.", ""]  # fmt: skip
    for name, note in REFERENCE_NOTES.items():
        lines.append(f"- {name}: {note}")
    lines += vector_markdown(document.get("vector"))
    lines += ["", f"**Rule** (`--pick {rec.get('rule', document['options']['pick'])}`): "
              f"{rec.get('statement', '')}", ""]  # fmt: skip
    if rec.get("alpha") is not None:
        lines.append(f"**Recommended alpha: {rec['alpha']!r}** ({rec['reason']}).")
    else:
        lines.append(f"No recommendation yet: {rec.get('reason', 'the run is unfinished')}.")
    return "\n".join(lines) + "\n"


def write_table(out: str, document: dict):
    write_atomic(os.path.join(out, TABLE_NAME), markdown(document), point="report")
