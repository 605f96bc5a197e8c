"""The expressions pass: every expression of the model parses and type-checks where it is used."""

from __future__ import annotations

from metacrm import formula
from metacrm.checks.context import Context
from metacrm.checks.impact import references
from metacrm.errors import FieldError, FormulaError
from metacrm.formula.types import FIELD_KINDS, NUMERIC, T
from metacrm.metadata.expressions import Site, walk
from metacrm.metadata.model import FormulaField, ObjectDef

_TEXTUAL = frozenset({"text", "picklist"})


def run(ctx: Context) -> None:
    for site in walk(ctx.model):
        obj = ctx.objects.get(site.object)
        if obj is None or not _reachable(ctx, site):
            continue  # the missing object is reported by the references pass
        try:
            _check(ctx, site, obj)
        except FormulaError as error:
            ctx.errors += [FieldError(e.field, "formula", e.message) for e in error.errors]


def _reachable(ctx: Context, site: Site) -> bool:
    """False when the expression reads through a lookup to an object that does not exist
    (or could not be read): that lookup's problem is reported already."""
    return all(o in ctx.objects for o, _f in references(ctx.model, site.object, site.text))


def _check(ctx: Context, site: Site, obj: ObjectDef) -> None:
    model = ctx.model
    if site.context == "formula":
        fdef = obj.field(site.field or "")
        assert isinstance(fdef, FormulaField)
        formula.check_field(obj, fdef, model, field=site.path)
        return
    checked = formula.check(site.text, obj, model, context=site.context, field=site.path)
    if site.context != "default":
        return
    if site.kind == "approver":
        kind = "text"
    elif site.field is not None and obj.has_field(site.field):
        target = obj.field(site.field)
        if target.computed:
            return  # reported by the references pass
        kind = FIELD_KINDS.get(target.type, "")
    else:
        return  # an update of an unknown field: reported by the references pass
    problem = _value_problem(checked.node.type, kind)
    if problem:
        ctx.error(site.path, "wrong-type", problem)


def _value_problem(t: T, kind: str) -> str | None:
    """Why a value of type `t` cannot be stored in a field holding `kind` values, or None."""
    if not kind or t.kind == "null" or t.kind == kind:
        return None
    if t.kind in NUMERIC and kind in NUMERIC:
        return None
    if t.kind in _TEXTUAL and kind in _TEXTUAL:
        return None
    return f"the expression gives {t}, but the field holds {kind} values"
