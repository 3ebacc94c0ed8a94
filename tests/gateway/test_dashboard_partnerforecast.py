"""A partner's dashboard shows "What to expect at your places": its forecast, made from its released numbers only.

A real gateway and Redis (tests/gateway/live.py), headless Chromium (tests/gateway/test_dashboard.py). Calls are
planted at Lansdale station in the hour after the newest released one, on each of the three previous days (4, 5 and
6 calls), none on the four days before them (withheld: 0 to 2 each), so over the 7 days released the hour is
usually 2-4 calls (15 to 23 calls over 7 days); nothing at the other stations (fewer than 3).
"""

from __future__ import annotations

import re
import time

import pytest

from tests.gateway.live import IN_LANSDALE, token
from tests.gateway.test_dashboard import browser, console_errors, css, log_in, wait_for  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.stack

SETTLE_S = 120


def test_a_partner_reads_what_to_expect_at_its_places_from_its_released_numbers(gw, prefix, r, browser):  # noqa: F811
    """The section lists each of its places with the next hours' ranges in whole calls, says which days it is made
    from, and names no cell; a supervisor's page has no such section."""
    now = time.time()
    after = (int((now - SETTLE_S) // 3600)) * 3600  # the end of the newest released hour: the first hour forecast
    for day, n in ((1, 4), (2, 5), (3, 6)):
        minute = (after - day * 86400) // 60 + 10
        r.hset(f"{prefix}:b:{minute}", mapping={f"{IN_LANSDALE}|EMS": n, f"{IN_LANSDALE}|ALL": n})
    r.set(f"{prefix}:wm:call:0", now)
    partner = browser("partner")
    log_in(partner, gw, token("transit", agreement="septa", agency="SEPTA", subject="septa-desk"))
    section = "#partner-forecast"
    wait_for(partner, "the partner's forecast section", lambda d: css(d, section)[0].is_displayed())
    assert css(partner, "#partner-forecast-title")[0].text == "What to expect at your places"
    places = [s.text.split(":")[0] for s in css(partner, "#partner-forecast-places summary .place")]
    # its units: zones that share a cell are one place (Glenside and Jenkintown-Wyncote)
    assert "Lansdale station" in places and "Glenside station and Jenkintown-Wyncote station" in places and len(places) == 5, places
    entries = css(partner, "#partner-forecast-places details.partner-forecast-place")
    assert len(entries) == 5 and not any(e.get_attribute("open") for e in entries), "five places: each folded, its next hour shown"
    lansdale = entries[places.index("Lansdale station")]
    assert lansdale.find_elements("css selector", "summary")[0].text == "Lansdale station: 2–4 calls next"
    lansdale.find_elements("css selector", "summary")[0].click()
    first = wait_for(
        partner, "Lansdale's hours", lambda d: [li for li in lansdale.find_elements("css selector", "li") if li.is_displayed()]
    )[0]
    assert len(lansdale.find_elements("css selector", "li")) == 8, "the next 8 hours"
    assert re.search(r"\d\d:00–\d\d:00", first.find_elements("css selector", ".when")[0].text)
    assert first.find_elements("css selector", ".range")[0].text == "2–4 calls"
    title = first.get_attribute("title")
    assert "usually 2-4 calls between" in title and "on the previous 7 days" in title and "between 0 and 6" in title, title
    other = entries[(places.index("Lansdale station") + 1) % len(places)]
    assert other.find_elements("css selector", "summary")[0].text.endswith(": fewer than 3 next")
    note = css(partner, "#partner-forecast-note")[0].text
    assert note.startswith("Made only from the numbers released to you") and "counts as anything from 0 to 2" in note
    assert not re.search(r"\b8[0-9a-f]{14}\b", css(partner, section)[0].text), "a cell in the partner's forecast"
    assert console_errors(partner) == []

    supervisor = browser("supervisor")
    log_in(supervisor, gw, token("supervisor"))
    assert not css(supervisor, section)[0].is_displayed()
