"""The dashboard's "Next shift" panel in a real headless Chromium against a real gateway, with a forecast set in Redis.

The set is planted as the worker writes it (tests/gateway/test_forecast_api.py); the page's numbers must be the set's,
a new set must reach the page by its forecast frame, and a commander must see only what lies in its zone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.gateway import test_overview
from tests.gateway.live import FAR, IN_LANSDALE, INSIDE_AREA, OUTSIDE_AREA, token
from tests.gateway.test_dashboard import browser, console_errors, css, log_in, screenshot, wait_for
from tests.gateway.test_forecast_api import COMMANDER, entry, forecast_set, plant_forecast

__all__ = ["browser"]  # the fixture, imported so this module's tests can ask for it

pytestmark = pytest.mark.stack
ogw = test_overview.ogw


def text(driver, selector: str) -> str:
    """The text of the first element matching ``selector``, shown or not (the panel may be below the fold)."""
    return driver.execute_script("const n = document.querySelector(arguments[0]); return n ? n.textContent : null", selector)


def open_panel(driver) -> None:
    """Open the panel (closed, it is its one line: the shift's total in words) by a click on its summary."""
    summary = css(driver, "#forecast-toggle > summary")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    wait_for(driver, "the panel open", lambda d: css(d, "#forecast-toggle[open]"))


def shift_words(f: dict) -> str:
    """What the panel says of a shift forecast F (the gateway's profile is in UTC; a past day is dated)."""
    a, b = (datetime.fromtimestamp(t, UTC) for t in (f["start"], f["end"]))
    span = f"{a:%Y-%m-%d %H:%M}–{b:%H:%M}"
    return f"About {round(f['mean'])} calls expected {span}, likely {f['lo80']}–{f['hi80']}."


def test_supervisor_reads_the_next_shift_from_the_set_toggles_its_hot_spots_and_adopts_an_allocation(ogw, prefix, r, browser, tmp_path):
    fs = forecast_set()
    plant_forecast(r, prefix, fs)
    test_overview.plant_scenario(r, prefix)
    driver = browser("forecast-supervisor")
    log_in(driver, ogw, token("supervisor", subject="sup-forecast"))

    jurisdiction = fs["areas"]["jurisdiction"]["by_horizon"]["8"]
    wait_for(driver, "the jurisdiction's shift", lambda d: text(d, "#forecast-summary") == shift_words(jurisdiction))
    open_panel(driver)
    assert text(driver, "#forecast-bands") == (
        f"8 times in 10 between {jurisdiction['lo80']} and {jurisdiction['hi80']}; "
        f"19 times in 20 between {jurisdiction['lo95']} and {jurisdiction['hi95']}."
    )
    assert css(driver, "#forecast-chart[data-hours='8'] svg polygon.band95") and css(driver, "#forecast-chart svg polygon.band80")
    hours = driver.execute_script("return [...document.querySelectorAll('#forecast-hours tbody tr')].map((r) => r.cells[1].textContent)")
    assert hours == [str(round(f["mean"] * 10) / 10).removesuffix(".0") for f in fs["areas"]["jurisdiction"]["hourly"]], hours
    monitor = driver.execute_script("return [...document.querySelectorAll('#forecast-monitor tbody tr')].map((r) => r.textContent)")
    assert monitor == [
        "the jurisdiction, next 8 h1214.183 % (aim 80 %)95 % (aim 95 %)",
        "res-6 areas, next 8 h122.279 % (aim 80 %)94 % (aim 95 %)",
    ]

    options = css(driver, "#forecast-area option")
    assert [o.text for o in options] == ["Test County", INSIDE_AREA, OUTSIDE_AREA], [o.text for o in options]
    Select(css(driver, "#forecast-area")[0]).select_by_visible_text(INSIDE_AREA)
    lansdale = fs["areas"][f"area:{INSIDE_AREA}"]["by_horizon"]["8"]
    wait_for(driver, "Lansdale's shift", lambda d: text(d, "#forecast-summary") == shift_words(lansdale))

    button = css(driver, "#forecast-layer")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait_for(driver, "the hot spots on the map", lambda d: css(d, "#map[data-forecast-cells='2']"))
    assert css(driver, f"#map path.forecast-hot.flag-halfpc[data-cell='{IN_LANSDALE}']")
    assert css(driver, f"#map path.forecast-hot.flag-1pc[data-cell='{FAR}']")
    assert button.get_attribute("aria-pressed") == "true" and "top 0.5 %" in text(driver, "#legend")

    form = css(driver, "#allocation-form")[0]
    form.find_element(By.NAME, "units").send_keys("8")
    form.find_element(By.CSS_SELECTOR, "button[type='submit']").click()
    wait_for(driver, "the recommendation", lambda d: css(d, "#allocation-table:not([hidden]) tbody tr"))
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#allocation-table tbody tr')]"
        ".map((r) => [r.dataset.key, r.querySelector('.units').textContent])"
    )
    assert rows == [[f"area:{INSIDE_AREA}", "6"], [f"area:{OUTSIDE_AREA}", "2"]], rows
    assert text(driver, "#allocation-table tbody tr .why").startswith(f"{INSIDE_AREA}: 6 of 8 units (75 %). Forecast about 24 calls")
    assert "not configured" in text(driver, "#allocation-skew tbody")
    css(driver, "#allocation-adopt")[0].click()
    wait_for(driver, "the adoption", lambda d: "by sup-forecast" in text(d, "#allocation-adopted"))
    assert json.loads(r.get(f"{prefix}:allocation"))["units_by_area"] == {f"area:{INSIDE_AREA}": 6, f"area:{OUTSIDE_AREA}": 2}
    driver.execute_script("document.querySelector('#forecast-panel').scrollIntoView()")
    driver.execute_script("document.querySelector('#forecast-toggle').scrollTop = 0")
    screenshot(driver, "dashboard-next-shift", tmp_path)

    # a new set reaches the page by its forecast frame, the chosen area kept
    newer = forecast_set(fs["issued"] + 900)
    cells = newer["areas"][f"area:{INSIDE_AREA}"]["cells"]
    newer["areas"][f"area:{INSIDE_AREA}"] = entry("area", INSIDE_AREA, cells, 5.0, fs["issued"] + 900)
    version = plant_forecast(r, prefix, newer)
    wait_for(driver, "the new set", lambda d: css(d, f"#forecast-panel[data-version='{version}']"))
    assert all(o.is_enabled() for o in options), "the same areas: the options are kept, not drawn again"
    assert text(driver, "#forecast-summary") == shift_words(newer["areas"][f"area:{INSIDE_AREA}"]["by_horizon"]["8"])
    assert not console_errors(driver)


