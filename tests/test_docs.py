"""The docs run as written against `make run`'s server, beside the demo and without harming it."""

from __future__ import annotations

import json
from pathlib import Path

from metacrm.metadata.packs import examples_dir
from tests.conftest import TenantClient, login
from tests.doc_runner import DOCS, ROOT, DocsRun, doc_steps

# Each doc names what it defines with its own prefix, which no bundled pack uses; web.md
# defines no metadata, it works records of the demo's own objects.
PREFIXES: dict[str, str | None] = {
    "metadata.md": "doc_",
    "layouts.md": "desk_",
    "process.md": "proc_",
    "security.md": "sec_",
    "web.md": None,
    "automation.md": "auto_",
    "data.md": "data_",
}
_KINDS = {
    "objects": "objects",
    "roles": "roles",
    "sharing_rules": "sharing-rules",
    "layouts": "layouts",
    "list_views": "list-views",
    "stage_rules": "stage-rules",
    "approval_flows": "approval-flows",
    "automation_rules": "automation-rules",
    "assignment_rules": "assignment-rules",
    "queues": "queues",
    "business_calendars": "business-calendars",
    "slas": "slas",
    "email_templates": "email-templates",
    "duplicate_rules": "duplicate-rules",
}


def _defined(doc: Path) -> set[tuple[str, str]]:
    """(kind, api_name) of every metadata document the doc's requests create or replace."""
    found: set[tuple[str, str]] = set()
    for step in doc_steps(doc):
        parts = step.path.split("?")[0].strip("/").split("/")
        if parts[:3] != ["api", "v1", "metadata"] or step.method not in ("POST", "PUT"):
            continue
        body = json.loads(step.body) if step.body.strip() else {}
        if parts[3:] == ["apply"]:
            found |= {(_KINDS[k], d["api_name"]) for k, docs in body.items() for d in docs}
        elif len(parts) == 4 and parts[3] in _KINDS.values():
            found.add((parts[3], body["api_name"]))
        elif len(parts) == 5 and parts[3] in _KINDS.values():
            found.add((parts[3], parts[4]))
    return found


def _pack_names() -> set[str]:
    """Every api_name a bundled example pack defines."""
    names: set[str] = set()
    for path in examples_dir().glob("*/**/*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and isinstance(item.get("api_name"), str):
                names.add(item["api_name"])
    return names


def test_each_doc_keeps_to_its_own_names() -> None:
    packs = _pack_names()
    assert {"quote", "sales_manager", "finance"} <= packs  # the names the docs once reused
    for doc, prefix in PREFIXES.items():
        defined = _defined(ROOT / "docs" / doc)
        if prefix is None:
            assert defined == set(), doc
            continue
        assert defined, doc
        assert [n for _k, n in defined if not n.startswith(prefix)] == [], doc
        assert [n for n in packs if n.startswith(prefix)] == [], (doc, prefix)
    assert set(PREFIXES) == set(DOCS)


async def test_docs_leave_the_demo_as_it_was(docs: DocsRun) -> None:
    changed = [key for key, doc in docs.before.items() if docs.after.get(key) != doc]
    assert changed == []
    assert {"objects/quote", "roles/sales_manager", "roles/finance"} <= set(docs.before)
    # The demo still works for its users: the crm-core records are there.
    accounts = await docs.admin.get("/api/v1/data/account", params={"where": "name != ''"})
    assert accounts.status_code == 200 and accounts.json()["records"], accounts.text


async def test_metadata_doc_runs(docs: DocsRun) -> None:
    result = docs.result("metadata.md")
    for step in doc_steps(ROOT / "docs" / "metadata.md"):
        if step.path.startswith("/api/v1/data/"):
            record = result.answers[f"admin POST {step.path}"]
            for name, value in json.loads(step.body).items():
                if name in ("amount", "discount", "quantity", "met_at", "email"):
                    continue  # normalised on the way in: checked below
                assert record[name] == value, (step.path, name)
    tenant = docs.admin
    auto = (await tenant.get("/api/v1/data/doc_auto_number")).json()["records"][0]
    assert auto["number"] == "CASE-0100"
    numbers = (await tenant.get("/api/v1/data/doc_numbers")).json()["records"][0]
    assert (numbers["quantity"], numbers["amount"], numbers["discount"]) == (
        "3",
        "1999.99",
        "12.50",
    )
    dates = (await tenant.get("/api/v1/data/doc_dates")).json()["records"][0]
    assert dates["met_at"] == "2027-03-01T01:30:00Z"
    text = (await tenant.get("/api/v1/data/doc_text")).json()["records"][0]
    assert (text["name"], text["code"]) == ("Acme", "A-1")


async def test_data_doc_runs(docs: DocsRun) -> None:
    names = docs.result("data.md").names
    tenant = docs.admin
    imported = (await tenant.get(f"/api/v1/imports/{names['imp']}")).json()
    assert imported["status"] == "done" and imported["encoding"] == "gb18030"
    assert imported["counts"] == {"created": 3, "updated": 0, "skipped": 1, "failed": 1}
    report = {}
    for run in ("dry", "real"):
        rows = (await tenant.get(f"/api/v1/imports/{names['imp']}/rows?run={run}")).json()
        report[run] = [(r["row"], r["action"], r["errors"]) for r in rows["rows"]]
    assert report["dry"] == report["real"] and len(report["real"]) == 5
    tiers = (await tenant.get(f"/api/v1/imports/{names['tiers']}")).json()
    assert (tiers["status"], tiers["revert"]) == ("reverted", {"reverted": 2, "skipped": 0})
    companies = await tenant.get("/api/v1/data/data_company", params={"order_by": "code"})
    shown = [(c["code"], c["tier"], c["since"]) for c in companies.json()["records"]]
    assert shown == [
        ("C-001", "gold", "2023-03-01"),
        ("C-002", "silver", "2024-02-15"),
        ("C-003", "gold", "2022-04-03"),
        ("C-102", None, None),
    ]
    merged = (await tenant.get(f"/api/v1/merges/{names['merge1']}")).json()
    assert merged["undone_at"] is not None
    babbage = (await tenant.get(f"/api/v1/data/data_contact/{names['babbage']}")).json()
    assert babbage["company"] == names["acme2"]
    # The backup restored as data_copy holds the same companies, and its users sign in.
    token = await login(tenant.http, "data_copy", "admin@demo", docs.server.password())
    copy = TenantClient(tenant.http, "data_copy", token)
    restored = await copy.get("/api/v1/data/data_company", params={"order_by": "code"})
    assert [c["code"] for c in restored.json()["records"]] == [s[0] for s in shown]
