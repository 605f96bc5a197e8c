"""What the passes of the metadata check share: the models, lookups, and every problem found."""

from __future__ import annotations

from dataclasses import dataclass, field

from metacrm.errors import FieldError
from metacrm.metadata.model import MetadataModel, ObjectDef


@dataclass
class Context:
    """One run of the pipeline over `model` (and, for a change, the `old` model it replaces).

    `unreadable` names objects whose documents exist but could not be read (a pack file
    with invalid JSON, say): references to them are not reported as unknown, and
    expressions that reach them are skipped, since their problem is reported already.
    """

    model: MetadataModel
    old: MetadataModel | None = None
    unreadable: frozenset[str] = frozenset()
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldError] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.objects: dict[str, ObjectDef] = {}
        for obj in self.model.objects:
            self.objects.setdefault(obj.api_name, obj)
        self.roles = {r.api_name for r in self.model.roles}

    def error(self, path: str, code: str, message: str) -> None:
        self.errors.append(FieldError(path, code, message))

    def warn(self, path: str, code: str, message: str) -> None:
        self.warnings.append(FieldError(path, code, message))

    def need_object(self, path: str, name: str) -> ObjectDef | None:
        """The object called `name`; reports it unknown (unless unreadable) when missing."""
        obj = self.objects.get(name)
        if obj is None and name not in self.unreadable:
            self.error(path, "unknown-object", f"object {name!r} does not exist")
        return obj

    def need_field(self, path: str, obj: ObjectDef | None, name: str, *types: str) -> bool:
        """Whether `obj` has a field `name` (of one of `types`, when given); reports why not."""
        if obj is None:
            return False
        if not obj.has_field(name):
            self.error(path, "unknown-field", f"{name!r} is not a field of {obj.api_name!r}")
            return False
        if types and obj.field(name).type not in types:
            self.error(
                path, "wrong-type", f"{obj.api_name}.{name} must be a {' or '.join(types)} field"
            )
            return False
        return True

    def need_role(self, path: str, name: str | None) -> None:
        if name is not None and name not in self.roles:
            self.error(path, "unknown-role", f"role {name!r} does not exist")
