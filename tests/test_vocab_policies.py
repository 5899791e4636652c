"""Vocabulary tensors, config and tokenizer agree in every output, under every policy, or the run stops first.

A chat model that added the ChatML tokens (514 rows against base's 512) merged into a cp of 512 or 600 rows
(expanded), tied or not, whose tokenizer fits its rows, gives an id past them, or stops 64 ids short of them
(an embedding padded past the tokenizer). Over the product of --skip,
--vocab-mismatch and --added-tokens (and a second product of --special-tokens-from, --tokenizer-from and
--added-tokens), each run either stops with one clear error, the one the table in expected_errors() says, or
writes an output that transformers loads, where every tokenizer id has a row in every vocabulary tensor, config
vocab_size is the rows, and every row is the float64 reference's: merged rows round(cp + alpha * (chat - base)),
copied rows cp's bit for bit, appended rows chat's bit for bit.

The product runs whole with --dry-run (the decisions: cheap); written and loaded, a pairwise-covering subset
runs by default and the rest is marked slow.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import signal
import subprocess
from typing import NamedTuple

import pytest
import torch
from conftest import assert_bits_equal, assert_one_line_error

from chatvec_fast.backends.reference import round_float64
from chatvec_fast.cli import main
from chatvec_fast.testing.llama_tokenizer import write_llama_tokenizer
from chatvec_fast.testing.synthetic import make_triple

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

ALPHA = 0.5
B, CHATML = 512, ("<|im_start|>", "<|im_end|>")
EMBED, LM_HEAD = "model.embed_tokens.weight", "lm_head.weight"
SKIPS = {"none": None, "embed": "embed_tokens", "lm_head": "lm_head", "both": "embed_tokens|lm_head"}


class Case(NamedTuple):
    skip: str = "none"
    vocab: str = "shared-rows"  # --vocab-mismatch
    added: str = "append"  # --added-tokens
    expanded: bool = False  # cp has 600 rows
    tied: bool = False
    cp_tokenizer: str = "fits"  # "past-rows": <pad> gets the id of cp's row count; "padded": 64 ids short
    special: str = "cp"  # --special-tokens-from
    tokenizer: str = "cp"  # --tokenizer-from

    @property
    def rows(self) -> int:
        return 600 if self.expanded else B

    def skipped(self, name: str) -> bool:
        return SKIPS[self.skip] is not None and any(p in name for p in SKIPS[self.skip].split("|"))

    def vocab_tensors(self) -> list[str]:
        return [EMBED] if self.tied else [EMBED, LM_HEAD]

    def args(self) -> list[str]:
        out = ["--vocab-mismatch", self.vocab, "--added-tokens", self.added, "--special-tokens-from", self.special,
               "--tokenizer-from", self.tokenizer, "--allow-unmatched"]  # fmt: skip
        return out + (["--skip", SKIPS[self.skip]] if SKIPS[self.skip] else [])


def expected_errors(c: Case) -> list[str]:
    """What each combination means (docs/RELIABILITY.md): the needles of its error, or [] for an output."""
    kept = [n for n in c.vocab_tensors() if not c.skipped(n)]
    skipped = [n for n in c.vocab_tensors() if c.skipped(n)]
    found = []
    if c.added == "error":  # chat added tokens: stop, whatever else happens to the tensors
        found.append("(--added-tokens error)")
    else:
        if c.expanded and c.vocab == "error" and kept:
            found.append("(--vocab-mismatch error)")
        if c.added == "append":
            found += [f"keeps cp's {c.rows} rows of {n}, but --added-tokens append adds 2 tokens" for n in skipped]
            if c.expanded and c.vocab == "skip":
                found += [f"--vocab-mismatch skip copies cp's {c.rows} rows of {n}" for n in kept]
    if found:
        return found
    if c.tokenizer != "cp" and c.added == "append":
        return ["--added-tokens append", "the output's tokenizer is not cp's"]
    if c.tokenizer == "chat":  # chat's ids 512-513 name tokens whose rows the output does not hold
        return ["--tokenizer-from chat", "ids up to 513"] if not c.expanded else ["--tokenizer-from chat", "512-513"]
    if c.tokenizer == "cp" and c.cp_tokenizer == "past-rows":
        return ["tokenizer.json", "'<pad>'", f"the id {c.rows}", f"outside cp's {c.rows} embedding rows"]
    if c.tokenizer == "cp" and c.cp_tokenizer == "padded" and c.added == "append":  # ids would not be the rows
        first = c.rows - 64
        return ["padded past its tokenizer", f"next ids ({first}-{first + 1})", f"appended ({c.rows}-{c.rows + 1})"]
    return []


# -- the inputs, made once per (expanded, tied, cp_tokenizer) ---------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    made = {}

    def get(c: Case):
        key = (c.expanded, c.tied, c.cp_tokenizer)
        if key not in made:
            root = tmp_path_factory.mktemp("vocab-" + "-".join(map(str, key)))
            paths = make_triple(str(root), "tiny", cp_vocab=c.rows, tie=c.tied, chatml="added",
                                shard_bytes={"cp": 60_000})  # fmt: skip
            if c.cp_tokenizer == "past-rows":
                give_pad_a_row_cp_lacks(paths["cp"], c.rows)
            if c.cp_tokenizer == "padded":  # as Phi-3 pads 32,011 tokens to 32,064 rows
                write_llama_tokenizer(paths["cp"], c.rows - 64, chatml=None)
            states = {role: load_dir(p) for role, p in paths.items()}
            made[key] = paths, states
        return made[key]

    return get


def give_pad_a_row_cp_lacks(directory: str, rows: int):
    """A <pad> added to the tokenizer without resizing the embedding: id `rows`, one past the last row."""
    path = os.path.join(directory, "tokenizer.json")
    doc = json.load(open(path, encoding="utf-8"))
    entry = {"id": rows, "content": "<pad>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}  # fmt: skip
    doc["added_tokens"].append(entry)
    json.dump(doc, open(path, "w", encoding="utf-8"), ensure_ascii=False)


def load_dir(directory) -> dict[str, torch.Tensor]:
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            out.update(safetensors_torch.load_file(os.path.join(directory, name)))
    return out


def cli_in_process(*args) -> subprocess.CompletedProcess:
    """The command line, run in this process (a tenth of a subprocess' time), output captured."""
    logger = logging.getLogger("chatvec_fast")
    saved, term = list(logger.handlers), signal.getsignal(signal.SIGTERM)
    logger.handlers.clear()  # main() attaches its handler to the stderr captured below
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in args])
    finally:
        logger.handlers[:] = saved
        signal.signal(signal.SIGTERM, term)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def merge(inputs, c: Case, out, *extra) -> subprocess.CompletedProcess:
    paths, _ = inputs(c)
    roles = [a for r in ("base", "chat", "cp") for a in (f"--{r}", paths[r])]
    return cli_in_process("merge", *roles, "--out", out, "--alpha", ALPHA, "--quiet", *c.args(), *extra)


