"""Global search across the objects a user may read."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from markupsafe import Markup, escape
from starlette.responses import Response

from metacrm.platform.state import StateDep
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.shell import object_label
from metacrm.platform.web.values import display
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime.layouts import DEFAULT
from metacrm.runtime.search import ObjectHits, clean, search
from metacrm.ui_schema.labels import text

router = APIRouter(prefix="/app", include_in_schema=False)

#: Results shown per object; "more" links to the object's list for the rest.
PER_OBJECT = 5


def highlighted(value: str, fragment: str) -> Markup:
    """`value` with each occurrence of `fragment` (ASCII case ignored) marked; escaped."""
    if not fragment:
        return escape(value)
    pattern = re.compile(re.escape(fragment), re.IGNORECASE | re.ASCII)
    out, last = Markup(""), 0
    for match in pattern.finditer(value):
        out += escape(value[last : match.start()]) + Markup("<mark>{}</mark>").format(match[0])
        last = match.end()
    return out + escape(value[last:])


def _group(ws: Workspace, hits: ObjectHits, fragment: str) -> dict[str, Any]:
    co = ws.ct.objects[hits.object]
    language = ws.actor.language
    rows = []
    for record in hits.records:
        name = record.get(hits.name_field) if hits.name_field else None
        title = str(name) if name not in (None, "") else str(record["id"])[:8]
        details = []
        for field_name in hits.fields:
            value = record.get(field_name)
            if field_name == hits.name_field or value in (None, ""):
                continue
            if fragment.lower() not in str(value).lower():
                continue
            f = co.obj.field(field_name)
            details.append(
                {
                    "label": text(f.label, [language, "en"], field_name),
                    "html": display(f, value, language=language, currency=ws.currency),
                }
            )
        rows.append(
            {
                "url": f"/app/o/{co.name}/{record['id']}",
                "title": highlighted(title, fragment),
                "details": details,
            }
        )
    more = None
    if hits.more:
        # The generated default view: every record, whatever the object's own views filter.
        more = f"/app/o/{co.name}?" + urlencode({"view": DEFAULT, "where": hits.where})
    return {
        "object": co.name,
        "label": object_label(ws.ct, co.name, language, plural=True),
        "rows": rows,
        "more": more,
    }


@router.get("/search")
async def search_page(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Records of every readable object whose name or searchable fields contain `q`."""
    fragment = clean(q)
    async with workspace(request, state, identity) as ws:
        hits = []
        if fragment:
            hits = await search(
                ws.conn,
                ws.ct,
                ws.actor,
                fragment,
                cursor_key=state.signing_key.encode(),
                per_object=PER_OBJECT,
            )
        groups = [_group(ws, h, fragment) for h in hits]
        return await ws.page("search.html", {"q": fragment, "groups": groups})
