"""The automated ownership check: schemathesis against the live OpenAPI, on both databases.

Alice, Bob (both `rep`) and Carol (`other`) may all create, read, edit and delete `vault`
records, a private object: each sees only what they own. Alice owns records in every state
the API knows (live, moved along a stage path with an open task, submitted for approval,
shared with a fourth user, deleted). Schemathesis loads the OpenAPI exactly as Bob receives
it and generates requests for every data operation, with path ids drawn from Alice's ids
(and random ones) and `where` / `order_by` / `fields` / `cursor` built from her values
(and random ones). Each request goes out as Bob and as Carol. No response may carry
anything of Alice's, no request may fail with a 5xx, and after every request Alice's
records are exactly as they were. The same operations, sent as Alice, do show her
records: the leak detector is live, so the check can fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TenantClient, new_tenant

pytestmark = pytest.mark.slow

OBJECT = "vault"
FULL = {"create": True, "read": True, "edit": True, "delete": True}
VAULT = {
    "api_name": OBJECT,
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True, "track_history": True},
        {"api_name": "code", "type": "text", "external_id": True},
        {"api_name": "amount", "type": "currency", "track_history": True},
        {"api_name": "size", "type": "number"},
        {"api_name": "due", "type": "date"},
        {"api_name": "flag", "type": "boolean"},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "review"}, {"value": "won"}],
        },
        {"api_name": "parent", "type": "lookup", "target": OBJECT},
    ],
}
ROLES = [
    {"api_name": "rep", "objects": {OBJECT: FULL}},
    {"api_name": "other", "objects": {OBJECT: FULL}},
    {"api_name": "lead", "objects": {OBJECT: FULL}},
]
STAGE_RULE = {
    "api_name": "vault_path",
    "object": OBJECT,
    "field": "stage",
    "stages": [
        {"value": "new", "next": ["review"]},
        {
            "value": "review",
            "next": ["won", "new"],
            "tasks": [{"api_name": "check", "subject": "Check it", "assignee": {"kind": "owner"}}],
        },
        {"value": "won", "closed": True},
    ],
}
SIGNOFF = {
    "api_name": "signoff",
    "object": OBJECT,
    "lock_record": False,
    "steps": [{"api_name": "lead", "approvers": [{"kind": "manager", "of": "owner"}]}],
}

# Operations of the live OpenAPI that touch records, as (method, path). The per-object
# paths come from the object's own section of the document; the generic ones are static.
DATA = f"/api/v1/data/{OBJECT}"
RECORD = "/api/v1/data/{object_name}/{record_id}"
SPEC_OPERATIONS = [
    ("GET", DATA),
    ("POST", DATA),
    ("POST", f"{DATA}/batch"),
    ("GET", f"{DATA}/recycle-bin"),
    ("GET", f"{DATA}/{{id}}"),
    ("PATCH", f"{DATA}/{{id}}"),
    ("DELETE", f"{DATA}/{{id}}"),
    ("POST", f"{DATA}/{{id}}/restore"),
    ("POST", f"{DATA}/{{id}}/owner"),
    ("GET", f"{DATA}/{{id}}/shares"),
    ("POST", f"{DATA}/{{id}}/shares"),
    ("DELETE", f"{DATA}/{{id}}/shares/{{share_id}}"),
    ("GET", f"{RECORD}/history"),
    ("POST", f"{RECORD}/stage"),
    ("GET", f"{RECORD}/stage-history"),
    ("GET", f"{RECORD}/stage-tasks"),
    ("POST", f"{RECORD}/approvals"),
    ("GET", f"{RECORD}/approvals"),
    ("POST", "/api/v1/stage-tasks/{task_id}/done"),
    ("GET", "/api/v1/analytics/funnel/{rule_name}"),
    ("GET", "/api/v1/approvals"),
    ("GET", "/api/v1/approvals/{approval_id}"),
    ("POST", "/api/v1/approvals/{approval_id}/approve"),
    ("POST", "/api/v1/approvals/{approval_id}/reject"),
    ("POST", "/api/v1/approvals/{approval_id}/recall"),
    ("POST", "/api/v1/approvals/{approval_id}/reassign"),
    ("POST", "/api/v1/approvals/{approval_id}/approvers"),
    ("GET", "/api/v1/audit"),
]
TEXT = {"type": "string", "minLength": 1, "maxLength": 50}
# The static process routes read their JSON bodies by hand, so the document has no body
# schema for them: these are the bodies their docstrings describe.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", f"{RECORD}/stage"): {
        "to": {"enum": ["new", "review", "won"]},
        "reason": TEXT,
        "rule": {"enum": ["vault_path"]},
        "fields": {"type": "object"},
    },
    ("POST", f"{RECORD}/approvals"): {
        "flow": {"enum": ["signoff"]},
        "comment": TEXT,
    },
    ("POST", "/api/v1/approvals/{approval_id}/approve"): {
        "comment": TEXT,
        "step": {"enum": ["lead"]},
    },
    ("POST", "/api/v1/approvals/{approval_id}/reject"): {
        "comment": TEXT,
        "step": {"enum": ["lead"]},
    },
    ("POST", "/api/v1/approvals/{approval_id}/recall"): {"comment": TEXT},
    ("POST", "/api/v1/approvals/{approval_id}/reassign"): {
        "to": TEXT,
        "comment": TEXT,
    },
    ("POST", "/api/v1/approvals/{approval_id}/approvers"): {
        "user": TEXT,
        "step": {"enum": ["lead"]},
    },
    ("POST", "/api/v1/stage-tasks/{task_id}/done"): {},
}
OPERATIONS = SPEC_OPERATIONS
EXAMPLES = 25


@dataclass
class World:
    http: httpx.AsyncClient
    admin: TenantClient
    alice: TenantClient
    bob: TenantClient
    carol: TenantClient
    dave: TenantClient
    schema: Any
    live: list[dict[str, Any]]  # Alice's live records, as she lists them
    deleted: dict[str, Any]  # Alice's record in the recycle bin
    staged: str  # moved to "review": stage history and an open task
    approved: str  # submitted for approval
    shared: str  # shared with Dave
    referenced: str  # a record of Bob's points at it (its id is no secret)
    task_id: str
    approval_id: str
    share_id: str
    cursors: list[str]  # next_cursor values of Alice's and the admin's lists
    secret_ids: set[str] = field(default_factory=set)
    secret_text: set[str] = field(default_factory=set)
    baseline: dict[str, Any] = field(default_factory=dict)


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def snapshot(world: World) -> dict[str, Any]:
    """Everything of Alice's that an attack could change, as Alice reads it."""
    alice = world.alice
    out: dict[str, Any] = {
        "live": await ok(await alice.get(DATA, params={"order_by": "name", "limit": 100})),
        "bin": await ok(await alice.get(f"{DATA}/recycle-bin", params={"limit": 100})),
    }
    for rid in (r["id"] for r in world.live):
        base = f"/api/v1/data/{OBJECT}/{rid}"
        for sub in ("history", "shares", "stage-history", "stage-tasks", "approvals"):
            out[f"{rid}/{sub}"] = await ok(await alice.get(f"{base}/{sub}"))
        for rule in out[f"{rid}/stage-history"]["rules"]:
            rule["time_in_stage"].pop(rule["current"])  # the clock runs in the current stage
    out["approval"] = await ok(await alice.get(f"/api/v1/approvals/{world.approval_id}"))
    out["inbox"] = await ok(await world.dave.get("/api/v1/approvals"))
    return out


