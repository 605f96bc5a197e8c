"""File imports through the API: mapping, conversions, lookups, modes, row errors, the dry
run against the real run, resumption, revert, the error report, permissions, hostile input."""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

import pytest

from metacrm.runtime.data import import_jobs, import_pipeline
from tests.conftest import ACCOUNT, OPPORTUNITY, Jobs, TenantClient

COMPANY = {
    "api_name": "company",
    "label": {"en": "Company", "zh-CN": "公司"},
    "fields": [
        {
            "api_name": "name",
            "type": "text",
            "label": {"en": "Company name", "zh-CN": "公司名称"},
            "required": True,
            "unique": True,
        },
        {
            "api_name": "code",
            "type": "text",
            "label": {"en": "Code", "zh-CN": "编号"},
            "external_id": True,
        },
        {
            "api_name": "revenue",
            "type": "currency",
            "label": {"en": "Revenue", "zh-CN": "营收"},
            "min": 0,
        },
        {"api_name": "founded", "type": "date", "label": {"en": "Founded", "zh-CN": "成立日期"}},
        {"api_name": "phone", "type": "phone", "label": {"en": "Phone", "zh-CN": "电话"}},
        {"api_name": "listed", "type": "boolean", "label": {"en": "Listed", "zh-CN": "上市"}},
        {
            "api_name": "tier",
            "type": "picklist",
            "label": {"en": "Tier", "zh-CN": "等级"},
            "values": [
                {"value": "gold", "label": {"en": "Gold", "zh-CN": "金牌"}},
                {"value": "silver", "label": {"en": "Silver", "zh-CN": "银牌"}},
            ],
        },
    ],
}


