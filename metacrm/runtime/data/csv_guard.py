"""The CSV formula guard: export prefixes formula-like text with an apostrophe, import takes it off."""

from __future__ import annotations

import re

#: What starts a CSV cell that a spreadsheet would run (OWASP's list), and the apostrophe
#: that guards it (a text starting with one is guarded too, so `unguard` is exact).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GUARD = "'"
_SAFE = re.compile(r"[+-][\d\s().-]*\Z")


def guard(text: str) -> str:
    """A CSV text cell no spreadsheet runs as a formula (undone exactly by `unguard`).

    A sign followed only by digits, spaces and ( ) . - (a phone number, a negative
    amount in a text field) calls nothing and stays as it is, so phones round-trip as
    written whatever the import does with apostrophes."""
    if text.startswith(GUARD) or (text.startswith(FORMULA_STARTS) and not _SAFE.match(text)):
        return GUARD + text
    return text


def unguard(text: str) -> str:
    """A CSV cell as it was before `guard`: one leading apostrophe off when what follows
    it is a formula start or another apostrophe."""
    if text.startswith(GUARD) and text[1:2] and text[1:2] in (*FORMULA_STARTS, GUARD):
        return text[1:]
    return text
