"""A compiled tenant's bounded cache of derived views (per role, per language, per query)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

#: Entries one compiled tenant keeps; keys can come from callers (filters, languages,
#: query values), so the cache is bounded whatever they send.
MAX_VIEWS = 2000


class ViewCache:
    """A least-recently-used map from a key tuple to what was built for it."""

    def __init__(self, max_entries: int = MAX_VIEWS) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_build(self, key: tuple[Hashable, ...], build: Callable[[], T]) -> T:
        """The value kept under `key`, built (and kept) on first use."""
        try:
            value: T = self._entries[key]
        except KeyError:
            return self._keep(key, build())
        self._entries.move_to_end(key)
        return value

    async def get_or_load(self, key: tuple[Hashable, ...], load: Callable[[], Awaitable[T]]) -> T:
        """Like get_or_build, for a value that needs the database to build."""
        try:
            value: T = self._entries[key]
        except KeyError:
            return self._keep(key, await load())
        self._entries.move_to_end(key)
        return value

    def _keep(self, key: tuple[Hashable, ...], value: T) -> T:
        self._entries[key] = value
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value
