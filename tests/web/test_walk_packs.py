"""Every page type works for every object of the four example packs, and no page answers
500 to a bad parameter: list, board (where a stage rule exists), record page, forms."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.web.conftest import Crm, needs_chromium, new_crm, signed_in_client

pytestmark = [needs_chromium, pytest.mark.slow]

#: crm-core alone, and each industry pack on top of it (they depend on crm-core).
PACKS = [
    ("crm-core",),
    ("crm-core", "b2b-saas"),
    ("crm-core", "education"),
    ("crm-core", "manufacturing"),
]
BAD_LIST_PARAMS = [
    {"where": ")))"},
    {"where": "no_such_field == 1"},
    {"order_by": "no_such_field"},
    {"cursor": "garbage"},
    {"view": "no_such_view"},
    {"columns": "no_such_field"},
]


@pytest.fixture(params=PACKS, ids=lambda packs: packs[-1])
def pack_tenant(
    request: pytest.FixtureRequest, web_server: str, clients: list[httpx.Client]
) -> tuple[Crm, httpx.Client]:
    crm = new_crm(web_server, *request.param)
    return crm, signed_in_client(clients, crm, crm.admin)


def _page(client: httpx.Client, path: str, params: dict[str, str] | None = None) -> httpx.Response:
    response = client.get(path, params=params)
    assert response.status_code != 500, (path, params, response.text[:2000])
    assert "text/html" in response.headers.get("content-type", ""), (path, response.status_code)
    return response


def test_every_page_of_every_object(pack_tenant: tuple[Crm, httpx.Client]) -> None:
    crm, client = pack_tenant
    with crm.api() as api:
        objects = api.get("/api/v1/metadata/objects").json()["objects"]
        staged = {
            rule["object"] for rule in api.get("/api/v1/metadata/stage-rules").json()["stage-rules"]
        }
        for obj in objects:
            name = obj["api_name"]
            listing = _page(client, f"/app/o/{name}")
            assert listing.status_code == 200, (name, listing.text[:2000])
            for params in BAD_LIST_PARAMS:
                assert _page(client, f"/app/o/{name}", params).status_code in (200, 400, 404, 422)
            if name in staged:
                board = _page(client, f"/app/o/{name}/kanban")
                assert board.status_code == 200, (name, board.text[:2000])
            form = _page(client, f"/app/o/{name}/new")
            assert form.status_code == 200, (name, form.text[:2000])
            records = api.get(f"/api/v1/data/{name}", params={"limit": 1}).json()["records"]
            if records:
                record_id = records[0]["id"]
                page = _page(client, f"/app/o/{name}/{record_id}")
                assert page.status_code == 200, (name, page.text[:2000])
                edit = _page(client, f"/app/o/{name}/{record_id}/edit")
                assert edit.status_code == 200, (name, edit.text[:2000])
            missing = _page(client, f"/app/o/{name}/{uuid.uuid4()}")
            assert missing.status_code == 404
            assert _page(client, f"/app/o/{name}/not-a-uuid").status_code == 404
