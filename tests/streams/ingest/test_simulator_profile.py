"""The simulator's --profile: the rhythm is laid on the profile's local clock, and the calls move to its place."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from streams.ingest.simulator import DEFAULT_CENTRE_LAT, DEFAULT_CENTRE_LNG, main, profile_place
from streams.jurisdiction import load_profile
from tests.conftest import ROOT

MONTGOMERY = ROOT / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"


def profile(tmp_path: Path, zone: str, box: str) -> Path:
    path = tmp_path / f"{zone.replace('/', '-')}.toml"
    path.write_text(f'id = "sim"\ntimezone = "{zone}"\n[boundary]\nbox = "{box}"\n')
    return path


def simulate(tmp_path: Path, profile_path: Path | None, name: str) -> list[dict[str, str]]:
    out = tmp_path / f"{name}.csv"
    args = ["--out", str(out), "--days", "14", "--seed", "3", "--no-progress"]
    assert main([*args, "--profile", str(profile_path)] if profile_path else args) == 0
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def hours(rows: list[dict[str, str]], zone: str) -> Counter[int]:
    tz = ZoneInfo(zone)
    return Counter(datetime.fromisoformat(r["received_at"].replace("Z", "+00:00")).astimezone(tz).hour for r in rows)


def test_a_los_angeles_profile_gives_the_same_local_rhythm_as_new_york(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Same seed, two zones: the local-hour counts are identical, the busiest local hour is the same, the UTC hours move by 3."""
    ny = simulate(tmp_path, profile(tmp_path, "America/New_York", "39.95,-75.70,40.45,-75.00"), "ny")
    la = simulate(tmp_path, profile(tmp_path, "America/Los_Angeles", "33.70,-118.67,34.34,-118.16"), "la")
    capsys.readouterr()
    ny_local, la_local = hours(ny, "America/New_York"), hours(la, "America/Los_Angeles")
    assert len(ny) == len(la) > 14 * 300
    assert ny_local == la_local
    busiest = max(ny_local, key=lambda h: ny_local[h])
    assert 12 <= busiest <= 18  # the calibrated afternoon peak
    ny_utc, la_utc = hours(ny, "UTC"), hours(la, "UTC")
    assert max(la_utc, key=lambda h: la_utc[h]) == (max(ny_utc, key=lambda h: ny_utc[h]) + 3) % 24
    # the first call of each run is in the first local hours of 2024-01-01 in its own zone
    first_la = datetime.fromisoformat(la[0]["received_at"].replace("Z", "+00:00")).astimezone(ZoneInfo("America/Los_Angeles"))
    assert first_la.date().isoformat() == "2024-01-01"
    # and the calls are laid around Los Angeles, not Montgomery
    lats = [float(r["lat"]) for r in la]
    assert 33.5 < sum(lats) / len(lats) < 34.5


def test_without_a_profile_it_simulates_montgomery_in_new_york_as_the_shipped_profile_says(tmp_path: Path) -> None:
    default = simulate(tmp_path, None, "default")
    assert hours(default, "America/New_York") == hours(simulate(tmp_path, MONTGOMERY, "montgomery"), "America/New_York")
    lats = [float(r["lat"]) for r in default]
    assert abs(sum(lats) / len(lats) - DEFAULT_CENTRE_LAT) < 0.1


def test_profile_place_takes_the_zone_and_a_disc_of_the_boundary_area() -> None:
    place = profile_place(load_profile(MONTGOMERY))
    assert place["timezone"] == "America/New_York"
    # the county's centre and a disc of its area (about 1,200 km^2: some 19.7 km), near the calibrated defaults
    assert abs(place["centre_lat"] - DEFAULT_CENTRE_LAT) < 0.1 and abs(place["centre_lng"] - DEFAULT_CENTRE_LNG) < 0.1
    assert 18.0 < place["radius_km"] < 21.0


def test_a_bad_profile_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "x"\ntimezone = "Moon/Tranquility"\n')
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "x.csv"), "--profile", str(bad)])
    assert exc.value.code == 2
    assert "--profile: " in (err := capsys.readouterr().err) and "timezone = 'Moon/Tranquility'" in err