def _live_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Bob's document, plus the bodies it does not describe."""
    spec = json.loads(json.dumps(spec))
    for (method, path), properties in BODIES.items():
        operation = spec["paths"][path][method.lower()]
        assert "requestBody" not in operation, f"{method} {path} now documents its body"
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": ["to"] if "to" in properties else [],
                        "additionalProperties": False,
                    }
                }
            },
        }
    return spec


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient) -> World:
    admin = await new_tenant(client)
    await ok(
        await admin.post(
            "/api/v1/metadata/apply",
            json={
                "objects": [VAULT],
                "roles": ROLES,
                "stage_rules": [STAGE_RULE],
                "approval_flows": [SIGNOFF],
            },
        )
    )
    dave = await admin.add_user("dave@x.test", role="lead")
    alice = await admin.add_user("alice@x.test", role="rep", manager_id=dave.user_id)
    bob = await admin.add_user("bob@x.test", role="rep")
    carol = await admin.add_user("carol@x.test", role="other")

    tag = uuid.uuid4().hex[:10]
    made = []
    for i in range(6):
        made.append(
            await alice.create(
                OBJECT,
                {
                    "name": f"alice-{tag}-{i}",
                    "code": f"ALC{tag}{i}",
                    "amount": f"{424242 + i}.17",
                    "size": 9000 + i,
                    "due": f"2031-0{i + 1}-1{i}",
                    "flag": i % 2 == 0,
                    "stage": "new",
                },
            )
        )
    referenced, staged, approved, shared, plain, deleted = (r["id"] for r in made)
    base = f"/api/v1/data/{OBJECT}"
    await ok(await alice.patch(f"{base}/{plain}", json={"name": f"alice-{tag}-renamed"}))
    await ok(await alice.post(f"{base}/{staged}/stage", json={"to": "review"}))
    tasks = await ok(await alice.get(f"{base}/{staged}/stage-tasks"))
    approval = await ok(
        await alice.post(f"{base}/{approved}/approvals", json={"comment": f"secret-note-{tag}"}),
        201,
    )
    share = await ok(
        await alice.post(f"{base}/{shared}/shares", json={"user_id": dave.user_id}), 201
    )
    await ok(await alice.delete(f"{base}/{deleted}"), 204)

    # Bob and Carol own records too, and one of Bob's points at one of Alice's.
    for user, name in ((bob, "bob"), (carol, "carol")):
        for i in range(3):
            await user.create(OBJECT, {"name": f"{name}-{i}", "code": f"{name}{i}", "stage": "new"})
    await ok(
        await admin.post(
            base, json={"name": "bob-child", "owner_id": bob.user_id, "parent": referenced}
        ),
        201,
    )

    cursors = []
    for client_, order in ((alice, "name"), (alice, "-amount"), (admin, "name"), (alice, None)):
        params = {"limit": 1} | ({"order_by": order} if order else {})
        page = await ok(await client_.get(base, params=params))
        cursors.append(page["next_cursor"])
    bin_page = await ok(await alice.get(f"{base}/recycle-bin", params={"limit": 1}))
    assert [r["id"] for r in bin_page["records"]] == [deleted]

    spec = await ok(await bob.get("/api/v1/openapi.json"))
    schema = schemathesis.openapi.from_dict(_live_spec(spec))
    live = (await ok(await alice.get(base, params={"order_by": "name"})))["records"]
    assert len(live) == 5
    world = World(
        http=client,
        admin=admin,
        alice=alice,
        bob=bob,
        carol=carol,
        dave=dave,
        schema=schema,
        live=live,
        deleted=made[-1],
        staged=staged,
        approved=approved,
        shared=shared,
        referenced=referenced,
        task_id=tasks["tasks"][0]["id"],
        approval_id=approval["id"],
        share_id=share["id"],
        cursors=[c for c in cursors if c],
    )
    # Bob may know the id his own record points at; everything else of Alice's is secret.
    world.secret_ids = {r["id"] for r in made} - {referenced}
    world.secret_ids |= {world.task_id, world.approval_id, world.share_id}
    for record in [*live, made[-1]]:
        world.secret_text |= {record["name"], record["code"], record["amount"]}
    world.secret_text.add(f"secret-note-{tag}")
    world.secret_text.add(str(made[0]["name"]))
    world.baseline = await snapshot(world)
    return world


