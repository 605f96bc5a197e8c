"""After-commit events: what each write did, handed to subscribers once its transaction commits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, event
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
    #: Jobs the transaction enqueued (a worker of this process is woken for them).
    jobs: int = 0
    #: How many events there were when each open savepoint began.
    marks: list[int] = field(default_factory=list)

    def add(self, record_event: RecordEvent) -> None:
        self.events.append(record_event)


def outbox_of(conn: AsyncConnection) -> Outbox | None:
    """The outbox of the transaction on `conn`; None where nobody will publish it."""
    found = conn.info.get(_KEY)
    return found if isinstance(found, Outbox) else None


def _outbox(sync: Connection) -> Outbox | None:
    found = sync.info.get(_KEY)
    return found if isinstance(found, Outbox) else None


def _savepoint(sync: Connection, *_: Any) -> None:
    outbox = _outbox(sync)
    if outbox is not None:
        outbox.marks.append(len(outbox.events))


def _release(sync: Connection, *_: Any) -> None:
    outbox = _outbox(sync)
    if outbox is not None and outbox.marks:
        outbox.marks.pop()


def _rollback(sync: Connection, *_: Any) -> None:
    outbox = _outbox(sync)
    if outbox is not None and outbox.marks:
        del outbox.events[outbox.marks.pop() :]


_SAVEPOINT_LISTENERS = (
    ("savepoint", _savepoint),
    ("release_savepoint", _release),
    ("rollback_savepoint", _rollback),
)


@asynccontextmanager
async def collecting(conn: AsyncConnection) -> AsyncIterator[Outbox]:
    """Collect the events of the writes made on `conn` until the block ends; the caller
    publishes them once the transaction has committed."""
    engine = conn.sync_engine
    if not event.contains(engine, "savepoint", _savepoint):  # once per engine
        for name, listener in _SAVEPOINT_LISTENERS:
            event.listen(engine, name, listener)
    outbox = Outbox()
    conn.info[_KEY] = outbox
    try:
        yield outbox
    finally:
        conn.info.pop(_KEY, None)
