"""SLA metadata: business calendars (hours, holidays) and service targets per record.

(Stub: the SLA helper completes it.)
"""

from __future__ import annotations

from metacrm.metadata.base import ApiName, Label, Strict


class BusinessCalendar(Strict):
    api_name: ApiName
    label: Label | None = None


class Sla(Strict):
    api_name: ApiName
    object: ApiName
    label: Label | None = None
    active: bool = True
