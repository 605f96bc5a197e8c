"""The messages pass: e-mail templates parse, and their placeholders name real fields.

A placeholder (`{{ name }}`, `{{ account.name }}`) is read like a field reference of the
expression language, so lookup paths, system fields and field permissions of the
template's object are checked the same way as in a formula.
"""

from __future__ import annotations

from jinja2 import TemplateSyntaxError

from metacrm import formula
from metacrm.checks.context import Context
from metacrm.errors import FormulaError
from metacrm.metadata.messages import template_paths
from metacrm.metadata.model import ObjectDef


def run(ctx: Context) -> None:
    for template in ctx.model.email_templates:
        base = f"email_templates/{template.api_name}"
        obj = None
        if template.object is not None:
            obj = ctx.need_object(f"{base}/object", template.object)
            if obj is None:
                continue  # placeholders cannot be checked against a missing object
        for part in ("subject", "body"):
            texts = getattr(template, part)
            if isinstance(texts, str):
                check_text(ctx, f"{base}/{part}", obj, texts)
                continue
            for language, text in texts.items():
                check_text(ctx, f"{base}/{part}/{language}", obj, text)


def check_text(ctx: Context, path: str, obj: ObjectDef | None, text: str) -> None:
    """Report a text with placeholders (an e-mail template, a notification's title) that
    does not parse, or reads what is not a field of `obj` (no object: no placeholders)."""
    try:
        paths = template_paths(text)
    except TemplateSyntaxError as error:
        ctx.error(path, "template-syntax", f"{error.message} (line {error.lineno})")
        return
    for name in paths:
        if obj is None:
            ctx.error(
                path,
                "unknown-placeholder",
                f"{{{{ {name} }}}} needs the template's 'object' to read fields from",
            )
            continue
        try:
            formula.check(name, obj, ctx.model, context="formula", field=path)
        except FormulaError as error:
            reason = "; ".join(e.message for e in error.errors)
            ctx.error(path, "unknown-placeholder", f"{{{{ {name} }}}}: {reason}")
