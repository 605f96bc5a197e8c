"""The metadata model: pydantic classes for objects, fields and rules, and their lookups."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from metacrm.metadata.assignment import AssignmentRule, Queue
from metacrm.metadata.automation import AutomationRule
from metacrm.metadata.base import (
    ApiName,
    Expression,
    Label,
    Strict,
)
from metacrm.metadata.base import label_text as label_text  # re-exported for callers
from metacrm.metadata.duplicates import DuplicateRule
from metacrm.metadata.layouts import Layout, ListView
from metacrm.metadata.messages import EmailTemplate
from metacrm.metadata.names import api_name_problem
from metacrm.metadata.process import ApprovalFlow, StageRule
from metacrm.metadata.security import Role, SharingRule
from metacrm.metadata.sla import BusinessCalendar, Sla

MAX_FIELDS_PER_OBJECT = 800
MAX_OBJECTS_PER_TENANT = 2000


# ---------------------------------------------------------------- fields


class FieldBase(Strict):
    """What every field has."""

    api_name: ApiName
    label: Label | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    help_text: Label | None = None
    track_history: bool = False

    #: True for fields whose value the runtime computes (never written through the API).
    computed: ClassVar[bool] = False
    #: Storage family: what kind of column holds the value.
    storage: ClassVar[str] = "text"

    @field_validator("api_name")
    @classmethod
    def _api_name_allowed(cls, value: str) -> str:
        problem = api_name_problem(value, kind="field")
        if problem:
            raise ValueError(problem)
        return value


class StoredField(FieldBase):
    """A field whose value is stored as written: required, unique and indexable."""

    required: bool = False
    unique: bool = False
    indexed: bool = False
    default_expression: Expression | None = None


class TextField(StoredField):
    type: Literal["text"]
    max_length: Annotated[int, Field(ge=1, le=10_000)] = 255
    external_id: bool = False
    #: Global search looks in this field (the record name field is always searched).
    searchable: bool = False
    default: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class LongTextField(StoredField):
    type: Literal["long_text"]
    max_length: Annotated[int, Field(ge=1, le=1_000_000)] = 32_768
    default: Annotated[str, StringConstraints(max_length=1_000_000)] | None = None
    storage: ClassVar[str] = "long_text"


class _NumericField(StoredField):
    precision: Annotated[int, Field(ge=1, le=38)] = 18
    scale: Annotated[int, Field(ge=0, le=18)] = 0
    min: Decimal | None = None
    max: Decimal | None = None
    default: Decimal | None = None
    storage: ClassVar[str] = "decimal"

    @model_validator(mode="after")
    def _scale_fits(self) -> _NumericField:
        if self.scale > self.precision:
            raise ValueError("scale cannot exceed precision")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min cannot exceed max")
        for bound in (self.min, self.max, self.default):
            if bound is not None and not bound.is_finite():
                raise ValueError("numbers must be finite")
        return self


class NumberField(_NumericField):
    type: Literal["number"]
    external_id: bool = False


class CurrencyField(_NumericField):
    type: Literal["currency"]
    scale: Annotated[int, Field(ge=0, le=18)] = 2


class PercentField(_NumericField):
    type: Literal["percent"]
    precision: Annotated[int, Field(ge=1, le=38)] = 5
    scale: Annotated[int, Field(ge=0, le=18)] = 2


class BooleanField(StoredField):
    type: Literal["boolean"]
    default: bool | None = None
    storage: ClassVar[str] = "boolean"


class DateField(StoredField):
    type: Literal["date"]
    default: dt.date | None = None
    storage: ClassVar[str] = "date"


class DateTimeField(StoredField):
    type: Literal["datetime"]
    default: dt.datetime | None = None
    storage: ClassVar[str] = "datetime"


class EmailField(StoredField):
    type: Literal["email"]
    max_length: Annotated[int, Field(ge=3, le=320)] = 255
    external_id: bool = False
    #: Global search looks in this field (the record name field is always searched).
    searchable: bool = False
    default: Annotated[str, StringConstraints(max_length=320)] | None = None


class PhoneField(StoredField):
    type: Literal["phone"]
    max_length: Annotated[int, Field(ge=3, le=64)] = 40
    #: Global search looks in this field (the record name field is always searched).
    searchable: bool = False
    default: Annotated[str, StringConstraints(max_length=64)] | None = None


class UrlField(StoredField):
    type: Literal["url"]
    max_length: Annotated[int, Field(ge=8, le=2048)] = 1024
    default: Annotated[str, StringConstraints(max_length=2048)] | None = None


class PicklistValue(Strict):
    """One value of a picklist: stored `value`, shown `label`, and whether it is offered."""

    value: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^;\x00]+$")]
    label: Label | None = None
    active: bool = True
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None


class _ChoiceField(StoredField):
    values: Annotated[list[PicklistValue], Field(min_length=1, max_length=1000)]

    @field_validator("values")
    @classmethod
    def _values_unique(cls, values: list[PicklistValue]) -> list[PicklistValue]:
        seen: set[str] = set()
        for item in values:
            if item.value in seen:
                raise ValueError(f"picklist value {item.value!r} appears twice")
            seen.add(item.value)
        return values

    def value_names(self, *, active_only: bool = False) -> list[str]:
        return [v.value for v in self.values if v.active or not active_only]


class PicklistField(_ChoiceField):
    type: Literal["picklist"]
    default: Annotated[str, StringConstraints(max_length=100)] | None = None

    @model_validator(mode="after")
    def _default_is_a_value(self) -> PicklistField:
        if self.default is not None and self.default not in self.value_names(active_only=True):
            raise ValueError(f"default {self.default!r} is not an active value of the picklist")
        return self


class MultiPicklistField(_ChoiceField):
    type: Literal["multi_picklist"]
    default: list[str] | None = None
    storage: ClassVar[str] = "multi"

    @model_validator(mode="after")
    def _default_are_values(self) -> MultiPicklistField:
        active = set(self.value_names(active_only=True))
        for value in self.default or []:
            if value not in active:
                raise ValueError(f"default {value!r} is not an active value of the picklist")
        return self


class LookupField(StoredField):
    type: Literal["lookup"]
    target: ApiName
    on_delete: Literal["restrict", "set_null"] = "set_null"
    relationship_label: Label | None = None
    default: None = None
    storage: ClassVar[str] = "reference"


class MasterDetailField(StoredField):
    """A child's link to its master: required, and deleted with the master."""

    type: Literal["master_detail"]
    target: ApiName
    relationship_label: Label | None = None
    required: Literal[True] = True
    default: None = None
    storage: ClassVar[str] = "reference"

    @property
    def on_delete(self) -> str:
        return "cascade"


