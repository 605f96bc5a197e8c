"""Metadata packs: the format, loading (folder, zip, JSON bundle) and validation.

A pack is a set of files:

    pack.json                  manifest: name, version (semver), label, description,
                               depends {pack: range}, seed (load order)
    objects/*.json             one object each
    extensions/*.json          fields and rules added to another pack's object
    roles.json, layouts.json, list_views.json, stage_rules.json,
    approval_flows.json, sharing_rules.json
                               a list of documents each (or a folder of that name)
    seed/<object>.jsonl        example records, one JSON object a line; a value
                               {"$ref": object, external_field: value} links a record
    tests/*.json               pack tests: records and what they must produce

Validation collects every problem at once, each with its file and a JSON pointer:
the published JSON Schema first, then the pydantic model, then the cross-checks
(references resolve, formulas type-check, dependencies are met).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import jsonschema
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import StringConstraints, TypeAdapter, ValidationError

from metacrm.errors import FieldError, MetadataInvalid
from metacrm.metadata.base import ApiName, Label, Strict
from metacrm.metadata.model import (
    DOCUMENT_KINDS,
    FieldDef,
    FieldRule,
    MetadataModel,
    ObjectDef,
    ValidationRule,
)

PACK_NAME = r"^[a-z][a-z0-9-]{0,62}$"
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
BUNDLE_FORMAT = "metacrm-pack/1"
#: Attributes of MetadataModel carried as documents of their own, in pack file names.
DOCUMENT_FILES = tuple(attribute for attribute, _cls in DOCUMENT_KINDS.values())
_CLASSES = {attribute: cls for attribute, cls in DOCUMENT_KINDS.values()}
MAX_FILES = 2000
MAX_BUNDLE_BYTES = 32 * 1024 * 1024


# ---------------------------------------------------------------- documents


class Manifest(Strict):
    """pack.json."""

    name: Annotated[str, StringConstraints(pattern=PACK_NAME)]
    version: Annotated[str, StringConstraints(max_length=64)]
    label: Label | None = None
    description: Annotated[str, StringConstraints(max_length=4000)] | None = None
    depends: dict[Annotated[str, StringConstraints(pattern=PACK_NAME)], str] = {}
    seed: list[ApiName] = []


class Extension(Strict):
    """Fields and rules a pack adds to an object another pack (or the tenant) defines."""

    object: ApiName
    fields: list[FieldDef] = []
    validation_rules: list[ValidationRule] = []
    field_rules: list[FieldRule] = []


class Expectation(Strict):
    """What a pack test expects of a write: accepted with these values, or refused."""

    valid: bool = True
    values: dict[str, Any] = {}
    errors: list[dict[str, str]] = []


class CaseStep(Strict):
    update: dict[str, Any]
    expect: Expectation = Expectation()


class PackTest(Strict):
    """One pack test: create `record` in `object`, check, then apply each step."""

    api_name: ApiName
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    object: ApiName
    record: dict[str, Any]
    expect: Expectation = Expectation()
    then: list[CaseStep] = []


_FILE_KINDS: dict[str, Any] = {
    "manifest": Manifest,
    "object": ObjectDef,
    "extension": Extension,
    "tests": list[PackTest],
    **{attribute: list[cls] for attribute, cls in _CLASSES.items()},  # type: ignore[valid-type]
}


@dataclass(frozen=True)
class PackProblem:
    """One problem of a pack: the file, a JSON pointer into it, a stable code, a message."""

    file: str
    pointer: str
    code: str
    message: str

    def as_error(self) -> FieldError:
        return FieldError(f"{self.file}#{self.pointer}", self.code, self.message)

    def as_dict(self) -> dict[str, str]:
        return {
            "file": self.file,
            "pointer": self.pointer,
            "code": self.code,
            "message": self.message,
        }


class PackInvalid(MetadataInvalid):
    """A pack refused before anything changed; `problems` lists every problem."""

    code, title = "pack-invalid", "The pack is invalid"

    def __init__(self, detail: str, problems: list[PackProblem]) -> None:
        super().__init__(detail, [p.as_error() for p in problems])
        self.problems = list(problems)


@dataclass
class Pack:
    """A loaded, schema-valid pack. `files` keeps the raw JSON for pointers and export."""

    manifest: Manifest
    objects: list[ObjectDef] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)
    documents: dict[str, list[Any]] = field(default_factory=dict)
    seed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tests: list[PackTest] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)
    #: (kind, *names) -> (file, pointer): where each document, field and rule was written.
    origins: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)
    #: Problems of files that could not be read (a pack loaded with `partial=True`).
    problems: list[PackProblem] = field(default_factory=list)
    #: Objects whose file could not be read: their problem is in `problems` already.
    unreadable: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def contents(self) -> dict[str, Any]:
        """The metadata the pack contributes, as JSON (kept per tenant for upgrades)."""
        dump = document_data
        return {
            "objects": [dump(o) for o in self.objects],
            "extensions": [dump(e) for e in self.extensions],
            **{k: [dump(d) for d in self.documents.get(k, [])] for k in DOCUMENT_FILES},
        }


def document_data(document: Any) -> dict[str, Any]:
    data: dict[str, Any] = document.model_dump(mode="json", exclude_defaults=True)
    return data


def contents_model(contents: dict[str, Any]) -> tuple[MetadataModel, list[Extension]]:
    """The objects and documents of stored pack contents, and its extensions."""
    model = MetadataModel.model_validate({k: v for k, v in contents.items() if k != "extensions"})
    return model, [Extension.model_validate(e) for e in contents.get("extensions", [])]


# ---------------------------------------------------------------- semver


def parse_version(text: str) -> Version | None:
    if not isinstance(text, str) or not SEMVER.match(text):
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def parse_range(text: str) -> SpecifierSet | None:
    """A version range: PEP 440 specifiers (`>=1.0,<2`), `^1.2`, `~1.2`, `1.2.3` or `*`."""
    text = (text or "").strip()
    if text in ("", "*"):
        return SpecifierSet()
    parts = []
    for raw in re.split(r"[,\s]+", text):
        if not raw:
            continue
        if raw[0] in "^~":
            base = parse_version(_pad(raw[1:]))
            if base is None:
                return None
            major, minor = base.release[0], base.release[1]
            if raw[0] == "^" and major > 0:
                upper = f"{major + 1}.0.0"
            elif raw[0] == "^" or raw[0] == "~":
                upper = f"{major}.{minor + 1}.0"
            parts += [f">={base}", f"<{upper}"]
        elif raw[0].isdigit():
            parts.append(f"=={raw}")
        else:
            parts.append(raw)
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier:
        return None


def _pad(text: str) -> str:
    pieces = text.split(".")
    return ".".join(pieces + ["0"] * (3 - len(pieces))) if len(pieces) < 3 else text


def satisfies(version: str, spec: str) -> bool:
    parsed, wanted = parse_version(version), parse_range(spec)
    return parsed is not None and wanted is not None and wanted.contains(parsed, prereleases=True)


# ---------------------------------------------------------------- reading files


def read_folder(folder: Path) -> dict[str, Any]:
    """The files of a pack folder as {relative path: text}."""
    if not (folder / "pack.json").is_file():
        raise PackInvalid(
            f"{folder} is not a pack", [PackProblem("pack.json", "", "missing", "no pack.json")]
        )
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            files[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
    if len(files) > MAX_FILES:
        raise PackInvalid("too many files", [PackProblem("", "", "too-large", "too many files")])
    return files


def read_zip(data: bytes) -> dict[str, Any]:
    """The files of a zipped pack (optionally inside one top-level folder)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise PackInvalid(
            "not a zip file", [PackProblem("", "", "bad-zip", "the upload is not a zip file")]
        ) from None
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if len(names) > MAX_FILES or sum(i.file_size for i in archive.infolist()) > MAX_BUNDLE_BYTES:
        raise PackInvalid("too large", [PackProblem("", "", "too-large", "the zip is too large")])
    roots = {n.split("/", 1)[0] for n in names}
    strip = ""
    if "pack.json" not in names and len(roots) == 1:
        strip = next(iter(roots)) + "/"
    return {
        n.removeprefix(strip): archive.read(n).decode("utf-8")
        for n in names
        if n.endswith((".json", ".jsonl")) and ".." not in n.split("/")
    }


