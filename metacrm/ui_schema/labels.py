"""Labels in the caller's language: Accept-Language first, then the tenant's default."""

from __future__ import annotations

import re

from metacrm.metadata.base import Label

_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")


def accepted_languages(header: str | None, default: str = "en") -> list[str]:
    """Language tags of an Accept-Language header, best first, then `default` and English."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "")[:500].split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not _TAG.match(tag):
            continue
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if quality > 0:
            ranked.append((-quality, index, tag))
    tags = [tag for _q, _i, tag in sorted(ranked)] + [default, "en"]
    seen: list[str] = []
    for tag in tags:
        if tag.lower() not in (s.lower() for s in seen):
            seen.append(tag)
    return seen


def text(label: Label | None, languages: list[str], fallback: str = "") -> str:
    """The label in the first of `languages` it has (exact tag, then base language)."""
    if label is None:
        return fallback
    if isinstance(label, str):
        return label
    lowered = {tag.lower(): value for tag, value in label.items()}
    for language in languages:
        if language.lower() in lowered:
            return lowered[language.lower()]
        base = language.split("-")[0].lower()
        for tag, value in lowered.items():
            if tag.split("-")[0] == base:
                return value
    return next(iter(label.values()), fallback)


def language_of(label_languages: list[str]) -> str:
    """The language a document is in: the caller's first choice."""
    return label_languages[0] if label_languages else "en"
