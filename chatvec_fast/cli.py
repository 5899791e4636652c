"""Command line: `chatvec merge ...`, `chatvec demo` (also `python -m chatvec_fast ...`)."""

from __future__ import annotations

import argparse
import sys

from .backends import NAMES as BACKEND_NAMES
from .errors import ChatvecError
from .planner import VOCAB_POLICIES


def _add_merge_arguments(p: argparse.ArgumentParser):
    p.add_argument("--base", required=True, help="the pretrained model the others derive from (e.g. Llama-2-13b)")
    p.add_argument("--chat", required=True, help="its chat-tuned sibling (e.g. Llama-2-13b-chat)")
    p.add_argument("--cp", required=True, help="base continually pretrained on another language")
    p.add_argument("--out", required=True, help="output directory (appears only when complete)")
    p.add_argument("--alpha", type=float, default=1.0, help="scale of the chat vector (default 1.0)")
    _add_engine_arguments(p)


def _add_engine_arguments(p: argparse.ArgumentParser):
    p.add_argument("--backend", default="auto", choices=BACKEND_NAMES, help="kernel (default: auto = native)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--skip", action="append", default=[], metavar="REGEX",
                   help="copy tensors whose name matches REGEX from cp unchanged (repeatable)")  # fmt: skip
    p.add_argument("--vocab-mismatch", default="shared-rows", choices=VOCAB_POLICIES,
                   help="when cp's vocabulary is larger: merge the shared rows (default), copy from cp, "
                   "or stop")  # fmt: skip
    p.add_argument("--max-shard-size", default=None, metavar="SIZE",
                   help="re-shard the output (e.g. 5GB, 2GiB); default: mirror cp's shards")  # fmt: skip
    p.add_argument("--dtype", default=None, choices=("bf16", "f16", "f32"),
                   help="output dtype of float tensors (default: cp's)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatvec",
        description="Chat Vector merges: out = cp + alpha * (chat - base), exact (float64, one rounding), streaming.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_merge_arguments(sub.add_parser("merge", help="merge three checkpoints"))
    demo = sub.add_parser("demo", help="make three tiny models, merge them and check the result")
    demo.add_argument("--alpha", type=float, default=0.5)
    demo.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    demo.add_argument("--keep", metavar="DIR", help="build the models in DIR and keep them")
    return parser


def _merge(args) -> int:
    from .api import merge

    report = merge(
        args.base, args.chat, args.cp, args.out, args.alpha,
        backend=args.backend, threads=args.threads, skip=args.skip, vocab_mismatch=args.vocab_mismatch,
        max_shard_size=args.max_shard_size, dtype=args.dtype, overwrite=args.overwrite, dry_run=args.dry_run,
        progress=not args.quiet,
    )  # fmt: skip
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.dropped and not args.dry_run:
        print(f"note: {len(report.dropped)} tensors of base/chat are not in cp and were left out: "
              f"{', '.join(report.dropped[:5])}", file=sys.stderr)  # fmt: skip
    print(report.summary())
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "merge":
            return _merge(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.alpha, args.backend, args.keep)
    except ChatvecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return 130
    return 2