class JsonField(StoredField):
    type: Literal["json"]
    unique: Literal[False] = False
    indexed: Literal[False] = False
    default: Any = None
    storage: ClassVar[str] = "json"


class AutoNumberField(FieldBase):
    """A text number the runtime assigns on create, e.g. format ``Q-{0000}``."""

    type: Literal["auto_number"]
    format: Annotated[str, StringConstraints(pattern=r"^[^{}]{0,20}\{0+\}[^{}]{0,20}$")] = (
        "{000000}"
    )
    start: Annotated[int, Field(ge=0, le=10**12)] = 1
    external_id: bool = False
    #: Global search looks in this field (the record name field is always searched).
    searchable: bool = False
    computed: ClassVar[bool] = True


FormulaReturn = Literal["text", "number", "currency", "percent", "boolean", "date", "datetime"]


class FormulaField(FieldBase):
    """A read-only value computed from an expression, in SQL and in Python."""

    type: Literal["formula"]
    returns: FormulaReturn
    expression: Expression
    scale: Annotated[int, Field(ge=0, le=18)] | None = None
    computed: ClassVar[bool] = True
    storage: ClassVar[str] = "none"


class RollupField(FieldBase):
    """A master's summary of its children: count, sum, min or max, optionally filtered."""

    type: Literal["rollup"]
    child_object: ApiName
    child_field: ApiName
    aggregate: Literal["count", "sum", "min", "max"]
    field: ApiName | None = None
    filter: Expression | None = None
    computed: ClassVar[bool] = True
    storage: ClassVar[str] = "none"

    @model_validator(mode="after")
    def _field_needed(self) -> RollupField:
        if self.aggregate != "count" and self.field is None:
            raise ValueError(f"a {self.aggregate} roll-up needs the child 'field' to aggregate")
        return self


