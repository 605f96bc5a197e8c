"""Which column of a file goes into which field: proposed from names and labels, and checked.

A column matches a field the actor may edit by its api name, or by its label in any
language, compared in a normal form (NFKC, case-folded, without spaces, underscores
and punctuation, a trailing "*" or "(必填)" ignored). A column such as "account.name",
"Account Name" or "客户名称" maps to the lookup `account`, matched on the target's
name field (`lookup_key`); an id column of the same lookup wins over it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from metacrm.errors import FieldError
from metacrm.metadata.base import Label
from metacrm.metadata.model import FieldDef, link_target
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.convert import matchable
from metacrm.runtime.permissions import field_access

#: Marks of a required column in templates, ignored when matching.
_REQUIRED_MARK = re.compile(r"(\s*(\*|\(必填\)|\(required\)))+\s*$")


@dataclass(frozen=True)
class ColumnMapping:
    """One column of the file and the field it goes into."""

    column: str
    field: str | None  # None: the column is not imported
    lookup_key: str | None = None  # for lookup fields: the target field matched (None: id or name)


def propose_mapping(
    ct: CompiledTenant, co: CompiledObject, actor: Actor, columns: list[str]
) -> list[ColumnMapping]:
    """A mapping for every column, in order: each to the editable field it names, if
    any, each field at most once. Api names match first, then labels, then lookup keys."""
    editable = _editable(ct, co, actor)
    direct_names = {name: {_normal(name)} for name in editable}
    labels = {name: _label_forms(field.label) for name, field in editable.items()}
    chosen: dict[str, ColumnMapping] = {}
    used: set[str] = set()

    def take(candidates: list[tuple[str, set[str], str | None]]) -> None:
        for column in columns:
            if column in chosen:
                continue
            form = _normal(column)
            for field, forms, key in candidates:
                if field not in used and form and form in forms:
                    chosen[column] = ColumnMapping(column, field, key)
                    used.add(field)
                    break

    take([(name, forms, None) for name, forms in direct_names.items()])
    take([(name, forms, None) for name, forms in labels.items()])
    take(list(_lookup_candidates(ct, actor, editable)))
    return [chosen.get(column, ColumnMapping(column, None)) for column in columns]


def check_mapping(
    ct: CompiledTenant,
    co: CompiledObject,
    actor: Actor,
    mapping: list[ColumnMapping],
    columns: list[str],
) -> list[FieldError]:
    """Every problem of `mapping` for a file with `columns`, each at "mapping/{i}/...".

    Required fields left unmapped are not a problem here: the write path reports them
    per row.
    """
    errors: list[FieldError] = []
    known = set(columns)
    editable = _editable(ct, co, actor)
    mapped: set[str] = set()
    for index, entry in enumerate(mapping):
        at = f"mapping/{index}"
        if entry.column not in known:
            errors.append(
                FieldError(
                    f"{at}/column",
                    "unknown-column",
                    f"the file has no column {_safe(entry.column)}",
                )
            )
        if entry.field is None:
            continue
        if entry.field not in co.fields:
            errors.append(
                FieldError(
                    f"{at}/field", "unknown-field", f"{co.name} has no field {_safe(entry.field)}"
                )
            )
            continue
        if entry.field not in editable:
            errors.append(
                FieldError(f"{at}/field", "read-only", f"{entry.field} cannot be written by you")
            )
            continue
        if entry.field in mapped:
            errors.append(
                FieldError(
                    f"{at}/field",
                    "mapped-twice",
                    f"{entry.field} is already mapped from another column",
                )
            )
        mapped.add(entry.field)
        if entry.lookup_key is not None:
            errors.extend(_key_errors(ct, actor, editable[entry.field], entry.lookup_key, at))
    return errors


def _key_errors(
    ct: CompiledTenant, actor: Actor, field: FieldDef, key: str, at: str
) -> list[FieldError]:
    target = link_target(field)
    if target is None:
        return [
            FieldError(
                f"{at}/lookup_key",
                "not-a-lookup",
                f"{field.api_name} is not a lookup: it takes no lookup key",
            )
        ]
    target_co = ct.object(target)
    key_field = target_co.fields.get(key)
    if key_field is None or field_access(ct.model, actor, target, key) == "hidden":
        return [
            FieldError(f"{at}/lookup_key", "unknown-field", f"{target} has no field {_safe(key)}")
        ]
    if not matchable(key_field):
        return [
            FieldError(
                f"{at}/lookup_key",
                "invalid-key",
                f"{target} records cannot be matched on {key} ({key_field.type}): choose a "
                "text, e-mail, phone, URL, auto-number, number or text formula field",
            )
        ]
    return []


def _editable(ct: CompiledTenant, co: CompiledObject, actor: Actor) -> dict[str, FieldDef]:
    return {
        name: field
        for name, field in co.writable.items()
        if field_access(ct.model, actor, co.name, name) == "edit"
    }


def _lookup_candidates(
    ct: CompiledTenant, actor: Actor, editable: dict[str, FieldDef]
) -> Iterator[tuple[str, set[str], str | None]]:
    """(lookup, header forms, key) for each lookup and each good key of its target:
    the name field first, then external-id and unique fields."""
    for name, field in editable.items():
        target = link_target(field)
        if target is None:
            continue
        target_co = ct.object(target)
        lookup_forms = {_normal(name)} | _label_forms(field.label)
        target_forms = {_normal(target)} | _label_forms(target_co.obj.label)
        for key in _good_keys(ct, actor, target_co):
            key_field = target_co.fields[key]
            key_forms = {_normal(key)} | _label_forms(key_field.label)
            forms = {lf + kf for lf in lookup_forms for kf in key_forms}
            for kf in key_forms:
                for tf in target_forms:
                    # "Account Name" names the account's name field: "Parent Account Name"
                    # and, for a lookup labelled like its target, "Account Name" itself.
                    if kf.startswith(tf) and len(kf) > len(tf):
                        rest = kf[len(tf) :]
                        forms |= {lf + rest for lf in lookup_forms}
            yield name, forms, key


def _good_keys(ct: CompiledTenant, actor: Actor, target: CompiledObject) -> list[str]:
    keys = []
    name_field = target.obj.record_name_field
    if name_field is not None and name_field in target.fields:
        keys.append(name_field)
    for name, field in target.fields.items():
        if name in keys or not matchable(field):
            continue
        if getattr(field, "external_id", False) or getattr(field, "unique", False):
            keys.append(name)
    return [
        key
        for key in keys
        if matchable(target.fields[key])
        and field_access(ct.model, actor, target.name, key) != "hidden"
    ]


def _label_forms(label: Label | None) -> set[str]:
    if label is None:
        return set()
    texts = [label] if isinstance(label, str) else list(label.values())
    return {form for text in texts if (form := _normal(text))}


def _normal(text: str) -> str:
    """The form headers and names are compared in: "Account Name *" -> "accountname"."""
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = _REQUIRED_MARK.sub("", text)
    return "".join(c for c in text if unicodedata.category(c)[0] in "LN")


def _safe(name: str) -> str:
    """A name from input, made safe to echo in an error."""
    cleaned = "".join(c if c.isprintable() else "?" for c in name[:64])
    return repr(cleaned + ("…" if len(name) > 64 else ""))