def csv_bytes(rows: list[list[Any]], *, encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


async def upload(
    tenant: TenantClient, content: bytes, *, name: str = "rows.csv", **fields: str
) -> Any:
    fields.setdefault("object", "company")
    return await tenant.post(
        "/api/v1/imports", files={"file": (name, content, "text/csv")}, data=fields
    )


async def started(tenant: TenantClient, content: bytes, **fields: str) -> dict[str, Any]:
    response = await upload(tenant, content, **fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def run(
    tenant: TenantClient, jobs: Jobs, import_id: str, what: str = "run"
) -> dict[str, Any]:
    response = await tenant.post(f"/api/v1/imports/{import_id}/{what}")
    assert response.status_code == 202, response.text
    await jobs.run(tenant)
    return dict((await tenant.get(f"/api/v1/imports/{import_id}")).json())


async def report(tenant: TenantClient, import_id: str, run: str = "real") -> list[dict[str, Any]]:
    rows, cursor = [], None
    while True:
        params: dict[str, Any] = {"run": run, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = (await tenant.get(f"/api/v1/imports/{import_id}/rows", params=params)).json()
        rows += page["rows"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


async def companies(tenant: TenantClient) -> list[dict[str, Any]]:
    listed = await tenant.get(
        "/api/v1/data/company",
        params={
            "limit": 200,
            "order_by": "name",
            "fields": "name,code,revenue,founded,listed,tier",
        },
    )
    assert listed.status_code == 200, listed.text
    return [
        {k: r[k] for k in ("name", "code", "revenue", "founded", "listed", "tier")}
        for r in listed.json()["records"]
    ]


@pytest.fixture
async def crm(tenant: TenantClient) -> TenantClient:
    await tenant.define(COMPANY, ACCOUNT, OPPORTUNITY)
    return tenant


async def test_zh_cn_labels_map_and_cells_convert(crm: TenantClient, jobs: Jobs) -> None:
    content = csv_bytes(
        [
            ["公司名称*", "编号", "营收", "成立日期", "上市", "等级", "备注"],
            ["甲公司", "A1", "¥1,234.50", "2024年3月1日", "是", "金牌", "x"],
            ["Beta Ltd", "B2", "2,000", "2023/12/31", "no", "Silver", ""],
        ],
        encoding="gb18030",
    )
    created = await started(crm, content)
    assert created["status"] == "uploaded" and created["total"] == 2
    assert created["encoding"] in ("gb18030", "gbk") and created["format"] == "csv"
    mapped = {m["column"]: m["field"] for m in created["mapping"]}
    assert mapped == {
        "公司名称*": "name",
        "编号": "code",
        "营收": "revenue",
        "成立日期": "founded",
        "上市": "listed",
        "等级": "tier",
        "备注": None,
    }
    assert created["mapping_problems"] == []
    done = await run(crm, jobs, created["id"])
    assert done["status"] == "done", done
    assert done["counts"] == {"created": 2, "updated": 0, "skipped": 0, "failed": 0}
    assert done["done"] == done["total"] == 2
    assert await companies(crm) == [
        {"name": "Beta Ltd", "code": "B2", "revenue": "2000.00", "founded": "2023-12-31",
         "listed": False, "tier": "silver"},
        {"name": "甲公司", "code": "A1", "revenue": "1234.50", "founded": "2024-03-01",
         "listed": True, "tier": "gold"},
    ]  # fmt: skip
    assert (await crm.get(f"/api/v1/imports/{created['id']}/errors")).status_code == 404


async def test_lookups_match_by_name_and_report_missing_ones(crm: TenantClient, jobs: Jobs) -> None:
    acme = await crm.create("account", {"name": "Acme Corp", "code": "AC"})
    await crm.create("account", {"name": "Twin"})
    await crm.create("account", {"name": "twin "})
    content = csv_bytes(
        [
            ["Name", "Account", "Amount"],
            ["Deal 1", "  acme corp", "10"],
            ["Deal 2", "Nobody", "20"],
            ["Deal 3", "Twin", "30"],
            ["Deal 4", acme["id"], "40"],
        ]
    )
    created = await started(crm, content, object="opportunity")
    assert {m["column"]: m["field"] for m in created["mapping"]}["Account"] == "account"
    done = await run(crm, jobs, created["id"])
    assert done["counts"]["created"] == 2 and done["counts"]["failed"] == 2
    rows = await report(crm, created["id"])
    assert [r["action"] for r in rows] == ["create", "error", "error", "create"]
    assert rows[1]["errors"] == [
        {"column": "Account", "field": "account", "code": "lookup-not-found",
         "message": rows[1]["errors"][0]["message"]}
    ]  # fmt: skip
    assert rows[2]["errors"][0]["code"] == "ambiguous-lookup"
    deals = (await crm.get("/api/v1/data/opportunity", params={"fields": "name,account"})).json()
    assert {d["name"]: d["account"] for d in deals["records"]} == {
        "Deal 1": acme["id"],
        "Deal 4": acme["id"],
    }


async def test_update_and_upsert_modes_find_records_by_key(crm: TenantClient, jobs: Jobs) -> None:
    await crm.create("company", {"name": "One", "code": "C1", "revenue": "1"})
    await crm.create("company", {"name": "Two", "code": "C2", "revenue": "2"})
    updates = csv_bytes([["code", "revenue"], ["C1", "100"], ["C9", "900"], ["C2", "2"], ["", "5"]])
    created = await started(crm, updates, mode="update", key_field="code")
    done = await run(crm, jobs, created["id"])
    rows = await report(crm, created["id"])
    assert [(r["row"], r["action"]) for r in rows] == [
        (2, "update"), (3, "error"), (4, "skip"), (5, "error")
    ]  # fmt: skip
    assert rows[1]["errors"][0] | {"message": ""} == {
        "column": "code", "field": "code", "code": "not-found", "message": ""
    }  # fmt: skip
    assert rows[3]["errors"][0]["code"] == "required"
    assert done["counts"] == {"created": 0, "updated": 1, "skipped": 1, "failed": 2}
    upserts = csv_bytes([["code", "name", "revenue"], ["C2", "Two", "22"], ["C3", "Three", "3"]])
    created = await started(crm, upserts, mode="upsert", key_field="code")
    done = await run(crm, jobs, created["id"])
    assert done["counts"] == {"created": 1, "updated": 1, "skipped": 0, "failed": 0}
    assert [(c["code"], c["revenue"]) for c in await companies(crm)] == [
        ("C1", "100.00"), ("C3", "3.00"), ("C2", "22.00")
    ]  # fmt: skip
    # By id: the id column only finds the record.
    one = (await crm.get("/api/v1/data/company", params={"where": "code == 'C1'"})).json()
    by_id = csv_bytes([["id", "revenue"], [one["records"][0]["id"], "7"], ["not-an-id", "8"]])
    created = await started(crm, by_id, mode="update", key_field="id")
    assert created["mapping_problems"] == [], created
    done = await run(crm, jobs, created["id"])
    rows = await report(crm, created["id"])
    assert [r["action"] for r in rows] == ["update", "error"]
    assert rows[1]["errors"][0]["code"] == "invalid-id"


async def test_blank_cells_keep_values_unless_told_to_clear(crm: TenantClient, jobs: Jobs) -> None:
    await crm.create("company", {"name": "One", "code": "C1", "revenue": "1", "tier": "gold"})
    blanks = csv_bytes(
        [["code", "name", "revenue", "tier"], ["C1", "One", "", "silver"], ["C4", "Four", "", ""]]
    )
    created = await started(crm, blanks, mode="upsert", key_field="code")
    await run(crm, jobs, created["id"])
    assert sorted((c["code"], c["revenue"], c["tier"]) for c in await companies(crm)) == [
        ("C1", "1.00", "silver"), ("C4", None, None)
    ]  # fmt: skip
    created = await started(crm, blanks, mode="upsert", key_field="code", blank_cells="clear")
    done = await run(crm, jobs, created["id"])
    assert done["counts"]["updated"] == 1 and done["options"]["blank_cells"] == "clear"
    # Cleared on the update; the key column is never cleared, and C4 only got the tier.
    assert sorted((c["code"], c["revenue"], c["tier"]) for c in await companies(crm)) == [
        ("C1", None, "silver"), ("C4", None, None)
    ]  # fmt: skip


async def test_refused_rows_name_column_field_and_rule(crm: TenantClient, jobs: Jobs) -> None:
    content = csv_bytes(
        [
            ["Company name", "Revenue", "Tier", "Founded"],
            ["Good", "1", "gold", "2024-01-01"],
            ["", "2", "gold", ""],
            ["Bad number", "abc", "bronze", "2024-02-30"],
            ["Negative", "-5", "", ""],
            ["Good", "3", "", ""],
        ]
    )
    created = await started(crm, content)
    done = await run(crm, jobs, created["id"])
    assert done["counts"] == {"created": 1, "updated": 0, "skipped": 0, "failed": 4}
    rows = await report(crm, created["id"], "real")
    problems = {r["row"]: [(e["column"], e["field"], e["code"]) for e in r["errors"]] for r in rows}
    assert problems[2] == []
    assert problems[3] == [("Company name", "name", "required")]
    assert sorted(problems[4]) == [
        ("Founded", "founded", "invalid-date"),
        ("Revenue", "revenue", "invalid-number"),
        ("Tier", "tier", "unknown-choice"),
    ]
    assert problems[5] == [("Revenue", "revenue", "min")]
    assert problems[6] == [("Company name", "name", "unique")]
    # The error report: the refused rows' cells, their row numbers and reasons.
    response = await crm.get(f"/api/v1/imports/{created['id']}/errors")
    assert response.status_code == 200
    assert response.content.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert lines[0] == ["Company name", "Revenue", "Tier", "Founded", "row", "errors"]
    assert [line[4] for line in lines[1:]] == ["3", "4", "5", "6"]
    assert lines[2][:4] == ["Bad number", "abc", "bronze", "2024-02-30"]
    assert "Revenue (revenue)" in lines[2][5] and "[invalid-number]" in lines[2][5]


async def test_dry_run_reports_what_the_real_run_then_does(crm: TenantClient, jobs: Jobs) -> None:
    await crm.create("company", {"name": "Old", "code": "K0", "revenue": "1"})
    content = csv_bytes(
        [
            ["code", "name", "revenue"],
            ["K1", "New", "10"],
            ["K1", "New", "11"],  # updates the record the row before created
            ["K0", "Old", "1"],  # unchanged
            ["K2", "Old", "5"],  # clashes with Old's unique name
            ["K3", "", "x"],
            ["K0", "Old renamed", "2"],
        ]
    )
    created = await started(crm, content, mode="upsert", key_field="code")
    before = await companies(crm)
    dry = await run(crm, jobs, created["id"], "dry-run")
    assert dry["status"] == "checked" and dry["dry_run"] is True
    assert await companies(crm) == before  # nothing written
    dry_rows = await report(crm, created["id"], "dry")
    done = await run(crm, jobs, created["id"])
    assert done["status"] == "done" and done["dry_run"] is False
    real_rows = await report(crm, created["id"], "real")

    def shape(rows: list[dict[str, Any]]) -> list[Any]:
        return [
            (r["row"], r["action"], [(e["field"], e["code"]) for e in r["errors"]]) for r in rows
        ]

    assert shape(dry_rows) == shape(real_rows)
    assert [r["action"] for r in real_rows] == [
        "create",
        "update",
        "skip",
        "error",
        "error",
        "update",
    ]
    assert dry["counts"] == done["counts"]


async def test_dry_run_tries_a_sample_and_settings_change_until_run(
    crm: TenantClient, jobs: Jobs
) -> None:
    content = csv_bytes([["name"], *[[f"Company {i}"] for i in range(12)]])
    created = await started(crm, content, limit="5")
    dry = await run(crm, jobs, created["id"], "dry-run")
    assert dry["done"] == 5 and dry["counts"]["created"] == 5 and dry["total"] == 12
    changed = await crm.patch(
        f"/api/v1/imports/{created['id']}", json={"options": {"limit": 3}, "mode": "create"}
    )
    assert changed.status_code == 200 and changed.json()["status"] == "uploaded"
    assert await report(crm, created["id"], "dry") == []  # the old report is gone
    done = await run(crm, jobs, created["id"])
    assert done["counts"]["created"] == 12
    again = await crm.patch(f"/api/v1/imports/{created['id']}", json={"mode": "upsert"})
    assert again.status_code == 409
    assert (await crm.post(f"/api/v1/imports/{created['id']}/run")).status_code == 409


async def test_a_run_resumes_from_its_checkpoint_writing_no_row_twice(
    crm: TenantClient, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_pipeline, "CHUNK_ROWS", 3)
    content = csv_bytes([["name"], *[[f"Row {i:02}"] for i in range(10)]])
    created = await started(crm, content)
    original = import_pipeline.ChunkWriter.chunk
    calls = 0

    async def crashing(self: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        outcomes = await original(self, *args)
        if calls == 2:  # the worker dies while the second chunk is written
            raise RuntimeError("worker died")
        return outcomes

    monkeypatch.setattr(import_pipeline.ChunkWriter, "chunk", crashing)
    await crm.post(f"/api/v1/imports/{created['id']}/run")
    await jobs.run(crm)
    halfway = (await crm.get(f"/api/v1/imports/{created['id']}")).json()
    assert halfway["status"] == "running" and halfway["done"] == 3
    assert len(await companies(crm)) == 3
    await jobs.run(crm, later=datetime.timedelta(hours=1))  # the retry
    done = (await crm.get(f"/api/v1/imports/{created['id']}")).json()
    assert done["status"] == "done" and done["done"] == 10
    names = [c["name"] for c in await companies(crm)]
    assert names == [f"Row {i:02}" for i in range(10)]
    rows = await report(crm, created["id"])
    assert [r["row"] for r in rows] == list(range(2, 12))


async def test_a_run_whose_job_dies_fails(
    crm: TenantClient, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await started(crm, csv_bytes([["name"], ["A"]]))

    async def broken(self: Any, *args: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(import_pipeline.ChunkWriter, "chunk", broken)
    monkeypatch.setattr(import_jobs, "MAX_ATTEMPTS", 2)
    await crm.post(f"/api/v1/imports/{created['id']}/run")
    for hours in (0, 1, 2):
        await jobs.run(crm, later=datetime.timedelta(hours=hours))
    failed = (await crm.get(f"/api/v1/imports/{created['id']}")).json()
    assert failed["status"] == "failed" and "the database went away" in failed["last_error"]


async def test_a_long_run_goes_on_in_follow_up_jobs(
    crm: TenantClient, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_pipeline, "CHUNK_ROWS", 2)
    monkeypatch.setattr(import_jobs, "JOB_SECONDS", 0.0)  # one chunk per job
    content = csv_bytes([["name"], *[[f"Row {i}"] for i in range(5)]])
    created = await started(crm, content)
    await crm.post(f"/api/v1/imports/{created['id']}/run")
    ran = [await jobs.run(crm) for _ in range(5)]  # each follow-up is due after the last
    assert ran == [1, 1, 1, 0, 0]
    done = (await crm.get(f"/api/v1/imports/{created['id']}")).json()
    assert done["status"] == "done" and done["counts"]["created"] == 5


async def test_revert_restores_the_state_before_the_import(crm: TenantClient, jobs: Jobs) -> None:
    await crm.create("company", {"name": "Kept", "code": "K", "revenue": "1", "tier": "gold"})
    await crm.create("company", {"name": "Touched", "code": "T", "revenue": "2"})
    before = await companies(crm)
    content = csv_bytes(
        [
            ["code", "name", "revenue", "tier"],
            ["T", "Touched", "20", "silver"],
            ["N1", "New one", "5", ""],
            ["N1", "New one", "6", "gold"],
            ["N2", "New two", "7", ""],
        ]
    )
    created = await started(crm, content, mode="upsert", key_field="code")
    done = await run(crm, jobs, created["id"])
    assert done["counts"] == {"created": 2, "updated": 2, "skipped": 0, "failed": 0}
    assert len(await companies(crm)) == 4
    reverting = await crm.post(f"/api/v1/imports/{created['id']}/revert")
    assert reverting.status_code == 202 and reverting.json()["status"] == "reverting"
    await jobs.run(crm)
    reverted = (await crm.get(f"/api/v1/imports/{created['id']}")).json()
    assert reverted["status"] == "reverted"
    assert reverted["revert"] == {"reverted": 4, "skipped": 0}
    assert await companies(crm) == before
    assert (await crm.post(f"/api/v1/imports/{created['id']}/revert")).status_code == 409


async def test_revert_leaves_records_changed_since_alone(crm: TenantClient, jobs: Jobs) -> None:
    content = csv_bytes([["code", "name"], ["A", "Alpha"], ["B", "Beta"]])
    created = await started(crm, content)
    await run(crm, jobs, created["id"])
    beta = (await crm.get("/api/v1/data/company", params={"where": "code == 'B'"})).json()
    record = beta["records"][0]
    changed = await crm.patch(f"/api/v1/data/company/{record['id']}", json={"name": "Beta 2"})
    assert changed.status_code == 200
    await crm.post(f"/api/v1/imports/{created['id']}/revert")
    await jobs.run(crm)
    reverted = (await crm.get(f"/api/v1/imports/{created['id']}")).json()
    assert reverted["revert"] == {"reverted": 1, "skipped": 1}
    assert [c["name"] for c in await companies(crm)] == ["Beta 2"]
    rows = await report(crm, created["id"])
    assert [r["revert"] for r in rows] == ["reverted", "changed"]
    assert rows[1]["revert_errors"][0]["code"] == "changed-since-import"


async def test_imports_need_import_data_and_rows_need_object_rights(
    crm: TenantClient, jobs: Jobs
) -> None:
    roles = [
        {"api_name": "rep", "objects": {"company": {"read": True, "create": True}}},
        {"api_name": "loader", "permissions": ["import_data"],
         "objects": {"company": {"read": True, "edit": True}}},
    ]  # fmt: skip
    assert (await crm.post("/api/v1/metadata/apply", json={"roles": roles})).status_code == 200
    rep = await crm.add_user("rep@x.test", role="rep")
    loader = await crm.add_user("loader@x.test", role="loader")
    content = csv_bytes([["name"], ["Acme"]])
    refused = await upload(rep, content)
    assert refused.status_code == 403 and "import_data" in refused.json()["detail"]
    assert (await rep.get("/api/v1/imports")).status_code == 403
    created = await started(loader, content)  # may edit companies, not create them
    done = await run(loader, jobs, created["id"])
    assert done["counts"]["failed"] == 1, done
    [row] = await report(loader, created["id"])
    assert row["errors"][0]["code"] == "permission-denied"
    # Another importer does not see it; an administrator does.
    assert (await crm.get(f"/api/v1/imports/{created['id']}")).status_code == 200
    other = await crm.add_user("other@x.test", role="loader")
    assert (await other.get(f"/api/v1/imports/{created['id']}")).status_code == 404
    assert (await other.get("/api/v1/imports")).json()["imports"] == []
    listed = (await crm.get("/api/v1/imports")).json()["imports"]
    assert [i["id"] for i in listed] == [created["id"]]


async def test_saved_mappings_are_reused_by_name(crm: TenantClient, jobs: Jobs) -> None:
    mapping = [{"column": "Firma", "field": "name"}, {"column": "Umsatz", "field": "revenue"}]
    saved = await crm.post(
        "/api/v1/import-mappings", json={"object": "company", "name": "erp", "mapping": mapping}
    )
    assert saved.status_code == 201, saved.text
    again = await crm.post(
        "/api/v1/import-mappings", json={"object": "company", "name": "erp", "mapping": []}
    )
    assert again.status_code == 409
    created = await started(crm, csv_bytes([["Firma", "Umsatz"], ["X", "1"]]), mapping="erp")
    assert [m["field"] for m in created["mapping"]] == ["name", "revenue"]
    assert (await run(crm, jobs, created["id"]))["counts"]["created"] == 1
    listed = (await crm.get("/api/v1/import-mappings", params={"object": "company"})).json()
    assert [m["name"] for m in listed["mappings"]] == ["erp"]
    gone = await crm.delete(f"/api/v1/import-mappings/{saved.json()['id']}")
    assert gone.status_code == 204
    missing = await upload(crm, csv_bytes([["Firma"], ["Y"]]), mapping="erp")
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "mapping"


async def test_cancel_stops_an_import(crm: TenantClient, jobs: Jobs) -> None:
    created = await started(crm, csv_bytes([["name"], ["A"]]))
    assert (await crm.post(f"/api/v1/imports/{created['id']}/run")).status_code == 202
    cancelled = await crm.post(f"/api/v1/imports/{created['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    await jobs.run(crm)
    assert (await crm.get(f"/api/v1/imports/{created['id']}")).json()["status"] == "cancelled"
    assert await companies(crm) == []


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return dict(response.json())


async def test_hostile_input_is_a_clear_problem(
    crm: TenantClient, jobs: Jobs, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = bytes(range(256)) * 40
    body = problem(await upload(crm, junk, name="junk.csv"), 422)
    assert body["errors"][0]["field"] == "file"
    wide = csv_bytes([[f"c{i}" for i in range(5000)], ["x"] * 5000])
    assert problem(await upload(crm, wide), 422)["errors"][0]["field"] == "file"
    long_name = csv_bytes([["n" * 5000], ["x"]])
    assert problem(await upload(crm, long_name), 422)["errors"][0]["code"] == "column-name"
    assert problem(await upload(crm, b"", name="empty.csv"), 422)["errors"][0]["code"] == "empty"
    assert (
        problem(await upload(crm, b"name\nx\n", object="nothing"), 400)["errors"][0]["code"]
        == "unknown-object"
    )
    bad_mode = await upload(crm, b"name\nx\n", mode="merge")
    assert problem(bad_mode, 422)["errors"][0]["field"] == "mode"
    no_key = await upload(crm, b"name\nx\n", mode="upsert", key_field="revenue")
    assert problem(no_key, 422)["errors"][0]["code"] == "not-unique"
    not_form = await crm.post("/api/v1/imports", json={"object": "company"})
    problem(not_form, 415)
    no_file = await crm.post("/api/v1/imports", data={"object": "company"}, files={"x": ("a", b"")})
    problem(no_file, 422)
    # NUL bytes in a cell far into the file: the row is refused, the report stores it.
    rows = [["name", "notes"], ["Long", "x" * 70_000], ["bad\x00name", ""]]
    created = await started(crm, csv_bytes(rows))
    done = await run(crm, jobs, created["id"])
    assert done["status"] == "done" and done["counts"] == {
        "created": 1, "updated": 0, "skipped": 0, "failed": 1
    }  # fmt: skip
    [refused] = (await crm.get(f"/api/v1/imports/{created['id']}/rows?action=error")).json()["rows"]
    assert refused["row"] == 3 and refused["errors"][0]["code"] == "nul-byte"
    # A mapping naming an unknown field or column: 422 on run, naming the entry.
    created = await started(crm, b"name\nx\n")
    patched = await crm.patch(
        f"/api/v1/imports/{created['id']}",
        json={"mapping": [{"column": "name", "field": "nope"}, {"column": "zz", "field": "code"}]},
    )
    assert patched.status_code == 200
    fields = {p["field"] for p in patched.json()["mapping_problems"]}
    assert fields == {"mapping/0/field", "mapping/1/column"}
    refused = problem(await crm.post(f"/api/v1/imports/{created['id']}/run"), 422)
    assert {e["field"] for e in refused["errors"]} == fields
    malformed = await crm.patch(f"/api/v1/imports/{created['id']}", json={"mapping": [{"x": 1}]})
    assert problem(malformed, 400)["errors"][0]["field"] == "mapping/0"
    nul = await crm.patch(
        f"/api/v1/imports/{created['id']}", json={"mapping": [{"column": "a\x00", "field": None}]}
    )
    problem(nul, 400)
    bad_option = await crm.patch(f"/api/v1/imports/{created['id']}", json={"options": {"limit": 0}})
    assert problem(bad_option, 422)["errors"][0]["field"] == "options/limit"
    bad_zone = await crm.patch(
        f"/api/v1/imports/{created['id']}", json={"options": {"time_zone": "Mars/Olympus"}}
    )
    assert problem(bad_zone, 422)["errors"][0] == {
        "field": "options/time_zone",
        "code": "time-zone",
        "message": "options/time_zone must be an IANA time zone such as Asia/Shanghai",
    }
    assert (await crm.get("/api/v1/imports/not-an-id")).status_code == 404
    assert (await crm.get(f"/api/v1/imports/{created['id']}/rows?run=xx")).status_code == 422
    # An upload over the limit is refused while it is read.
    monkeypatch.setattr(app.state.metacrm.settings, "import_max_bytes", 2048)
    problem(await upload(crm, b"name\n" + b"x\n" * 4000), 413)


async def test_duplicate_rules_refuse_skip_or_report_rows(crm: TenantClient, jobs: Jobs) -> None:
    rules = [
        {"api_name": "same_company", "object": "company", "action": "block",
         "criteria": [{"field": "name", "method": "company"}]},
        {"api_name": "same_phone", "object": "company", "action": "report",
         "criteria": [{"field": "phone", "method": "phone"}]},
    ]  # fmt: skip
    applied = await crm.post("/api/v1/metadata/apply", json={"duplicate_rules": rules})
    assert applied.status_code == 200, applied.text
    first = await crm.create(
        "company", {"name": "北京字节跳动科技有限公司", "phone": "010-1234 5678"}
    )
    content = csv_bytes(
        [
            ["name", "phone"],
            ["（北京）字节跳动科技", ""],
            ["Other Co", "01012345678"],
            ["Third", ""],
        ]
    )
    created = await started(crm, content)
    dry = await run(crm, jobs, created["id"], "dry-run")
    rows = await report(crm, created["id"], "dry")
    assert [r["action"] for r in rows] == ["error", "create", "create"]
    assert rows[0]["errors"][0]["code"] == "duplicate"
    # The dry run names the candidates of a row its rules let through.
    [candidate] = rows[1]["duplicates"]
    assert candidate["record_id"] == first["id"] and candidate["rule"] == "same_phone"
    assert rows[2]["duplicates"] is None
    assert dry["counts"]["failed"] == 1
    skipping = await crm.patch(
        f"/api/v1/imports/{created['id']}", json={"options": {"duplicates": "skip"}}
    )
    assert skipping.status_code == 200
    done = await run(crm, jobs, created["id"])
    assert done["counts"] == {"created": 2, "updated": 0, "skipped": 1, "failed": 0}
    skipped = (await report(crm, created["id"]))[0]
    assert skipped["action"] == "skip" and skipped["duplicates"][0]["code"] == "duplicate"
    assert (await crm.get(f"/api/v1/imports/{created['id']}/errors")).status_code == 404
