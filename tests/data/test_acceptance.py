"""Issue 15's acceptance test: a GBK migration onto crm-core, end to end.

On each database: accounts with messy company names and contacts naming them, in
GBK CSV files whose headers are crm-core's zh-CN labels, are imported after a dry run
whose per-row report the real run reproduces row for row; a duplicate scan finds exactly
the planted groups, which are merged with their contacts moved to the survivors (counted)
and the merges undone; the imports are reverted and the exports equal the exports taken
before, byte for byte (nothing may differ: reverted records are in the recycle bin, which an
export leaves out); and the accounts exported then imported into a fresh tenant export the
same rows again but for what a new write stamps (id, created/updated at and by, version,
owner_id: the fresh tenant's importer) and the `parent` id column (its `parent.name` is
compared). The data comes from random.Random(SEED).

`make test` imports 500 contacts (and 100 accounts besides the planted duplicates) per
database: the import writes about 100 rows a second
through the write path, so the issue's 10,000 rows take minutes a database, past the
suite's budget. `METACRM_ACCEPTANCE_CONTACTS=10000` runs the issue's full size (400 accounts).
"""

from __future__ import annotations

import collections
import csv
import io
import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import Jobs, TenantClient, new_tenant

pytestmark = pytest.mark.slow

SEED = 15
CONTACTS = int(os.environ.get("METACRM_ACCEPTANCE_CONTACTS", "500"))
#: Accounts besides the planted duplicate groups: 400 at the issue's full size.
NOISE_ACCOUNTS = max(100, CONTACTS // 25)
GROUPS = 24
HAN = "东南西北金银铜铁山水木火土风云雷电龙凤麟龟春夏秋冬梅兰竹菊"
CITIES = ["北京", "上海", "深圳", "杭州", "成都", "武汉"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]
INDUSTRIES = ["科技", "制造", "教育", "零售", "金融", "technology", "Retail"]
GRADES = ["A 重点", "B 成长", "C 普通", "d", ""]
SOURCES = ["官网", "转介绍", "展会活动", "partner", ""]
ACCOUNT_HEADER = ["客户名称", "客户编号", "行业", "客户等级", "年营业额", "员工人数", "电话", "开票城市"]  # fmt: skip
CONTACT_HEADER = ["姓", "名", "客户", "职务", "邮箱", "手机", "主要联系人", "生日", "线索来源"]
#: Columns an export fills anew for records written anew (ids, who and when wrote them).
STAMPS = {"id", "created_at", "created_by", "updated_at", "updated_by", "version", "owner_id"}


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _group(rng: random.Random, index: int) -> list[str]:
    """One company written two or three ways: legal suffixes, brackets, width, case, spaces."""
    if index % 2:
        city, word = rng.choice(CITIES), "".join(rng.choice(HAN) for _ in range(4))
        variants = [
            f"{city}{word}科技有限公司",
            f"（{city}）{word}科技",
            f"{city}{word}科技有限责任公司 ",
        ]
    else:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)).capitalize()
        variants = [
            f"{word} Co., Ltd.",
            f"{word.lower()} co ltd",
            f"{_full_width(word.upper())} Corporation",
        ]
    return variants[: 2 + index % 2]


def _noise(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return (
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10)).title() + " Ltd."
        )
    return "".join(rng.choice(HAN) for _ in range(8)) + "有限公司"


@dataclass
class Migration:
    """The generated files and what they are known to hold."""

    accounts: bytes
    contacts: bytes
    groups: list[list[str]]
    #: The accounts file's names, in file order (row 2 on).
    names: list[str]
    #: Account names a contact row names (as written in the accounts file), by row number.
    contact_account: dict[int, str] = field(default_factory=dict)
    #: Accounts rows refused by crm-core's rule "A grade accounts need an annual revenue".
    refused_accounts: set[str] = field(default_factory=set)


