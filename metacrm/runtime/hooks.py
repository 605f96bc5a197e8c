"""The write path's vocabulary: what a write is for, what its hooks see, and what a hook is."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant


class Origin(enum.StrEnum):
    """Through what a write comes: the API, a process, a migration, a pack, the system."""

    API = "api"
    STAGE = "stage"
    APPROVAL = "approval"
    MIGRATION = "migration"
    PACK = "pack"
    SYSTEM = "system"
    #: A detail deleted or restored with its master, a lookup cleared by its target's delete.
    CASCADE = "cascade"
    #: An automation rule's action, an assignment or an SLA escalation, run by a job.
    AUTOMATION = "automation"
    #: A row of a file import, or the revert of one.
    IMPORT = "import"
    #: A merge of duplicate records (the survivor's values, the moved children), or its undo.
    MERGE = "merge"


#: How many automation steps may follow each other (a rule's write triggering a rule...)
#: before the chain is stopped and the stop recorded in the run history.
MAX_AUTOMATION_DEPTH = 5


@dataclass(frozen=True)
class Intent:
    """What a write is for: who acts, through what, why, and with whose rights."""

    actor: Actor
    origin: Origin = Origin.API
    #: Why (a stage move's reason, the approval flow acting); kept in the stage history.
    reason: str | None = None
    #: Runs with system rights (actions an administrator defined in metadata): record
    #: and field permissions, layouts and approval locks do not limit it.
    system: bool = False
    #: How many automation steps led to this write (0: a person's or a client's own);
    #: the jobs it causes run at depth + 1, and a rule stops at `MAX_AUTOMATION_DEPTH`.
    depth: int = 0
    #: Save despite a duplicate rule's warning (`warn`); `block` rules still refuse.
    allow_duplicates: bool = False

    @property
    def privileged(self) -> bool:
        """Whether permissions and locks leave this write alone (system or administrator)."""
        return self.system or self.actor.is_admin


#: What a write does to its record; "transfer" is a change of owner.
WriteKind = Literal["create", "update", "delete", "restore", "transfer"]


@dataclass
class Write:
    """One record write as the hooks see it; `after` is the whole record as it will be."""

    conn: AsyncConnection
    ct: CompiledTenant
    co: CompiledObject
    intent: Intent
    kind: WriteKind
    before: dict[str, Any] | None
    after: dict[str, Any]
    changes: dict[str, Any]
    prefix: str = ""
    #: Input fields whose value was refused (not reported again as missing).
    refused: frozenset[str] = frozenset()
    #: Whether a pending approval run holds the record (None: not looked up yet).
    pending_approval: bool | None = None
    #: Values the write also stores once every check passed (a stage's probability and
    #: on-entry field updates): defined in metadata, so no permission or lock limits them.
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> Actor:
        return self.intent.actor

    @property
    def record_id(self) -> Any:
        return self.after.get("id") or (self.before or {}).get("id")

    def changed(self, name: str) -> bool:
        """Whether the write gives `name` a value other than the one stored."""
        return name in self.changes and (
            self.before is None or self.changes[name] != self.before.get(name)
        )


class WriteHook(Protocol):
    """One kind of rule every record write passes, whatever path it takes."""

    #: When it finds a problem the write stops there: later hooks would judge bad values.
    blocking: bool

    async def check(self, write: Write) -> list[FieldError]:
        """Every problem with the write; empty to let it through."""
        ...

    async def after(self, write: Write) -> None:
        """Work done in the same transaction once the write succeeded."""
        ...
