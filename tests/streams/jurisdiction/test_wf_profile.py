"""WF_PROFILE: the settings load the profile it names, default_profile() without it, and refuse a conflicting WF_JURISDICTION."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.ingest.schema import Jurisdiction
from streams.runtime.settings import SettingsError, load_jurisdiction, load_settings
from tests.conftest import ROOT

MONTGOMERY = str(ROOT / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml")


def test_unset_gives_the_default_profile() -> None:
    s = load_settings({})
    assert s.profile is None
    assert load_jurisdiction(s).id == "unnamed"


def test_wf_profile_loads_the_named_file() -> None:
    s = load_settings({"WF_PROFILE": MONTGOMERY})
    assert s.profile == MONTGOMERY
    p = load_jurisdiction(s)
    assert (p.id, p.timezone) == ("montgomery-pa", "America/New_York")


def test_a_bad_profile_is_a_settings_error_naming_wf_profile(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('id = "x"\ntimezone = "Pacific/Nowhere"\n')
    with pytest.raises(SettingsError, match=r"^WF_PROFILE: .*p\.toml: timezone = 'Pacific/Nowhere': expected an IANA time zone name"):
        load_jurisdiction(load_settings({"WF_PROFILE": str(bad)}))


def test_wf_jurisdiction_fills_a_profile_without_boundary_and_conflicts_with_one(tmp_path: Path) -> None:
    plain = tmp_path / "p.toml"
    plain.write_text('id = "x"\ntimezone = "America/Denver"\n')
    box = "39.9,-105.3,40.1,-105.1"
    p = load_jurisdiction(load_settings({"WF_PROFILE": str(plain), "WF_JURISDICTION": box}))
    assert p.box == Jurisdiction.parse(box) and p.timezone == "America/Denver"
    assert p.contains(40.0, -105.2) and not p.contains(40.5, -105.2)
    assert load_jurisdiction(load_settings({"WF_JURISDICTION": box})).box == Jurisdiction.parse(box)
    with pytest.raises(SettingsError, match=r"WF_JURISDICTION .* and the \[boundary\] of WF_PROFILE .* both set"):
        load_jurisdiction(load_settings({"WF_PROFILE": MONTGOMERY, "WF_JURISDICTION": "39.9,-75.7,40.5,-75.0"}))
