"""Building blocks of every metadata document: strict models, names, labels, expressions."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from metacrm.metadata.names import API_NAME_PATTERN

LANGUAGE_TAG = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

#: A translatable text: a plain string, or a map of language tag to text.
Label = (
    Annotated[str, StringConstraints(min_length=1, max_length=255)]
    | dict[
        Annotated[str, StringConstraints(pattern=LANGUAGE_TAG)],
        Annotated[str, StringConstraints(min_length=1, max_length=1000)],
    ]
)
ApiName = Annotated[str, StringConstraints(pattern=API_NAME_PATTERN)]
Expression = Annotated[str, StringConstraints(min_length=1, max_length=4000)]


def label_text(label: Label | None, language: str = "en", fallback: str = "") -> str:
    """The text of a label in `language`, falling back to English, then any language."""
    if label is None:
        return fallback
    if isinstance(label, str):
        return label
    if language in label:
        return label[language]
    base = language.split("-")[0]
    for tag, text in label.items():
        if tag.split("-")[0] == base:
            return text
    return label.get("en") or next(iter(label.values()), fallback)


class Strict(BaseModel):
    """Base of every metadata document: unknown properties are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)
