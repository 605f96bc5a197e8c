"""The workspace's own words (buttons, headings, messages) in every language it speaks.

Each page keeps its words in `texts/<page>.json` ({"key": {"en": ..., "zh-CN": ...}}), so
pages can be added without touching a shared catalogue; a key defined twice is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

from metacrm import i18n

_DIRECTORY = Path(__file__).parent / "texts"


def _load() -> dict[str, dict[str, str]]:
    catalogue: dict[str, dict[str, str]] = {}
    for path in sorted(_DIRECTORY.glob("*.json")):
        for key, words in json.loads(path.read_text(encoding="utf-8")).items():
            if key in catalogue:
                raise ValueError(f"the text {key!r} is defined twice ({path.name})")
            missing = set(i18n.LANGUAGES) - set(words)
            if missing:
                raise ValueError(f"the text {key!r} in {path.name} lacks {sorted(missing)}")
            catalogue[key] = words
    return catalogue


CATALOGUE = _load()


def word(key: str, language: i18n.Language, **values: object) -> str:
    """The text `key` in `language`, with `{name}` placeholders filled from `values`."""
    words = CATALOGUE[key]
    template = words.get(language) or words["en"]
    return template.format(**values) if values else template
