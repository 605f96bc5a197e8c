"""Pack upgrades, uninstalls and exports: three-way merges of a tenant's metadata with a pack."""

from __future__ import annotations

import json
from typing import Any

from metacrm.metadata.model import (
    MetadataModel,
    ObjectDef,
)
from metacrm.metadata.packs import (
    DOCUMENT_FILES,
    Extension,
    Manifest,
    Pack,
    PackInvalid,
    PackProblem,
    PackTest,
    document_data,
    load_pack,
    load_path,
    merge_pack,
)

# ---------------------------------------------------------------- export


def export_files(
    model: MetadataModel, *, name: str, version: str, label: Any = None
) -> dict[str, Any]:
    """A tenant's whole metadata as pack files (JSON text), ready for a folder or bundle."""
    manifest = {"name": name, "version": version}
    if label:
        manifest["label"] = label
    files = {"pack.json": _text(manifest)}
    for obj in model.objects:
        files[f"objects/{obj.api_name}.json"] = _text(document_data(obj))
    for kind in DOCUMENT_FILES:
        docs = model.documents(kind)
        if docs:
            files[f"{kind}.json"] = _text([document_data(d) for d in docs])
    return files


def _text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


__all__ = [
    "Extension",
    "Manifest",
    "Pack",
    "PackInvalid",
    "PackProblem",
    "PackTest",
    "export_files",
    "load_pack",
    "load_path",
    "merge_pack",
]


# ---------------------------------------------------------------- upgrade and uninstall


def _pick(current: Any, old: Any, new: Any) -> Any:
    """Three-way pick of one item: the tenant's version survives unless the pack changed it."""
    if current is None:
        return new
    if old is not None and old == new:
        return current
    return new


def _merge_items(current: list[Any], old: list[Any], new: list[Any]) -> list[Any]:
    """The pack's items (3-way picked), then the tenant's own additions, minus what the
    pack dropped since `old`."""
    by_current = {x.api_name: x for x in current}
    by_old = {x.api_name: x for x in old}
    new_names = {x.api_name for x in new}
    out = [_pick(by_current.get(x.api_name), by_old.get(x.api_name), x) for x in new]
    out += [x for x in current if x.api_name not in new_names and x.api_name not in by_old]
    return out


def _merge_in_place(current: list[Any], old: list[Any], new: list[Any]) -> list[Any]:
    """Like _merge_items for items a pack adds to someone else's object: keep the order."""
    by_old = {x.api_name: x for x in old}
    by_new = {x.api_name: x for x in new}
    out = []
    for item in current:
        if item.api_name in by_new:
            out.append(_pick(item, by_old.get(item.api_name), by_new[item.api_name]))
        elif item.api_name not in by_old:
            out.append(item)
    seen = {x.api_name for x in out}
    return out + [x for x in new if x.api_name not in seen]


_PARTS = ("fields", "validation_rules", "field_rules")


def upgrade_object(current: ObjectDef, old: ObjectDef | None, new: ObjectDef) -> ObjectDef:
    update: dict[str, Any] = {}
    for prop in ObjectDef.model_fields:
        if prop in _PARTS:
            before = getattr(old, prop) if old is not None else []
            update[prop] = _merge_items(getattr(current, prop), before, getattr(new, prop))
        else:
            update[prop] = _pick(
                getattr(current, prop), getattr(old, prop) if old else None, getattr(new, prop)
            )
    return current.model_copy(update=update)


def upgrade_model(
    current: MetadataModel, old: MetadataModel, old_extensions: list[Extension], pack: Pack
) -> MetadataModel:
    """The tenant's model after upgrading a pack from `old` contents to `pack`.

    What the pack did not change keeps the tenant's customisations; what the tenant added
    (fields, rules, documents) survives; what the new version dropped is dropped.
    """
    model = current
    for obj in pack.objects:
        now = model.object(obj.api_name) if model.has_object(obj.api_name) else None
        before = old.object(obj.api_name) if old.has_object(obj.api_name) else None
        model = model.with_object(obj if now is None else upgrade_object(now, before, obj))
    kept = {o.api_name for o in pack.objects}
    for obj in old.objects:
        if obj.api_name not in kept:
            model = model.without_object(obj.api_name)
    old_ext = {e.object: e for e in old_extensions}
    new_ext = {e.object: e for e in pack.extensions}
    for name in {*old_ext, *new_ext}:
        if not model.has_object(name):
            continue
        extended = model.object(name)
        ext_before = old_ext.get(name, Extension(object=name))
        ext_after = new_ext.get(name) or Extension(object=name)
        update = {
            part: _merge_in_place(
                getattr(extended, part), getattr(ext_before, part), getattr(ext_after, part)
            )
            for part in _PARTS
        }
        model = model.with_object(extended.model_copy(update=update))
    for kind in DOCUMENT_FILES:
        docs = model.documents(kind)
        merged = _merge_in_place(docs, old.documents(kind), pack.documents.get(kind, []))
        model = model.model_copy(update={kind: merged})
    return model


def uninstall_model(
    current: MetadataModel, old: MetadataModel, old_extensions: list[Extension]
) -> MetadataModel:
    """The tenant's model without what a pack contributed."""
    model = current
    for obj in old.objects:
        model = model.without_object(obj.api_name)
    for ext in old_extensions:
        if not model.has_object(ext.object):
            continue
        obj = model.object(ext.object)
        update = {
            part: [
                x
                for x in getattr(obj, part)
                if x.api_name not in {y.api_name for y in getattr(ext, part)}
            ]
            for part in _PARTS
        }
        model = model.with_object(obj.model_copy(update=update))
    for kind in DOCUMENT_FILES:
        names = {d.api_name for d in old.documents(kind)}
        model = model.model_copy(
            update={kind: [d for d in model.documents(kind) if d.api_name not in names]}
        )
    return model
