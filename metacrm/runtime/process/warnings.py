"""Warnings about stage rules that are valid but likely wrong (stages no move reaches)."""

from __future__ import annotations

from metacrm.errors import FieldError
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.process import StageRule


def unreachable_stages(rule: StageRule) -> list[str]:
    """Stages no path from an initial stage reaches (a warning, not an error)."""
    seen: set[str] = set()
    stack = [s for s in rule.initial_stages() if rule.stage(s) is not None]
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        stage = rule.stage(value)
        following = [v for v in rule.allowed_next(value) if rule.stage(v) is not None]
        if stage is not None and stage.allow_back:
            following += [s.value for s in rule.stages[: rule.index(value)]]
        stack += following
    return [s.value for s in rule.stages if s.value not in seen]


def warnings(model: MetadataModel) -> list[FieldError]:
    return [
        FieldError(
            f"stage_rules/{rule.api_name}/stages/{value}",
            "unreachable",
            f"no allowed move reaches {value!r} from {', '.join(rule.initial_stages())}",
        )
        for rule in model.stage_rules
        for value in unreachable_stages(rule)
    ]
