"""Mapping a file's columns to fields: proposals on crm-core's objects, and the checks."""

from __future__ import annotations

import uuid
from typing import Any

from metacrm.metadata.store import current_version
from metacrm.platform.db import Database
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.data.convert import CellProblem, LookupResolver
from metacrm.runtime.data.mapping import ColumnMapping, check_mapping, propose_mapping
from tests.conftest import TenantClient

ADMIN = Actor(uuid.uuid4(), is_admin=True)
REP = Actor(uuid.uuid4(), role="sales_rep")


def _proposed(
    ct: CompiledTenant, object_name: str, actor: Actor, columns: list[str]
) -> dict[str, Any]:
    mapping = propose_mapping(ct, ct.object(object_name), actor, columns)
    assert [m.column for m in mapping] == columns
    return {m.column: (m.field, m.lookup_key) if m.lookup_key else m.field for m in mapping}


async def _crm_core(app: Any, tenant: TenantClient) -> CompiledTenant:
    response = await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    assert response.status_code == 200, response.text
    state = app.state.metacrm
    storage = Database.storage_name(tenant.tenant)
    async with state.db.tenant(storage, writes=False) as conn:
        ct: CompiledTenant = await state.cache.compiled(conn, storage, await current_version(conn))
    return ct


async def test_proposals_on_crm_core(app: Any, tenant: TenantClient) -> None:
    ct = await _crm_core(app, tenant)

    # Chinese labels, required marks, an id column that wins over the name column of
    # the same lookup, computed fields left out.
    columns = ["商机名称*", "客户名称", "金额", "赢率（必填）", "阶段", "预计成交日期", "Account",
               "编号", "Expected Revenue", "备注"]  # fmt: skip
    assert _proposed(ct, "opportunity", ADMIN, columns) == {
        "商机名称*": "name",
        "客户名称": None,
        "金额": "amount",
        "赢率（必填）": "probability",
        "阶段": "stage",
        "预计成交日期": "close_date",
        "Account": "account",
        "编号": None,
        "Expected Revenue": None,
        "备注": None,
    }

    # Lookups by a natural key, named in several ways.
    assert _proposed(ct, "opportunity", ADMIN, ["客户名称", "Primary Contact Full Name"]) == {
        "客户名称": ("account", "name"),
        "Primary Contact Full Name": ("contact", "full_name"),
    }
    assert _proposed(ct, "contact", ADMIN, ["LAST_NAME", "account.name", "E-mail", "Mobile"]) == {
        "LAST_NAME": "last_name",
        "account.name": ("account", "name"),
        "E-mail": "email",
        "Mobile": "mobile",
    }
    assert _proposed(ct, "contact", ADMIN, ["Account Name", "邮箱"]) == {
        "Account Name": ("account", "name"),
        "邮箱": "email",
    }
    assert _proposed(ct, "account", ADMIN, ["客户名称", "上级客户编号", "parent.name"]) == {
        "客户名称": "name",
        "上级客户编号": ("parent", "account_number"),
        "parent.name": None,  # the lookup is already mapped
    }
    assert _proposed(ct, "account", ADMIN, ["Account Name", "Parent Account Name"]) == {
        "Account Name": "name",
        "Parent Account Name": ("parent", "name"),
    }

    # A rep only reads an opportunity's probability: it is not proposed, and refused.
    assert _proposed(ct, "opportunity", REP, ["Name", "Probability"]) == {
        "Name": "name",
        "Probability": None,
    }
    errors = check_mapping(
        ct,
        ct.object("opportunity"),
        REP,
        [ColumnMapping("Probability", "probability")],
        ["Probability"],
    )
    assert [(e.field, e.code) for e in errors] == [("mapping/0/field", "read-only")]

    # The proposed keys are ones the resolver matches on.
    state = app.state.metacrm
    storage = Database.storage_name(tenant.tenant)
    async with state.db.tenant(storage, writes=False) as conn:
        contacts = LookupResolver(conn, ct, ct.object("contact"), ADMIN, key="full_name")
        found = await contacts.resolve(["nobody at all"])
        assert isinstance(found["nobody at all"], CellProblem)


async def test_check_mapping_names_every_problem(app: Any, tenant: TenantClient) -> None:
    ct = await _crm_core(app, tenant)
    co = ct.object("opportunity")
    columns = ["Name", "Amount", "Account", "Stage", "Other"]
    mapping = [
        ColumnMapping("Name", "name"),
        ColumnMapping("Missing", "amount"),
        ColumnMapping("Amount", "amount"),
        ColumnMapping("Account", "account", "account_number"),
        ColumnMapping("Stage", "expected_revenue"),
        ColumnMapping("Other", "no_such_field"),
        ColumnMapping("Other", "account", "nope"),
        ColumnMapping("Other", "contact", "birthday"),
        ColumnMapping("Other", "stage", "name"),
        ColumnMapping("Other", None),
    ]
    errors = check_mapping(ct, co, ADMIN, mapping, columns)
    assert [(e.field, e.code) for e in errors] == [
        ("mapping/1/column", "unknown-column"),
        ("mapping/2/field", "mapped-twice"),
        ("mapping/4/field", "read-only"),
        ("mapping/5/field", "unknown-field"),
        ("mapping/6/field", "mapped-twice"),
        ("mapping/6/lookup_key", "unknown-field"),
        ("mapping/7/lookup_key", "invalid-key"),
        ("mapping/8/lookup_key", "not-a-lookup"),
    ]
    assert "'Missing'" in errors[0].message
    assert "birthday" in errors[6].message

    # Required fields left unmapped are the write path's business, row by row.
    assert check_mapping(ct, co, ADMIN, [ColumnMapping("Amount", "amount")], columns) == []
    proposed = propose_mapping(ct, co, ADMIN, columns)
    assert check_mapping(ct, co, ADMIN, proposed, columns) == []