FieldDef = Annotated[
    TextField
    | LongTextField
    | NumberField
    | CurrencyField
    | PercentField
    | BooleanField
    | DateField
    | DateTimeField
    | EmailField
    | PhoneField
    | UrlField
    | PicklistField
    | MultiPicklistField
    | LookupField
    | MasterDetailField
    | JsonField
    | AutoNumberField
    | FormulaField
    | RollupField,
    Field(discriminator="type"),
]

FIELD_TYPES: tuple[str, ...] = (
    "text",
    "long_text",
    "number",
    "currency",
    "percent",
    "boolean",
    "date",
    "datetime",
    "email",
    "phone",
    "url",
    "picklist",
    "multi_picklist",
    "lookup",
    "master_detail",
    "json",
    "auto_number",
    "formula",
    "rollup",
)
REFERENCE_TYPES = ("lookup", "master_detail")


# ---------------------------------------------------------------- objects


#: Field classes by what they hold, to narrow a FieldDef with isinstance.
NUMERIC_FIELDS = (NumberField, CurrencyField, PercentField)
CHOICE_FIELDS = (PicklistField, MultiPicklistField)
LINK_FIELDS = (LookupField, MasterDetailField)


def link_target(field: FieldDef) -> str | None:
    """The object a lookup or master-detail field points to (None for other fields)."""
    return field.target if isinstance(field, LINK_FIELDS) else None


def choice_values(field: FieldDef, *, active_only: bool = False) -> list[str]:
    """The values of a picklist or multi-picklist field (none for other fields)."""
    return field.value_names(active_only=active_only) if isinstance(field, CHOICE_FIELDS) else []


def needs_value(field: FieldDef) -> bool:
    """Required at the object level and not filled by a default."""
    return bool(
        getattr(field, "required", False)
        and getattr(field, "default", None) is None
        and not getattr(field, "default_expression", None)
    )


class ValidationRule(Strict):
    """An error condition: when it is true for a record, the write is refused."""

    api_name: ApiName
    condition: Expression
    message: Label
    field: ApiName | None = None
    active: bool = True
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class FieldRule(Strict):
    """Conditional logic: while `when` holds for a record, `effect` applies to `fields`.

    Enforced by the API on every write, not only drawn by the UI.
    """

    api_name: ApiName
    when: Expression
    fields: Annotated[list[ApiName], Field(min_length=1)]
    effect: Literal["hidden", "required", "read_only", "allowed_values"]
    values: list[str] | None = None
    active: bool = True

    @model_validator(mode="after")
    def _values_for_allowed(self) -> FieldRule:
        if (self.effect == "allowed_values") != (self.values is not None):
            raise ValueError("'values' goes with the effect 'allowed_values', and only with it")
        return self


class ObjectDef(Strict):
    """A business object: one table, one column per stored field."""

    api_name: ApiName
    label: Label | None = None
    plural_label: Label | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    sharing: Literal["private", "public_read", "public_read_write"] = "public_read_write"
    name_field: ApiName | None = None
    fields: Annotated[list[FieldDef], Field(max_length=MAX_FIELDS_PER_OBJECT)] = []
    validation_rules: list[ValidationRule] = []
    field_rules: list[FieldRule] = []

    @field_validator("api_name")
    @classmethod
    def _api_name_allowed(cls, value: str) -> str:
        problem = api_name_problem(value, kind="object")
        if problem:
            raise ValueError(problem)
        return value

    def field(self, api_name: str) -> FieldDef:
        """The field named `api_name`; raises KeyError like Django's get_field."""
        for field in self.fields:
            if field.api_name == api_name:
                return field
        raise KeyError(api_name)

    def has_field(self, api_name: str) -> bool:
        return any(f.api_name == api_name for f in self.fields)

    @property
    def record_name_field(self) -> str | None:
        """The field that names a record in lists, lookups and page titles: `name_field`,
        else a field called `name`, else the first text field (a ticket's `title`)."""
        if self.name_field:
            return self.name_field
        if self.has_field("name"):
            return "name"
        return next((f.api_name for f in self.fields if f.type == "text"), None)


