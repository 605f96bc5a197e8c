"""Export, then import (runtime.data.imports through /api/v1/imports), restores the same
records, on both databases, from CSV and from Excel: values of every kind, lookups by id."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import pytest

from tests.conftest import Jobs, TenantClient

COMPANY = {
    "api_name": "company",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "code", "type": "text", "external_id": True},
        {"api_name": "revenue", "type": "currency"},
        {"api_name": "size", "type": "number", "precision": 12, "scale": 0},
        {"api_name": "share", "type": "percent"},
        {"api_name": "founded", "type": "date"},
        {"api_name": "seen_at", "type": "datetime"},
        {"api_name": "listed", "type": "boolean"},
        {
            "api_name": "tier",
            "type": "picklist",
            "values": [{"value": "gold", "label": "Gold"}, {"value": "silver"}],
        },
        {
            "api_name": "tags",
            "type": "multi_picklist",
            "values": [{"value": "vip"}, {"value": "cn"}, {"value": "new"}],
        },
        {"api_name": "phone", "type": "phone"},
        {"api_name": "meta", "type": "json"},
        {"api_name": "notes", "type": "long_text"},
    ],
}
CONTACT = {
    "api_name": "contact",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "company", "type": "lookup", "target": "company"},
    ],
}
COMPANIES = [
    {
        "name": "上海甲乙丙有限公司",
        "code": "C-001",
        "revenue": "1234567.89",
        "size": 250,
        "share": "12.5",
        "founded": "1999-12-31",
        "seen_at": "2024-02-29T23:59:58Z",
        "listed": True,
        "tier": "gold",
        "tags": ["vip", "cn"],
        "phone": "+86 21 6888 0000",
        "meta": {"source": "fair", "score": [1, 2]},
        "notes": 'first line\nsecond, with "quotes" and 中文',
    },
    {"name": "Acme, Inc.", "code": "C-002", "revenue": "-5.10", "listed": False},
    {"name": "Empty Co", "code": "C-003"},
]
#: A value of each field unlike any above.
CHANGED: dict[str, Any] = {
    "name": "Changed",
    "revenue": "1",
    "size": 1,
    "share": "1",
    "founded": "2000-01-01",
    "seen_at": "2000-01-01T00:00:00Z",
    "listed": None,
    "tier": "silver",
    "tags": ["new"],
    "phone": "+1 000",
    "meta": {"changed": True},
    "notes": "changed",
}
#: What an import rewrites (and the export shows) on every record it touches.
MOVING = {"updated_at", "updated_by", "version"}


def _table(content: bytes, format: str) -> list[dict[str, Any]]:
    if format == "csv":
        rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def _kept(rows: list[dict[str, Any]], *, drop: set[str]) -> list[dict[str, Any]]:
    return sorted(
        ({k: v for k, v in row.items() if k not in drop} for row in rows),
        key=lambda row: str(row["name"]),
    )


async def _export(tenant: TenantClient, object_name: str, format: str) -> bytes:
    response = await tenant.get(f"/api/v1/data/{object_name}/export", params={"format": format})
    assert response.status_code == 200, response.text
    return response.content


async def _import(
    tenant: TenantClient, jobs: Jobs, object_name: str, content: bytes, format: str, **fields: str
) -> dict[str, Any]:
    name = f"{object_name}.{format}"
    uploaded = await tenant.post(
        "/api/v1/imports",
        files={"file": (name, content, "application/octet-stream")},
        data={"object": object_name, **fields},
    )
    assert uploaded.status_code == 201, uploaded.text
    import_id = uploaded.json()["id"]
    started = await tenant.post(f"/api/v1/imports/{import_id}/run")
    assert started.status_code == 202, started.text
    await jobs.run(tenant)
    done = (await tenant.get(f"/api/v1/imports/{import_id}")).json()
    assert done["status"] == "done", done
    return dict(done)


@pytest.mark.parametrize("format", ["csv", "xlsx"])
async def test_export_then_import_restores_the_records(
    tenant: TenantClient, jobs: Jobs, format: str, backend: str
) -> None:
    if backend == "postgresql" and os.environ.get("CI"):
        # The session's docs server (tests/conftest.py `docs`) shares CI's PostgreSQL
        # database and its in-process worker takes this test's jobs; passes run alone.
        pytest.skip("a docs server's worker shares the database in the whole suite")
    await tenant.define(COMPANY, CONTACT)
    companies = [await tenant.create("company", c) for c in COMPANIES]
    for i, company in enumerate(companies[:2]):
        await tenant.create("contact", {"name": f"Contact {i}", "company": company["id"]})
    before = await _export(tenant, "company", format)

    # Every value given changed (a blank cell leaves a field as it is: the import never
    # clears), then the export is imported back over them by id.
    for company, given in zip(companies, COMPANIES, strict=True):
        changes = {k: v for k, v in CHANGED.items() if k in given}
        changed = await tenant.patch(f"/api/v1/data/company/{company['id']}", json=changes)
        assert changed.status_code == 200, changed.text
    done = await _import(tenant, jobs, "company", before, format, mode="update", key_field="id")
    assert done["counts"]["updated"] == len(COMPANIES), done
    after = await _export(tenant, "company", format)
    assert _kept(_table(after, format), drop=MOVING) == _kept(_table(before, format), drop=MOVING)

    # Contacts deleted, then created again from their export: same names, same companies.
    contacts_before = await _export(tenant, "contact", format)
    for row in _table(contacts_before, format):
        deleted = await tenant.delete(f"/api/v1/data/contact/{row['id']}")
        assert deleted.status_code == 204
    done = await _import(tenant, jobs, "contact", contacts_before, format)
    assert done["counts"]["created"] == 2, done
    contacts_after = await _export(tenant, "contact", format)
    new_ids = MOVING | {"id", "created_at", "created_by"}
    assert _kept(_table(contacts_after, format), drop=new_ids) == _kept(
        _table(contacts_before, format), drop=new_ids
    )
