"""The list page's Export menu in a real browser, on both databases: the current view with
its filter and sort downloaded as CSV and as Excel, and no menu without export_data."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from tests.web.conftest import Crm, needs_chromium, sign_in


def grant_export(crm: Crm, role: str) -> None:
    """Give `role` the export_data platform permission (crm-core's roles do not hold it)."""
    with crm.api() as api:
        roles = api.get("/api/v1/metadata/roles").json()["roles"]
        found = next(r for r in roles if r["api_name"] == role)
        found["permissions"] = sorted({*found.get("permissions", []), "export_data"})
        response = api.post("/api/v1/metadata/apply?confirm=true", json={"roles": [found]})
    assert response.status_code in (200, 201), response.text


def _deals(crm: Crm, email: str, names: list[str]) -> None:
    records = [
        {"name": n, "amount": 1000 * (i + 1), "stage": "qualify"} for i, n in enumerate(names)
    ]
    with crm.api(crm.token(email)) as api:
        response = api.post("/api/v1/data/opportunity/batch", json={"records": records})
    assert response.status_code == 200, response.text


@needs_chromium
async def test_export_menu_downloads_the_list_as_shown(
    crm: Crm, context: Any, tmp_path: Path
) -> None:
    grant_export(crm, "sales_rep")
    _deals(crm, "rep@web.test", ["Export alpha", "Export beta", "Export gamma", "Other"])
    _deals(crm, "manager@web.test", ["Export manager's own"])
    page = await sign_in(context, crm, "rep@web.test")
    where = 'CONTAINS(name, "Export")'
    await page.goto(f"{crm.url}/app/o/opportunity?where={where}&order_by=-amount")
    await page.get_by_text("Export", exact=True).click()
    async with page.expect_download() as info:
        await page.get_by_role("button", name="CSV").click()
    download = await info.value
    assert download.suggested_filename.startswith("opportunity-")
    assert download.suggested_filename.endswith(".csv")
    path = tmp_path / "deals.csv"
    await download.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    name = rows[0].index("name")
    # The rep's own matching deals, largest amount first: the page's filter and sort.
    assert [r[name] for r in rows[1:]] == ["Export gamma", "Export beta", "Export alpha"]
    assert rows[0][0] == "id"

    async with page.expect_download() as info:
        await page.get_by_role("button", name="Excel (.xlsx)").click()
    download = await info.value
    assert download.suggested_filename.endswith(".xlsx")
    path = tmp_path / "deals.xlsx"
    await download.save_as(path)
    sheet = load_workbook(path).active
    assert sheet is not None
    table = [[c.value for c in row] for row in sheet.iter_rows()]
    column = table[0].index("name")
    assert [r[column] for r in table[1:]] == ["Export gamma", "Export beta", "Export alpha"]
    amount = table[0].index("amount")
    assert [r[amount] for r in table[1:]] == [3000, 2000, 1000]  # numbers, not text

    # The manager's role does not hold export_data: no menu.
    other = await context.browser.new_context()
    try:
        manager = await sign_in(other, crm, "manager@web.test")
        await manager.goto(f"{crm.url}/app/o/opportunity")
        await manager.get_by_role("heading", name="Opportunities", level=1).wait_for()
        assert await manager.get_by_text("Export", exact=True).count() == 0
    finally:
        await other.close()
