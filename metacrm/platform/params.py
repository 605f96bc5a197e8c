"""Query parameters a route does not declare are refused: 400 naming each, never ignored;
so are values no database stores the same way (NUL bytes, lone surrogates)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from metacrm.errors import BadRequest, FieldError
from metacrm.metadata.values import ValueProblem, check_text


def open_query() -> None:
    """Declares that a route reads query parameters beyond those it names (and checks them
    itself, e.g. picklist values choosing a layout): add it as `dependencies=[OPEN_QUERY]`."""


OPEN_QUERY = Depends(open_query)


def unknown_parameters(names: Iterable[str]) -> BadRequest:
    """The 400 for query parameters a route does not take, one error per name."""
    shown = sorted({name[:64] for name in names})
    errors = [
        FieldError(name, "unknown-parameter", f"{name!r} is not a parameter of this route")
        for name in shown
    ]
    return BadRequest(f"unknown query parameter(s): {', '.join(shown)}", errors)


def declared_query(dependant: Dependant) -> frozenset[str] | None:
    """The query parameters a route's dependency tree declares (None: it takes any)."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        if current.call is open_query:
            return None
        for field in current.query_params:
            model = field.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):  # a query model
                names.update(f.alias or n for n, f in model.model_fields.items())
            else:
                names.add(field.alias)
        stack.extend(current.dependencies)
    return frozenset(names)


#: What each route declares, worked out on its first request with query parameters; keyed
#: by the id of the route's dependant, which the entry keeps so that the id stays its own.
_DECLARED: dict[int, tuple[Dependant, frozenset[str] | None]] = {}


async def refuse_unknown_parameters(request: Request) -> None:
    """A dependency of every /api/v1 route: refuse query parameters the route does not take,
    and values holding text that PostgreSQL cannot store (before any of them reaches SQL)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    problems = []
    for name, value in request.query_params.multi_items():
        try:
            check_text(name)
            check_text(value)
        except ValueProblem as problem:
            problems.append(FieldError(name[:64], problem.code, problem.message))
    if problems:
        raise BadRequest("a query parameter holds text no database stores", problems)
    entry = _DECLARED.get(id(route.dependant))
    if entry is None or entry[0] is not route.dependant:
        entry = _DECLARED[id(route.dependant)] = (route.dependant, declared_query(route.dependant))
    declared = entry[1]
    if declared is None:
        return
    unknown = set(request.query_params) - declared
    if unknown:
        raise unknown_parameters(unknown)


#: Give it to every router mounted under /api/v1.
CHECK_PARAMS = Depends(refuse_unknown_parameters)
