"""Automation rule metadata: a trigger, a condition and ordered actions.

(Stub: the automation-rules helper completes it.)
"""

from __future__ import annotations

from metacrm.metadata.base import ApiName, Label, Strict


class AutomationRule(Strict):
    api_name: ApiName
    object: ApiName
    label: Label | None = None
    active: bool = True