class MetadataModel(Strict):
    """A tenant's whole metadata: objects with their fields and rules, and the documents
    of the other kinds (roles, sharing rules, layouts, list views, stages, approvals)."""

    objects: Annotated[list[ObjectDef], Field(max_length=MAX_OBJECTS_PER_TENANT)] = []
    roles: list[Role] = []
    sharing_rules: list[SharingRule] = []
    layouts: list[Layout] = []
    list_views: list[ListView] = []
    stage_rules: list[StageRule] = []
    approval_flows: list[ApprovalFlow] = []
    automation_rules: list[AutomationRule] = []
    assignment_rules: list[AssignmentRule] = []
    queues: list[Queue] = []
    business_calendars: list[BusinessCalendar] = []
    slas: list[Sla] = []
    email_templates: list[EmailTemplate] = []
    duplicate_rules: list[DuplicateRule] = []

    def object(self, api_name: str) -> ObjectDef:
        for obj in self.objects:
            if obj.api_name == api_name:
                return obj
        raise KeyError(api_name)

    def has_object(self, api_name: str) -> bool:
        return any(o.api_name == api_name for o in self.objects)

    def with_object(self, obj: ObjectDef) -> MetadataModel:
        """A copy with `obj` added, or replacing the object of the same api_name."""
        return self.with_document("objects", obj)

    def without_object(self, api_name: str) -> MetadataModel:
        return self.without_document("objects", api_name)

    def documents(self, kind: str) -> list[Any]:
        """The documents of a kind: 'objects' or one of DOCUMENT_KINDS' attributes."""
        documents: list[Any] = getattr(self, kind)
        return documents

    def document(self, kind: str, api_name: str) -> Any:
        for doc in self.documents(kind):
            if doc.api_name == api_name:
                return doc
        raise KeyError(api_name)

    def with_document(self, kind: str, doc: Any) -> MetadataModel:
        """A copy with `doc` added to `kind`, or replacing the one of the same api_name."""
        current = self.documents(kind)
        index = next((i for i, d in enumerate(current) if d.api_name == doc.api_name), None)
        docs = list(current)
        if index is None:
            docs.append(doc)
        else:
            docs[index] = doc
        return self.model_copy(update={kind: docs})

    def without_document(self, kind: str, api_name: str) -> MetadataModel:
        return self.model_copy(
            update={kind: [d for d in self.documents(kind) if d.api_name != api_name]}
        )


#: URL segment -> (attribute of MetadataModel, document class), for the kinds that are
#: documents of their own beside objects.
DOCUMENT_KINDS: dict[str, tuple[str, type[Strict]]] = {
    "roles": ("roles", Role),
    "sharing-rules": ("sharing_rules", SharingRule),
    "layouts": ("layouts", Layout),
    "list-views": ("list_views", ListView),
    "stage-rules": ("stage_rules", StageRule),
    "approval-flows": ("approval_flows", ApprovalFlow),
    "automation-rules": ("automation_rules", AutomationRule),
    "assignment-rules": ("assignment_rules", AssignmentRule),
    "queues": ("queues", Queue),
    "business-calendars": ("business_calendars", BusinessCalendar),
    "slas": ("slas", Sla),
    "email-templates": ("email_templates", EmailTemplate),
    "duplicate-rules": ("duplicate_rules", DuplicateRule),
}