def read_bundle(bundle: Any) -> dict[str, Any]:
    """The files of a JSON bundle `{"format": "metacrm-pack/1", "files": {path: content}}`.

    Contents may be JSON values already (a .jsonl file as a list of records) or text.
    """
    if not isinstance(bundle, dict) or not isinstance(bundle.get("files"), dict):
        raise PackInvalid(
            "not a pack bundle",
            [PackProblem("", "/files", "bad-bundle", 'expected {"files": {path: content}}')],
        )
    return dict(bundle["files"])


def to_bundle(files: dict[str, Any]) -> dict[str, Any]:
    return {"format": BUNDLE_FORMAT, "files": files}


def _decode(path: str, content: Any, problems: list[PackProblem]) -> Any:
    """JSON of one file; a .jsonl file becomes a list. Syntax errors become problems."""
    if not isinstance(content, str | bytes):
        return content
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    try:
        if path.endswith(".jsonl"):
            out = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        problems.append(
                            PackProblem(
                                path, f"/{number - 1}", "json", f"line {number}: {error.msg}"
                            )
                        )
                        out.append(None)
            return out
        return json.loads(text)
    except json.JSONDecodeError as error:
        problems.append(
            PackProblem(path, "", "json", f"line {error.lineno} column {error.colno}: {error.msg}")
        )
        return None


