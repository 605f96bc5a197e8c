"""The published JSON Schema of metadata documents, and pydantic errors as field errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from metacrm.errors import FieldError, MetadataInvalid
from metacrm.metadata.model import FieldDef, MetadataModel
from metacrm.metadata.values import ValueProblem, check_text

T = TypeVar("T", bound=BaseModel)

SCHEMA_FILE = Path(__file__).parent / "schemas" / "metadata.schema.json"
SCHEMA_ID = "https://metacrm.dev/schemas/metadata.schema.json"


def metadata_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a metadata document."""
    schema = MetadataModel.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    """The schema as saved in the repository (`python -m metacrm.metadata.schema`)."""
    return json.dumps(metadata_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def errors_of(error: ValidationError, *, base: str = "") -> list[FieldError]:
    """Pydantic's errors as field errors with slash-separated paths."""
    problems = []
    for item in error.errors(include_url=False):
        path = "/".join(str(p) for p in (base, *item["loc"]) if p != "")
        message = item["msg"].removeprefix("Value error, ")
        problems.append(FieldError(path, item["type"], message))
    return problems


def text_problems(document: Any, path: str = "") -> list[FieldError]:
    """Strings (keys too) holding NUL bytes or lone surrogates, which only SQLite would store."""
    problems: list[FieldError] = []
    stack = [(path, document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                label = "".join(c if c.isprintable() else "?" for c in str(key)[:64])
                stack.append((f"{where}/{label}".lstrip("/"), item))
                stack.append((where, key))
        elif isinstance(value, list):
            stack.extend((f"{where}/{i}".lstrip("/"), item) for i, item in enumerate(value))
        elif isinstance(value, str):
            try:
                check_text(value)
            except ValueProblem as problem:
                problems.append(FieldError(where, problem.code, problem.message))
    return sorted(set(problems), key=lambda e: e.field)


def _refuse_bad_text(kind: str, document: Any, base: str) -> None:
    problems = text_problems(document, base)
    if problems:
        raise MetadataInvalid(f"the {kind} document has {len(problems)} problem(s)", problems)


def parse(kind: type[T], document: Any, *, base: str = "") -> T:
    """`document` validated as `kind`, or MetadataInvalid listing every problem."""
    _refuse_bad_text(kind.__name__, document, base)
    try:
        return kind.model_validate(document)
    except ValidationError as error:
        problems = errors_of(error, base=base)
        raise MetadataInvalid(
            f"the {kind.__name__} document has {len(problems)} problem(s)", problems
        ) from None


#: FieldDef is an annotated union, which TypeAdapter takes but its signature does not say.
_FIELD: TypeAdapter[FieldDef] = TypeAdapter(cast(Any, FieldDef))


def parse_field(document: Any, *, base: str = "") -> FieldDef:
    """A single field document (a member of the discriminated union of field types)."""
    _refuse_bad_text("field", document, base)
    try:
        return _FIELD.validate_python(document)
    except ValidationError as error:
        problems = errors_of(error, base=base)
        raise MetadataInvalid(
            f"the field document has {len(problems)} problem(s)", problems
        ) from None


if __name__ == "__main__":
    print(schema_text(), end="")
