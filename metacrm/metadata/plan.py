"""Plans: the ordered, reviewable list of small operations a metadata change makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from metacrm.errors import FieldError
from metacrm.metadata.model import FieldDef, ObjectDef, choice_values
from metacrm.metadata.security import ObjectPermission, Role


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    return data | {
        "api_name": model.api_name,
        **({"type": model.type} if hasattr(model, "type") else {}),
    }


@dataclass(frozen=True)
class Op:
    """One step of a plan. `destructive` steps need an explicit confirmation."""

    kind: ClassVar[str] = "op"
    symbol: ClassVar[str] = "~"

    @property
    def destructive(self) -> bool:
        return bool(self.risks)

    @property
    def risks(self) -> tuple[str, ...]:
        return ()

    @property
    def subject(self) -> str:
        """The path in the model of what the step changes (where its risks are reported)."""
        return "plan"

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.kind, "description": self.describe()}
        out["destructive"] = self.destructive
        if self.risks:
            out["risks"] = list(self.risks)
        return out


@dataclass(frozen=True)
class CreateObject(Op):
    object: ObjectDef
    kind: ClassVar[str] = "create_object"
    symbol: ClassVar[str] = "+"

    def describe(self) -> str:
        return f"+ object {self.object.api_name} ({len(self.object.fields)} fields)"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"object": _dump(self.object)}


@dataclass(frozen=True)
class DropObject(Op):
    object: ObjectDef
    kind: ClassVar[str] = "drop_object"
    symbol: ClassVar[str] = "-"

    @property
    def risks(self) -> tuple[str, ...]:
        return (f"drops table {self.object.api_name} and all its records",)

    @property
    def subject(self) -> str:
        return f"objects/{self.object.api_name}"

    def describe(self) -> str:
        return f"- object {self.object.api_name}"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"object": self.object.api_name}


@dataclass(frozen=True)
class UpdateObject(Op):
    """Changes to an object's own properties (labels, sharing, rules): no DDL."""

    old: ObjectDef
    new: ObjectDef
    kind: ClassVar[str] = "update_object"

    def changed(self) -> list[str]:
        skip = {"fields"}
        return [
            name
            for name in type(self.new).model_fields
            if name not in skip and getattr(self.old, name) != getattr(self.new, name)
        ]

    def describe(self) -> str:
        return f"~ object {self.new.api_name}: {', '.join(self.changed())}"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"object": self.new.api_name, "changed": self.changed()}


@dataclass(frozen=True)
class AddField(Op):
    object: str
    field: FieldDef
    kind: ClassVar[str] = "add_field"
    symbol: ClassVar[str] = "+"

    def describe(self) -> str:
        return f"+ {self.object}.{self.field.api_name} ({self.field.type})"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"object": self.object, "field": _dump(self.field)}


@dataclass(frozen=True)
class DropField(Op):
    object: str
    field: FieldDef
    kind: ClassVar[str] = "drop_field"
    symbol: ClassVar[str] = "-"

    @property
    def subject(self) -> str:
        return f"objects/{self.object}/fields/{self.field.api_name}"

    @property
    def risks(self) -> tuple[str, ...]:
        if self.field.computed and self.field.type != "auto_number":
            return ()
        return (f"drops column {self.object}.{self.field.api_name} and its data",)

    def describe(self) -> str:
        return f"- {self.object}.{self.field.api_name}"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"object": self.object, "field": self.field.api_name}


