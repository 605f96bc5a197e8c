"""The README keeps its promises: the tour runs word for word, the settings table is whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metacrm.platform.settings import Settings
from tests.doc_runner import DocsRun, make_run_command

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_five_minute_tour_runs_word_for_word(docs: DocsRun) -> None:
    docs.result("README.md")
    if docs.tour is None:
        pytest.skip(docs.tour_skipped)
    out = docs.tour
    assert '"op":"create_object"' in out
    assert '"op":"add_field"' in out
    assert '"title":"Printer on fire","priority":"high","account.name":"Acme Robotics"' in out
    assert '"field":"title","code":"required"' in out
    assert '"field":"priority","code":"picklist-value"' in out
    assert '"destructive":true' in out


def test_quick_start_is_two_commands_and_make_run_uses_the_defaults() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S)
    assert block is not None
    assert [line.split("#")[0].strip() for line in block.group(1).splitlines()] == [
        "make run",
        "make test",
    ]
    # `make run` names no data directory: it serves the one every command defaults to.
    assert make_run_command()[3:] == ["serve", "--demo"]
    assert f"SQLite in {Settings.model_fields['data_dir'].default}/" in quick


def test_configuration_table_lists_every_setting_with_its_default() -> None:
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `METACRM_([A-Z_]+)` \| (.*?) \| (.*?) \|$", text, re.M)
    listed = {name.lower(): (default, meaning) for name, default, meaning in rows}
    assert set(listed) == set(Settings.model_fields)
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else f"`{info.default}`"
        assert listed[name] == (default, info.description), name
