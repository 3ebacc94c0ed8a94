"""The dashboard's pure ES modules (gateway/static/js) under Node's own test runner: tests/gateway/js/*.test.mjs.

The page has no build step and no npm dependency; these modules take no DOM, so Node runs them as the browser
loads them. The browser tests (test_dashboard.py) check the page as a whole.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "js"
UNITS = sorted(HERE.glob("*.test.mjs"))


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_dashboard_module(path: Path) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for the dashboard's unit tests: apt-get install nodejs (infra/setup.sh does)"
    # TZ: the modules must show the jurisdiction's zone whatever the machine's
    proc = subprocess.run([node, "--test", str(path)], capture_output=True, text=True, timeout=120, env={"TZ": "Asia/Tokyo"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_every_unit_file_is_collected() -> None:
    assert [p.name for p in UNITS] == sorted(p.name for p in HERE.iterdir() if p.name.endswith(".mjs")), "name them *.test.mjs"
    assert UNITS, f"no dashboard unit tests under {HERE}"