@dataclass(frozen=True)
class AlterField(Op):
    """A field's definition changes; `risks` says what data it could lose."""

    object: str
    old: FieldDef
    new: FieldDef
    narrowing: tuple[str, ...] = field(default=())
    kind: ClassVar[str] = "alter_field"

    @property
    def risks(self) -> tuple[str, ...]:
        return self.narrowing

    @property
    def subject(self) -> str:
        return f"objects/{self.object}/fields/{self.new.api_name}"

    @property
    def removed_values(self) -> list[str]:
        """Picklist values the change removes (their data is cleared on apply)."""
        if self.old.type in ("picklist", "multi_picklist") and self.new.type == self.old.type:
            kept = set(choice_values(self.new))
            return [v for v in choice_values(self.old) if v not in kept]
        return []

    def changed(self) -> list[str]:
        names = set(type(self.old).model_fields) | set(type(self.new).model_fields)
        return sorted(n for n in names if getattr(self.old, n, None) != getattr(self.new, n, None))

    def describe(self) -> str:
        return f"~ {self.object}.{self.new.api_name}: {', '.join(self.changed())}"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {
            "object": self.object,
            "field": self.new.api_name,
            "changed": self.changed(),
            "new": _dump(self.new),
        }


@dataclass(frozen=True)
class PutDocument(Op):
    """Adds or replaces a document of another kind (role, layout, stage rule, ...): no DDL."""

    kind_name: str
    old: Any
    new: Any
    kind: ClassVar[str] = "put_document"

    @property
    def risks(self) -> tuple[str, ...]:
        if isinstance(self.old, Role) and isinstance(self.new, Role):
            return permission_losses(self.old, self.new)
        return ()

    @property
    def subject(self) -> str:
        return f"{self.kind_name}/{self.new.api_name}"

    def describe(self) -> str:
        symbol = "+" if self.old is None else "~"
        return f"{symbol} {self.kind_name} {self.new.api_name}"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"kind": self.kind_name, "document": _dump(self.new)}


@dataclass(frozen=True)
class RemoveDocument(Op):
    kind_name: str
    old: Any
    kind: ClassVar[str] = "remove_document"
    symbol: ClassVar[str] = "-"

    @property
    def risks(self) -> tuple[str, ...]:
        if isinstance(self.old, Role):
            return permission_losses(self.old, Role(api_name=self.old.api_name))
        return ()

    @property
    def subject(self) -> str:
        return f"{self.kind_name}/{self.old.api_name}"

    def describe(self) -> str:
        return f"- {self.kind_name} {self.old.api_name}"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"kind": self.kind_name, "api_name": self.old.api_name}


@dataclass(frozen=True)
class Plan:
    """An ordered list of ops turning one metadata model into another."""

    ops: tuple[Op, ...]
    #: What the metadata checks found worth saying that does not refuse the change.
    warnings: tuple[FieldError, ...] = ()

    @property
    def destructive(self) -> bool:
        return any(op.destructive for op in self.ops)

    @property
    def empty(self) -> bool:
        return not self.ops

    def describe(self) -> str:
        return "\n".join(op.describe() for op in self.ops) or "(no changes)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "destructive": self.destructive,
            "ops": [op.to_dict() for op in self.ops],
            "summary": self.describe(),
        }
        if self.warnings:
            out["warnings"] = [w.as_dict() for w in self.warnings]
        return out


_ACCESS_RANK = {"hidden": 0, "read": 1, "edit": 2}


def permission_losses(old: Role, new: Role) -> tuple[str, ...]:
    """Who loses what when role `old` becomes `new`: object, field and platform permissions."""
    name = old.api_name
    losses: list[str] = []
    for obj, before in old.objects.items():
        after = new.objects.get(obj, ObjectPermission())
        lost = [
            p for p in type(before).model_fields if getattr(before, p) and not getattr(after, p)
        ]
        losses += [f"role {name} loses {p} on {obj}" for p in lost]
    # A field not listed is editable (as far as the object is); hidden < read < edit.
    for obj in dict.fromkeys([*old.fields, *new.fields]):
        before_fields, after_fields = old.fields.get(obj, {}), new.fields.get(obj, {})
        for field_name in dict.fromkeys([*before_fields, *after_fields]):
            was = before_fields.get(field_name, "edit")
            now = after_fields.get(field_name, "edit")
            if _ACCESS_RANK[now] < _ACCESS_RANK[was]:
                losses.append(f"role {name} loses {was} access to {obj}.{field_name} (now {now})")
    losses += [
        f"role {name} loses the platform permission {p}"
        for p in old.permissions
        if p not in new.permissions
    ]
    return tuple(losses)
