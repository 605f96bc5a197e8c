"""The names pass: every api_name is unique where it must be (objects, fields, rules, documents)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from metacrm.checks.context import Context
from metacrm.metadata.model import DOCUMENT_KINDS


def run(ctx: Context) -> None:
    model = ctx.model
    _unique(ctx, "objects", "object", (o.api_name for o in model.objects))
    for obj in model.objects:
        base = f"objects/{obj.api_name}"
        _unique(ctx, f"{base}/fields", "field", (f.api_name for f in obj.fields))
        _unique(
            ctx,
            f"{base}/validation_rules",
            "validation rule",
            (r.api_name for r in obj.validation_rules),
        )
        _unique(ctx, f"{base}/field_rules", "field rule", (r.api_name for r in obj.field_rules))
    for _kind_name, (attribute, _cls) in DOCUMENT_KINDS.items():
        names = (d.api_name for d in model.documents(attribute))
        _unique(ctx, attribute, attribute.removesuffix("s").replace("_", " "), names)
    for rule in model.stage_rules:
        for stage in rule.stages:
            path = f"stage_rules/{rule.api_name}/stages/{stage.value}/tasks"
            _unique(ctx, path, "task", (t.api_name for t in stage.tasks))


def _unique(ctx: Context, base: str, what: str, names: Iterable[str]) -> None:
    for name, count in Counter(names).items():
        if count > 1:
            ctx.error(f"{base}/{name}", "duplicate", f"{what} {name!r} is defined {count} times")
