"""Write hooks: the rules other runtime modules enforce on every record write path."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError
from metacrm.runtime.compiler import CompiledObject, CompiledTenant


@dataclass
class WriteContext:
    """One record write as the hooks see it; `after` is the whole record as it will be."""

    conn: AsyncConnection
    ct: CompiledTenant
    co: CompiledObject
    actor: Any
    kind: Literal["create", "update", "delete", "restore"]
    before: dict[str, Any] | None
    after: dict[str, Any]
    changes: dict[str, Any]
    prefix: str = ""
    #: Free room for a hook to pass what its check learned on to its `after` step.
    notes: dict[str, Any] = field(default_factory=dict)


class WriteHook(Protocol):
    """A module that checks writes (and may act after them) for one kind of metadata."""

    async def check(self, ctx: WriteContext) -> list[FieldError]:
        """Every problem with the write; empty to let it through."""

    async def after(self, ctx: WriteContext) -> None:
        """Work done in the same transaction once the write succeeded."""


#: Modules providing `check` and `after`, run in this order on create, update, delete and
#: restore, whatever the path (single record, batch, import, stage endpoint).
HOOK_MODULES: tuple[str, ...] = (
    "metacrm.runtime.field_rules",
    "metacrm.runtime.approvals",
    "metacrm.runtime.stages",
    "metacrm.runtime.audit",
)


def write_hooks() -> list[WriteHook]:
    return [importlib.import_module(name) for name in HOOK_MODULES]  # type: ignore[misc]


async def run_checks(ctx: WriteContext) -> list[FieldError]:
    errors: list[FieldError] = []
    for hook in write_hooks():
        errors += await hook.check(ctx)
    return errors


async def run_after(ctx: WriteContext) -> None:
    for hook in write_hooks():
        await hook.after(ctx)