# ------------------------------------------------------------------ generation


def _ids(world: World) -> st.SearchStrategy[str]:
    alice = [r["id"] for r in world.live] + [world.deleted["id"]]
    return st.one_of(
        st.sampled_from(alice),
        st.uuids().map(str),
        st.sampled_from([world.approval_id, world.task_id, world.share_id]),
    )


def path_values(world: World, name: str) -> st.SearchStrategy[str]:
    if name in ("id", "record_id"):
        return st.one_of(_ids(world), _ids(world), st.text(max_size=40))
    if name == "object_name":
        return st.one_of(st.just(OBJECT), st.just(OBJECT), st.sampled_from(["note", "users"]))
    named = {
        "task_id": world.task_id,
        "approval_id": world.approval_id,
        "share_id": world.share_id,
    }
    if name in named:
        return st.one_of(st.just(named[name]), _ids(world))
    if name == "rule_name":
        return st.sampled_from(["vault_path", "nope"])
    raise AssertionError(f"no values for the path parameter {name!r}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def query_values(world: World, names: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    """The list parameters, aimed at Alice's records; any left out schemathesis generates."""
    record = st.sampled_from([*world.live, world.deleted])
    fields = ["name", "code", "amount", "size", "due", "flag", "stage", "parent", "owner_id"]
    fields += ["id", "version", "created_by", "updated_at", "parent.name", "parent.code"]
    alice = _quote(str(world.alice.user_id))

    @st.composite
    def where(draw: Any) -> str:
        r = draw(record)
        clauses = [
            f"id == {_quote(r['id'])}",
            f"code == {_quote(r['code'])}",
            f"name == {_quote(r['name'])}",
            f"amount == {r['amount']}",
            f"owner_id == {alice}",
            f"created_by == {alice}",
            f"parent == {_quote(world.referenced)}",
            f"parent.name == {_quote(r['name'])}",
            "amount > 400000",
            "not ISBLANK(code)",
            "true",
            "stage == 'review' or stage == 'new'",
        ]
        first = draw(st.sampled_from(clauses))
        if draw(st.booleans()):
            joiner = draw(st.sampled_from([" or ", " and ", " or not "]))
            first += joiner + draw(st.sampled_from(clauses))
        return first

    order = st.lists(
        st.tuples(st.sampled_from(["", "-"]), st.sampled_from(fields)).map("".join),
        min_size=1,
        max_size=3,
    ).map(",".join)
    chosen = st.lists(st.sampled_from(fields), min_size=1, max_size=5).map(",".join)
    strategies = {
        "where": where(),
        "order_by": order,
        "fields": chosen,
        "cursor": st.sampled_from(world.cursors),
        "limit": st.integers(1, 5),
        "assigned_to": st.sampled_from(["me", str(world.alice.user_id), str(world.dave.user_id)]),
        "record_id": _ids(world),
        "user_id": st.just(str(world.alice.user_id)),
    }
    return st.fixed_dictionaries({}, optional={k: v for k, v in strategies.items() if k in names})


def body_values(
    world: World, attacker: TenantClient, method: str, path: str
) -> st.SearchStrategy[Any]:
    """A hand-aimed body for the writes where the target matters; None: let schemathesis."""
    alice_ids = st.sampled_from([r["id"] for r in world.live])
    if path.endswith("/batch"):
        # Live records only: a code in the recycle bin is free to take, and Bob's record
        # would then rightly show it.
        record = st.sampled_from(world.live)
        upsert = record.map(
            lambda r: {"upsert_on": "code", "records": [{"code": r["code"], "name": "mine now"}]}
        )
        linked = alice_ids.map(lambda i: {"records": [{"name": "link", "parent": i}]})
        own = st.just({"records": [{"name": "plain"}, {"name": "other", "stage": "review"}]})
        return st.one_of(st.none(), upsert, linked, own)
    if (method, path) == ("POST", DATA) or (method, path) == ("PATCH", f"{DATA}/{{id}}"):
        return st.one_of(
            st.none(),
            alice_ids.map(lambda i: {"name": "link", "parent": i}),
            st.just({"name": "x", "owner_id": str(attacker.user_id)}),
        )
    if path.endswith("/owner"):
        return st.one_of(
            st.none(), st.sampled_from([{"owner_id": str(attacker.user_id)}, {"owner_id": None}])
        )
    if method == "POST" and path.endswith("/shares"):
        return st.one_of(
            st.none(),
            st.sampled_from(["read", "edit"]).map(
                lambda a: {"user_id": str(attacker.user_id), "access": a}
            ),
            st.sampled_from(["rep", "other"]).map(lambda r: {"role": r, "access": "edit"}),
        )
    if path.endswith(("/reassign", "/approvers")):
        key = "to" if path.endswith("/reassign") else "user"
        return st.one_of(st.none(), st.just({key: "bob@x.test"}), st.just({key: "carol@x.test"}))
    return st.none()


# ------------------------------------------------------------------ the detector


def _cursor_text(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))[16:].decode(
            "utf-8", "replace"
        )
    except (binascii.Error, ValueError):
        return ""


