"""The examples of docs/metadata.md apply and accept their records, on both databases."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import TenantClient

DOC = Path(__file__).resolve().parent.parent / "docs" / "metadata.md"


def _examples() -> list[tuple[str, dict]]:
    blocks = re.findall(r"```json (object|record)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [(kind, json.loads(body)) for kind, body in blocks]


async def test_every_example_applies_and_accepts_its_record(tenant: TenantClient) -> None:
    examples = _examples()
    assert sum(kind == "object" for kind, _ in examples) >= 10
    current = None
    for kind, document in examples:
        if kind == "object":
            response = await tenant.post("/api/v1/metadata/objects", json=document)
            assert response.status_code == 201, response.text
            current = document["api_name"]
        else:
            response = await tenant.post(f"/api/v1/data/{current}", json=document)
            assert response.status_code == 201, (current, response.text)
            record = response.json()
            for name, value in document.items():
                if name in ("amount", "discount", "quantity", "met_at", "email"):
                    continue  # normalised on the way in: checked below
                assert record[name] == value, (current, name)
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
