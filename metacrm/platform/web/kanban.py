"""Kanban boards: records in columns by a picklist, moved through the stage endpoint."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/app", include_in_schema=False)
