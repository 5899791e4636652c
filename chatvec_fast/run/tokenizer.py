"""Which tokenizer an output gets, and whether the chat model's chat template and eos go into it.

The Chat Vector paper keeps cp's tokenizer (cp speaks the new language) with the chat model's chat template
and eos. Decided before any work, from the files alone; never a tokenizer that cannot load (a
tokenizer_config.json holding only a chat template is not one), never one whose ids run past the
embedding's rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import InputError
from ..filenames import CHAT_TEMPLATE_FILES, TOKENIZER_JSON, VECTOR_CHAT_DIR
from ..plan.added_tokens import embedding_rows
from ..plan.problems import listing
from ..plan.types import Plan
from ..plan.vocab import EMBED_NAME
from ..read.model_files import (
    chat_template,
    eos_token,
    has_tokenizer,
    has_vocab,
    load_vocab,
    next_token_id,
    short,
    token_text,
)


@dataclass
class TokenizerChoice:
    directory: str | None  # where the output's tokenizer files come from; None: the output gets none
    role: str  # cp, chat or base
    template: object = None  # the chat model's chat template to write, or None to keep the tokenizer's own
    found_in: str | None = None
    eos: object = None  # chat's eos entry to write (a string or an AddedToken object), or None
    eos_id: int | None = None  # its id in the output's vocabulary
    record: dict = field(default_factory=dict)  # the report's "chat_template" entry

    def edit_tokenizer_config(self, config: dict) -> dict:
        config = dict(config)
        config["chat_template"] = self.template
        if self.eos_id is not None:
            config["eos_token"] = self.eos
        return config

    def edit_tokenizer_json(self, doc: dict, appended) -> dict:
        """Chat's added tokens, appended to the tokenizer with the ids of their appended rows."""
        doc = dict(doc)
        doc["added_tokens"] = [*(doc.get("added_tokens") or []),
                               *({"id": t.row, "content": t.token, **_flags(t)} for t in appended)]  # fmt: skip
        return doc

    def edit_tokenizer_config_for(self, config: dict, appended) -> dict:
        config = self.edit_tokenizer_config(config) if self.template is not None else dict(config)
        if appended:
            decoder = dict(config.get("added_tokens_decoder") or {})
            decoder.update({str(t.row): {"content": t.token, **_flags(t)} for t in appended})
            config["added_tokens_decoder"] = decoder
        return config

    @property
    def replaces_template_files(self) -> tuple[str, ...]:
        """The tokenizer's own template files, left out: they would compete with the one written."""
        return CHAT_TEMPLATE_FILES if self.template is not None else ()


def chat_files_dir(plan: Plan) -> str | None:
    """Where chat's tokenizer files are: the chat model (merge), or the vector's chat/ folder (apply)."""
    if plan.options.kind == "apply":
        carried = os.path.join(plan.inputs["vector"].directory, VECTOR_CHAT_DIR)
        return carried if os.path.isdir(carried) else None
    return plan.inputs["chat"].directory


def choose_tokenizer(plan: Plan, chat_template_from: str | None, tokenizer_from: str | None) -> TokenizerChoice:
    """The output's tokenizer and chat template (from whose: the options of the same names, None for the
    defaults); appends to plan.warnings what the user should hear first."""
    append = "--added-tokens append adds chat's tokens to cp's tokenizer.json, and "
    if plan.appended and (tokenizer_from or "cp") != "cp":
        raise InputError(append + "the output's tokenizer is not cp's; pass --added-tokens drop, or leave "
                         f"--tokenizer-from {tokenizer_from} out")  # fmt: skip
    directory, role = _tokenizer_source(plan, tokenizer_from)
    if plan.appended and (directory is None or not has_vocab(directory)):
        raise InputError(append + "cp has none; pass --added-tokens drop (or give cp a tokenizer.json: save its "
                         "tokenizer with transformers)")  # fmt: skip
    if plan.appended:
        _check_appended_ids(directory, plan.appended)
    choice = TokenizerChoice(directory, role, record={"from": role if directory else None})
    chat_dir = chat_files_dir(plan)
    found, where = chat_template(chat_dir) if chat_dir else (None, None)
    source = chat_template_from or ("chat" if found is not None else "cp")
    if source != "chat":
        return choice
    if found is None:
        plan.warnings.append("--chat-template-from chat: the chat model has no chat template; the output keeps cp's")
        choice.record = {"from": "cp", "reason": "the chat model has no chat template"}
        return choice
    if directory is None:
        plan.warnings.append("the chat model's chat template is left out: the output has no tokenizer to carry it")
        choice.record = {"from": None, "reason": "the output has no tokenizer"}
        return choice
    choice.template, choice.found_in = found, where
    choice.record = {"from": "chat", "found_in": where}
    removed = [n for n in CHAT_TEMPLATE_FILES if os.path.isfile(os.path.join(directory, n))]
    if removed:
        choice.record["removed"] = removed
    eos = eos_token(chat_dir)
    text = token_text(eos)
    if text is not None:
        vocab = load_vocab(directory) if has_vocab(directory) else {}
        vocab.update({t.token: t.row for t in plan.appended})
        if text in vocab:
            choice.eos, choice.eos_id = eos, vocab[text]
            choice.record["eos_token"] = {"token": text, "id": vocab[text]}
        else:
            choice.record["eos_token"] = {"token": text, "kept_cp": True, "reason": "the output's vocabulary lacks it"}
    return choice


