"""The plain sentence of every kind and state of alert (streams.detection.plain), on clocks other than New York's."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from detectors.types import Alert, AlertKind, AlertState
from streams.detection.plain import compared, summarize, with_summary

LA = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")
CELL = "8829a1d7a3fffff"


def _t(tz: ZoneInfo, *args: int) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def _alert(**kw) -> Alert:
    base = dict(
        id="surge:8829a1d7a3fffff:1", kind=AlertKind.SURGE, state=AlertState.OPEN, started_at=_t(LA, 2024, 7, 6, 22, 40),
        at=_t(LA, 2024, 7, 6, 22, 55), cells=(CELL,), window_min=15, observed=9, expected=1.2, score=6.2, p_value=6e-7,
        categories={"EMS": 8, "OTHER": 1}, model="surge-poisson-scan", model_version="1.1",
        reason=f"9 calls (8 incidents) in 15 min in cell {CELL}, 1.2 expected (p = 6e-07)",
    )  # fmt: skip
    base.update(kw)
    return Alert(**base)


def _no_statistics(sentence: str) -> None:
    assert "p =" not in sentence and "score" not in sentence.lower() and "e-0" not in sentence
    assert not re.search(r"\d\.\d", sentence), f"a decimal in a plain sentence: {sentence!r}"


def test_a_local_surge_names_its_area_and_says_how_many_against_the_usual():
    s = summarize(_alert(areas=("Hollywood",)), tz=LA)
    assert s == "Medical calls in Hollywood: 9 in 15 minutes, where about one is usual on a Saturday night"
    assert CELL not in s, "the H3 id stays out when a name exists"
    _no_statistics(s)


def test_names_one_two_or_the_first_two_and_how_many_more():
    two = summarize(_alert(areas=("Hollywood", "Silver Lake")), tz=LA)
    assert two.startswith("Medical calls in Hollywood and Silver Lake: ")
    five = summarize(_alert(areas=("Hollywood", "Silver Lake", "Echo Park", "Los Feliz", "Westlake")), tz=LA)
    assert five.startswith("Medical calls in Hollywood, Silver Lake and 3 more areas: ")
    three = summarize(_alert(areas=("Hollywood", "Silver Lake", "Echo Park")), tz=LA)
    assert three.startswith("Medical calls in Hollywood, Silver Lake and 1 more area: ")


def test_without_names_the_cell_is_the_place():
    s = summarize(_alert(areas=()), tz=LA)
    assert s.startswith(f"Medical calls in one neighbourhood (cell {CELL}): 9 in 15 minutes")


def test_a_jurisdiction_wide_surge_in_berlin_on_a_friday_evening():
    start = _t(BERLIN, 2025, 3, 7, 18, 10)  # a Friday
    alert = _alert(
        id="surge:jurisdiction:1", started_at=start, at=start + 3 * 3600, window_min=180, observed=94, expected=46.2,
        categories={"TRAFFIC": 60, "EMS": 30, "FIRE": 4}, areas=("Mitte", "Pankow"),
    )  # fmt: skip
    assert summarize(alert, tz=BERLIN, jurisdiction="Berlin") == (
        "Traffic calls across Berlin: 94 in 3 hours, about twice the usual 46 for a Friday evening"
    )
    assert summarize(alert, tz=BERLIN).startswith("Traffic calls across the jurisdiction: ")


def test_two_categories_share_the_lead_and_none_gives_plain_calls():
    mixed = summarize(_alert(categories={"EMS": 5, "FIRE": 4, "OTHER": 1}, areas=("Hollywood",)), tz=LA)
    assert mixed.startswith("Medical and Fire calls in Hollywood: ")
    other = summarize(_alert(categories={"OTHER": 7, "EMS": 2}, areas=("Hollywood",)), tz=LA)
    assert other.startswith("Calls in Hollywood: ")
    spread = summarize(_alert(categories={"EMS": 3, "FIRE": 3, "POLICE": 3}, areas=("Hollywood",)), tz=LA)
    assert spread.startswith("Calls in Hollywood: ")


@pytest.mark.parametrize(
    ("observed", "expected", "words"),
    [
        (94, 46.2, "about twice the usual 46"),
        (60, 40.0, "50 % more than the usual 40"),
        (48, 40.0, "20 % more than the usual 40"),
        (44, 40.0, "about the usual 40"),
        (30, 9.6, "three times the usual 10"),
        (50, 6.0, "eight times the usual 6"),
        (300, 12.0, "far more than the usual 12"),
        (41, 40.0, "about the usual 40"),
        (9, 1.2, "where about one is usual"),
        (9, 2.4, "where about two are usual"),
        (4, 0.2, "where fewer than one is usual"),
    ],
)
def test_the_ratio_in_words(observed, expected, words):
    assert compared(observed, expected).startswith(words)


def test_the_small_hours_belong_to_the_night_before_and_the_morning_to_its_day():
    t = _t(LA, 2024, 7, 7, 2, 30)  # Sunday 02:30
    small_hours = _alert(started_at=t, at=t + 900, areas=("Hollywood",))
    assert summarize(small_hours, tz=LA).endswith("on a Saturday night")
    t = _t(LA, 2024, 7, 8, 8, 0)  # Monday
    morning = _alert(started_at=t, at=t + 900, observed=30, expected=9.6, areas=("Hollywood",))
    assert summarize(morning, tz=LA).endswith("three times the usual 10 for a Monday morning")


def test_an_update_says_since_when_on_the_local_clock_and_compares_its_own_window():
    s = summarize(_alert(state=AlertState.UPDATE, areas=("Hollywood",)), tz=LA)
    assert s.endswith("on a Saturday night (since 22:40 PDT)")
    # the next afternoon, a 3-hour window: the usual is that of a Sunday afternoon, and the start is dated
    later = _alert(state=AlertState.UPDATE, at=_t(LA, 2024, 7, 7, 16, 0), window_min=180, observed=50, expected=12.0, areas=("Hollywood",))
    assert summarize(later, tz=LA).endswith("four times the usual 12 for a Sunday afternoon (since Sat 06 Jul 22:40 PDT)")


def test_closed_says_when_it_opened_in_the_zone_and_how_long_it_lasted():
    start = _t(BERLIN, 2025, 1, 10, 19, 37)
    alert = _alert(
        id="surge:jurisdiction:1", state=AlertState.CLOSED, started_at=start, at=start + 11 * 3600 + 20 * 60,
        categories={"TRAFFIC": 9}, window_min=180,
    )  # fmt: skip
    assert summarize(alert, tz=BERLIN, jurisdiction="Berlin") == (
        "Ended: Traffic calls across Berlin are back to usual (opened Fri 10 Jan 19:37 CET, lasted 11 h 20 min)"
    )
    short = dataclasses.replace(alert, at=start + 25 * 60, categories={}, id="surge:x:1", areas=("Mitte",))
    assert summarize(short, tz=BERLIN) == "Ended: calls in Mitte are back to usual (opened 19:37 CET, lasted 25 min)"


def test_feed_outage_open_and_closed():
    start = _t(LA, 2024, 1, 28, 3, 0)
    alert = _alert(
        id="feed_outage:1", kind=AlertKind.FEED_OUTAGE, started_at=start, at=start + 2700, cells=(), window_min=45,
        observed=0, expected=15.3, categories={}, reason="no call for 45 min while 15.3 were expected",
    )  # fmt: skip
    assert summarize(alert, tz=LA) == "No calls received for 45 minutes where about 15 were expected: check the CAD feed"
    closed = dataclasses.replace(alert, state=AlertState.CLOSED, window_min=400)
    assert summarize(closed, tz=LA) == "Feed back: calls are arriving again after 6 h 40 min without any (from 03:00 PST)"


def test_zone_surge_names_the_event_zone():
    start = _t(LA, 2024, 1, 1, 10, 0)  # New Year's Day, a Monday
    alert = _alert(
        id="zone:rose-parade:1", kind=AlertKind.ZONE_SURGE, zone="rose-parade", started_at=start, at=start + 900,
        observed=30, expected=9.6, categories={"EMS": 25, "POLICE": 5}, areas=("Pasadena",),
        reason="30 calls in 15 min in event zone 'Rose Parade', 9.6 expected (p = 1e-06)",
    )  # fmt: skip
    s = summarize(alert, tz=LA)
    assert s == "Medical calls in event zone Rose Parade: 30 in 15 minutes, three times the usual 10 for a Monday morning"
    no_name = dataclasses.replace(alert, reason="closed: no region scored")
    assert "in event zone rose-parade: " in summarize(no_name, tz=LA)
    closed = dataclasses.replace(alert, state=AlertState.CLOSED, at=start + 7200, reason="closed: event zone 'Rose Parade' ended")
    assert (
        summarize(closed, tz=LA) == "Ended: Medical calls in event zone Rose Parade are back to usual (opened 10:00 PST, lasted 2 h 0 min)"
    )


def test_anomaly_reads_the_detectors_sentence_in_words():
    alert = _alert(
        id="anomaly:8629a1d7fffffff:1", kind=AlertKind.ANOMALY, window_min=60, observed=14, expected=11.0, p_value=None,
        categories={"TRAFFIC": 11, "EMS": 3}, areas=("Hollywood",),
        reason="TRAFFIC 79% of calls against a usual 35%; mean dispatch time 540 s against a usual 120 s",
    )  # fmt: skip
    s = summarize(alert, tz=LA)
    assert s == (
        "Unusual mix of calls in Hollywood: Traffic 79% of calls against a usual 35%; "
        "mean dispatch time 9 min against a usual 2 min (14 calls in an hour)"
    )
    closed = dataclasses.replace(alert, state=AlertState.CLOSED, at=alert.started_at + 5400, reason="call mix back to usual (score 0.61)")
    assert (
        summarize(closed, tz=LA) == "Ended: the mix of calls in Hollywood is back to usual (opened Sat 06 Jul 22:40 PDT, lasted 1 h 30 min)"
    )


def test_with_summary_keeps_everything_else_and_travels_in_the_json():
    alert = _alert(areas=("Hollywood",))
    done = with_summary(alert, tz=LA, jurisdiction="Los Angeles")
    assert dataclasses.replace(done, summary="") == alert
    assert done.to_json()["summary"] == summarize(alert, tz=LA) and list(done.to_json())[-1] == "summary"
    assert Alert(**{**done.to_json(), "cells": tuple(done.cells), "areas": tuple(done.areas)}).summary == done.summary
