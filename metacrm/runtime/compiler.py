"""Compiles a tenant's metadata model, once per version, into tables and query parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from metacrm import formula
from metacrm.formula import CheckedExpr
from metacrm.metadata.model import (
    AutoNumberField,
    FieldDef,
    FieldRule,
    FormulaField,
    LookupField,
    MasterDetailField,
    MetadataModel,
    ObjectDef,
    RollupField,
    StoredField,
    ValidationRule,
)
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.metadata.process import ApprovalFlow, StageRule
from metacrm.runtime.columns import (
    build_table,
    column_type,
    index_name,
    wants_index,
)
from metacrm.runtime.views import ViewCache
from metacrm.types import NAMING_CONVENTION, ExactDecimal, UTCDateTime

#: A field that names a record of another object.
Link = LookupField | MasterDetailField

#: System fields a record shows (deleted_at only in the recycle bin).
SHOWN_SYSTEM_FIELDS = tuple(f for f in SYSTEM_FIELDS if f != "deleted_at")
#: Field types that cannot be sorted on.
UNSORTABLE = ("json", "multi_picklist", "long_text")


@dataclass
class CompiledObject:
    """One object ready to query: its table, fields and the SQL of every field."""

    obj: ObjectDef
    table: sa.Table
    fields: dict[str, FieldDef]
    writable: dict[str, FieldDef]
    references: dict[str, Link]
    auto_numbers: list[AutoNumberField]
    external_ids: frozenset[str]
    index_fields: dict[str, str]
    #: (child object, link field) pairs of records pointing at this object.
    children: list[tuple[str, Link]] = field(default_factory=list)
    #: Active validation rules, each with its condition checked.
    validation_rules: tuple[tuple[ValidationRule, CheckedExpr], ...] = ()
    #: Field name -> its default expression, checked.
    default_expressions: dict[str, CheckedExpr] = field(default_factory=dict)
    #: Active field rules, each with its `when` checked.
    field_rules: tuple[tuple[FieldRule, CheckedExpr], ...] = ()
    #: The stage rules and approval flows of this object.
    stage_rules: tuple[StageRule, ...] = ()
    approval_flows: tuple[ApprovalFlow, ...] = ()
    #: (context, expression) -> checked, for every condition and field update of them.
    process_expressions: dict[tuple[str, str], CheckedExpr] = field(default_factory=dict)
    #: Whether the database computes fields of a written record (formula, roll-up).
    computed: bool = False
    #: Fields whose changes are kept in the field history.
    tracked: frozenset[str] = frozenset()
    _sql: dict[str, sa.ColumnElement[Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.obj.api_name

    def sql(self, name: str) -> sa.ColumnElement[Any]:
        """The SQL value of a field or system field of this object."""
        return self._sql[name]

    def has(self, name: str) -> bool:
        return name in self._sql


@dataclass
class CompiledTenant:
    """A tenant's metadata at one version, compiled; shared by every request."""

    version: int
    model: MetadataModel
    objects: dict[str, CompiledObject]
    #: Views derived from this version (per role, language, query), bounded.
    views: ViewCache = field(default_factory=ViewCache)

    def object(self, name: str) -> CompiledObject:
        return self.objects[name]

    def table_for(self, name: str) -> sa.Table:
        return self.objects[name].table


def _result_type(field: FieldDef, model: MetadataModel) -> sa.types.TypeEngine[Any]:
    """The Python-side type of a computed field's value."""
    if isinstance(field, FormulaField):
        if field.returns in ("number", "currency", "percent"):
            return ExactDecimal(38, 2 if field.scale is None else field.scale)
        types: dict[str, sa.types.TypeEngine[Any]] = {
            "text": sa.String(),
            "boolean": sa.Boolean(),
            "date": sa.Date(),
            "datetime": UTCDateTime(),
        }
        return types[field.returns]
    assert isinstance(field, RollupField)
    if field.aggregate == "count" or field.field is None:
        return sa.Integer()
    child = model.object(field.child_object).field(field.field)
    if child.type == "formula":
        return _result_type(child, model)
    return column_type(child) or sa.String()


