"""Language identification for tune's fidelity, with each identifier (lingua, py3langid): fixed one-line replies
in several languages and scripts are identified as written; shares count replies and non-empty lines;
language codes are checked before any work."""

from __future__ import annotations

import importlib.util

import pytest

from chatvec_fast.errors import ChatvecError, InputError
from chatvec_fast.tuning.language import LanguageIdentifier, check_language, lines

IDENTIFIERS = [
    pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                                reason=f"{name} is not installed"))
    for name, module in (("lingua", "lingua"), ("py3langid", "py3langid"))
]  # fmt: skip

# One short chat reply a language: what a model writes, not a phrasebook line
REPLIES = {
    "zh": "当然可以，我来为你详细解释一下这个问题。",
    "ja": "もちろんです。この問題について詳しく説明しますね。",
    "ko": "물론이죠. 이 문제에 대해 자세히 설명해 드릴게요.",
    "en": "Of course, let me explain this problem in detail.",
    "fr": "Bien sûr, je vais vous expliquer ce problème en détail.",
    "de": "Natürlich, ich erkläre Ihnen dieses Problem ausführlich.",
    "es": "Por supuesto, te explico este problema en detalle.",
    "ru": "Конечно, давайте я подробно объясню эту проблему.",
    "ar": "بالطبع، دعني أشرح لك هذه المشكلة بالتفصيل.",
    "pt": "Claro, vou explicar esse problema em detalhes para você.",
    "it": "Certo, ti spiego questo problema nei dettagli.",
    "vi": "Tất nhiên, tôi sẽ giải thích chi tiết vấn đề này cho bạn.",
    "th": "แน่นอน ให้ฉันอธิบายปัญหานี้อย่างละเอียด",
    "hi": "बिल्कुल, मैं आपको इस समस्या को विस्तार से समझाता हूँ।",
}


@pytest.fixture(scope="module", params=IDENTIFIERS)
def identifier(request):
    return request.param


@pytest.fixture(scope="module")
def zh(identifier):
    return LanguageIdentifier("zh", identifier=identifier)


def test_replies_identified_in_every_script(zh):
    found = zh.identify(list(REPLIES.values()))
    wrong = {lang: got for lang, got in zip(REPLIES, found) if got != lang}
    assert not wrong, f"identified as {wrong}"


def test_chinese_against_japanese_kanji_and_mixed_lines(zh):
    # Japanese with kana is Japanese even when most characters are kanji; a Chinese reply with an English
    # product name is still Chinese
    texts = ["日本語の文章を書きます。", "我们可以使用 Python 来处理这些数据。"]
    assert zh.identify(texts) == ["ja", "zh"]


def test_share_counts_replies_and_lines(zh):
    replies = [REPLIES["zh"], REPLIES["en"], REPLIES["zh"] + "\n" + REPLIES["en"] + "\n\n" + REPLIES["ja"], ""]
    # a reply of three languages' lines gets one language as a whole: share() counts what identify() found
    whole = zh.identify(replies)
    assert whole[0] == "zh" and whole[1] == "en" and whole[3] == ""
    assert zh.share(replies) == sum(code == "zh" for code in whole) / 4
    # lines: zh, en, zh, en, ja (the blank line and the empty reply have none): 2 of 5
    assert lines(replies) == [REPLIES["zh"], REPLIES["en"], REPLIES["zh"], REPLIES["en"], REPLIES["ja"]]
    assert zh.line_share(replies) == pytest.approx(2 / 5, abs=0)
    assert zh.line_share(["", "  \n"]) == 0.0


def test_nothing_to_identify_is_no_language(zh):
    assert zh.identify(["", "   ", "12345 + 678 = 13023", "```\n```"]) == ["", "", "", ""]
    assert zh.share([]) == 0.0


def test_other_target_languages(identifier):
    de = LanguageIdentifier("de", identifier=identifier)
    assert de.share([REPLIES["de"], REPLIES["en"], REPLIES["fr"], REPLIES["de"]]) == 0.5
    ko = LanguageIdentifier("ko", candidates=("en", "ja", "zh"), identifier=identifier)
    assert ko.candidates == ("ko", "en", "ja", "zh")
    assert ko.identify([REPLIES["ko"], REPLIES["ja"], REPLIES["en"]]) == ["ko", "ja", "en"]


@pytest.mark.parametrize("code, normal", [("zh", "zh"), ("ZH", "zh"), ("zh-CN", "zh"), ("zh_Hant", "zh"),
                                          (" ja ", "ja"), ("pt-BR", "pt")])  # fmt: skip
def test_language_codes_normalised(code, normal, identifier):
    assert check_language(code, identifier=identifier) == normal


@pytest.mark.parametrize("code", ["", "xx", "chinese", "zho", "kl", None])
def test_unknown_language_refused_with_the_codes(code, identifier):
    with pytest.raises(InputError) as info:
        check_language(code, identifier=identifier)
    message = str(info.value)
    assert "--language" in message and repr(code) in message
    if code:
        assert "zh" in message and "en" in message and "ISO 639-1" in message


def test_a_single_candidate_is_refused(identifier):
    with pytest.raises(Exception, match="at least one other candidate"):
        LanguageIdentifier("zh", candidates=("zh",), identifier=identifier)


def test_an_identifier_not_installed_or_unknown_is_one_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_py3langid(name, *args, **kwargs):
        if name.startswith("py3langid"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    from chatvec_fast.tuning import language

    language.known_languages.cache_clear()
    monkeypatch.setattr(builtins, "__import__", without_py3langid)
    with pytest.raises(ChatvecError, match="py3langid, which is not installed; pip install py3langid"):
        check_language("zh", identifier="py3langid")
    monkeypatch.undo()
    language.known_languages.cache_clear()
    with pytest.raises(ValueError, match="language_id 'langid': expected one of lingua, py3langid"):
        check_language("zh", identifier="langid")
