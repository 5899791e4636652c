"""The command line's arguments: one argparse parser for merge, sweep, extract, apply, tune, inspect, verify and demo.

Every option of merge, sweep, extract, apply and inspect (its flag, default, choices and help) comes from
settings.Settings, the one declaration the Python API reads too; here are only each command's inputs,
output and alphas.
"""

from __future__ import annotations

import argparse

from ..backends import NAMES as BACKEND_NAMES
from ..settings import Settings

_WHERE = " (a directory, or a Hugging Face Hub id such as org/name or org/name@revision)"


def _inputs(p: argparse.ArgumentParser, cp=True, required=True):
    p.add_argument("--base", required=required, help="the pretrained model the others derive from" + _WHERE)
    p.add_argument("--chat", required=required, help="its chat-tuned sibling" + _WHERE)
    if cp:
        p.add_argument("--cp", required=required, help="base continually pretrained on another language" + _WHERE)


def add_options(p: argparse.ArgumentParser, command: str):
    """The command's options, from Settings. Repeatable options collect into a list; flags are booleans."""
    for f in Settings.for_command(command):
        cli = f.metadata["cli"]
        if cli is None:  # the API's only (chunk_elements)
            continue
        kwargs = dict(cli)
        default = Settings.default(f.name, command)
        if "choices" in kwargs:
            kwargs["choices"] = Settings.choices(f.name, command)
        if kwargs.get("action") == "append":
            default = []
        if kwargs.get("action") == "store_false":  # the flag turns the option off (--quiet, --no-model-card)
            default = True
        shown = "" if default in (None, [], False, True) else f" (default: {default})"
        text = kwargs.pop("help", None) or Settings.doc(f.name, command) + shown
        p.add_argument(Settings.flag(f.name), dest=f.name, default=default, help=text, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="chatvec",
        description="Chat Vector merges: out = cp + alpha * (chat - base), exact (float64, one rounding), streaming.",
    )
    parser.add_argument("--version", action="version", version=f"chatvec-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("merge", help="merge three checkpoints")
    _inputs(p, required=False)
    p.add_argument("--mergekit-config", metavar="YAML", default=None,
                   help="take the models, alpha, per-tensor alphas and dtype from a mergekit task_arithmetic or "
                   "linear config that expresses this merge (instead of --base/--chat/--cp/--alpha)")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory (appears only when complete)")
    p.add_argument("--alpha", type=float, default=None, help="scale of the chat vector (default 1.0)")
    p.add_argument("--alphas", default=None, help=argparse.SUPPRESS)  # a sweep's: pointed to `chatvec sweep`
    add_options(p, "merge")

    p = sub.add_parser("sweep", help="merge several alphas in one pass over the inputs")
    _inputs(p)
    p.add_argument("--out", required=True, help="parent directory: one OUT/alpha-A/ per alpha")
    p.add_argument("--alphas", required=True, help="0.25,0.5,0.75,1.0 or start:stop:step (e.g. 0.25:1:0.25)")
    add_options(p, "sweep")

    p = sub.add_parser("extract", help="save the chat vector chat - base")
    _inputs(p, cp=False)
    p.add_argument("--out", required=True, help="output directory for the vector (a safetensors checkpoint)")
    add_options(p, "extract")

    p = sub.add_parser("apply", help="apply saved chat vectors: cp + alpha * vector (+ alpha2 * vector2 ...)")
    p.add_argument("--vector", required=True, action="append",
                   help="a directory written by `chatvec extract`; repeat for several vectors, each read once "
                   "(the chat template and eos come from the first)")  # fmt: skip
    p.add_argument("--cp", required=True, help="the model to add the vectors to")
    p.add_argument("--out", required=True, help="output directory (with --alphas: one OUT/alpha-A/ per alpha)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--alpha", type=float, default=None, action="append",
                       help="scale of the vector (default 1.0); once per --vector, in the same order")  # fmt: skip
    group.add_argument("--alphas", default=None, action="append",
                       help="several alphas in one pass, as for sweep; once per --vector (their grid is swept: "
                       "OUT/alpha-0.5_1.0/ ...)")  # fmt: skip
    add_options(p, "apply")

    p = sub.add_parser("tune", help="measure the merge at several alphas on one model in memory; recommend one")
    _inputs(p)
    p.add_argument("--alphas", required=True, help="the alphas to measure, as for sweep (e.g. 0:1:0.1)")
    p.add_argument("--text", required=True, metavar="FILE",
                   help="a text in cp's language (UTF-8): its bits per byte at each alpha")  # fmt: skip
    p.add_argument("--prompts", required=True, metavar="JSONL",
                   help='one JSON object a line: {"prompt": ...} or {"messages": [...]}, optionally '
                   '"answer"')  # fmt: skip
    p.add_argument("--language", required=True, metavar="CODE",
                   help="the language replies should be in, an ISO 639-1 code (e.g. zh, ko, de)")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory: results.json, results.md, tune.png")
    add_options(p, "tune")

    p = sub.add_parser("inspect", help="measure the chat vector per tensor and per layer (and its cosine with cp's "
                       "own change)")  # fmt: skip
    _inputs(p, cp=False)
    p.add_argument("--cp", default=None, help="the continually pretrained model: adds the cosine of chat - base "
                   "with cp - base" + _WHERE)  # fmt: skip
    p.add_argument("--out", default=None, help="a new or empty directory for inspect.json, inspect.md (the tables) "
                   "and inspect.png (the plot by layer)")  # fmt: skip
    add_options(p, "inspect")

    p = sub.add_parser("verify", help="re-derive an output from its inputs, compare every element, check it loads")
    p.add_argument("output", help="an output directory, or a sweep's parent directory")
    p.add_argument("--all", action="store_true", help="check every element (default: samples of every tensor)")
    p.add_argument("--checksums-only", action="store_true",
                   help="only compare every file with the size and sha256 in its report (fast)")  # fmt: skip
    p.add_argument("--max-ulp", type=int, default=0,
                   help="tolerated distance in ulps of the output dtype (default 0: bit-identical)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress output")

    demo = sub.add_parser("demo", help="make three tiny models, merge them and check the result")
    demo.add_argument("--alpha", type=float, default=0.5)
    demo.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    demo.add_argument("--keep", metavar="DIR", help="build the models in DIR and keep them")
    return parser
