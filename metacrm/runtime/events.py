"""After-commit events: what each write did, handed to subscribers once its transaction commits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.runtime.hooks import Intent, WriteKind

_log = logging.getLogger(__name__)
#: Where a transaction's outbox hangs on its connection (removed when it ends).
_KEY = "metacrm.outbox"


@dataclass(frozen=True)
class RecordEvent:
    """One committed write: which record, what happened, the values around it, and why."""

    object: str
    record_id: uuid.UUID
    kind: WriteKind
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changed: frozenset[str]
    intent: Intent


Subscriber = Callable[[RecordEvent], Awaitable[None]]


class Subscribers:
    """The explicitly registered receivers of after-commit events, called in order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.remove(subscriber)

    async def publish(self, events: Sequence[RecordEvent]) -> None:
        """Hand every event to every subscriber. The data is committed: a failing
        subscriber is logged and the others still run."""
        for record_event in events:
            for subscriber in list(self._subscribers):
                try:
                    await subscriber(record_event)
                except Exception:
                    _log.exception("an after-commit subscriber failed on %s", record_event)


@dataclass
class Outbox:
    """The events of one transaction, kept until it commits; a rolled-back savepoint
    takes the events written inside it away."""

    events: list[RecordEvent] = field(default_factory=list)
    _marks: list[int] = field(default_factory=list)

    def add(self, record_event: RecordEvent) -> None:
        self.events.append(record_event)

    def _savepoint(self, *_: Any) -> None:
        self._marks.append(len(self.events))

    def _release(self, *_: Any) -> None:
        if self._marks:
            self._marks.pop()

    def _rollback(self, *_: Any) -> None:
        if self._marks:
            del self.events[self._marks.pop() :]


def outbox_of(conn: AsyncConnection) -> Outbox | None:
    """The outbox of the transaction on `conn`; None where nobody will publish it."""
    found = conn.info.get(_KEY)
    return found if isinstance(found, Outbox) else None


@asynccontextmanager
async def collecting(conn: AsyncConnection) -> AsyncIterator[Outbox]:
    """Collect the events of the writes made on `conn` until the block ends; the caller
    publishes them once the transaction has committed."""
    outbox = Outbox()
    sync = conn.sync_connection
    listeners = (
        ("savepoint", outbox._savepoint),
        ("release_savepoint", outbox._release),
        ("rollback_savepoint", outbox._rollback),
    )
    if sync is not None:
        for name, listener in listeners:
            event.listen(sync, name, listener)
    conn.info[_KEY] = outbox
    try:
        yield outbox
    finally:
        conn.info.pop(_KEY, None)
        if sync is not None:
            for name, listener in listeners:
                event.remove(sync, name, listener)