def compile_tenant(model: MetadataModel, version: int) -> CompiledTenant:
    """Build tables and field SQL for every object of `model`."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    objects: dict[str, CompiledObject] = {}
    for obj in model.objects:
        table = build_table(obj, metadata)
        fields = {f.api_name: f for f in obj.fields}
        objects[obj.api_name] = CompiledObject(
            obj=obj,
            table=table,
            fields=fields,
            writable={n: f for n, f in fields.items() if not f.computed},
            references={n: f for n, f in fields.items() if isinstance(f, Link)},
            auto_numbers=[f for f in obj.fields if isinstance(f, AutoNumberField)],
            external_ids=frozenset(
                n for n, f in fields.items() if getattr(f, "external_id", False)
            ),
            index_fields={
                index_name(obj.api_name, n): n for n, f in fields.items() if wants_index(f)
            },
        )
    tenant = CompiledTenant(version=version, model=model, objects=objects)
    for compiled in objects.values():
        _compile_rules(compiled, model)
    for compiled in objects.values():
        for link in compiled.references.values():
            objects[link.target].children.append((compiled.name, link))
    for compiled in objects.values():
        table = compiled.table
        compiled._sql = {name: table.c[name] for name in SYSTEM_FIELDS}
        for name, definition in compiled.fields.items():
            if definition.type in ("formula", "rollup"):
                expression = formula.field_sql(compiled.obj, definition, model, tenant.table_for)
                # Read results as the field's type: SQLite hands back floats and 0/1.
                compiled._sql[name] = sa.type_coerce(expression, _result_type(definition, model))
            else:
                compiled._sql[name] = table.c[name]
    return tenant


def _compile_rules(compiled: CompiledObject, model: MetadataModel) -> None:
    """Check once, per version, every expression a write of the object evaluates."""
    obj = compiled.obj
    compiled.validation_rules = tuple(
        (rule, formula.check(rule.condition, obj, model, context="validation"))
        for rule in obj.validation_rules
        if rule.active
    )
    compiled.default_expressions = {
        name: formula.check(f.default_expression, obj, model, context="default")
        for name, f in compiled.writable.items()
        # A constant default wins over a default expression (not every field type has one).
        if isinstance(f, StoredField)
        and f.default_expression
        and getattr(f, "default", None) is None
    }
    compiled.field_rules = tuple(
        (rule, formula.check(rule.when, obj, model, context="filter"))
        for rule in obj.field_rules
        if rule.active
    )
    compiled.stage_rules = tuple(r for r in model.stage_rules if r.object == obj.api_name)
    compiled.approval_flows = tuple(f for f in model.approval_flows if f.object == obj.api_name)
    compiled.computed = any(f.type in ("formula", "rollup") for f in obj.fields)
    compiled.tracked = frozenset(
        f.api_name for f in obj.fields if getattr(f, "track_history", False)
    )
    wanted: set[tuple[str, str]] = set()
    for rule in compiled.stage_rules:
        for stage in rule.stages:
            if stage.entry_condition:
                wanted.add(("validation", stage.entry_condition))
            wanted |= {("default", e) for a in stage.on_entry for e in (a.set or {}).values()}
    for flow in compiled.approval_flows:
        if flow.entry_condition:
            wanted.add(("validation", flow.entry_condition))
        for step in flow.steps:
            if step.condition:
                wanted.add(("validation", step.condition))
            approvers = [*step.approvers, *([step.escalate_to] if step.escalate_to else [])]
            wanted |= {("default", a.expression) for a in approvers if a.expression}
        for actions in (flow.on_submit, flow.on_approve, flow.on_reject, flow.on_recall):
            wanted |= {("default", e) for a in actions for e in (a.set or {}).values()}
    compiled.process_expressions = {
        (context, text): formula.check(text, obj, model, context=context)
        for context, text in sorted(wanted)
    }
