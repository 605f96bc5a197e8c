"""The duplicate-rules pass: a rule's object and fields exist and each method fits its field.

Codes: unknown-object, unknown-field, wrong-type (the method cannot compare that field's
type), unused-threshold (a threshold on an equality method), repeated-criterion (the
same field and method twice in one rule).
"""

from __future__ import annotations

from metacrm.checks.context import Context
from metacrm.metadata.duplicates import METHOD_TYPES, SIMILARITY_METHODS


def run(ctx: Context) -> None:
    for rule in ctx.model.duplicate_rules:
        base = f"duplicate_rules/{rule.api_name}"
        obj = ctx.need_object(f"{base}/object", rule.object)
        seen: set[tuple[str, str]] = set()
        for i, criterion in enumerate(rule.criteria):
            path = f"{base}/criteria/{i}"
            ctx.need_field(f"{path}/field", obj, criterion.field, *METHOD_TYPES[criterion.method])
            if criterion.threshold is not None and criterion.method not in SIMILARITY_METHODS:
                ctx.error(
                    f"{path}/threshold",
                    "unused-threshold",
                    f"method {criterion.method!r} compares for equality; a threshold applies "
                    f"to {', '.join(sorted(SIMILARITY_METHODS))} only",
                )
            key = (criterion.field, criterion.method)
            if key in seen:
                ctx.error(
                    path,
                    "repeated-criterion",
                    f"{criterion.field} is compared by {criterion.method} twice",
                )
            seen.add(key)
