"""One pipeline of ordered passes that checks metadata and reports every problem with its path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metacrm.checks import (
    assignment,
    automation,
    duplicates,
    expressions,
    layouts,
    messages,
    names,
    processes,
    references,
    sla,
)
from metacrm.checks.context import Context
from metacrm.errors import FieldError, MetadataInvalid
from metacrm.metadata.model import MetadataModel

#: The passes, in order. Each reports what it finds and never stops the ones after it;
#: a part a pass cannot check (an expression on an object that does not exist) is skipped.
#: Document shape comes first, where documents are read (metadata.schema, metadata.packs).
PASSES: tuple[Callable[[Context], None], ...] = (
    names.run,
    references.run,
    expressions.run,
    layouts.run,
    processes.run,
    messages.run,
    assignment.run,
    automation.run,
    sla.run,
    duplicates.run,
)


@dataclass(frozen=True)
class Report:
    """What the pipeline found: errors refuse the metadata, warnings only inform."""

    errors: tuple[FieldError, ...] = ()
    warnings: tuple[FieldError, ...] = ()

    def refuse(self) -> None:
        """Raise MetadataInvalid listing every error, if there is any."""
        if self.errors:
            raise MetadataInvalid(
                f"the metadata has {len(self.errors)} problem(s)", list(self.errors)
            )


def check_metadata(
    model: MetadataModel,
    *,
    old: MetadataModel | None = None,
    unreadable: frozenset[str] = frozenset(),
) -> Report:
    """Every problem of `model` (replacing `old`, when it is a change), each with its path."""
    ctx = Context(model, old, unreadable)
    for run in PASSES:
        run(ctx)
    return Report(tuple(dict.fromkeys(ctx.errors)), tuple(dict.fromkeys(ctx.warnings)))


__all__ = ["PASSES", "Context", "Report", "check_metadata"]