def _walk(node: Any, world: World, where: str, found: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("id", "record_id", "approval_id") and value in world.secret_ids:
                found.append(f"{where}.{key} is Alice's {value}")
            if key in ("cursor", "next_cursor") and isinstance(value, str):
                decoded = _cursor_text(value)
                found += [f"{where}.{key} encodes {s!r}" for s in _secrets_in(decoded, world)]
            _walk(value, world, f"{where}.{key}", found)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, world, f"{where}[{i}]", found)


def _secrets_in(text: str, world: World) -> list[str]:
    return [s for s in (*world.secret_ids, *world.secret_text) if s in text]


def leaks(world: World, request: dict[str, Any], response: httpx.Response) -> list[str]:
    """What of Alice's the response shows that the request did not itself contain."""
    sent = json.dumps(request, default=str)
    found = [f"body shows {s!r}" for s in _secrets_in(response.text, world) if s not in sent]
    try:
        payload = response.json()
    except ValueError:
        payload = None
    _walk(payload, world, "$", found)
    for name, value in response.headers.items():
        found += [f"header {name} shows {s!r}" for s in _secrets_in(value, world) if s not in sent]
    return found


async def send(
    world: World, user: TenantClient, case: Any
) -> tuple[dict[str, Any], httpx.Response]:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = {k: v for k, v in kwargs["headers"].items() if k.lower() != "authorization"}
    headers["Authorization"] = f"Bearer {user.token}"
    request = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "params": kwargs.get("params") or {},
        "headers": {k: v for k, v in headers.items() if k != "Authorization"},
    }
    extra: dict[str, Any] = {}
    if "json" in kwargs:
        extra["json"] = request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        extra["content"] = kwargs["data"]
        request["data"] = kwargs["data"]
    response = await world.http.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=headers,
        **extra,
    )
    return request, response


