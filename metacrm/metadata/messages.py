"""Message metadata: who a notification or an e-mail goes to, and e-mail templates."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import StringConstraints, model_validator

from metacrm.metadata.base import LANGUAGE_TAG, ApiName, Label, Strict


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


#: An e-mail body: a plain text, or a map of language tag to text (longer than a label).
Body = (
    Annotated[str, StringConstraints(min_length=1, max_length=50_000)]
    | dict[
        Annotated[str, StringConstraints(pattern=LANGUAGE_TAG)],
        Annotated[str, StringConstraints(min_length=1, max_length=50_000)],
    ]
)


class EmailTemplate(Strict):
    """An e-mail's subject and body per language, rendered with the record's values.

    Subject and body are Jinja2 templates (run sandboxed): `{{ name }}` takes a field of
    `object`, `{{ account.name }}` a field reached through a lookup, filters and
    `{% if %}` work as in Jinja2. With `format` "html" the body is HTML and every value
    put in it is escaped; "text" bodies are sent as plain text.
    """

    api_name: ApiName
    object: ApiName | None = None
    label: Label | None = None
    subject: Label
    body: Body
    format: Literal["text", "html"] = "text"


@functools.cache
def template_environment(format: str = "text") -> SandboxedEnvironment:
    """The sandboxed Jinja2 environment templates are parsed and rendered in (HTML
    escapes every value put in the body; blank values print as nothing)."""
    return SandboxedEnvironment(
        autoescape=format == "html", keep_trailing_newline=True, finalize=_blank_none
    )


def _blank_none(value: object) -> object:
    """A blank field prints as nothing, not as "None"."""
    return "" if value is None else value


def template_paths(source: str) -> list[str]:
    """The record paths a template reads (`name`, `account.name`), in order, without the
    names its own `{% for %}` and `{% set %}` bind. TemplateSyntaxError when it does not
    parse."""
    tree = template_environment().parse(source)
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    found: dict[str, None] = {}

    def visit(node: nodes.Node) -> None:
        chain: list[str] = []
        current = node
        while isinstance(current, nodes.Getattr):
            chain.insert(0, current.attr)
            current = current.node
        if isinstance(current, nodes.Name) and current.ctx == "load":
            if current.name not in bound:
                found[".".join([current.name, *chain])] = None
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    return list(found)
