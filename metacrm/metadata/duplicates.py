"""Duplicate rules: when two records of an object are the same customer, and what a save does then.

A rule (`/api/v1/metadata/duplicate-rules`) lists `criteria`, all of which must match
for two records to be duplicates; several rules on one object match when any of them
does. Each criterion compares one field by a `method`: `exact` (equal after trimming and
case folding), `email`, `phone` (normalised, then equal), or `fuzzy`, `company`,
`person_name` (normalised, then similar to at least `threshold`, 0 to 1). The first
criterion is the blocking one: candidates are found by its keys, so put the most
distinctive field first. `action` says what a create or update that matches does:
`block` refuses it, `warn` refuses it unless the writer says to save anyway, `report`
saves it and records the pair.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from metacrm.metadata.base import ApiName, Label, Strict

Method = Literal["exact", "fuzzy", "company", "phone", "email", "person_name"]
#: Methods that compare by similarity (a threshold applies); the others by equality.
SIMILARITY_METHODS: frozenset[str] = frozenset({"fuzzy", "company", "person_name"})
#: The threshold of a similarity method that names none.
DEFAULT_THRESHOLD = 0.9

#: The field types each method compares.
METHOD_TYPES: dict[str, tuple[str, ...]] = {
    "exact": ("text", "email", "phone", "url", "picklist", "number", "date", "lookup"),
    "fuzzy": ("text", "long_text", "email", "url"),
    "company": ("text",),
    "phone": ("phone", "text"),
    "email": ("email", "text"),
    "person_name": ("text",),
}


class DuplicateCriterion(Strict):
    """One field compared by one method."""

    field: ApiName
    method: Method = "exact"
    #: The least similarity (0 to 1) a similarity method accepts; default 0.9.
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    #: Whether two blank values match (default: a blank value matches nothing).
    blank_matches: bool = False

    @property
    def least(self) -> float:
        """The similarity this criterion needs: 1 for an equality method."""
        if self.method not in SIMILARITY_METHODS:
            return 1.0
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


class DuplicateRule(Strict):
    """When two records of `object` are duplicates, and what a save that makes one does."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    active: bool = True
    action: Literal["block", "warn", "report"] = "warn"
    #: All must match; the first one's keys find the candidates.
    criteria: Annotated[list[DuplicateCriterion], Field(min_length=1, max_length=10)]
    #: Shown when a save is refused or warned about (default: a standard text).
    message: Label | None = None
