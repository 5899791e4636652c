"""Command line: chatvec merge | sweep | extract | apply | verify | demo (also `python -m chatvec_fast`)."""

from __future__ import annotations

import argparse
import signal
import sys

from .backends import NAMES as BACKEND_NAMES
from .errors import ChatvecError
from .job import VOCAB_POLICIES


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
        "--max-shard-size",
        default=None,
        metavar="SIZE",
        help="re-shard the output (e.g. 5GB, 2GiB); default: mirror the input's shards",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same command: completed shards whose checksums still match are kept",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _merge_policies(p: argparse.ArgumentParser, tokenizer=True):
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
    if tokenizer:
        p.add_argument(
            "--special-tokens-from",
            default="cp",
            choices=("cp", "chat"),
            help="chat: the rows of the special tokens (bos, eos, pad, chat-template tokens) in the "
            "vocabulary tensors come from the chat model, matched by token string",
        )
        p.add_argument(
            "--chat-template-from",
            default=None,
            choices=("cp", "chat"),
            help="whose chat template and eos the output's tokenizer gets (default: chat's when it has one)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatvec",
        description="Chat Vector merges: out = cp + alpha * (chat - base), exact (float64, one rounding), streaming.",
    )
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
    p.add_argument(
        "--dtype",
        default="f32",
        choices=("f32", "f64", "bf16", "f16"),
        help="storage: f32 (default; rounded elements are counted and reported), f64 (always "
        "reproduces merge), bf16/f16 (rounds)",
    )
    _engine(p)

    p = sub.add_parser("apply", help="apply a saved chat vector: cp + alpha * vector")
    p.add_argument("--vector", required=True, help="a directory written by `chatvec extract`")
    p.add_argument("--cp", required=True, help="the model to add the vector to")
    p.add_argument("--out", required=True, help="output directory (with --alphas: one OUT/alpha-A/ per alpha)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--alpha", type=float, default=None, help="scale of the vector (default 1.0)")
    group.add_argument("--alphas", default=None, help="several alphas in one pass, as for sweep")
    _merge_policies(p, tokenizer=False)
    _engine(p)

    p = sub.add_parser("verify", help="re-derive an output from its inputs and compare, element for element")
    p.add_argument("output", help="an output directory, or a sweep's parent directory")
    p.add_argument("--all", action="store_true", help="check every element (default: samples of every tensor)")
    p.add_argument(
        "--checksums-only",
        action="store_true",
        help="only compare every shard file with the sha256 in its report (fast)",
    )
    p.add_argument(
        "--max-ulp",
        type=int,
        default=0,
        help="tolerated distance in ulps of the output dtype (default 0: bit-identical)",
    )

    demo = sub.add_parser("demo", help="make three tiny models, merge them and check the result")
    demo.add_argument("--alpha", type=float, default=0.5)
    demo.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    demo.add_argument("--keep", metavar="DIR", help="build the models in DIR and keep them")
    return parser


def _common(args) -> dict:
    return {
        "backend": args.backend,
        "threads": args.threads,
        "skip": args.skip,
        "max_shard_size": args.max_shard_size,
        "overwrite": args.overwrite,
        "dry_run": args.dry_run,
        "progress": not args.quiet,
        "devices": args.devices,
        "gpu_memory": args.gpu_memory,
        "resume": args.resume,
    }


def _policies(args) -> dict:
    out = {"vocab_mismatch": args.vocab_mismatch, "dtype": args.dtype, "alpha_for": args.alpha_for}
    if hasattr(args, "special_tokens_from"):
        out.update(special_tokens_from=args.special_tokens_from, chat_template_from=args.chat_template_from)
    return out


def _print_report(report, dry_run: bool) -> int:
    if not report.leader:  # under torchrun, rank 0 speaks for the job
        return 0
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.dropped and not dry_run:
        print(
            f"note: {len(report.dropped)} tensors of the chat vector are not in cp and were left out: "
            f"{', '.join(report.dropped[:5])}",
            file=sys.stderr,
        )
    if report.inexact:
        print(
            f"warning: the vector's dtype could not hold {report.inexact} elements of chat - base exactly; "
            "`apply` will differ from `merge` there (use --dtype f64 for an exact vector)",
            file=sys.stderr,
        )
    print(report.summary())
    return 0


def _run(args) -> int:
    from . import api

    if args.command == "merge":
        r = api.merge(args.base, args.chat, args.cp, args.out, args.alpha, **_common(args), **_policies(args))
    elif args.command == "sweep":
        r = api.sweep(args.base, args.chat, args.cp, args.out, args.alphas, **_common(args), **_policies(args))
    elif args.command == "extract":
        if args.dtype in ("bf16", "f16"):
            print(
                f"warning: a {args.dtype} vector rounds most differences; apply will not reproduce merge",
                file=sys.stderr,
            )
        r = api.extract(args.base, args.chat, args.out, dtype=args.dtype, **_common(args))
    elif args.command == "apply":
        alpha = 1.0 if args.alpha is None else args.alpha
        r = api.apply(args.vector, args.cp, args.out, alpha, alphas=args.alphas, **_common(args), **_policies(args))
    elif args.command == "verify":
        reports = api.verify(args.output, every=args.all, max_ulp=args.max_ulp, checksums_only=args.checksums_only)
        for v in reports:
            print(v.summary())
        return 0 if all(v.ok for v in reports) else 1
    else:
        from .demo import run_demo

        return run_demo(args.alpha, args.backend, args.keep)
    return _print_report(r, getattr(args, "dry_run", False))


def _resume_hint(args) -> str:
    from . import api

    return api.resume_hint(args.out, getattr(args, "alphas", None))


def _writes_output(args) -> bool:
    return args.command not in ("verify", "demo")


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: stop like Ctrl-C, so the run cleans up or stays resumable


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    try:
        return _run(args)
    except (ChatvecError, ValueError, NotImplementedError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if _writes_output(args):
            print(f"note: {_resume_hint(args)}", file=sys.stderr)
        return 1 if isinstance(exc, ChatvecError) else 2
    except KeyboardInterrupt:
        hint = _resume_hint(args) if _writes_output(args) else "no output was written"
        print(f"interrupted: {hint}", file=sys.stderr)
        return 130
