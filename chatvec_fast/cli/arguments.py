"""The command line's arguments: one argparse parser for merge, sweep, extract, apply, verify and demo.

Option meanings and defaults follow job.Settings (the API's single declaration); here they get their
command-line spelling and help text.
"""

from __future__ import annotations

import argparse

from ..backends import NAMES as BACKEND_NAMES
from ..job import ADDED_TOKEN_POLICIES, TOKEN_SOURCES, TOKENIZER_SOURCES, VOCAB_POLICIES


def _inputs(p: argparse.ArgumentParser, cp=True, required=True):
    where = " (a directory, or a Hugging Face Hub id such as org/name or org/name@revision)"
    p.add_argument("--base", required=required, help="the pretrained model the others derive from" + where)
    p.add_argument("--chat", required=required, help="its chat-tuned sibling" + where)
    if cp:
        p.add_argument("--cp", required=required, help="base continually pretrained on another language" + where)


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
        "--revision",
        default=None,
        metavar="REV",
        help="branch, tag or commit of every Hugging Face Hub id given without '@REV'",
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
        "--dtype",
        default=None,
        choices=("bf16", "f16", "f32", "fp8"),
        help="output dtype of float tensors (default: cp's; FP8 weights come out bf16); fp8: cp's FP8 weights stay "
        "FP8, re-quantized in cp's layout",
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
        p.add_argument("--added-tokens", default="append", choices=ADDED_TOKEN_POLICIES,
                       help="tokens chat added (rows base lacks, e.g. ChatML's): append chat's rows and tokens to "
                       "cp's (default), drop them, or stop")  # fmt: skip
    p.add_argument(
        "--chat-template-from",
        default=None,
        choices=TOKEN_SOURCES,
        help="whose chat template and eos the output's tokenizer gets (default: chat's when it has one)",
    )
    p.add_argument(
        "--tokenizer-from",
        default=None,
        choices=TOKENIZER_SOURCES,
        help="whose tokenizer files the output gets (default: cp's)",
    )
    p.add_argument("--no-model-card", dest="model_card", action="store_false",
                   help="no README.md model card (with one, cp's own card is kept as README.cp.md)")  # fmt: skip


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
    p.add_argument(
        "--mergekit-config",
        metavar="YAML",
        default=None,
        help="take the models, alpha, per-tensor alphas and dtype from a mergekit task_arithmetic or "
        "linear config that expresses this merge (instead of --base/--chat/--cp/--alpha)",
    )
    p.add_argument("--out", required=True, help="output directory (appears only when complete)")
    p.add_argument("--alpha", type=float, default=None, help="scale of the chat vector (default 1.0)")
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
