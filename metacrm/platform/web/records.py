"""The record page: layout, stage path, related lists, timeline and actions; customer 360."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/app", include_in_schema=False)