def targets_alice(world: World, request: dict[str, Any]) -> bool:
    """The path names one of Alice's records, approvals, tasks or shares."""
    path = httpx.URL(request["url"]).path
    return any(s in path for s in (*world.secret_ids, world.referenced))


# ------------------------------------------------------------------ the tests


async def test_every_data_operation_of_the_live_openapi_is_covered(world: World) -> None:
    spec = (await ok(await world.bob.get("/api/v1/openapi.json")))["paths"]
    ours = {(m, p) for p, ops in spec.items() for m in map(str.upper, ops) if "/data/" in p}
    assert ours == {(m, p) for m, p in SPEC_OPERATIONS if "/data/" in p}
    for method, path in OPERATIONS:
        assert world.schema[path][method], (method, path)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_no_user_reads_or_changes_what_another_owns(
    world: World, method: str, path: str, data: st.DataObject
) -> None:
    operation = world.schema[path][method]
    path_names = {p.name for p in operation.path_parameters}
    query_names = {p.name for p in operation.query}
    for attacker in (world.bob, world.carol):
        path_parameters = {n: data.draw(path_values(world, n), label=n) for n in path_names}
        query = data.draw(query_values(world, query_names), label="query")
        body = data.draw(body_values(world, attacker, method, path), label="body")
        strategy = operation.as_strategy(
            path_parameters=path_parameters,
            query=query,
            **({"body": body} if body is not None else {}),
        )
        case = data.draw(strategy, label="case")
        request, response = await send(world, attacker, case)
        who = "bob" if attacker is world.bob else "carol"
        assert response.status_code < 500, (who, request, response.status_code, response.text)
        found = leaks(world, request, response)
        assert not found, (who, request, response.status_code, response.text, found)
        if targets_alice(world, request):
            assert response.status_code >= 400, (who, request, response.status_code, response.text)
        if method != "GET":  # reads change nothing; test_everything_alice_owns... checks it all
            live = await ok(await world.alice.get(DATA, params={"order_by": "name", "limit": 100}))
            assert live == world.baseline["live"], (who, request, response.status_code)