def _tokenizer_source(plan: Plan, chosen: str | None) -> tuple[str | None, str]:
    """(directory, role) of the tokenizer the output gets; directory None when there is none to take."""
    role = chosen or "cp"
    if role == "chat":
        directory = chat_files_dir(plan)
    elif role == "base":
        if "base" not in plan.inputs:
            raise InputError("--tokenizer-from base needs a base model; apply has a vector and cp (use cp or chat)")
        directory = plan.inputs["base"].directory
    else:
        directory = plan.inputs["cp"].directory
    if directory is not None and has_tokenizer(directory):
        _check_vocabulary_fits(directory, role, plan)
        return directory, role
    if chosen is not None:
        where = directory or f"the vector {plan.inputs['vector'].path} (it has no {VECTOR_CHAT_DIR}/ folder)"
        raise InputError(
            f"--tokenizer-from {role}: {where} has no tokenizer files (tokenizer.json, tokenizer.model or vocabulary "
            "files); choose another source"
        )
    plan.warnings.append(
        f"cp {plan.inputs['cp'].path} has no tokenizer files: the output gets none (a tokenizer_config.json alone "
        "would not load). Pass --tokenizer-from base or chat to take theirs when their vocabulary is cp's"
    )
    return None, role


def _check_vocabulary_fits(directory: str, role: str, plan: Plan):
    """A tokenizer whose ids go past the output's embedding rows would index rows that do not exist; one that
    gives ids to tokens base has no rows for would index rows that hold other tokens."""
    if not has_vocab(directory):
        return
    vocab = load_vocab(directory)
    if role == "cp":
        _check_cp_tokenizer(directory, vocab, plan.inputs["cp"])
        return
    rows = [t.shape[0] for t in plan.tensors if EMBED_NAME.search(t.name) and t.shape]
    largest = max(vocab.values(), default=-1)
    if rows and largest >= min(rows):
        raise InputError(
            f"--tokenizer-from {role}: its tokenizer has ids up to {largest}, but the output's embedding has "
            f"{min(rows)} rows (cp's); that tokenizer does not fit cp's vocabulary. Use cp's tokenizer"
        )
    shared = embedding_rows(plan.inputs.get("base") or plan.inputs["vector"])
    beyond = sorted((i, t) for t, i in vocab.items() if shared is not None and i >= shared)
    if beyond:
        ids = f"{beyond[0][0]}-{beyond[-1][0]}" if len(beyond) > 1 else str(beyond[0][0])
        raise InputError(
            f"--tokenizer-from {role}: its tokenizer gives ids {ids} to tokens base has no rows for "
            f"({listing([short(t) for _, t in beyond])}), and the output's rows {ids} are cp's rows of its own "
            "tokens, not the chat model's rows of those. Use cp's tokenizer (the default; --added-tokens append "
            "adds chat's tokens to it with their rows)"
        )


def _check_cp_tokenizer(directory: str, vocab: dict, cp):
    """cp's own tokenizer must fit cp's rows: appended tokens take the ids after them."""
    rows = embedding_rows(cp)
    if rows is None or not vocab:
        return
    token, largest = max(vocab.items(), key=lambda item: item[1])
    if largest >= rows:
        name = next(n for n, t in cp.tensors.items() if EMBED_NAME.search(n) and t.shape)
        raise InputError(
            f"{os.path.join(directory, TOKENIZER_JSON)}: cp's tokenizer gives {short(token)} the id {largest}, "
            f"outside cp's {rows} embedding rows ({name}: ids 0-{rows - 1}); a model that meets that token reads "
            "a row that does not exist, and tokens appended to the output would take ids cp's tokenizer already "
            "uses. Resize cp's embeddings to its tokenizer (model.resize_token_embeddings(len(tokenizer)), then "
            "save_pretrained), or pass --tokenizer-from base"
        )


def _check_appended_ids(directory: str, appended):
    """The tokens appended to cp's tokenizer get the ids after its tokens (tokenizers' rule), which must be
    the rows appended after cp's: not so where cp's embedding is padded past its tokenizer."""
    first, row = next_token_id(directory), appended[0].row
    if first != row:
        n = len(appended)
        raise InputError(
            f"{os.path.join(directory, TOKENIZER_JSON)}: cp's tokenizer holds ids 0-{first - 1} and cp has {row} "
            f"embedding rows (padded past its tokenizer); the tokenizers library gives tokens added to it the next "
            f"ids ({first}-{first + n - 1}), not the rows where chat's rows are appended ({row}-{row + n - 1}), "
            f"so {listing([short(t.token) for t in appended])} would read cp's padding rows. Pass --added-tokens "
            "drop"
        )


_DEFAULT_FLAGS = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}


def _flags(token) -> dict:
    """An added token's flags as chat's tokenizer.json gives them (special unless it says otherwise)."""
    return {**_DEFAULT_FLAGS, **dict(token.entry)}
