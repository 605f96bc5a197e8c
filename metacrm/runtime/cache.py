"""The cache of compiled tenants, keyed by (storage, metadata version)."""

from __future__ import annotations

from collections import OrderedDict

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.store import load_model
from metacrm.runtime.compiler import CompiledTenant, compile_tenant


class TenantCache:
    """Compiled metadata shared by all requests of a process.

    Each request reads the tenant's current version in its own transaction (with its
    caller, in one query: platform/state.py), so a change applied by any process is seen
    by the next request.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], CompiledTenant] = OrderedDict()

    async def compiled(self, conn: AsyncConnection, storage: str, version: int) -> CompiledTenant:
        """The compiled metadata at `version`, compiled on first use."""
        key = (storage, version)
        compiled = self._entries.get(key)
        if compiled is not None:
            self._entries.move_to_end(key)
            return compiled
        compiled = compile_tenant(await load_model(conn, version), version)
        self._entries[key] = compiled
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return compiled
