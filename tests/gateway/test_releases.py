"""Partners' released tables (``ReleaseBook``) against real Redis: a week of windows, each frozen while listed."""

from __future__ import annotations

import asyncio

import h3
import pytest

from gateway.disclosure import Plan, Unit
from gateway.releases import ReleaseBook
from gateway.store import Store
from streams.counting.keys import Keys
from tests.gateway.live import REDIS_URL, token

pytestmark = pytest.mark.stack

CELL = h3.latlng_to_cell(40.24, -75.28, 8)
PLAN = Plan("frozen", (Unit("station", "Station", ("station",), frozenset({CELL})),), window_min=60, k=3, history_h=168)
#: a watermark 30 s past an hour's end: the newest window (it ended 120 s ago less 30) has not settled yet
WM = 1_795_996_800.0 + 30.0


def test_every_listed_window_of_a_week_is_served_and_stays_as_first_released(prefix, r):
    """At 30 s past the hour (settle 120 s) a week's history is 168 windows from 169 h back; the oldest is listed,
    so it is served and kept: before the fix it was deleted as soon as it was stored (167 served; the next read
    computed it again from the counts, which a late call had changed)."""
    keys = Keys(prefix)
    oldest = WM - 30 - 169 * 3600  # the start of the oldest listed window, an hour boundary
    assert oldest % 3600 == 0
    for m in range(int(oldest // 60), int(oldest // 60) + 60, 7):  # 9 calls in the oldest window
        r.hincrby(keys.bucket(m), f"{CELL}|EMS", 1)

    async def go():
        st = Store.from_url(REDIS_URL, prefix, 4)
        try:
            first = await ReleaseBook(st, 120.0).windows(PLAN, WM)
            r.hincrby(keys.bucket(int(oldest // 60) + 1), f"{CELL}|EMS", 5)  # a late call counted afterwards
            again = await ReleaseBook(st, 120.0).windows(PLAN, WM)  # a second gateway (no cache)
            return first, again
        finally:
            await st.close()

    first, again = asyncio.run(go())
    assert len(first) == 168 and first[0].start == oldest and first[-1].start == WM - 30 - 2 * 3600
    assert first[0].values == {"station": {"all": 9}}
    assert again == first
    (table,) = r.keys(f"{prefix}:released:frozen:*:60")
    assert len(r.hkeys(table)) == 168


@pytest.mark.parametrize("past_the_hour_s", [30.0, 1800.0])
def test_a_partner_reads_a_week_of_windows_and_one_hour_at_any_minute(gw, prefix, r, past_the_hour_s):
    """/api/released?hours=168 is 168 windows and ?hours=1 the newest settled one, also within the settling time after
    an hour (the clean-clone runs on 20e1893 and 21179f5 got 167 there: the read began a window short)."""
    wm = 1_795_996_800.0 + past_the_hour_s
    r.set(f"{prefix}:wm:call:0", wm)
    tok = token("transit", agreement="septa", agency="SEPTA", subject="week-reader")
    newest = (wm - 120) // 3600 * 3600 - 3600  # the newest settled window's start
    status, week = gw.get_json("/api/released?hours=168", tok)
    assert status == 200 and len(week["windows"]) == 168, len(week["windows"])
    assert week["windows"][0]["start"] == newest - 167 * 3600 and week["windows"][-1]["start"] == newest
    status, hour = gw.get_json("/api/released?hours=1", tok)
    assert status == 200 and [w["start"] for w in hour["windows"]] == [newest]
