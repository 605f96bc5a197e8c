"""Who acts: the one typed description of the user (or API key) behind a request or a job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from metacrm.i18n import LANGUAGES as LANGUAGES
from metacrm.i18n import Language


@dataclass(frozen=True)
class Actor:
    """The user whose id stamps what they create and change, and what they may do."""

    user_id: uuid.UUID
    is_admin: bool = False
    role: str | None = None
    manager_id: uuid.UUID | None = None
    ip: str | None = None
    api_key_id: uuid.UUID | None = None
    #: "read" for API keys that may only read; None for full access.
    scope: str | None = None
    #: The language problems and labels are answered in (negotiated, never raw input).
    language: Language = "en"
