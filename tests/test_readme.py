"""The README keeps its promises: the tour runs word for word, the settings table is whole."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metacrm.platform.settings import Settings
from tests.platform.test_processes import _free_port, _wait_ready

README = Path(__file__).resolve().parent.parent / "README.md"


def _tour() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Five-minute tour", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl")
def test_five_minute_tour_runs_word_for_word(tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / ".data"
    env = os.environ | {"METACRM_DATA_DIR": str(data)}
    env.pop("METACRM_DEMO_PASSWORD", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "metacrm.platform.cli", "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}", server)
        script = _tour().replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stderr:
            server.stderr.close()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"op":"create_object"' in out
    assert '"op":"add_field"' in out
    assert '"title":"Printer on fire","priority":"high","account.name":"Acme Robotics"' in out
    assert '"field":"title","code":"required"' in out
    assert '"field":"priority","code":"picklist-value"' in out
    assert '"destructive":true' in out


def test_configuration_table_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `METACRM_([A-Z_]+)` \|", text, re.M))
    assert listed == {name.upper() for name in Settings.model_fields}
