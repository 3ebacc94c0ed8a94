"""A shortened evaluation (detectors.evaluation) on the seeded simulator, and the command that writes it (bench/evaluate.py).

Sixty simulated days (about 23,000 calls), a week of warm-up, 52 injected
surges on 26 days (two a day at most) and false alerts counted on the other
ordinary days. The bounds are
what the detector has to keep: they hold with room to spare on this seed
(measured: 0.04 false alerts a day, every 10-call surge in a cell and its
ring found, all of them within 15 minutes, POD 0.83 at 5 calls).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.evaluation import Calls, evaluate
from streams.ingest.history import read_history
from streams.ingest.simulator import Simulator, write_csv
from tests.conftest import ROOT


def simulated(path: Path, days: float, seed: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        write_csv(Simulator(seed=seed, days=days).calls(), fh)
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    path = simulated(tmp_path_factory.mktemp("evaluation") / "simulated.csv", days=60, seed=3)
    history, skipped = read_history(path, progress=False)
    return evaluate(
        Calls.from_history(history), data=str(path), skipped=skipped, injections=60, seed=1, warmup_days=7, per_day=2, sweep=(),
        timezone="America/New_York",  # the simulator's
    )  # fmt: skip


def test_the_detector_meets_the_targets_on_the_simulator(results):
    ours = results["table"][0]
    assert ours["method"] == "surge-poisson-scan"
    assert ours["false_alerts_per_day"] <= 0.5
    assert ours["headline_pod"] >= 0.9  # 10 extra calls within 60 minutes in a cell and its ring
    assert ours["headline_delay_median_min"] <= 15
    assert ours["pod_by_size"]["20"] == 1.0
    assert ours["pod_by_size"]["5"] >= 0.6


def test_the_baselines_are_tuned_to_no_more_false_alerts_and_ears_c3_is_slower(results):
    ours, *baselines = results["table"]
    names = [b["method"] for b in baselines]
    assert names == ["EARS C1", "EARS C2", "EARS C3", "EARS C3 (incidents)", "fixed threshold"]
    for b in baselines:
        assert b["false_alerts_per_day"] <= ours["false_alerts_per_day"] + 1e-9
    c3 = baselines[2]
    assert ours["headline_pod_15min"] > c3["headline_pod_15min"]
    assert ours["pod_all"] >= c3["pod_all"]


def test_the_results_list_every_injection_and_no_real_event_on_the_simulator(results):
    assert results["injections"] == len(results["injection_list"]) >= 50
    assert results["calls"] > 20_000 and results["skipped_rows"] == {}
    assert results["real_events"]["surges"] == []  # the simulator has no known real event


def test_the_command_writes_the_results_and_the_plot(tmp_path):
    """bench/evaluate.py on a small simulated file: its report, results.json and roc.png (a smaller run than the fixture's)."""
    path = simulated(tmp_path / "small.csv", days=20, seed=4)
    out = tmp_path / "out"
    args = ["--injections", "8", "--seed", "1", "--warmup-days", "5", "--per-day", "2", "--no-sweep", "--workers", "1", "--out", str(out)]
    args += ["--timezone", "America/New_York", "--wide", "3"]
    command = [sys.executable, str(ROOT / "bench" / "evaluate.py"), str(path), *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    saved = json.loads((out / "results.json").read_text())
    assert saved["data"] == str(path) and saved["injections"] == len(saved["injection_list"]) == 8
    assert saved["table"][0]["method"] in run.stdout and f"wrote {out / 'results.json'}" in run.stdout
    assert (out / "roc.png").stat().st_size > 10_000
    # in the zone given, the thresholds calibrated to the default budget, the jurisdiction-wide surges reported
    assert saved["timezone"] == "America/New_York" and saved["thresholds"]["how"] == "calibrated"
    assert saved["calibration"]["budget_per_day"] == 1.0 and len(saved["calibration"]["grid"]) >= 5
    assert saved["wide_surges"] == len(saved["wide_list"]) == 3
    # beside each: the ideal test and the delay bound of any detector watching every minute, longer for smaller rises
    bounds = {key: row["sequential_bound_min"] for key, row in saved["wide"].items()}
    assert all(b > 0 for b in bounds.values()) and "bound" in run.stdout, bounds
    assert "Jurisdiction-wide surges" in run.stdout and "warning" not in run.stderr


def test_the_command_refuses_a_file_too_short_to_evaluate_saying_what_it_needs(tmp_path):
    """A day of calls (the worked example): no table of NaNs, but why, and what to give."""
    example = ROOT / "docs" / "examples"
    command = [sys.executable, str(ROOT / "bench" / "evaluate.py"), str(example / "sf-fire-calls-sample.csv")]
    command += ["--mapping", str(example / "sf-fire.toml"), "--profile", str(example / "sf-jurisdiction.toml"), "--out", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and not (tmp_path / "results.json").exists()
    assert "holds calls on 1 local dates" in run.stderr and "give a month or more of calls" in run.stderr, run.stderr[-2000:]


def test_near_empty_dates_are_relative_to_the_citys_usual_day():
    """A city of 8 calls a day keeps its ordinary dates; a date with one call against hundreds is left out."""
    from datetime import UTC, date, timedelta

    from detectors.evaluation.injection import _excluded_days

    days = [date(2024, 3, 1) + timedelta(days=i) for i in range(10)]
    small = {d: list(range(8)) for d in days}
    assert set(_excluded_days(small, days, UTC)) == {days[0], days[-1]}  # only the partial first and last
    big = {d: list(range(400)) for d in days}
    big[days[4]] = [0]
    excluded = _excluded_days(big, days, UTC)
    assert excluded[days[4]] == "only 1 calls (the median date has 400)" and days[5] not in excluded
