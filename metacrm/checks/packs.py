"""The checks of a pack: dependencies, the metadata pipeline, seed records and pack tests, by file and pointer."""

from __future__ import annotations

from typing import Any

from metacrm.checks import check_metadata
from metacrm.errors import FieldError
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.packs import (
    Pack,
    PackInvalid,
    PackProblem,
    merge_pack,
    parse_version,
    satisfies,
)

# ---------------------------------------------------------------- semantic checks


def semantic_problems(
    pack: Pack,
    model: MetadataModel,
    *,
    installed: dict[str, str],
    dependents: dict[str, dict[str, str]] | None = None,
    upgrade_from: str | None = None,
    base: MetadataModel | None = None,
) -> list[PackProblem]:
    """Every problem of installing `pack` on `base` to get `model` (the merged result).

    `installed` maps installed pack names to versions, `dependents` maps each installed
    pack to its own `depends`; `upgrade_from` is the installed version being replaced.
    The problems of files that could not be read come first.
    """
    problems: list[PackProblem] = list(pack.problems)
    for name, spec in pack.manifest.depends.items():
        pointer = f"/depends/{name}"
        if name not in installed:
            problems.append(
                PackProblem(
                    "pack.json",
                    pointer,
                    "missing-dependency",
                    f"needs pack {name!r} {spec}; install it first",
                )
            )
        elif not satisfies(installed[name], spec):
            problems.append(
                PackProblem(
                    "pack.json",
                    pointer,
                    "version-conflict",
                    f"needs {name} {spec}, but {installed[name]} is installed",
                )
            )
    for other, depends in (dependents or {}).items():
        wanted = depends.get(pack.name)
        if other != pack.name and wanted is not None and not satisfies(pack.version, wanted):
            problems.append(
                PackProblem(
                    "pack.json",
                    "/version",
                    "version-conflict",
                    f"installed pack {other!r} needs {pack.name} {wanted}, not {pack.version}",
                )
            )
    if upgrade_from is not None:
        old, new = parse_version(upgrade_from), parse_version(pack.version)
        if old is not None and new is not None and new < old:
            problems.append(
                PackProblem(
                    "pack.json",
                    "/version",
                    "downgrade",
                    f"{pack.version} is older than the installed {upgrade_from}",
                )
            )
    for ext in pack.extensions:
        if not model.has_object(ext.object):
            file, _ = pack.origins[("extension", ext.object)]
            problems.append(
                PackProblem(
                    file, "/object", "unknown-object", f"object {ext.object!r} does not exist"
                )
            )
    report = check_metadata(model, old=base, unreadable=pack.unreadable)
    problems += [locate(pack, error) for error in report.errors]
    problems += seed_problems(pack, model)
    problems += case_problems(pack, model)
    return _unique(problems)


def locate(pack: Pack, error: FieldError) -> PackProblem:
    """A model path (`objects/account/fields/x/target`) as the pack file and pointer."""
    parts = [p for p in error.field.split("/") if p != ""]
    origin: tuple[str, str] | None = None
    rest: list[str] = []
    if len(parts) >= 2 and parts[0] == "objects":
        obj = parts[1]
        if len(parts) >= 4 and (parts[2], obj, parts[3]) in pack.origins:
            origin, rest = pack.origins[(parts[2], obj, parts[3])], parts[4:]
        elif ("object", obj) in pack.origins:
            origin, rest = pack.origins[("object", obj)], parts[2:]
    elif len(parts) >= 2 and (parts[0], parts[1]) in pack.origins:
        origin, rest = pack.origins[(parts[0], parts[1])], parts[2:]
    if origin is None:
        return PackProblem("(tenant)", "/" + "/".join(parts), error.code, error.message)
    file, base = origin
    node = _resolve(pack.files.get(file), base)
    pointer = [base]
    for segment in rest:
        index = None
        if isinstance(node, list) and not segment.isdigit():
            index = next(
                (
                    i
                    for i, item in enumerate(node)
                    if isinstance(item, dict)
                    and segment in (item.get("api_name"), item.get("value"), item.get("field"))
                ),
                None,
            )
        if index is not None:
            node, segment = node[index], str(index)
        elif isinstance(node, dict):
            node = node.get(segment)
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            node = None
        pointer.append("/" + segment)
    return PackProblem(file, "".join(pointer), error.code, error.message)