async def test_everything_alice_owns_is_as_it_was(world: World) -> None:
    assert await snapshot(world) == world.baseline


READS = [
    ("GET", DATA, {}, {"where": "code == '{code}'"}),
    ("GET", DATA, {}, {"fields": "name,code,parent.name", "order_by": "-amount"}),
    ("GET", DATA, {}, {"cursor": "{cursor}", "limit": 1, "order_by": "name"}),
    ("GET", f"{DATA}/recycle-bin", {}, {}),
    ("GET", f"{DATA}/{{id}}", {"id": "{id}"}, {}),
    ("GET", f"{DATA}/{{id}}/shares", {"id": "{shared}"}, {}),
    ("GET", f"{RECORD}/history", {"record_id": "{renamed}"}, {}),
    ("GET", f"{RECORD}/stage-history", {"record_id": "{staged}"}, {}),
    ("GET", f"{RECORD}/stage-tasks", {"record_id": "{staged}"}, {}),
    ("GET", f"{RECORD}/approvals", {"record_id": "{approved}"}, {}),
    ("GET", "/api/v1/approvals/{approval_id}", {"approval_id": "{approval}"}, {}),
]


@pytest.mark.parametrize(("method", "path", "path_parameters", "query"), READS)
async def test_the_owner_sees_her_records_through_the_same_operations(
    world: World, method: str, path: str, path_parameters: dict[str, str], query: dict[str, Any]
) -> None:
    """The detector is live: sent as Alice, the same kind of request shows her records."""
    values = {
        "id": world.live[1]["id"],
        "code": world.live[1]["code"],
        "cursor": world.cursors[0],
        "shared": world.shared,
        "staged": world.staged,
        "approved": world.approved,
        "approval": world.approval_id,
        "renamed": next(r["id"] for r in world.live if r["name"].endswith("-renamed")),
    }

    def fill(value: Any) -> Any:
        return value.format(**values) if isinstance(value, str) else value

    params = {k: fill(v) for k, v in path_parameters.items()}
    if "record_id" in params:
        params["object_name"] = OBJECT
    case = world.schema[path][method].Case(
        path_parameters=params, query={k: fill(v) for k, v in query.items()}
    )
    request, response = await send(world, world.alice, case)
    assert response.status_code == 200, response.text
    assert leaks(world, {"method": method}, response), (request, response.text)
    # The same request as Bob or Carol shows nothing.
    for attacker in (world.bob, world.carol):
        request, response = await send(world, attacker, case)
        assert response.status_code in (200, 403, 404), response.text
        assert not leaks(world, request, response), (request, response.text)
