"""The synthetic models' tokenizer is Llama's layout (BPE, byte fallback, Metaspace, <0x00>..<0xFF> at ids 3-258):
transformers and the tokenizers library load it, and it encodes and decodes real text, chat templates included."""

from __future__ import annotations

import json
import os

import pytest

from chatvec_fast.testing.llama_tokenizer import CHATML, FIRST_PIECE, llama_vocabulary
from chatvec_fast.testing.synthetic import make_triple

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXT = "Hello world, the model is a chat assistant. Ünïcødé 日本語 ✓\n\ttabs  and  spaces"


@pytest.fixture(scope="module", params=["reserved", "added"])
def models(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"llama-{request.param}")
    return request.param, make_triple(str(root), "tiny", cp_vocab=600, chatml=request.param)


def test_the_layout_is_llamas():
    vocab, merges, added = llama_vocabulary(512)
    assert [vocab[t] for t in ("<unk>", "<s>", "</s>", "<0x00>", "<0x0A>", "<0xFF>")] == [0, 1, 2, 3, 13, 258]
    assert vocab["\u2581"] == FIRST_PIECE and "\u2581the" in vocab
    assert sorted(vocab.values()) == list(range(512))  # every id once, none missing
    for merge in merges:  # each merge joins two pieces the vocabulary has into one it has
        left, right = merge.split(" ")
        assert left in vocab and right in vocab and left + right in vocab, merge
    assert [t for _, t in added][-2:] == list(CHATML) and [i for i, _ in added][-2:] == [510, 511]
    expanded, _, _ = llama_vocabulary(600, base_rows=512)
    assert all(expanded[t] == i for t, i in vocab.items())  # an expanded vocabulary keeps base's ids


def test_every_model_loads_and_round_trips_real_text(models):
    layout, paths = models
    rows = {"base": 512, "chat": 514 if layout == "added" else 512, "cp": 600}
    for role, path in paths.items():
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        assert len(tokenizer) == rows[role], role
        ids = tokenizer(TEXT)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id == 1 and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == TEXT
        assert max(ids) < rows[role]
        plain = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))  # the library itself
        assert plain.encode(TEXT).ids == ids and plain.get_vocab_size() == rows[role]
        config = json.load(open(os.path.join(path, "config.json")))
        assert config["vocab_size"] == rows[role] and config["eos_token_id"] == tokenizer.eos_token_id


def test_the_chat_model_speaks_chatml(models):
    layout, paths = models
    tokenizer = transformers.AutoTokenizer.from_pretrained(paths["chat"])
    first = 512 if layout == "added" else 510
    assert tokenizer.convert_tokens_to_ids(list(CHATML)) == [first, first + 1]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == first + 1
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hello there"}], add_generation_prompt=True,
                                         tokenize=False)  # fmt: skip
    assert text == "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(first) == 2 and ids.count(first + 1) == 1  # one id each, never split into bytes
    assert tokenizer.decode(ids) == text
    for role in ("base", "cp"):
        other = transformers.AutoTokenizer.from_pretrained(paths[role])
        assert other.chat_template is None and other.eos_token == "</s>"
        assert ("<|im_end|>" in other.get_vocab()) == (layout == "reserved")
