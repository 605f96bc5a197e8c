"""Create and edit forms drawn from the form document, with live field rules."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/app", include_in_schema=False)