def _gbk(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("gbk")


def _messy_reference(rng: random.Random, name: str) -> str:
    """How a person types an account's name in another sheet: case and spaces vary."""
    if name.isascii() and rng.random() < 0.5:
        name = rng.choice([name.upper(), name.lower()])
    return " " * rng.randint(0, 2) + name + " " * rng.randint(0, 2)


def migration() -> Migration:
    rng = random.Random(SEED)
    groups = [_group(rng, i) for i in range(GROUPS)]
    noise = sorted({_noise(rng) for _ in range(NOISE_ACCOUNTS)})
    names = noise + [n for g in groups for n in g]
    rng.shuffle(names)
    account_rows, refused = [ACCOUNT_HEADER], set()
    for i, name in enumerate(names):
        grade = rng.choice(GRADES)
        revenue = f"{rng.randint(1, 9_000_000):,}.00" if rng.random() < 0.8 else ""
        if grade == "A 重点" and not revenue:
            refused.add(name.strip())
        number = f"{rng.randint(1, 5000):,}" if rng.random() < 0.7 else ""
        phone = f"+86 {rng.randint(10, 99)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
        city = rng.choice(CITIES)
        account_rows.append(
            [name, f"M-{i:05}", rng.choice(INDUSTRIES), grade, revenue, number, phone, city]
        )
    targets = [n for n in names if n.strip() not in refused] + names[:3]
    contact_rows, named = [CONTACT_HEADER], {}
    for row_no in range(2, CONTACTS + 2):
        if rng.random() < 0.01:
            account = "查无此公司"  # no such account: the row is refused (lookup-not-found)
        else:
            account = rng.choice(targets)  # a few name an account that was refused
            named[row_no] = account
        primary = rng.random() < 0.1
        email = f"c{row_no}@example.cn" if rng.random() < 0.7 else ""
        mobile = (
            f"1{rng.randint(3, 9)}{rng.randint(100000000, 999999999)}" if rng.random() < 0.5 else ""
        )
        birthday = rng.choice(["", f"{rng.randint(1960, 2000)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
                               f"{rng.randint(1960, 2000)}/{rng.randint(1, 12)}/{rng.randint(1, 28)}"])  # fmt: skip
        contact_rows.append(
            [rng.choice(SURNAMES), rng.choice(GIVEN), _messy_reference(rng, account),
             rng.choice(["经理", "总监", "工程师", ""]), email, mobile,
             "是" if primary else rng.choice(["否", ""]), birthday, rng.choice(SOURCES)]
        )  # fmt: skip
    return Migration(_gbk(account_rows), _gbk(contact_rows), groups, names, named, refused)


async def _import(tenant: TenantClient, content: bytes, name: str, **form: str) -> dict[str, Any]:
    response = await tenant.post(
        "/api/v1/imports", files={"file": (name, content, "text/csv")}, data=form
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _run(tenant: TenantClient, jobs: Jobs, import_id: str, what: str) -> dict[str, Any]:
    response = await tenant.post(f"/api/v1/imports/{import_id}/{what}")
    assert response.status_code == 202, response.text
    # A long run goes on in slices, each enqueued by the one before (due after `jobs.run`'s now).
    while (shown := (await tenant.get(f"/api/v1/imports/{import_id}")).json())["status"] in (
        "dry-running",
        "running",
        "reverting",
    ):
        assert await jobs.run(tenant) > 0, shown
    return dict(shown)


async def _report(tenant: TenantClient, import_id: str, run: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"run": run, "limit": 500} | ({"cursor": cursor} if cursor else {})
        page = await tenant.get(f"/api/v1/imports/{import_id}/rows", params=params)
        assert page.status_code == 200, page.text
        rows += page.json()["rows"]
        if (cursor := page.json()["next_cursor"]) is None:
            return rows


def _outcome(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a row did, but the id of a record it created (a dry run's are rolled back)."""
    return row["row"], row["action"], row["errors"]


async def _dry_then_real(
    tenant: TenantClient, jobs: Jobs, import_id: str, before: dict[str, bytes]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    dry = await _run(tenant, jobs, import_id, "dry-run")
    assert dry["status"] == "checked", dry
    assert await _exports(tenant) == before  # the dry run wrote nothing
    real = await _run(tenant, jobs, import_id, "run")
    assert real["status"] == "done", real
    assert real["counts"] == dry["counts"] and real["done"] == real["total"] == dry["done"]
    dry_rows = await _report(tenant, import_id, "dry")
    real_rows = await _report(tenant, import_id, "real")
    assert len(real_rows) == real["total"]
    assert [_outcome(r) for r in dry_rows] == [_outcome(r) for r in real_rows]
    return real, dry_rows, real_rows


async def _export(tenant: TenantClient, object_name: str) -> bytes:
    response = await tenant.get(f"/api/v1/data/{object_name}/export", params={"format": "csv"})
    assert response.status_code == 200, response.text
    return response.content


async def _exports(tenant: TenantClient) -> dict[str, bytes]:
    return {name: await _export(tenant, name) for name in ("account", "contact")}


def _table(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline="")))


async def _pairs(tenant: TenantClient) -> set[frozenset[str]]:
    found, after = set(), None
    while True:
        params = {"limit": 200} | ({"after": after} if after else {})
        page = (await tenant.get("/api/v1/duplicates/account/pairs", params=params)).json()
        found |= {frozenset((p["record"]["name"], p["other"]["name"])) for p in page["pairs"]}
        if (after := page["next"]) is None:
            return found


async def _groups(tenant: TenantClient) -> list[list[dict[str, Any]]]:
    found, after = [], None
    while True:
        params = {"limit": 200} | ({"after": after} if after else {})
        page = (await tenant.get("/api/v1/duplicates/account/groups", params=params)).json()
        found += [g["members"] for g in page["groups"]]
        if (after := page["next"]) is None:
            return found


async def _crm_core(tenant: TenantClient, jobs: Jobs) -> None:
    response = await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    assert response.status_code == 200, response.text
    rule = {
        "api_name": "same_company",
        "object": "account",
        "action": "report",
        "criteria": [{"field": "name", "method": "company"}],
    }
    response = await tenant.post("/api/v1/metadata/duplicate-rules", json=rule)
    assert response.status_code == 201, response.text
    await jobs.run(tenant)


async def test_a_gbk_migration_dry_run_merge_revert_and_round_trip(
    tenant: TenantClient, jobs: Jobs
) -> None:
    data = migration()
    await _crm_core(tenant, jobs)
    before = await _exports(tenant)

    # Accounts: zh-CN labels map every column; the dry run and the real run agree.
    accounts = await _import(tenant, data.accounts, "客户.csv", object="account", limit="10000")
    assert accounts["encoding"] in ("gbk", "gb18030"), accounts
    assert {m["column"]: m["field"] for m in accounts["mapping"]} == {
        "客户名称": "name", "客户编号": "account_number", "行业": "industry",
        "客户等级": "grade", "年营业额": "annual_revenue", "员工人数": "employees",
        "电话": "phone", "开票城市": "billing_city",
    }  # fmt: skip
    done, dry_rows, rows = await _dry_then_real(tenant, jobs, accounts["id"], before)
    # The dry run named the duplicates each row would make (report rule); the real run
    # recorded those same pairs.
    foreseen = {
        frozenset((data.names[r["row"] - 2].strip(), d["name"]))
        for r in dry_rows
        for d in r["duplicates"] or []
    }
    assert len(foreseen) >= sum(len(g) - 1 for g in data.groups) - len(data.refused_accounts)
    assert await _pairs(tenant) == foreseen
    failed = [r for r in rows if r["action"] == "error"]
    assert {(e["field"], e["code"]) for r in failed for e in r["errors"]} == {
        ("annual_revenue", "grade_a_needs_revenue")
    }
    assert done["counts"]["failed"] == len(data.refused_accounts) > 0
    assert done["counts"]["created"] == len(rows) - len(failed)
    account_ids = {r["name"]: r["id"] for r in _table(await _export(tenant, "account")) if r["id"]}

    # Contacts: 10,000 rows whose 客户 column names accounts by name, typed loosely.
    contacts = await _import(
        tenant, data.contacts, "联系人.csv", object="contact", limit=str(CONTACTS)
    )
    mapped = {m["column"]: m["field"] for m in contacts["mapping"]}
    assert mapped == {
        "姓": "last_name", "名": "first_name", "客户": "account", "职务": "title",
        "邮箱": "email", "手机": "mobile", "主要联系人": "is_primary", "生日": "birthday",
        "线索来源": "lead_source",
    }  # fmt: skip
    done, _, rows = await _dry_then_real(tenant, jobs, contacts["id"], await _exports(tenant))
    assert done["total"] == CONTACTS
    codes = collections.Counter(e["code"] for r in rows for e in r["errors"])
    unknown = CONTACTS - len(data.contact_account)
    to_refused = sum(1 for n in data.contact_account.values() if n.strip() in data.refused_accounts)
    assert codes["lookup-not-found"] == unknown + to_refused
    assert set(codes) == {"lookup-not-found", "reachable"}
    created = {r["row"]: r["record_id"] for r in rows if r["action"] == "create"}
    assert done["counts"]["created"] == len(created) > CONTACTS * 0.9
    exported = {r["id"]: r for r in _table(await _export(tenant, "contact"))}
    for row_no, record_id in created.items():
        assert exported[record_id]["account"] == account_ids[data.contact_account[row_no].strip()]

    # The scan finds exactly the planted groups among the noise.
    response = await tenant.post("/api/v1/duplicates/account/scan")
    assert response.status_code == 202, response.text
    await jobs.run(tenant)
    planted = [[n.strip() for n in g if n.strip() in account_ids] for g in data.groups]
    planted = [g for g in planted if len(g) > 1]
    assert sorted(sorted(m["id"] for m in g) for g in await _groups(tenant)) == sorted(
        sorted(account_ids[n] for n in g) for g in planted
    )

    # Each group merged into its first name; the other names' contacts move to it.
    children = collections.Counter(data.contact_account[row_no].strip() for row_no in created)
    merges = []
    for group in planted:
        survivor, merged = account_ids[group[0]], [account_ids[n] for n in group[1:]]
        response = await tenant.post(
            "/api/v1/data/account/merge", json={"survivor": survivor, "merged": merged}
        )
        assert response.status_code == 201, response.text
        moved = sum(children[n] for n in group[1:])
        assert response.json()["moved_counts"] == ({"contact": moved} if moved else {})
        merges.append(response.json()["id"])
    per_account = collections.Counter(
        r["account"] for r in _table(await _export(tenant, "contact"))
    )
    for group in planted:
        assert per_account[account_ids[group[0]]] == sum(children[n] for n in group)
        assert all(per_account[account_ids[n]] == 0 for n in group[1:])
    round_trip = await _export(tenant, "account")
    for merge_id in reversed(merges):
        response = await tenant.post(f"/api/v1/merges/{merge_id}/undo")
        assert response.status_code == 200, response.text

    # Both imports reverted, newest first: the exports are the ones taken before, byte for
    # byte (the reverted records are in the recycle bin, which an export leaves out).
    for import_id in (contacts["id"], accounts["id"]):
        reverted = await _run(tenant, jobs, import_id, "revert")
        assert reverted["status"] == "reverted", reverted
    assert await _exports(tenant) == before

    # Export, then import into a fresh tenant with crm-core: the same accounts come back.
    # Upsert by account number (crm-core's sample accounts are there already); a parent
    # is found by its name (`parent.name`), the `parent` column holding the old tenant's ids.
    fresh = await new_tenant(tenant.http)
    await _crm_core(fresh, jobs)
    again = await _import(
        fresh, round_trip, "accounts.csv", object="account", mode="upsert",
        key_field="account_number",
    )  # fmt: skip
    by_name = {"parent": {"field": None, "lookup_key": None},
               "parent.name": {"field": "parent", "lookup_key": "name"}}  # fmt: skip
    mapping = [m | by_name.get(m["column"], {}) for m in again["mapping"]]
    response = await fresh.patch(f"/api/v1/imports/{again['id']}", json={"mapping": mapping})
    assert response.status_code == 200, response.text
    done = await _run(fresh, jobs, again["id"], "run")
    assert done["counts"]["failed"] == 0, done

    def kept(content: bytes) -> list[dict[str, str]]:
        rows = [
            {k: v for k, v in r.items() if k not in STAMPS | {"parent"}} for r in _table(content)
        ]
        return sorted(rows, key=lambda r: r["account_number"])

    assert kept(await _export(fresh, "account")) == kept(round_trip)
