"""The approval inbox: items waiting for the user and their delegators, decided in place."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/app", include_in_schema=False)
