"""Command line: chatvec merge | sweep | extract | apply | verify | demo (also `python -m chatvec_fast`).

Parses arguments into the API's options and calls it; every decision is the API's. Messages go to stderr
as one line each ("error: ...", "warning: ...", "note: ..."), never as tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .backends import NAMES as BACKEND_NAMES
from .errors import ChatvecError
from .job import TOKEN_SOURCES, TOKENIZER_SOURCES, VOCAB_POLICIES


def _inputs(p: argparse.ArgumentParser, cp=True):
    p.add_argument("--base", required=True, help="the pretrained model the others derive from (e.g. Llama-2-13b)")
    p.add_argument("--chat", required=True, help="its chat-tuned sibling (e.g. Llama-2-13b-chat)")
    if cp:
        p.add_argument("--cp", required=True, help="base continually pretrained on another language")


def _engine(p: argparse.ArgumentParser):
    p.add_argument("--backend", default="auto", choices=BACKEND_NAMES, help="kernel (default: auto = native)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    p.add_argument(
        "--devices",
        default=None,
        metavar="LIST",
        help="triton: GPUs to share the work, e.g. cuda:0,cuda:1 (output shards split by bytes)",
    )
    p.add_argument(
        "--gpu-memory", default=None, metavar="SIZE", help="triton: device memory for buffers per GPU (default 2GiB)"
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="REGEX",
        help="copy tensors whose name matches REGEX from cp unchanged (repeatable)",
    )
    p.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="accept --skip / --alpha-for rules that change no tensor (by default an error: usually a typo)",
    )
    p.add_argument(
        "--max-shard-size",
        default=None,
        metavar="SIZE",
        help="re-shard the output (e.g. 5GB, 2GiB); default: the same shards as cp",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (only a directory holding a model output)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same command: completed shards whose checksums still match are kept",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")  # fmt: skip


def _merge_policies(p: argparse.ArgumentParser, special_tokens=True):
    p.add_argument(
        "--vocab-mismatch",
        default="shared-rows",
        choices=VOCAB_POLICIES,
        help="when cp's vocabulary is larger: merge the shared rows (default), copy from cp, or stop",
    )
    p.add_argument(
        "--dtype", default=None, choices=("bf16", "f16", "f32"), help="output dtype of float tensors (default: cp's)"
    )
    p.add_argument(
        "--alpha-for",
        action="append",
        default=[],
        metavar="REGEX=VALUE",
        help="alpha for tensors matching REGEX (first match wins), e.g. 'embed_tokens|lm_head=0'",
    )
    if special_tokens:
        p.add_argument(
            "--special-tokens-from",
            default="cp",
            choices=TOKEN_SOURCES,
            help="chat: the rows of the special tokens (bos, eos, pad, chat-template tokens) in the "
            "vocabulary tensors come from the chat model, matched by token string",
        )
    p.add_argument(
        "--chat-template-from",
        default=None,
        choices=TOKEN_SOURCES,
        help="whose chat template and eos the output's tokenizer gets (default: chat's when it has one)",
    )
    p.add_argument("--tokenizer-from", default=None, choices=TOKENIZER_SOURCES,
                   help="whose tokenizer files the output gets (default: cp's)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="chatvec",
        description="Chat Vector merges: out = cp + alpha * (chat - base), exact (float64, one rounding), streaming.",
    )
    parser.add_argument("--version", action="version", version=f"chatvec-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("merge", help="merge three checkpoints")
    _inputs(p)
    p.add_argument("--out", required=True, help="output directory (appears only when complete)")
    p.add_argument("--alpha", type=float, default=1.0, help="scale of the chat vector (default 1.0)")
    _merge_policies(p)
    _engine(p)

    p = sub.add_parser("sweep", help="merge several alphas in one pass over the inputs")
    _inputs(p)
    p.add_argument("--out", required=True, help="parent directory: one OUT/alpha-A/ per alpha")
    p.add_argument("--alphas", required=True, help="0.25,0.5,0.75,1.0 or start:stop:step (e.g. 0.25:1:0.25)")
    _merge_policies(p)
    _engine(p)

    p = sub.add_parser("extract", help="save the chat vector chat - base")
    _inputs(p, cp=False)
    p.add_argument("--out", required=True, help="output directory for the vector (a safetensors checkpoint)")
    p.add_argument("--dtype", default="f32", choices=("f32", "f64", "bf16", "f16"),
                   help="storage: f32 (default; rounded elements are counted and reported), f64 (always "
                   "reproduces merge), bf16/f16 (rounds)")  # fmt: skip
    _engine(p)

    p = sub.add_parser("apply", help="apply a saved chat vector: cp + alpha * vector")
    p.add_argument("--vector", required=True, help="a directory written by `chatvec extract`")
    p.add_argument("--cp", required=True, help="the model to add the vector to")
    p.add_argument("--out", required=True, help="output directory (with --alphas: one OUT/alpha-A/ per alpha)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--alpha", type=float, default=None, help="scale of the vector (default 1.0)")
    group.add_argument("--alphas", default=None, help="several alphas in one pass, as for sweep")
    _merge_policies(p, special_tokens=False)
    _engine(p)

    p = sub.add_parser("verify", help="re-derive an output from its inputs and compare, element for element")
    p.add_argument("output", help="an output directory, or a sweep's parent directory")
    p.add_argument("--all", action="store_true", help="check every element (default: samples of every tensor)")
    p.add_argument(
        "--checksums-only",
        action="store_true",
        help="only compare every file with the size and sha256 in its report (fast)",
    )
    p.add_argument(
        "--max-ulp",
        type=int,
        default=0,
        help="tolerated distance in ulps of the output dtype (default 0: bit-identical)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")  # fmt: skip

    demo = sub.add_parser("demo", help="make three tiny models, merge them and check the result")
    demo.add_argument("--alpha", type=float, default=0.5)
    demo.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    demo.add_argument("--keep", metavar="DIR", help="build the models in DIR and keep them")
    return parser


_COMMON = ("backend", "threads", "skip", "allow_unmatched", "max_shard_size", "overwrite", "dry_run", "devices",
           "gpu_memory", "resume")  # fmt: skip
_POLICIES = ("vocab_mismatch", "dtype", "alpha_for", "special_tokens_from", "chat_template_from", "tokenizer_from")


def _options(args, names) -> dict:
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _print_report(report, dry_run: bool) -> int:
    if not report.leader:  # under torchrun, rank 0 speaks for the job
        return 0
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.dropped and not dry_run:
        print(f"note: {len(report.dropped)} tensors of the chat vector are not in cp and were left out: "
              f"{', '.join(report.dropped[:5])}", file=sys.stderr)  # fmt: skip
    if report.inexact:
        print(f"warning: the vector's dtype could not hold {report.inexact} elements of chat - base exactly; "
              "`apply` will differ from `merge` there (use --dtype f64 for an exact vector)",
              file=sys.stderr)  # fmt: skip
    print(report.summary())
    return 0


def _run(args) -> int:
    from . import api

    common = {**_options(args, _COMMON), "progress": not getattr(args, "quiet", False)}
    if args.command == "merge":
        r = api.merge(args.base, args.chat, args.cp, args.out, args.alpha, **common, **_options(args, _POLICIES))
    elif args.command == "sweep":
        r = api.sweep(args.base, args.chat, args.cp, args.out, args.alphas, **common, **_options(args, _POLICIES))
    elif args.command == "extract":
        if args.dtype in ("bf16", "f16"):
            print(f"warning: a {args.dtype} vector rounds most differences; apply will not reproduce merge",
                  file=sys.stderr)  # fmt: skip
        r = api.extract(args.base, args.chat, args.out, dtype=args.dtype, **common)
    elif args.command == "apply":
        alpha = 1.0 if args.alpha is None else args.alpha
        r = api.apply(args.vector, args.cp, args.out, alpha, alphas=args.alphas, **common, **_options(args, _POLICIES))
    elif args.command == "verify":
        reports = api.verify(args.output, every=args.all, max_ulp=args.max_ulp, checksums_only=args.checksums_only,
                             progress=not args.quiet)  # fmt: skip
        for v in reports:
            print(v.summary())
        return 0 if all(v.ok for v in reports) else 1
    else:
        from .demo import run_demo

        return run_demo(args.alpha, args.backend, args.keep)
    return _print_report(r, getattr(args, "dry_run", False))


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: stop like Ctrl-C, so the run cleans up or stays resumable


def _log_to_stderr():
    """Warnings the run gives before it starts working, one line each."""
    logger = logging.getLogger("chatvec_fast")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    try:
        return _run(args)
    except BrokenPipeError:
        return _stdout_closed(args)
    except (ChatvecError, ValueError, NotImplementedError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.command not in ("verify", "demo"):
            print(f"note: {_hint(exc)}", file=sys.stderr)
        return 1 if isinstance(exc, (ChatvecError, OSError)) else 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {_hint(exc)}", file=sys.stderr)
        return 130


def _hint(exc: BaseException) -> str:
    from . import api

    return api.failure_hint(exc)


def _stdout_closed(args) -> int:
    """stdout went away (`chatvec merge ... | head`): the work itself is done; say so once, on stderr."""
    import os

    try:  # later writes to the closed pipe (at interpreter exit) must not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
    done = "" if args.command in ("verify", "demo") or getattr(args, "dry_run", False) else " (the output is complete)"
    print(f"error: stdout was closed before the summary could be printed{done}", file=sys.stderr)
    return 1
