"""The live OpenAPI document of a tenant: static routes plus one set of paths per object."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from metacrm import __version__
from metacrm.metadata.model import label_text
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.permissions import visible_definition
from metacrm.ui_schema.json_schema import object_schema

_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _schema_name(object_name: str, suffix: str = "") -> str:
    """`Account`, `Account_Create`: api_names are lower case, so no two objects collide."""
    return object_name[0].upper() + object_name[1:] + (f"_{suffix}" if suffix else "")


def _list_parameters() -> list[dict[str, Any]]:
    def param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
        }

    return [
        param(
            "where",
            "A filter in the expression language, e.g. `amount > 1000 and stage == 'won'`.",
            {"type": "string"},
        ),
        param(
            "order_by",
            "Comma-separated fields, `-` for descending: `-close_date,name`.",
            {"type": "string"},
        ),
        param(
            "fields",
            "Comma-separated fields, with one lookup level: `name,account.name`.",
            {"type": "string"},
        ),
        param("limit", "Records per page.", {"type": "integer", "minimum": 1}),
        param("cursor", "The `next_cursor` of the previous page.", {"type": "string"}),
        param(
            "count",
            "`true` adds `total`: how many records match, on every page, under your access.",
            {"type": "boolean", "default": False},
        ),
    ]


def _object_paths(name: str, label: str) -> dict[str, Any]:
    read = {"$ref": f"#/components/schemas/{_schema_name(name)}"}
    create = {"$ref": f"#/components/schemas/{_schema_name(name, 'Create')}"}
    update = {"$ref": f"#/components/schemas/{_schema_name(name, 'Update')}"}
    page = {
        "type": "object",
        "properties": {
            "records": {"type": "array", "items": read},
            "next_cursor": {"type": ["string", "null"]},
            "total": {"type": "integer", "description": "With `count=true` only."},
        },
    }
    record_response = {
        "description": "The record",
        "content": {"application/json": {"schema": read}},
    }
    errors = {"default": _PROBLEM}
    id_param = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    allow_duplicates = {
        "name": "allow_duplicates",
        "in": "query",
        "required": False,
        "description": "Save although a duplicate rule of action `warn` matches "
        "(refused with code `duplicate-warning` otherwise); `block` rules still refuse.",
        "schema": {"type": "boolean", "default": False},
    }
    tags = [label]
    base = f"/api/v1/data/{name}"
    return {
        base: {
            "get": {
                "tags": tags,
                "operationId": f"list_{name}",
                "summary": f"List {label}",
                "parameters": _list_parameters(),
                "responses": {
                    "200": {
                        "description": "A page",
                        "content": {"application/json": {"schema": page}},
                    },
                    **errors,
                },
            },
            "post": {
                "tags": tags,
                "operationId": f"create_{name}",
                "summary": f"Create a {label} record",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    allow_duplicates,
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": create}},
                },
                "responses": {"201": record_response, **errors},
            },
        },
        f"{base}/batch": {
            "post": {
                "tags": tags,
                "operationId": f"batch_{name}",
                "summary": f"Create or upsert many {label} records",
                "parameters": [allow_duplicates],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["records"],
                                "properties": {
                                    "records": {"type": "array", "items": create},
                                    "upsert_on": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "One result per record"}, **errors},
            }
        },
        f"{base}/recycle-bin": {
            "get": {
                "tags": tags,
                "operationId": f"list_deleted_{name}",
                "summary": f"Deleted {label} records",
                "parameters": _list_parameters(),
                "responses": {
                    "200": {
                        "description": "A page",
                        "content": {"application/json": {"schema": page}},
                    },
                    **errors,
                },
            }
        },
        f"{base}/{{id}}": {
            "get": {
                "tags": tags,
                "operationId": f"get_{name}",
                "parameters": [id_param],
                "responses": {"200": record_response, **errors},
            },
            "patch": {
                "tags": tags,
                "operationId": f"update_{name}",
                "parameters": [id_param, if_match, allow_duplicates],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": update}},
                },
                "responses": {"200": record_response, **errors},
            },
            "delete": {
                "tags": tags,
                "operationId": f"delete_{name}",
                "parameters": [id_param, if_match],
                "responses": {"204": {"description": "Moved to the recycle bin"}, **errors},
            },
        },
        f"{base}/{{id}}/owner": {
            "post": {
                "tags": tags,
                "operationId": f"transfer_{name}",
                "summary": "Give the record to another user",
                "parameters": [id_param],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["owner_id"],
                                "properties": {"owner_id": {"type": "string", "format": "uuid"}},
                            }
                        }
                    },
                },
                "responses": {"200": record_response, **errors},
            }
        },
        f"{base}/{{id}}/shares": {
            "get": {
                "tags": tags,
                "operationId": f"list_shares_{name}",
                "parameters": [id_param],
                "responses": {"200": {"description": "The record's manual shares"}, **errors},
            },
            "post": {
                "tags": tags,
                "operationId": f"share_{name}",
                "summary": "Share the record with a user or a role",
                "parameters": [id_param],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "user_id": {"type": "string", "format": "uuid"},
                                    "role": {"type": "string"},
                                    "access": {"enum": ["read", "edit"]},
                                },
                            }
                        }
                    },
                },
                "responses": {"201": {"description": "The share"}, **errors},
            },
        },
        f"{base}/{{id}}/shares/{{share_id}}": {
            "delete": {
                "tags": tags,
                "operationId": f"unshare_{name}",
                "parameters": [
                    id_param,
                    {
                        "name": "share_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "responses": {"204": {"description": "Removed"}, **errors},
            }
        },
        f"{base}/{{id}}/restore": {
            "post": {
                "tags": tags,
                "operationId": f"restore_{name}",
                "parameters": [id_param],
                "responses": {"200": record_response, **errors},
            }
        },
    }


def static_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI of the fixed routes (auth, metadata, platform), without the data routes."""
    document = get_openapi(
        title="metacrm",
        version=__version__,
        routes=app.routes,
        description="The REST API of one metacrm tenant, generated from its metadata.",
    )
    document.setdefault("components", {})
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    document["components"]["responses"] = {
        "Problem": {
            "description": "An RFC 9457 problem",
            "content": {
                "application/problem+json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "type": {"type": "string"},
                            "title": {"type": "string"},
                            "status": {"type": "integer"},
                            "detail": {"type": "string"},
                            "errors": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "field": {"type": "string"},
                                        "code": {"type": "string"},
                                        "message": {"type": "string"},
                                    },
                                },
                            },
                        },
                    }
                }
            },
        }
    }
    document["security"] = [{"bearer": []}]
    return document


def tenant_document(
    static: dict[str, Any], ct: CompiledTenant, actor: Any, language: str = "en"
) -> dict[str, Any]:
    """The OpenAPI of a tenant at its current metadata version, as `actor` may use it:
    objects it cannot read and fields hidden from it are absent."""
    document = copy.deepcopy(static)
    document["info"]["version"] = f"{__version__}+metadata.{ct.version}"
    schemas = document["components"].setdefault("schemas", {})
    object_paths: dict[str, Any] = {}
    for obj in ct.model.objects:
        shown = visible_definition(ct, actor, obj)
        if shown is None:
            continue
        editable = visible_definition(ct, actor, obj, writable=True) or shown
        label = label_text(obj.label, language, obj.api_name)
        schemas[_schema_name(obj.api_name)] = object_schema(shown, mode="read", language=language)
        schemas[_schema_name(obj.api_name, "Create")] = object_schema(
            editable, mode="create", language=language
        )
        schemas[_schema_name(obj.api_name, "Update")] = object_schema(
            editable, mode="update", language=language
        )
        object_paths.update(_object_paths(obj.api_name, label))
    # The tenant's own objects first: they are what a reader of these docs came for.
    document["paths"] = object_paths | document["paths"]
    return document
