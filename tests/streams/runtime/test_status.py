"""``python -m streams.runtime.status``: places named by the jurisdiction's areas, the watermark on its clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.runtime import status

MONTGOMERY = Path(__file__).resolve().parents[3] / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"
NORRISTOWN = "882aac95d1fffff"


def test_render_names_each_cell_by_its_area_and_shows_the_local_watermark() -> None:
    text = status.render(
        {
            "watermark": "2016-01-23T21:00:00Z",
            "watermark_local": "2016-01-23 16:00:00 EST",
            "jurisdiction": {"id": "montgomery-pa", "name": "Montgomery County, PA", "timezone": "America/New_York"},
            "metrics": {},
            "hot_cells": {"15m": [{"cell": NORRISTOWN, "area": "Norristown", "calls": 7, "categories": {"TRAFFIC": 7}}]},
            "open_incidents": [{"cell": NORRISTOWN, "area": "Norristown", "open": 3}, {"cell": "882aac9409fffff", "area": None, "open": 1}],
        }
    )
    assert "event-time watermark: 2016-01-23T21:00:00Z (2016-01-23 16:00:00 EST, Montgomery County, PA)" in text
    assert f"Norristown ({NORRISTOWN})      7 calls  (TRAFFIC 7)" in text
    assert "\n  882aac9409fffff                   1" in text, "an unnamed cell shows as its id, aligned"


@pytest.mark.stack
def test_gather_status_reads_the_profile_that_wf_profile_names(settings, monkeypatch) -> None:
    monkeypatch.setenv("WF_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("WF_REDIS_PREFIX", settings.redis_prefix)
    monkeypatch.setenv("WF_PROFILE", str(MONTGOMERY))
    out = asyncio.run(status.gather_status(top=3))
    assert out["jurisdiction"] == {"id": "montgomery-pa", "name": "Montgomery County, PA", "timezone": "America/New_York"}
    monkeypatch.setenv("WF_PROFILE", str(MONTGOMERY.with_name("missing.toml")))
    with pytest.raises(ValueError, match="WF_PROFILE"):
        asyncio.run(status.gather_status(top=3))


def test_a_profile_that_cannot_be_read_is_one_line_naming_wf_profile(monkeypatch, capsys) -> None:
    monkeypatch.setenv("WF_PROFILE", "/nonexistent/jurisdiction.toml")
    assert status.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("status: WF_PROFILE:") and "/nonexistent/jurisdiction.toml" in err and "Traceback" not in err