# -- the reference and the checks of an output ----------------------------------------------------------------


def merged(cp, chat, base) -> torch.Tensor:
    return round_float64(cp.double() + ALPHA * (chat.double() - base.double()), cp.dtype)


def reference(states, c: Case) -> dict[str, torch.Tensor]:
    want = {}
    for name, cp in states["cp"].items():
        chat, base = states["chat"][name], states["base"][name]
        if name not in c.vocab_tensors():
            want[name] = merged(cp, chat, base)
            continue
        t = cp.clone()
        if c.skipped(name):
            want[name] = t  # --skip: cp's, bit for bit
            continue
        if not (c.expanded and c.vocab == "skip"):
            t[:B] = merged(cp[:B], chat[:B], base)  # cp's rows past base's stay cp's
        if c.special == "chat":
            t[:3] = chat[:3]  # <unk> <s> </s>: chat's rows at cp's ids (the same ids here)
        if c.added == "append":
            t = torch.cat([t, chat[B:]])  # ChatML: chat's rows 512-513, as they are
        want[name] = t
    return want


def check_output(out, states, c: Case):
    want_rows = c.rows + (2 if c.added == "append" else 0)
    got = load_dir(out)
    want = reference(states, c)
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert_bits_equal(got[name], tensor, f"{c}: {name}")
    assert {got[n].shape[0] for n in c.vocab_tensors()} == {want_rows}
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["vocab_size"] == want_rows
    doc = json.load(open(os.path.join(out, "tokenizer.json"), encoding="utf-8"))
    ids = [*doc["model"]["vocab"].values(), *(t["id"] for t in doc["added_tokens"])]
    assert max(ids) < want_rows and min(ids) >= 0  # every id has a row in every vocabulary tensor
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16)
    assert model.config.vocab_size == want_rows
    assert max(tokenizer.get_vocab().values()) < want_rows and len(tokenizer) <= want_rows
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        assert module.weight.shape[0] == want_rows
    assert_bits_equal(model.get_input_embeddings().weight.detach(), want[EMBED], f"{c}: loaded embedding")
    if c.added == "append":  # the chat template's tokens are one id each, the ids of the appended rows
        assert tokenizer.convert_tokens_to_ids(list(CHATML)) == [c.rows, c.rows + 1]
        text = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False)
        assert tokenizer(text, add_special_tokens=False)["input_ids"][0] == c.rows
    else:
        assert all(t not in tokenizer.get_vocab() for t in CHATML)
    with torch.no_grad():
        model(torch.tensor([tokenizer("Hello world")["input_ids"]]))  # every id reads a row