# ---------------------------------------------------------------- schema


@cache
def _adapter(kind: str) -> TypeAdapter[Any]:
    return TypeAdapter(_FILE_KINDS[kind])


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = TypeAdapter(_FILE_KINDS[kind]).json_schema(mode="validation")
    return jsonschema.Draft202012Validator(schema)


def pack_schema() -> dict[str, Any]:
    """The JSON Schemas of every pack file kind (published at GET /api/v1/packs/schema)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "files": {
            "pack.json": _validator("manifest").schema,
            "objects/*.json": _validator("object").schema,
            "extensions/*.json": _validator("extension").schema,
            "tests/*.json": _validator("tests").schema,
            **{f"{k}.json": _validator(k).schema for k in DOCUMENT_FILES},
        },
    }


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors that say what is wrong: inside a oneOf/anyOf, the branch that was meant."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    instance = error.instance

    def discriminated(errors: list[jsonschema.ValidationError]) -> bool:
        return not any(
            e.validator in ("const", "enum") and list(e.relative_path) == ["type"] for e in errors
        )

    if isinstance(instance, dict) and "type" in instance:
        meant = [errs for errs in branches.values() if discriminated(errs)]
        if not meant:
            bad = jsonschema.ValidationError(
                f"unknown type {instance['type']!r}",
                path=deque([*error.absolute_path, "type"]),
                validator="enum",
            )
            return [bad]
        chosen = meant[0]
    else:
        chosen = min(branches.values(), key=len)
    out = []
    for sub in chosen:
        for leaf in _leaf_errors(sub):
            leaf.path = deque([*error.absolute_path, *leaf.relative_path])
            out.append(leaf)
    return out


def _schema_problems(path: str, kind: str, data: Any) -> list[PackProblem]:
    problems = []
    for error in _validator(kind).iter_errors(data):
        for leaf in _leaf_errors(error):
            pointer = _pointer(getattr(leaf, "path", leaf.absolute_path))
            problems.append(PackProblem(path, pointer, f"schema-{leaf.validator}", leaf.message))
    return problems


def _model_problems(path: str, error: ValidationError) -> list[PackProblem]:
    return [
        PackProblem(
            path, _pointer(item["loc"]), item["type"], item["msg"].removeprefix("Value error, ")
        )
        for item in error.errors(include_url=False)
    ]


def _file_kind(path: str) -> str | None:
    if path == "pack.json":
        return "manifest"
    top, _, rest = path.partition("/")
    if top == "objects" and rest.endswith(".json"):
        return "object"
    if top == "extensions" and rest.endswith(".json"):
        return "extension"
    if top == "tests" and rest.endswith(".json"):
        return "tests"
    if top == "seed" and rest.endswith(".jsonl"):
        return "seed"
    stem = path.removesuffix(".json")
    if stem in DOCUMENT_FILES or (top in DOCUMENT_FILES and rest.endswith(".json")):
        return top if top in DOCUMENT_FILES else stem
    return None


# ---------------------------------------------------------------- loading


def load_pack(files: dict[str, Any], *, partial: bool = False) -> Pack:
    """A pack from its files; PackInvalid listing every schema and model problem.

    With `partial`, a pack whose pack.json is sound loads without the files that are
    not: their problems travel in `Pack.problems`, so that the checks of the rest of the
    pack report theirs beside them (`metacrm.checks.packs`).
    """
    problems: list[PackProblem] = []
    decoded = {path: _decode(path, content, problems) for path, content in sorted(files.items())}
    if "pack.json" not in decoded:
        problems.append(PackProblem("pack.json", "", "missing", "a pack needs a pack.json"))
    parsed: dict[str, Any] = {}
    unreadable: set[str] = set()
    for path, data in decoded.items():
        kind = _file_kind(path)
        if kind is None:
            problems.append(PackProblem(path, "", "unknown-file", "not a file a pack may hold"))
            continue
        if kind == "seed":
            continue
        if data is None:
            unreadable |= _object_named(kind, path, data)
            continue
        if kind in DOCUMENT_FILES or kind == "tests":
            data = data if isinstance(data, list) else [data]
            decoded[path] = data
        # The model accepts exactly what its published schema describes, and more cheaply;
        # a refused file is reported against the JSON Schema, or by the model's own checks
        # (scale above precision, reserved names, ...) where the schema has nothing to say.
        try:
            parsed[path] = _adapter(kind).validate_python(data)
        except ValidationError as error:
            problems += _schema_problems(path, kind, data) or _model_problems(path, error)
            unreadable |= _object_named(kind, path, data)
    manifest: Manifest | None = parsed.get("pack.json")
    if manifest is not None:
        problems += _manifest_problems(manifest, decoded)
    if manifest is None or (problems and not partial):
        raise PackInvalid(f"the pack has {len(problems)} problem(s)", problems)
    pack = Pack(
        manifest=manifest, files=decoded, problems=problems, unreadable=frozenset(unreadable)
    )
    for path, value in parsed.items():
        kind = _file_kind(path)
        if kind == "object":
            pack.objects.append(value)
            _note(pack, ("object", value.api_name), path, "", decoded[path])
        elif kind == "extension":
            pack.extensions.append(value)
            _note(pack, ("extension", value.object), path, "", decoded[path])
        elif kind == "tests":
            pack.tests += value
        elif kind in DOCUMENT_FILES:
            pack.documents.setdefault(kind, []).extend(value)
            for i, doc in enumerate(value):
                pack.origins[(kind, doc.api_name)] = (path, f"/{i}")
    for name in manifest.seed:
        pack.seed[name] = decoded.get(f"seed/{name}.jsonl") or []
    return pack


def _object_named(kind: str, path: str, data: Any) -> set[str]:
    """The object an unreadable object file defines (its api_name, else its file name)."""
    if kind != "object":
        return set()
    name = data.get("api_name") if isinstance(data, dict) else None
    return {name if isinstance(name, str) else path.rsplit("/", 1)[-1].removesuffix(".json")}


def _note(pack: Pack, key: tuple[str, ...], path: str, base: str, raw: dict[str, Any]) -> None:
    """Remember where a document, its fields and its rules were written."""
    pack.origins[key] = (path, base)
    owner = key[1]
    for part in ("fields", "validation_rules", "field_rules"):
        for i, item in enumerate(raw.get(part, [])):
            if isinstance(item, dict) and "api_name" in item:
                pack.origins[(part, owner, item["api_name"])] = (path, f"{base}/{part}/{i}")


def _manifest_problems(manifest: Manifest, decoded: dict[str, Any]) -> list[PackProblem]:
    problems = []
    if parse_version(manifest.version) is None:
        problems.append(
            PackProblem(
                "pack.json", "/version", "semver", f"{manifest.version!r} is not a semantic version"
            )
        )
    for name, spec in manifest.depends.items():
        if parse_range(spec) is None:
            problems.append(
                PackProblem(
                    "pack.json", f"/depends/{name}", "range", f"{spec!r} is not a version range"
                )
            )
        if name == manifest.name:
            problems.append(
                PackProblem(
                    "pack.json", f"/depends/{name}", "self", "a pack cannot depend on itself"
                )
            )
    for i, name in enumerate(manifest.seed):
        if f"seed/{name}.jsonl" not in decoded:
            problems.append(
                PackProblem("pack.json", f"/seed/{i}", "missing-file", f"no seed/{name}.jsonl")
            )
    for path in decoded:
        if _file_kind(path) == "seed":
            name = path.removeprefix("seed/").removesuffix(".jsonl")
            if name not in manifest.seed:
                problems.append(
                    PackProblem(path, "", "not-listed", f"list {name!r} in pack.json 'seed'")
                )
    return problems


def load_path(path: Path, *, partial: bool = False) -> Pack:
    """A pack from a folder, a .zip file or a .json bundle (see `load_pack` for `partial`)."""
    if path.is_dir():
        return load_pack(read_folder(path), partial=partial)
    if path.suffix == ".zip":
        return load_pack(read_zip(path.read_bytes()), partial=partial)
    bundle = read_bundle(json.loads(path.read_text(encoding="utf-8")))
    return load_pack(bundle, partial=partial)


def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "_bundled" / "examples"


def find_pack(reference: str) -> Path:
    """A path, or the name of a bundled example pack."""
    path = Path(reference)
    if path.exists():
        return path
    bundled = examples_dir() / reference
    if bundled.is_dir():
        return bundled
    raise PackInvalid(
        f"no pack at {reference!r}",
        [PackProblem(reference, "", "not-found", "no such file, folder or bundled example")],
    )


# ---------------------------------------------------------------- merging


def merge_pack(model: MetadataModel, pack: Pack) -> MetadataModel:
    """`model` with everything `pack` contributes added (or replacing the same api_names)."""
    for obj in pack.objects:
        model = model.with_object(obj)
    for ext in pack.extensions:
        if model.has_object(ext.object):
            model = model.with_object(extend_object(model.object(ext.object), ext))
    for kind, docs in pack.documents.items():
        for doc in docs:
            model = model.with_document(kind, doc)
    return model


def extend_object(obj: ObjectDef, ext: Extension) -> ObjectDef:
    update = {}
    for part in ("fields", "validation_rules", "field_rules"):
        added = getattr(ext, part)
        names = {a.api_name for a in added}
        update[part] = [x for x in getattr(obj, part) if x.api_name not in names] + list(added)
    return obj.model_copy(update=update)