def test_commander_sees_only_the_areas_and_hot_spots_in_its_zone_and_no_allocation(ogw, prefix, r, browser):
    fs = forecast_set()
    plant_forecast(r, prefix, fs)
    driver = browser("forecast-commander")
    log_in(driver, ogw, token("commander", subject="cmd-forecast", **COMMANDER))
    lansdale = fs["areas"][f"area:{INSIDE_AREA}"]["by_horizon"]["8"]
    wait_for(driver, "its area's shift", lambda d: text(d, "#forecast-summary") == shift_words(lansdale))
    open_panel(driver)
    options = [o.get_attribute("textContent") for o in css(driver, "#forecast-area option")]
    assert options == [INSIDE_AREA], options
    page = driver.execute_script("return document.querySelector('#forecast-panel').textContent")
    assert OUTSIDE_AREA not in page and "Test County" not in page and "the jurisdiction" not in page
    assert not css(driver, "#allocation")[0].is_displayed()
    css(driver, "#forecast-layer")[0].click()
    wait_for(driver, "its hot spot on the map", lambda d: css(d, "#map[data-forecast-cells='1']"))
    assert css(driver, f"#map path.forecast-hot[data-cell='{IN_LANSDALE}']")
    assert not css(driver, f"#map path.forecast-hot[data-cell='{FAR}']")
    assert not console_errors(driver)