def run_case(inputs, c: Case, out):
    _, states = inputs(c)
    r = merge(inputs, c, out)
    needles = expected_errors(c)
    if needles:
        assert_one_line_error(r, *needles)
        assert not os.path.exists(out)
    else:
        assert r.returncode == 0, r.stderr
        check_output(out, states, c)


# -- the products ---------------------------------------------------------------------------------------------


def pairwise(space: dict[str, tuple]) -> set[tuple]:
    """A small set of combinations in which every pair of values of any two parameters appears (greedy:
    the first combination covering the most pairs not yet covered, until none is left)."""
    names = list(space)
    pairs = lambda c: {(i, c[i], j, c[j]) for i, j in itertools.combinations(range(len(names)), 2)}  # noqa: E731
    combos = list(itertools.product(*space.values()))
    todo, chosen = set().union(*map(pairs, combos)), set()
    while todo:
        best = max(combos, key=lambda c: len(pairs(c) & todo))
        chosen.add(best)
        todo -= pairs(best)
    return chosen


def grid(space: dict[str, tuple]) -> list:
    """The product as pytest params; those outside the pairwise subset are marked slow."""
    fast = pairwise(space)
    return [pytest.param(Case(**dict(zip(space, combo))), marks=() if combo in fast else pytest.mark.slow,
                         id="-".join(map(str, combo))) for combo in itertools.product(*space.values())]  # fmt: skip


VOCAB_SPACE = {"skip": tuple(SKIPS), "vocab": ("shared-rows", "skip", "error"), "added": ("append", "drop", "error"),
               "expanded": (False, True), "tied": (False, True),
               "cp_tokenizer": ("fits", "past-rows", "padded")}  # fmt: skip
TOKEN_SPACE = {"special": ("cp", "chat"), "tokenizer": ("cp", "chat", "base"), "added": ("append", "drop", "error"),
               "expanded": (False, True)}  # fmt: skip


@pytest.mark.parametrize("case", grid(VOCAB_SPACE))
def test_vocabulary_policies_give_a_consistent_model_or_one_error(inputs, tmp_path, case):
    run_case(inputs, case, tmp_path / "out")


@pytest.mark.parametrize("case", grid(TOKEN_SPACE))
def test_token_sources_give_a_consistent_model_or_one_error(inputs, tmp_path, case):
    run_case(inputs, case, tmp_path / "out")


def test_every_decision_of_the_products_before_any_work(inputs, tmp_path):
    """The whole of both products, planned only (--dry-run): each stops with its error or plans an output."""
    spaces = (VOCAB_SPACE, TOKEN_SPACE)
    cases = [Case(**dict(zip(s, combo))) for s in spaces for combo in itertools.product(*s.values())]
    for i, c in enumerate(cases):
        r = merge(inputs, c, tmp_path / f"dry{i}", "--dry-run")
        needles = expected_errors(c)
        if needles:
            assert_one_line_error(r, *needles)
        else:
            assert r.returncode == 0, (c, r.stderr)