def _resolve(node: Any, pointer: str) -> Any:
    for segment in [p for p in pointer.split("/") if p]:
        if isinstance(node, list) and segment.isdigit():
            node = node[int(segment)]
        elif isinstance(node, dict):
            node = node.get(segment)
        else:
            return None
    return node


def seed_problems(pack: Pack, model: MetadataModel) -> list[PackProblem]:
    """Seed files of unknown objects, fields, and links naming unknown objects or fields."""
    problems = []
    for name, rows in pack.seed.items():
        file = f"seed/{name}.jsonl"
        if name in pack.unreadable:
            continue  # its object file's problem is reported
        if not model.has_object(name):
            problems.append(PackProblem(file, "", "unknown-object", f"no object {name!r}"))
            continue
        obj = model.object(name)
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append(PackProblem(file, f"/{i}", "type", "each line must be an object"))
                continue
            steps = row.get("$then", [])
            if not isinstance(steps, list) or not all(isinstance(x, dict) for x in steps):
                problems.append(
                    PackProblem(file, f"/{i}/$then", "type", "$then is a list of changes")
                )
                steps = []
            items = [(f"/{i}/{k}", k, v) for k, v in row.items() if k != "$then"]
            items += [
                (f"/{i}/$then/{j}/{k}", k, v)
                for j, step in enumerate(steps)
                for k, v in step.items()
            ]
            for pointer, key, value in items:
                if not obj.has_field(key):
                    problems.append(
                        PackProblem(file, pointer, "unknown-field", f"{name} has no field {key!r}")
                    )
                elif isinstance(value, dict) and value.get("$ref") not in pack.unreadable:
                    problems += _ref_problems(file, pointer, value, model)
    return problems


def _ref_problems(
    file: str, pointer: str, ref: dict[str, Any], model: MetadataModel
) -> list[PackProblem]:
    if "$ref" not in ref:
        return []
    target = ref.get("$ref")
    keys = [k for k in ref if k != "$ref"]
    if not isinstance(target, str) or not model.has_object(target):
        return [PackProblem(file, pointer + "/$ref", "unknown-object", f"no object {target!r}")]
    if len(keys) != 1 or not model.object(target).has_field(keys[0]):
        return [
            PackProblem(
                file, pointer, "bad-ref", f"a link names exactly one field of {target!r} to match"
            )
        ]
    return []


def case_problems(pack: Pack, model: MetadataModel) -> list[PackProblem]:
    problems = []
    for test in pack.tests:
        if not model.has_object(test.object):
            problems.append(
                PackProblem(
                    "tests", f"/{test.api_name}/object", "unknown-object", f"no {test.object!r}"
                )
            )
    return problems


def _unique(problems: list[PackProblem]) -> list[PackProblem]:
    return list(dict.fromkeys(problems))


def check_pack(
    pack: Pack,
    base: MetadataModel,
    *,
    installed: dict[str, str],
    dependents: dict[str, dict[str, str]] | None = None,
    upgrade_from: str | None = None,
    merged: MetadataModel | None = None,
) -> MetadataModel:
    """The model `pack` produces on `base`; PackInvalid listing every problem."""
    model = merged if merged is not None else merge_pack(base, pack)
    problems = semantic_problems(
        pack,
        model,
        installed=installed,
        dependents=dependents,
        upgrade_from=upgrade_from,
        base=base,
    )
    if problems:
        raise PackInvalid(f"the pack has {len(problems)} problem(s)", problems)
    return model
