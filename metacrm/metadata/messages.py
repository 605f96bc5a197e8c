"""Message metadata: who a notification or an e-mail goes to, and e-mail templates."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from metacrm.metadata.base import ApiName, Label, Strict


class Recipient(Strict):
    """Who a notification or an e-mail goes to.

    - `user`: a user's id or e-mail;
    - `role`: every active user of the role;
    - `owner`: the record's owner; `manager`: the owner's manager;
    - `field`: the user held in a field of the record (`owner_id`, `created_by`, or a
      text/e-mail field holding a user id or e-mail), or for e-mail an address field;
    - `address`: a fixed e-mail address (e-mail only).
    """

    kind: Literal["user", "role", "owner", "manager", "field", "address"]
    user: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    role: ApiName | None = None
    field: ApiName | None = None
    address: Annotated[str, StringConstraints(min_length=3, max_length=320)] | None = None

    @model_validator(mode="after")
    def _needs(self) -> Recipient:
        needed = {"user": "user", "role": "role", "field": "field", "address": "address"}
        name = needed.get(self.kind)
        if name is not None and getattr(self, name) is None:
            raise ValueError(f"a recipient of kind {self.kind!r} needs {name!r}")
        return self


class EmailTemplate(Strict):
    """An e-mail's subject and body per language; `{{ field }}` placeholders take the
    record's values (stub: the notifications helper completes it)."""

    api_name: ApiName
    object: ApiName | None = None
    label: Label | None = None
    subject: Label
    body: Label
