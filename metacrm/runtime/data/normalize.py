"""Normalising values for duplicate matching: company names, phones, e-mails, person names.

Every normaliser folds width and case first (NFKC, then case folding), so "ＡＣＭＥ" and
"acme" are one value, and answers None for a blank value. `normalize(method, value)` is
what a duplicate rule compares; `similarity` scores two normalised values 0 to 1
(rapidfuzz ratios scaled), and `block_keys` gives the keys under which a value is filed
so that candidates are found without comparing a record with every other.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pypinyin import lazy_pinyin
from rapidfuzz import fuzz

#: Country tags in parentheses, dropped from company names: "字节跳动(中国)有限公司".
_COUNTRY_TAG = re.compile(r"\((?:中国|中國|中国区|china|prc)\)")
#: Legal-form suffixes of Chinese company names, longest first (a reviewed list).
CJK_LEGAL_SUFFIXES: tuple[str, ...] = (
    "股份有限公司",
    "有限责任公司",
    "有限責任公司",
    "集团有限公司",
    "有限公司",
    "分公司",
    "集团",
    "集團",
    "公司",
)
#: Legal-form words ending Latin company names ("ACME Co., Ltd." -> "acme").
LATIN_LEGAL_WORDS: frozenset[str] = frozenset(
    {
        "co",
        "ltd",
        "inc",
        "llc",
        "gmbh",
        "corp",
        "corporation",
        "limited",
        "company",
        "plc",
        "incorporated",
    }
)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ASCII_DIGITS = frozenset("0123456789")


def fold(text: str) -> str:
    """Width and case folded (NFKC, case folding, NFKC again: folding may denormalise)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _words(text: str) -> list[str]:
    """The runs of letters, digits and marks of `text` (punctuation and symbols split;
    a mark left at the start of a run, its base gone, is dropped)."""
    kept = "".join(c if unicodedata.category(c)[0] in "LNM" else " " for c in text)
    words = []
    for word in kept.split():
        start = 0
        while start < len(word) and unicodedata.category(word[start])[0] == "M":
            start += 1
        if word[start:]:
            words.append(word[start:])
    return words


def normalize_text(value: Any) -> str | None:
    """Folded, punctuation removed, words separated by one space."""
    words = _words(fold(str(value)))
    return " ".join(words) or None


def normalize_exact(value: Any) -> str | None:
    """Folded and trimmed, inner whitespace collapsed: what `exact` compares."""
    text = " ".join(fold(str(value)).split())
    return text or None


def normalize_company(value: Any) -> str | None:
    """A company name without case, width, punctuation, spaces, country tags and legal
    suffixes: "（北京）字节跳动科技有限公司" -> "北京字节跳动科技", "ACME Co., Ltd." -> "acme"."""
    words = _words(_COUNTRY_TAG.sub(" ", fold(str(value))))
    while len(words) > 1 and words[-1] in LATIN_LEGAL_WORDS:
        words.pop()
    # Joined, neighbours may compose (Hangul jamo): normalised again.
    name = unicodedata.normalize("NFKC", "".join(words))
    stripped = True
    while stripped:
        stripped = False
        for suffix in CJK_LEGAL_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name, stripped = name[: -len(suffix)], True
                break
    return name or None


def normalize_phone(value: Any) -> str | None:
    """Digits of a phone number; China's country code (+86, 0086) and the trunk 0 are
    dropped, so "+86 138-0013-8000" == "13800138000" and "010-1234 5678" == "1012345678".
    Other international numbers keep their country code after a "+"."""
    text = fold(str(value)).strip()
    digits = "".join(c for c in text if c in _ASCII_DIGITS)
    if text.startswith("+"):
        digits = "00" + digits
    while digits.startswith("0086"):
        digits = digits[4:]
    if digits.startswith("00"):
        return "+" + digits[2:] if len(digits) > 2 else None
    while len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    return digits.lstrip("0") or None


def normalize_email(value: Any) -> str | None:
    """Case folded, without whitespace."""
    text = unicodedata.normalize("NFKC", "".join(fold(str(value)).split()))
    return text or None


def normalize_person(value: Any) -> str | None:
    """A person's name as sorted lower-case Latin words, Chinese characters by their
    pinyin: "张伟", "Zhang Wei" and "wei ZHANG" are all "wei zhang"."""
    words: list[str] = []
    for word in _words(fold(str(value))):
        for part in re.split(f"({_HAN.pattern})", word):
            if _HAN.fullmatch(part):
                words += lazy_pinyin(part)
            else:  # a Latin run, marks it began with (after a Chinese character) dropped
                words += _words(part.replace("ü", "v"))
    return " ".join(sorted(words)) or None


_NORMALIZERS = {
    "exact": normalize_exact,
    "fuzzy": normalize_text,
    "company": normalize_company,
    "phone": normalize_phone,
    "email": normalize_email,
    "person_name": normalize_person,
}


def normalize(method: str, value: Any) -> str | None:
    """The value a duplicate rule's `method` compares; None when blank. It never holds
    whitespace other than single spaces (so no information separator, \x1c-\x1f)."""
    if value is None:
        return None
    return _NORMALIZERS[method](value)


def similarity(method: str, a: str, b: str) -> float:
    """How alike two normalised values are, 0 to 1: equality for exact, phone and
    e-mail; rapidfuzz's ratio for company names, its token sort ratio otherwise."""
    if a == b:
        return 1.0
    if method == "company":
        return fuzz.ratio(a, b) / 100.0
    if method in ("fuzzy", "person_name"):
        return fuzz.token_sort_ratio(a, b) / 100.0
    return 0.0


#: Longest key kept; longer values are filed under their first characters.
MAX_KEY = 200


def block_keys(method: str, norm: str) -> list[str]:
    """The keys a normalised value is filed under: values that may match share one.

    Equality methods: the value itself. Company names and fuzzy text: their first three
    and their last three characters (a typo elsewhere still meets; equal values meet on
    both), a short value itself. Person names: the value, and its words' initials with
    its letter count (a typo in a name keeps both).
    """
    whole = "=" + norm[:MAX_KEY]
    if method in ("company", "fuzzy"):
        compact = norm.replace(" ", "")
        if len(compact) <= 3:
            return [whole]
        return ["<" + compact[:3], ">" + compact[-3:]]
    if method == "person_name":
        words = norm.split()
        initials = "".join(sorted(w[0] for w in words))
        return [whole, f"~{initials}{sum(map(len, words))}"]
    return [whole]
