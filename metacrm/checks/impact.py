"""Impact analysis: what depends on a field, an object or a picklist value a plan removes.

Pure functions over metadata models. `analyse(old, new, plan)` lists, for every field,
object or picklist value the plan drops or changes, each formula, rule, layout, list
view, stage rule, approval flow, sharing rule, role and pack that uses it, and whether
the new model still uses it (`broken`). `refuse_breaking` raises on the broken ones.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from metacrm.errors import FieldError, FormulaError, MetadataInvalid
from metacrm.formula.parser import Source, parse
from metacrm.metadata.expressions import walk
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.plan import AlterField, DropField, DropObject, Plan


@dataclass(frozen=True)
class Impact:
    """`dependent` (a path in the model, of kind `kind`) uses `subject`."""

    subject: str
    change: str  # "removed" or "changed"
    kind: str
    dependent: str
    broken: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "change": self.change,
            "kind": self.kind,
            "dependent": self.dependent,
            "broken": self.broken,
        }


# ---------------------------------------------------------------- names read


def _names(text: str) -> tuple[list[list[str]], set[str]]:
    """Dotted name chains (`account.industry`) and string constants of an expression."""
    try:
        tree = parse(Source(text))
    except FormulaError:
        return [], set()
    chains: list[list[str]] = []
    strings: set[str] = set()
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
        if id(node) in called or id(node) in inner:
            continue
        chain: list[str] = []
        current: Any = node
        while isinstance(current, ast.Attribute):
            chain.insert(0, current.attr)
            current = current.value
        if isinstance(current, ast.Name) and (chain or isinstance(node, ast.Name)):
            chains.append([current.id, *chain])
    return chains, strings


def references(model: MetadataModel, object_name: str, text: str) -> set[tuple[str, str]]:
    """(object, field) pairs an expression on `object_name` reads, across lookups."""
    found: set[tuple[str, str]] = set()
    for chain in _names(text)[0]:
        current = object_name
        for name in chain:
            found.add((current, name))
            if not model.has_object(current) or not model.object(current).has_field(name):
                break
            target = getattr(model.object(current).field(name), "target", None)
            if target is None:
                break
            current = target
    return found


# ---------------------------------------------------------------- dependents


def dependents(
    model: MetadataModel,
    object_name: str,
    field: str | None = None,
    *,
    value: str | None = None,
    packs: dict[str, set[tuple[str, str | None]]] | None = None,
) -> list[tuple[str, str]]:
    """(kind, path) of everything in `model` that uses the object, field or picklist value.

    Things inside a dropped object itself are not listed for the object (they go with it).
    """
    found: list[tuple[str, str]] = []
    whole = field is None

    def uses(obj: str, name: str | None) -> bool:
        return obj == object_name and (whole or name == field)

    for site in walk(model):
        if whole and site.path.startswith(f"objects/{object_name}/"):
            continue
        refs = references(model, site.object, site.text)
        hit = any(uses(o, f) for o, f in refs) or (whole and site.object == object_name)
        if hit and value is not None:
            hit = value in _names(site.text)[1]
        if hit:
            found.append((site.kind, site.path))
    if value is not None:
        return found + _value_dependents(model, object_name, field or "", value)
    for obj in model.objects:
        base = f"objects/{obj.api_name}"
        if whole and obj.api_name == object_name:
            continue
        for f in obj.fields:
            target = getattr(f, "target", None)
            if whole and target == object_name:
                found.append(("lookup", f"{base}/fields/{f.api_name}"))
            if (
                f.type == "rollup"
                and f.child_object == object_name
                and (whole or field in (f.child_field, f.field))
            ):
                found.append(("roll-up", f"{base}/fields/{f.api_name}"))
        if obj.api_name == object_name:
            if obj.name_field == field:
                found.append(("name field", f"{base}/name_field"))
            for rule in obj.validation_rules:
                if rule.field == field:
                    found.append(("validation rule", f"{base}/validation_rules/{rule.api_name}"))
            for field_rule in obj.field_rules:
                if field in field_rule.fields:
                    path = f"{base}/field_rules/{field_rule.api_name}/fields"
                    found.append(("field rule", path))
    found += _document_dependents(model, object_name, field, uses)
    for pack, owned in (packs or {}).items():
        if any(uses(o, f) or (o == object_name and f is None and whole) for o, f in owned):
            found.append(("pack", f"packs/{pack}"))
    return found


def _document_dependents(
    model: MetadataModel, object_name: str, field: str | None, uses: Any
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    whole = field is None
    for layout in model.layouts:
        base = f"layouts/{layout.api_name}"
        if layout.object == object_name:
            if whole:
                found.append(("layout", base))
                continue
            placed = [p.field for s in layout.sections for p in s.fields] + list(layout.compact)
            if field in placed or (layout.when and layout.when.field == field):
                found.append(("layout", base))
        for i, related in enumerate(layout.related_lists):
            if uses(related.object, related.field) or (
                related.object == object_name and field in related.columns
            ):
                found.append(("layout", f"{base}/related_lists/{i}"))
    for view in model.list_views:
        if view.object != object_name:
            continue
        sort = [s.strip().lstrip("-+") for s in (view.sort or "").split(",")]
        if whole or field in (*view.columns, view.kanban_field, *sort):
            found.append(("list view", f"list_views/{view.api_name}"))
    for rule in model.stage_rules:
        if rule.object == object_name and (
            whole or rule.field == field or any(field in s.required_fields for s in rule.stages)
        ):
            found.append(("stage rule", f"stage_rules/{rule.api_name}"))
    for flow in model.approval_flows:
        if flow.object != object_name:
            continue
        used = {a.field for s in flow.steps for a in s.approvers if a.field}
        used |= {f for s in flow.steps for f in s.editable_fields}
        used |= {name for action in (*flow.on_approve, *flow.on_reject) for name in _sets(action)}
        if whole or field in used:
            found.append(("approval flow", f"approval_flows/{flow.api_name}"))
    for sharing in model.sharing_rules:
        if whole and sharing.object == object_name:
            found.append(("sharing rule", f"sharing_rules/{sharing.api_name}"))
    for role in model.roles:
        if whole and object_name in role.objects:
            found.append(("role", f"roles/{role.api_name}/objects/{object_name}"))
        if field in role.fields.get(object_name, {}) or (whole and object_name in role.fields):
            found.append(("role", f"roles/{role.api_name}/fields/{object_name}"))
    return found


def _value_dependents(
    model: MetadataModel, object_name: str, field: str, value: str
) -> list[tuple[str, str]]:
    found = []
    if model.has_object(object_name):
        obj = model.object(object_name)
        if obj.has_field(field) and getattr(obj.field(field), "default", None) in (value, [value]):
            found.append(("default", f"objects/{object_name}/fields/{field}/default"))
        for field_rule in obj.field_rules:
            if field in field_rule.fields and value in (field_rule.values or []):
                path = f"objects/{object_name}/field_rules/{field_rule.api_name}"
                found.append(("field rule", path))
    for rule in model.stage_rules:
        if rule.object == object_name and rule.field == field:
            for stage in rule.stages:
                if stage.value == value or value in (stage.next or []):
                    found.append(
                        ("stage rule", f"stage_rules/{rule.api_name}/stages/{stage.value}")
                    )
    for layout in model.layouts:
        when = layout.when
        if layout.object == object_name and when and when.field == field and value in when.values:
            found.append(("layout", f"layouts/{layout.api_name}/when"))
    return found


# ---------------------------------------------------------------- plans


def analyse(
    old: MetadataModel,
    new: MetadataModel,
    plan: Plan,
    *,
    packs: dict[str, set[tuple[str, str | None]]] | None = None,
) -> list[Impact]:
    """Everything that depends on what `plan` removes or changes; `broken` when `new`
    still has the dependent, still using the removed thing."""
    impacts: list[Impact] = []
    for op in plan.ops:
        subjects: list[tuple[str, str | None, str | None, str]] = []
        if isinstance(op, DropObject):
            subjects.append((op.object.api_name, None, None, "removed"))
        elif isinstance(op, DropField):
            subjects.append((op.object, op.field.api_name, None, "removed"))
        elif isinstance(op, AlterField):
            subjects += [(op.object, op.new.api_name, v, "removed") for v in op.removed_values]
            if op.old.type != op.new.type or op.risks:
                subjects.append((op.object, op.new.api_name, None, "changed"))
        for object_name, field, value, change in subjects:
            subject = (
                object_name + (f".{field}" if field else "") + (f" = {value!r}" if value else "")
            )
            before = dependents(old, object_name, field, value=value, packs=packs)
            after = set(dependents(new, object_name, field, value=value, packs=packs))
            for kind, path in before:
                if _owned_by(path, object_name, field) and change == "removed":
                    continue
                broken = (
                    change == "removed"
                    and (kind, path) in after
                    and kind != "pack"
                    and not _adapts(kind, path)
                )
                impacts.append(Impact(subject, change, kind, path, broken))
    return list(dict.fromkeys(impacts))


def _adapts(kind: str, path: str) -> bool:
    """Layouts and list-view columns skip a removed field (ui_schema renders without it);
    expressions, like a list view's filter, would break instead."""
    return kind in ("layout", "list view") and not path.endswith("/filter")


def _owned_by(path: str, object_name: str, field: str | None) -> bool:
    """A dependent that is the dropped thing itself (its own expression, its own rules)."""
    if field is None:
        return path.startswith(f"objects/{object_name}/")
    return path.startswith(f"objects/{object_name}/fields/{field}/") or path == (
        f"objects/{object_name}/fields/{field}"
    )


def refuse_breaking(impacts: list[Impact]) -> None:
    """Raise MetadataInvalid when a removal leaves something that still uses it."""
    broken = [i for i in impacts if i.broken]
    if broken:
        raise MetadataInvalid(
            f"the change breaks {len(broken)} dependent(s); change or remove them too",
            [
                FieldError(i.dependent, "breaks-dependent", f"{i.kind} uses {i.subject}")
                for i in broken
            ],
        )


def _sets(action: Any) -> list[str]:
    """The fields an approval action sets (a dict, or a ProcessAction model)."""
    values = action.get("set") if isinstance(action, dict) else getattr(action, "set", None)
    return list(values or {})
