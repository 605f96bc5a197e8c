"""Problems answer in the negotiated language: built-in titles and messages, and rules."""

from __future__ import annotations

import uuid

import httpx
import pytest

from metacrm.i18n import negotiate
from tests.conftest import TenantClient, new_tenant

ZH = {"Accept-Language": "zh-CN"}
DEAL = {
    "api_name": "deal",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "amount", "type": "currency"},
        {"api_name": "closed", "type": "boolean"},
        {"api_name": "close_date", "type": "date"},
    ],
    "validation_rules": [
        {
            "api_name": "close_date_set",
            "condition": "closed and ISBLANK(close_date)",
            "message": {
                "en": "A closed deal needs a close date",
                "zh-CN": "已结束的交易需要结束日期",
            },
            "field": "close_date",
        }
    ],
}


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("zh-hans-CN;q=0.8", "zh-CN"),
        ("fr, zh;q=0.5, en;q=0.4", "zh-CN"),
        ("en;q=0.5, zh-CN;q=0.9", "zh-CN"),
        ("zh-CN;q=0.5, en-GB", "en"),
        ("zh-CN;q=0, en;q=0.1", "en"),
        ("zh-TW", None),
        ("fr", None),
        ("", None),
        ("*", None),
        ("zh-CN;q=abc", None),
        ("x" * 10000, None),
    ],
)
def test_accept_language_is_negotiated_to_a_supported_language(
    header: str, language: str | None
) -> None:
    assert negotiate(header) == language


async def test_problems_follow_accept_language(tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    missing = await tenant.post("/api/v1/data/deal", json={"amount": 5, "extra": 1}, headers=ZH)
    assert missing.status_code == 422
    body = missing.json()
    assert body["title"] == "记录无效"
    codes = {e["code"]: e["message"] for e in body["errors"]}
    assert codes["required"] == "name 为必填项"
    assert "不是可用的字段" in codes["unknown-field"]
    english = (await tenant.post("/api/v1/data/deal", json={"amount": 5})).json()
    assert english["title"] == "The record is invalid"
    assert english["errors"][0]["message"] == "name is required"
    wrong_type = await tenant.post(
        "/api/v1/data/deal", json={"name": "x", "amount": "lots"}, headers=ZH
    )
    assert wrong_type.json()["errors"][0]["message"] == "amount 的值类型或格式不正确"
    ruled = await tenant.post(
        "/api/v1/data/deal", json={"name": "x", "closed": True}, headers={"Accept-Language": "zh"}
    )
    assert ruled.json()["errors"] == [
        {"field": "close_date", "code": "close_date_set", "message": "已结束的交易需要结束日期"}
    ]
    ruled_en = await tenant.post("/api/v1/data/deal", json={"name": "x", "closed": True})
    assert ruled_en.json()["errors"][0]["message"] == "A closed deal needs a close date"
    record = await tenant.create("deal", {"name": "x"})
    stale = await tenant.patch(
        f"/api/v1/data/deal/{record['id']}",
        json={"name": "y"},
        headers=ZH | {"If-Match": '"99"'},
    )
    assert stale.status_code == 412 and stale.json()["title"] == "记录在读取后已被修改"
    gone = await tenant.get(f"/api/v1/data/deal/{uuid.uuid4()}", headers=ZH)
    assert gone.status_code == 404 and gone.json()["title"] == "未找到"
    rep = await tenant.add_user("rep@x.test")
    denied = await rep.get("/api/v1/audit", headers=ZH)
    assert denied.status_code == 403
    assert denied.json()["title"] == "权限不足" and denied.json()["detail"] == "你无权执行此操作"
    anonymous = await tenant.http.get("/api/v1/data/deal", headers=ZH)
    assert anonymous.status_code == 401 and anonymous.json()["title"] == "需要登录"
    # An unsupported language answers in the tenant's default (here English).
    french = await tenant.post("/api/v1/data/deal", json={}, headers={"Accept-Language": "fr"})
    assert french.json()["title"] == "The record is invalid"


async def test_the_tenant_default_language_answers_when_none_is_asked(
    client: httpx.AsyncClient,
) -> None:
    zh = await new_tenant(client, default_language="zh-CN")
    await zh.define(DEAL)
    for headers in ({}, {"Accept-Language": "fr"}):
        refused = await zh.post("/api/v1/data/deal", json={}, headers=headers)
        assert refused.json()["title"] == "记录无效"
        assert refused.json()["errors"][0]["message"] == "name 为必填项"
    english = await zh.post("/api/v1/data/deal", json={}, headers={"Accept-Language": "en-US"})
    assert english.json()["title"] == "The record is invalid"
