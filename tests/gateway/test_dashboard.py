"""The dashboard in a real headless Chromium against a real gateway: login, live feed, map, acknowledgement, partner scoping."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import h3
import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from detectors.types import AlertState
from tests.gateway import test_overview
from tests.gateway.live import (
    AREA_WORD,
    FAR,
    IN_LANSDALE,
    INSIDE_AREA,
    LANSDALE,
    OUTSIDE_AREA,
    ROOT,
    GatewayProcess,
    make_alert,
    publish,
    token,
    write_profile,
)

pytestmark = pytest.mark.stack
#: a gateway in UTC naming the tests' two areas, with an event zone (tests/gateway/test_overview.py)
ogw = test_overview.ogw

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
SCREENSHOTS = ROOT / "out" / "screenshots"
#: an H3 cell id as the gateway writes them (15 hex digits, mode 1 so the first is 8)
H3_CELL = re.compile(r"\b8[0-9a-f]{14}\b")
WAIT_S = 20
LOS_ANGELES = "America/Los_Angeles"


def new_chromium(profile: Path, extra_args: tuple[str, ...] = (), logging: dict[str, str] | None = None) -> WebDriver:
    """Headless Chromium with :data:`CHROME_ARGS` (and ``extra_args``), its own profile folder, at 1440x900;
    ``logging``: the ``goog:loggingPrefs`` capability (default: the browser's SEVERE messages)."""
    options = Options()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS + extra_args:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", logging or {"browser": "SEVERE"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_window_size(1440, 900)
    return driver


@pytest.fixture
def browser(tmp_path, monkeypatch) -> Iterator[Callable[[str], WebDriver]]:
    """A factory of headless Chromium drivers, each with its own profile; every one is quit at the end."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        raise AssertionError(f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver (infra/setup.sh does)")
    # the driver path is given, so Selenium Manager is skipped; this makes sure it never goes online
    monkeypatch.setenv("SE_OFFLINE", "true")
    drivers: list[WebDriver] = []

    def make(name: str) -> WebDriver:
        driver = new_chromium(tmp_path / f"chrome-{name}")
        drivers.append(driver)
        return driver

    try:
        yield make
    finally:
        for d in drivers:
            d.quit()


def wait_for(driver: WebDriver, what: str, condition: Callable[[WebDriver], object], timeout: float = WAIT_S) -> object:
    """``condition``'s first truthy value; on timeout, fail naming ``what`` and showing the page's state.

    An element the page replaced while ``condition`` read it (stale) is asked for again at the next poll.
    """
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        conn = driver.find_elements(By.CSS_SELECTOR, "#conn-state")
        messages = driver.find_elements(By.CSS_SELECTOR, "#messages")
        raise AssertionError(
            f"waited {timeout} s for {what}; connection: {conn[0].text if conn else '?'!r}; "
            f"messages: {messages[0].text if messages else '?'!r}; console: {console_errors(driver)}"
        ) from None


def console_errors(driver: WebDriver) -> list[str]:
    """Errors the page logged (script errors, refused loads, CSP violations) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def css(driver: WebDriver, selector: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def log_in(driver: WebDriver, gw: GatewayProcess, tok: str) -> None:
    driver.get(f"{gw.base}/#token={tok}")
    wait_for(driver, "the connection state to be live", lambda d: css(d, "#conn-state[data-state='live']"))
    assert "token=" not in driver.current_url, "the token must be removed from the address bar"


def card(alert_id: str) -> str:
    """The selector of an alert's card in the feed."""
    return f".alert-card[data-alert-id='{alert_id}']"


def alert_cell(cell: str) -> str:
    """The selector of a cell drawn on the map and highlighted as part of an open alert."""
    return f"#map svg path.cell.alert[data-cell='{cell}']"


def screenshot(driver: WebDriver, name: str, tmp_path: Path) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save a screenshot to {path}"
    shutil.copyfile(path, SCREENSHOTS / path.name)
    return path


def write_counts(r: redis.Redis, prefix: str) -> dict[str, int]:
    """Calls per res-8 cell in the current minute, as the worker writes them, and the worker's watermark."""
    minute = int(time.time() // 60)
    counts = {IN_LANSDALE: 9, FAR: 6}
    # some activity around both places, so the map has a gradient to show
    for centre, base in ((IN_LANSDALE, 5), (FAR, 3)):
        for ring, cells in enumerate(h3.grid_ring(centre, d) for d in (1, 2)):
            for i, c in enumerate(sorted(cells)):
                counts.setdefault(c, max(1, base - ring * 2 - i % 3))
    r.hset(f"{prefix}:b:{minute}", mapping={f"{c}|ALL": n for c, n in counts.items()})
    r.set(f"{prefix}:wm:call:0", time.time())
    return counts


def write_released_calls(r: redis.Redis, prefix: str, cell: str, by_category: dict[str, int]) -> None:
    """Calls in ``cell`` in the first minute of each of the last three hours, by category as the worker writes them.

    A partner's newest released window is one of these hours whenever the page asks (it moves a couple of minutes
    after each hour); written before any watermark, so no window is released (and frozen) before them.
    """
    hour = int(time.time() // 3600) * 60
    for minute in (hour - 180, hour - 120, hour - 60):
        r.hset(f"{prefix}:b:{minute}", mapping={f"{cell}|{cat}": n for cat, n in by_category.items()})


def test_dashboard_supervisor_acknowledges_and_partner_sees_its_scoped_view(gw, prefix, r, browser, tmp_path):
    """A supervisor sees an alert with its reason and its cell on the map and acknowledges it; a transit partner sees
    the same alert generalized (its place, no cell), its acknowledgement without who or the note, no buttons, nothing
    outside its zone, its place's calls in the newest released hour, and its data-sharing agreement."""
    write_released_calls(r, prefix, IN_LANSDALE, {"TRAFFIC": 7, "EMS": 5})
    sup = browser("supervisor")
    partner = browser("transit")
    log_in(sup, gw, token("supervisor", subject="sup-anna"))
    log_in(partner, gw, token("transit", zones=("septa-lansdale",), agency="SEPTA", subject="septa-desk"))
    assert "sup-anna" in css(sup, "#who")[0].text and "supervisor" in css(sup, "#who")[0].text.lower()
    assert "septa-desk" in css(partner, "#who")[0].text

    counts = write_counts(r, prefix)
    in_zone = sum(counts.get(c, 0) for c in LANSDALE.cells)
    outside = make_alert("surge:pottstown:1", (FAR,), observed=14)
    inside = make_alert("surge:lansdale:1", (IN_LANSDALE,), observed=9, expected=2.0, categories={"TRAFFIC": 7, "EMS": 2})
    inside["summary"] = "Traffic calls in Lansdale: 9 in 15 minutes, where about two are usual on a Friday evening"
    # the partner's stream is in order: once it shows the second alert, it would already show the first
    publish(r, prefix, outside)
    publish(r, prefix, inside)

    # (a) the supervisor: both alerts, each card led by its plain sentence (the detector's reason on a record older
    # than summaries), the statistics behind a closed "Details" toggle, the cell outlined on the map
    here = card(inside["id"])
    wait_for(sup, "the Lansdale alert card", lambda d: css(d, f"{here} .summary"))
    wait_for(sup, "the Pottstown alert card", lambda d: css(d, card(outside["id"])))
    first = css(sup, f"{here} article > :first-child")[0]
    assert "summary" in first.get_attribute("class").split() and first.text == inside["summary"]
    assert css(sup, f"{card(outside['id'])} .summary")[0].text == outside["reason"], "no summary: the reason leads"
    details = css(sup, f"{here} details.stats")[0]
    assert details.get_attribute("open") is None and "p = " not in css(sup, here)[0].text, "statistics hidden at first"
    assert css(sup, f"{here} details.stats .score") and not css(sup, f"{here} .score")[0].is_displayed()
    css(sup, f"{here} details.stats > summary")[0].click()
    wait_for(sup, "the details to open", lambda d: css(d, f"{here} .score")[0].is_displayed())
    assert "(p = " in css(sup, f"{here} details.stats .score")[0].text and "surge-poisson-scan" in details.text
    assert css(sup, f"{here} .reason")[0].text == inside["reason"]
    assert IN_LANSDALE in css(sup, f"{here} .cells")[0].text
    assert "MEDIUM" in css(sup, f"{here} .severity")[0].text  # severity in words, not only colour
    wait_for(sup, f"cell {IN_LANSDALE} highlighted on the map", lambda d: css(d, alert_cell(IN_LANSDALE)))
    wait_for(sup, "the Lansdale zone on the map", lambda d: css(d, "#map svg g.zone[data-zone-id='septa-lansdale'] path"))
    zone_count = f"button.zone[data-zone-id='septa-lansdale'] .count[data-count='{in_zone}']"
    wait_for(sup, f"a live count of {in_zone} for the Lansdale zone", lambda d: css(d, zone_count))

    # (c, first half) the partner: the Lansdale alert only, generalized to its place (no cell), without buttons
    parent = h3.cell_to_parent(IN_LANSDALE, 7)
    wait_for(partner, "the partner's alert card", lambda d: css(d, ".alert-card .reason"))
    cards = css(partner, ".alert-card")
    assert len(cards) == 1, f"the partner must see only the alert in its zone, got {[c.text for c in cards]}"
    partner_id = cards[0].get_attribute("data-alert-id")
    assert partner_id.startswith("a-"), f"partners see an opaque alert id, got {partner_id!r}"
    assert "Lansdale station" in css(partner, ".alert-card .reason")[0].text
    assert "Lansdale station" in css(partner, ".alert-card .places")[0].text
    assert "Your area" in css(partner, ".alert-card .extent")[0].text
    assert parent not in cards[0].text and not H3_CELL.search(cards[0].text), f"the partner's card names a cell: {cards[0].text!r}"
    assert not css(partner, "button.ack") and not css(partner, "button.resolve"), "a transit partner must not get action buttons"
    lansdale_alerted = "#map svg g.zone.alerting[data-zone-id='septa-lansdale'] path"
    wait_for(partner, "the Lansdale zone highlighted on the partner's map", lambda d: css(d, lansdale_alerted))
    assert not css(partner, "#map svg path.cell"), "a partner's map draws no cell"
    # the zone list: the unit's calls in the newest released hour (12 = 7 TRAFFIC + 5 EMS), and the agreement
    released = "#zone-list button.zone.unit[data-unit-id='septa-lansdale'] .count[data-count='12']"
    count_text = wait_for(partner, "Lansdale's released count", lambda d: css(d, released) and css(d, released)[0].text)
    # a window of the previous day (the test run just past midnight) is shown with its date
    assert re.fullmatch(r"12 calls, (\d{4}-\d\d-\d\d )?\d\d:00–\d\d:00", count_text), count_text
    assert css(partner, "#agreement-summary")[0].text.startswith("SEPTA (transit) receives"), "the agreement is shown"
    # and what it withholds and why, in the agreement's own terms (k and window of the default SEPTA agreement)
    rules = [li.text for li in css(partner, "#agreement-rules li")]
    assert any('reads "fewer than 3"' in rule for rule in rules) and any(
        "per hour, shown once the hour has ended" in rule for rule in rules
    ), rules
    assert "not exact locations" in css(partner, ".alert-card .generalized")[0].text

    # (b) the supervisor acknowledges with a note; the action frame comes back and updates the card
    note = "Engine 12 en route; caller at 123 Main St"
    css(sup, f"{here} input.note")[0].send_keys(note)
    css(sup, f"{here} button.ack")[0].click()
    wait_for(sup, "the card to show the acknowledgement", lambda d: css(d, f"{here}[data-status='ack']"))
    status = css(sup, f"{here} .status")[0].text
    assert "Acknowledged by sup-anna" in status and note in status, status
    assert not css(sup, f"{here} button.ack")[0].is_enabled(), "an acknowledged alert cannot be acknowledged again"

    # (c, second half) the partner learns it was acknowledged, not by whom nor with what note
    wait_for(partner, "the partner's card to show the acknowledgement", lambda d: css(d, ".alert-card[data-status='ack']"))
    partner_status = css(partner, ".alert-card .status")[0].text
    assert partner_status.startswith("Acknowledged"), partner_status
    assert "sup-anna" not in partner_status
    everything = partner.page_source + css(partner, "body")[0].text
    for secret in (IN_LANSDALE, FAR, parent, inside["reason"], outside["id"], inside["id"], note, "Main St"):
        assert secret not in everything, f"the partner's page shows {secret!r}"
    assert not H3_CELL.search(everything), f"the partner's page shows a cell id: {H3_CELL.search(everything)[0]}"
    assert len(css(partner, ".alert-card")) == 1

    shots = [screenshot(sup, "dashboard-supervisor", tmp_path), screenshot(partner, "dashboard-transit", tmp_path)]

    # the zone view: choosing a zone subscribes to it, zooms the map and filters the feed; "All zones" undoes it
    css(sup, "#zone-list button.zone[data-zone-id='septa-lansdale']")[0].click()
    wait_for(sup, "the subscription to Lansdale", lambda d: "Lansdale station" in css(d, "#subscription")[0].text)
    wait_for(sup, "the map to zoom to Lansdale", lambda d: css(d, "#map svg g.zone.selected[data-zone-id='septa-lansdale']"))
    assert not css(sup, card(outside["id"]))[0].is_displayed(), "the Pottstown alert is outside the chosen zone"
    assert css(sup, here)[0].is_displayed()
    shots.append(screenshot(sup, "dashboard-supervisor-lansdale", tmp_path))
    css(sup, "#zone-all")[0].click()
    wait_for(sup, "the feed to show every zone again", lambda d: css(d, card(outside["id"]))[0].is_displayed())

    assert all(p.stat().st_size > 10_000 for p in shots), "screenshots look empty"
    for d in (sup, partner):
        errors = console_errors(d)
        assert not errors, f"the page logged errors: {errors}"


def test_dashboard_reconnects_after_a_gateway_restart_and_misses_nothing(gw, prefix, r, browser, tmp_path):
    """When the gateway restarts, the page shows it is reconnecting, then resumes by id: the alert published meanwhile
    appears once, and an acknowledgement made by another supervisor meanwhile updates the card."""
    sup = browser("supervisor")
    log_in(sup, gw, token("supervisor", subject="sup-bo"))
    before = make_alert("surge:before:1", (IN_LANSDALE,))
    publish(r, prefix, before)
    wait_for(sup, "the first alert", lambda d: css(d, card(before["id"])))
    gw.stop()
    wait_for(sup, "the page to say it is reconnecting", lambda d: css(d, "#conn-state[data-state='reconnecting']"))
    assert "1001" in css(sup, "#conn-state")[0].text or "1006" in css(sup, "#conn-state")[0].text
    during = make_alert("surge:during:1", (FAR,))
    publish(r, prefix, during)
    ack = {"alert_id": before["id"], "action": "ack", "by": "sup-cy", "role": "supervisor", "agency": "Montgomery County 911"}
    r.xadd(f"{prefix}:alerts", {"action": json.dumps({**ack, "note": "seen", "at": time.time(), "alert": before})})
    gw.proc = None
    gw.start(tmp_path)
    wait_for(sup, "the alert published while the gateway was down", lambda d: css(d, card(during["id"])), timeout=30)
    wait_for(sup, "the connection to be live again", lambda d: css(d, "#conn-state[data-state='live']"))
    wait_for(sup, "the acknowledgement made meanwhile", lambda d: css(d, f"{card(before['id'])}[data-status='ack']"))
    assert "sup-cy" in css(sup, f"{card(before['id'])} .status")[0].text
    assert len(css(sup, ".alert-card")) == 2, [c.get_attribute("data-alert-id") for c in css(sup, ".alert-card")]


def test_dashboard_refuses_a_bad_token_and_logs_in_with_a_pasted_one(gw, browser):
    """A forged token is refused with the gateway's reason and the login box; a valid token pasted there connects."""
    driver = browser("login")
    driver.get(f"{gw.base}/#token=not.a.token")
    wait_for(driver, "the refusal", lambda d: css(d, "#conn-state[data-state='refused']"))
    assert "401" in css(driver, "#conn-state")[0].text
    assert css(driver, "#login")[0].is_displayed() and not css(driver, "#board")[0].is_displayed()
    css(driver, "#token-input")[0].send_keys(token("supervisor", subject="sup-dee"))
    css(driver, "#login-submit")[0].click()
    wait_for(driver, "the connection state to be live", lambda d: css(d, "#conn-state[data-state='live']"))
    assert "sup-dee" in css(driver, "#who")[0].text


def test_dashboard_draws_configured_map_tiles_under_the_cells(gw, r, prefix, browser, tmp_path):
    """A gateway started with WF_GATEWAY_TILES=<template> gives it in /api/me and the map draws raster tiles (here
    served by the gateway itself) under the cells; a gateway without it draws none, whatever ?tiles= the URL asks."""
    write_counts(r, prefix)
    driver = browser("tiles")
    tok = token("supervisor", subject="sup-tiles")
    template = "/static/favicon.svg?z={z}&x={x}&y={y}"
    tiled = GatewayProcess(prefix, env_extra={"WF_GATEWAY_TILES": template})
    try:
        tiled.start(tmp_path)
        driver.get(f"{tiled.base}/#token={tok}")
        wait_for(driver, "the connection state to be live", lambda d: css(d, "#conn-state[data-state='live']"))
        wait_for(driver, "hot-spot cells on the map", lambda d: css(d, "#map svg path.cell"))
        tiles = css(driver, "#map svg g.tiles image")
        assert tiles, "no tile drawn"
        hrefs = [t.get_attribute("href") for t in tiles]
        assert all(h.startswith("/static/favicon.svg?z=") and "{" not in h for h in hrefs), hrefs[:3]
        z = {int(h.split("z=")[1].split("&")[0]) for h in hrefs}
        assert len(z) == 1 and 8 <= z.pop() <= 16, "one zoom level, about a county's"
    finally:
        tiled.stop()
    driver.get(f"{gw.base}/?tiles={quote(template, safe='')}#token={tok}")
    wait_for(driver, "the connection state to be live", lambda d: css(d, "#conn-state[data-state='live']"))
    wait_for(driver, "hot-spot cells on the map", lambda d: css(d, "#map svg path.cell"))
    assert not css(driver, "#map svg g.tiles image"), "tiles come from the gateway's setting, never from the page's URL"


def test_dashboard_shows_the_jurisdictions_times_and_names_places_whatever_the_browsers_zone(prefix, r, browser, tmp_path):
    """A gateway whose profile is in America/Los_Angeles, read in a browser set to Asia/Tokyo: the header names the
    jurisdiction's zone, an alert's time is the Los Angeles wall time (not Tokyo's), its card lists the worker's area
    names, and the map's tooltip of a cell names the area holding it."""
    write_counts(r, prefix)
    named = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(write_profile(tmp_path, LOS_ANGELES))})
    driver = browser("zone")
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    at = time.time() - 2 * 86400 - 1234.0  # two days ago: the card shows the date as well as the time
    alert = make_alert("surge:zone-test:1", (IN_LANSDALE, FAR), observed=14, at=at)
    alert["areas"] = [OUTSIDE_AREA, INSIDE_AREA]
    try:
        named.start(tmp_path)
        publish(r, prefix, alert)
        log_in(driver, named, token("supervisor", subject="sup-zone"))
        assert driver.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone") == "Asia/Tokyo"
        shown = wait_for(driver, "the alert's card", lambda d: css(d, f"{card(alert['id'])} time.at"))[0]
        la, tokyo = (
            datetime.fromtimestamp(at, zoneinfo.ZoneInfo(z)).strftime("%Y-%m-%d %H:%M:%S") for z in ("America/Los_Angeles", "Asia/Tokyo")
        )
        abbreviation = datetime.fromtimestamp(at, zoneinfo.ZoneInfo(LOS_ANGELES)).strftime("%Z")
        assert shown.text == f"{la} {abbreviation}" and la != tokyo, (shown.text, la, tokyo)
        assert shown.get_attribute("title") == f"{la} {abbreviation} ({LOS_ANGELES})"
        assert LOS_ANGELES in css(driver, "#clock-zone")[0].text
        assert css(driver, f"{card(alert['id'])} .areas")[0].text == f"{OUTSIDE_AREA}, {INSIDE_AREA}"
        tip = wait_for(driver, "the far cell on the map", lambda d: css(d, f"#map svg path.cell[data-cell='{FAR}'] title"))[0]
        assert tip.get_attribute("textContent").startswith(f"{OUTSIDE_AREA} ({FAR}): "), tip.get_attribute("textContent")
        code = css(driver, f"{card(alert['id'])} code.cell-id[data-cell='{FAR}']")[0]
        wait_for(driver, "the far cell's area named in the card", lambda d: code.get_attribute("title") == OUTSIDE_AREA)
        assert not console_errors(driver)
        screenshot(driver, "dashboard-jurisdiction-zone", tmp_path)
    finally:
        named.stop()


def test_dashboard_draws_the_jurisdiction_and_its_areas_under_the_cells_and_each_alert_as_one_outline(prefix, r, browser, tmp_path):
    """With a profile (a boundary box and two named areas): the supervisor's map draws the outline, both areas and
    their names under the cells, an alert over 7 touching cells as one outline (no ring per cell), and a
    jurisdiction-wide alert not outlined but named in the legend; a transit partner's map draws the outline and no
    area (its /api/places has none), and no area's name anywhere on the page."""
    from tests.gateway.test_places_api import write_bounded_profile

    write_counts(r, prefix)
    named = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(write_bounded_profile(tmp_path))})
    sup = browser("places-sup")
    sup.set_window_size(1440, 1000)  # the test's areas are small: named once each covers 2,000 px² (js/places.js)
    partner = browser("places-partner")
    region = (FAR, *sorted(h3.grid_ring(FAR, 1)))
    local = make_alert("surge:places-map:1", region, observed=20)
    wide = make_alert("surge:jurisdiction:places-map:2", (IN_LANSDALE, FAR), observed=40)
    try:
        named.start(tmp_path)
        publish(r, prefix, local)
        publish(r, prefix, wide)
        log_in(sup, named, token("supervisor", subject="sup-places-map"))
        wait_for(sup, "the outline of the jurisdiction", lambda d: css(d, "#map svg g.places path.boundary"))
        wait_for(sup, "the named areas", lambda d: len(css(d, "#map svg g.places path.area")) == 2)
        areas = css(sup, "#map svg g.places path.area")
        assert {a.get_attribute("data-area") for a in areas} == {INSIDE_AREA, OUTSIDE_AREA}
        wait_for(sup, "the alert's cells", lambda d: len(css(d, "#map svg path.cell.alert")) >= len(region))
        outline = wait_for(sup, "the alert's outline", lambda d: css(d, "#map svg path.alert-outline"))
        assert [o.get_attribute("data-alert-id") for o in outline] == [local["id"]], "one outline, none for the wide alert"
        assert outline[0].get_attribute("d").count("M") == 1, "the 7 touching cells make one ring"
        assert len(css(sup, "#map svg circle.cell-marker")) <= 1, "at most one ring per alert, never one per cell"
        layers = [g.get_attribute("class") for g in css(sup, "#map svg > g")]
        assert layers.index("places") < layers.index("cells") < layers.index("alert-regions"), layers
        drawn = json.loads(css(sup, "#map")[0].get_attribute("data-places"))
        assert drawn["outline"] == 1 and drawn["areas"] == 2 and drawn["labels"], drawn
        texts = [t.get_attribute("textContent") for t in css(sup, "#map svg text.area-label")]
        assert texts == drawn["labels"] and set(texts) <= {INSIDE_AREA, OUTSIDE_AREA}, texts
        legend = wait_for(sup, "the wide alert in the legend", lambda d: css(d, f"#legend li.legend-wide[data-alert-id='{wide['id']}']"))
        assert "jurisdiction-wide" in legend[0].text
        assert not console_errors(sup)
        screenshot(sup, "dashboard-places-supervisor", tmp_path)

        log_in(partner, named, token("transit", zones=("septa-lansdale",), agency="SEPTA", subject="septa-places-map"))
        wait_for(partner, "the outline on the partner's map", lambda d: css(d, "#map svg g.places path.boundary"))
        wait_for(partner, "the partner's zone", lambda d: css(d, "#map svg g.zone[data-zone-id='septa-lansdale'] path"))
        assert not css(partner, "#map svg g.places path.area") and not css(partner, "#map svg text.area-label")
        assert json.loads(css(partner, "#map")[0].get_attribute("data-places"))["areas"] == 0
        assert AREA_WORD not in partner.find_element(By.TAG_NAME, "body").get_attribute("textContent")
        assert not console_errors(partner)
        screenshot(partner, "dashboard-places-partner", tmp_path)
    finally:
        named.stop()


def test_dashboard_says_replay_and_its_event_time_instead_of_live_and_when_data_stopped(gw, prefix, r, browser, tmp_path):
    """Live data: "Live" and when data was last received. Data of January 2016 (a replay): first "No new data since"
    its time, then, once it moves, "Replay" in place of "Live" and the replay's event time in the jurisdiction's zone."""
    r.set(f"{prefix}:wm:call:0", time.time() - 30)
    live = browser("live")
    log_in(live, gw, token("supervisor", subject="sup-live"))
    clock = wait_for(live, "the data clock", lambda d: css(d, "#data-clock[data-kind='live']"))[0]
    assert re.fullmatch(r"Last data received \d\d:\d\d:\d\d \S+ \((just now|1 min ago)\)", clock.text), clock.text
    assert css(live, "#conn-state")[0].text == "Live"

    blizzard = datetime(2016, 1, 22, 19, 37, tzinfo=zoneinfo.ZoneInfo("America/New_York")).timestamp()
    r.set(f"{prefix}:wm:call:0", blizzard)
    replay = browser("replay")
    log_in(replay, gw, token("supervisor", subject="sup-replay"))
    zone = zoneinfo.ZoneInfo(css(replay, "#clock-zone .zone-name")[0].text)

    def shown(t: float) -> str:
        return datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M:%S %Z")

    stale = wait_for(replay, "the data clock of old data", lambda d: css(d, "#data-clock[data-kind='stale']"))[0]
    assert stale.text == f"No new data since {shown(blizzard)}", stale.text
    assert css(replay, "#conn-state")[0].text == "Live", "connected, and the clock says the data is old"
    r.set(f"{prefix}:wm:call:0", blizzard + 900)  # the replay moves on: the next counts frame carries it
    moved = wait_for(replay, "the replay's clock", lambda d: css(d, "#data-clock[data-kind='replay']"))[0]
    assert moved.text == f"Replaying past calls · event time {shown(blizzard + 900)}", moved.text
    conn = css(replay, "#conn-state")[0]
    assert (conn.text, conn.get_attribute("data-state"), conn.get_attribute("data-clock")) == ("Replay", "live", "replay")
    assert not console_errors(replay) and not console_errors(live)
    screenshot(replay, "dashboard-replay-clock", tmp_path)


def test_dashboard_tells_a_stalled_poller_from_a_quiet_one_to_supervisors_only(gw, prefix, r, browser, tmp_path):
    """With no live door nothing is shown; a quiet poller reads as a quiet time, a stalled one (its process dead:
    its hash says nothing of it) as calls not arriving, with its sentence; a partner's page has no such line."""
    from tests.gateway.test_doors_api import plant_poller

    sup = browser("doors")
    log_in(sup, gw, token("supervisor", subject="sup-doors"))
    wait_for(sup, "the board", lambda d: css(d, "#data-clock:not([hidden])"))
    assert css(sup, "#doors")[0].get_attribute("hidden") is not None, "a file replay has no door to report"

    plant_poller(r, prefix, "city-portal", last_success_ago=30, new_rows_ago=3600, written_ago=30)
    quiet = browser("doors-quiet")
    log_in(quiet, gw, token("supervisor", subject="sup-quiet"))
    line = wait_for(quiet, "the doors line", lambda d: css(d, "#doors[data-kind='quiet'] #doors-text"))[0]
    assert line.text == "Doors in: the door works, no new calls (a quiet time, not a broken feed)", line.text

    plant_poller(r, prefix, "city-portal", last_success_ago=1200, new_rows_ago=1200, written_ago=1200)
    stalled = browser("doors-stalled")
    log_in(stalled, gw, token("supervisor", subject="sup-stalled"))
    line = wait_for(stalled, "the doors line", lambda d: css(d, "#doors[data-kind='broken'] #doors-text"))[0]
    assert line.text == "Doors in: poller city-portal stalled: calls through it are not arriving", line.text
    css(stalled, "#doors summary")[0].click()
    detail = wait_for(stalled, "the door's sentence", lambda d: [li for li in css(d, "#doors-list li") if li.text])[0]
    assert detail.text.startswith("Poller city-portal is stalled: no poll has completed for 20 min"), detail.text

    partner = browser("doors-partner")
    log_in(partner, gw, token("transit", zones=("septa-lansdale",)))
    wait_for(partner, "the partner's board", lambda d: css(d, "#data-clock:not([hidden])"))
    time.sleep(1.0)
    assert css(partner, "#doors")[0].get_attribute("hidden") is not None
    assert not console_errors(sup) and not console_errors(quiet) and not console_errors(stalled) and not console_errors(partner)
    screenshot(stalled, "dashboard-doors-stalled", tmp_path)


def test_dashboard_history_finds_ended_alerts_of_the_period_on_a_timeline_and_filters_them(gw, prefix, r, browser, tmp_path):
    """The history panel lists the period's alerts, ended ones too (the feed shows only open ones), draws them on a
    timeline, and narrows them by state, text and period; each item opens to its facts and who acknowledged it."""
    now = time.time()
    r.set(f"{prefix}:wm:call:0", now - 30)
    ended = make_alert("surge:hist:ended", (IN_LANSDALE,), observed=40, at=now - 3 * 3600, state=AlertState.CLOSED, categories={"EMS": 40})
    ended["summary"] = "Calls in Norristown: 40 in 3 hours, where about twenty are usual on a Friday evening"
    ended["areas"] = ["Norristown"]
    still_open = make_alert("surge:hist:open", (FAR,), observed=9, at=now - 3600)
    still_open["summary"] = "Calls in Pottstown: 9 in 15 minutes, where about two are usual"
    older = make_alert("surge:hist:older", (FAR,), observed=12, at=now - 2 * 86400, state=AlertState.CLOSED)
    older["summary"] = "Calls in Pottstown: 12 in 15 minutes, two days ago"
    for a in (older, ended, still_open):
        publish(r, prefix, a)
    driver = browser("history")
    log_in(driver, gw, token("supervisor", subject="sup-history"))
    wait_for(driver, "the open alert's card", lambda d: css(d, card(still_open["id"])))
    assert not css(driver, card(ended["id"])), "the feed shows open alerts only"

    def listed() -> list[str]:  # read in one script: a search that ends meanwhile replaces the list's nodes
        return driver.execute_script(
            "return [...document.querySelectorAll('#history-list li.history-item')].map((li) => li.dataset.alertId)"
        )

    def shows(ids: list[str], what: str) -> None:
        wait_for(driver, what, lambda d: listed() == ids and css(d, f"#history-timeline[data-bars='{len(ids)}']"))

    css(driver, "#history-toggle > summary")[0].click()
    shows([still_open["id"], ended["id"]], "the last 12 hours: the open alert and the ended one, newest first")
    assert "2 alerts between" in css(driver, "#history-result")[0].text
    item = css(driver, f"#history-list li[data-alert-id='{ended['id']}']")[0]
    assert ended["summary"] in item.text
    item.find_element(By.CSS_SELECTOR, "summary").click()
    facts = item.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "ended" in facts and "Norristown" in facts and "not acknowledged" in facts, facts
    # its page: what happened to it (GET /api/alerts/{id}/records), in words and on the jurisdiction's clock
    happened = wait_for(driver, "what happened to it", lambda d: item.find_elements(By.CSS_SELECTOR, "ol.records li"))
    lines = [li.find_element(By.CSS_SELECTOR, "span").text for li in happened]
    assert lines == ["Ended: 40 calls in 15 min, severity high"], [li.text for li in happened]
    assert happened[0].find_element(By.CSS_SELECTOR, "time").get_attribute("title").endswith("(UTC)")

    form = css(driver, "#history-form")[0]
    form.find_element(By.CSS_SELECTOR, "select[name='state'] option[value='closed']").click()
    shows([ended["id"]], "only the ended alert")
    form.find_element(By.CSS_SELECTOR, "select[name='hours'] option[value='72']").click()
    shows([ended["id"], older["id"]], "three days: the older ended alert too")
    form.find_element(By.CSS_SELECTOR, "input[name='q']").send_keys("pottstown")
    form.find_element(By.CSS_SELECTOR, "button[type='submit']").click()
    shows([older["id"]], "the text search")
    assert not console_errors(driver)
    screenshot(driver, "dashboard-history", tmp_path)


def test_dashboard_prints_the_view_for_a_briefing_on_paper_colours_without_controls(gw, prefix, r, browser, tmp_path):
    """Print / PDF: the browser's PDF of the supervisor's view carries who printed it, when and on which data; on
    paper the buttons, notes and filters are gone and the page is light."""
    write_counts(r, prefix)
    alert = make_alert("surge:print:1", (IN_LANSDALE,), observed=11)
    alert["summary"] = "Calls in Lansdale: 11 in 15 minutes, where about three are usual"
    publish(r, prefix, alert)
    driver = browser("print")
    log_in(driver, gw, token("supervisor", subject="sup-print"))
    wait_for(driver, "the alert's card", lambda d: css(d, card(alert["id"])))
    assert css(driver, "#print-view")[0].is_displayed()
    pdf = base64.b64decode(driver.execute_cdp_cmd("Page.printToPDF", {"printBackground": True})["data"])
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000, len(pdf)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "dashboard-print.pdf").write_bytes(pdf)
    note = css(driver, "#print-note")[0].get_attribute("textContent")
    assert re.fullmatch(r"Printed .+ by sup-print \(supervisor, [^)]+\) · Last data received .+", note), note

    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        for hidden in ("#print-view", "#logout", f"{card(alert['id'])} form.actions", "#overview-filters"):
            assert not css(driver, hidden)[0].is_displayed(), f"{hidden} is on paper"
        assert css(driver, "#print-note")[0].is_displayed()
        assert driver.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
        assert alert["summary"] in css(driver, card(alert["id"]))[0].text
        screenshot(driver, "dashboard-print-media", tmp_path)
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert not console_errors(driver)


def test_dashboard_at_a_glance_tiles_and_chart_against_the_usual_and_filters_acting_on_feed_and_figures(ogw, prefix, r, browser, tmp_path):
    """The supervisor's tiles read the worker's counts against the same time on the previous days, in words; the
    chart draws the day's 96 bins; choosing a category asks the figures again and filters the alert feed."""
    from tests.gateway.test_overview import WM, plant_scenario

    plant_scenario(r, prefix)  # today 4 EMS in the last minute, 2 FIRE 20 min before; 3 previous days counted
    ems = make_alert("surge:glance:ems", (IN_LANSDALE,), observed=4, at=WM, categories={"EMS": 4})
    fire = make_alert("surge:glance:fire", (FAR,), observed=2, at=WM - 1200, categories={"FIRE": 2})
    for a in (fire, ems):
        publish(r, prefix, a)
    driver = browser("glance")
    log_in(driver, ogw, token("supervisor", subject="sup-glance"))

    def tiles() -> list[tuple[str, ...]]:  # in one script: a refresh replaces the tiles' nodes
        script = (
            "return [...document.querySelectorAll('#overview-tiles .tile')]"
            ".map((t) => ['label', 'value', 'detail'].map((p) => t.querySelector('.tile-' + p).textContent))"
        )
        return [tuple(t) for t in driver.execute_script(script)]

    wait_for(driver, "the tiles", lambda d: len(css(d, "#overview-tiles .tile")) == 6)
    shown = tiles()
    assert shown[0] == ("Calls, last 15 min", "4", "about the usual (2.7)") and shown[1] == (
        "Calls, last 1 h",
        "6",
        "half again the usual (3.7)",
    ), shown
    assert shown[3] == ("Open incidents", "3", "calls not yet closed"), shown
    assert shown[4][0] == "Median to dispatch" and shown[4][1] == "≤ 300 s", shown
    assert css(driver, "#overview-tiles .tile[data-high='true']"), "a figure well above the usual is marked, in words too"
    wait_for(driver, "the chart's 96 bins", lambda d: css(d, "#overview-chart[data-bins='96'] svg polyline.calls"))
    assert css(driver, "#overview-chart svg polygon.band"), "the usual band"
    assert "previous 3 days" in css(driver, "#overview-note")[0].text
    css(driver, "#overview-areas > summary")[0].click()  # per area: the worker's res-6 cell, named by its centre
    rows = [r.text for r in css(driver, "#overview-areas tbody tr")]
    assert rows == ["around Lansdale Borough 4 ≤ 300 s —"], rows
    wait_for(driver, "both cards", lambda d: css(d, card(ems["id"])) and css(d, card(fire["id"])))
    # the map colours cells against their usual (Lansdale: 4 calls where 2.67 are usual, as its tile), by count on request
    lansdale = f"#map svg path.cell[data-cell='{IN_LANSDALE}']"
    wait_for(driver, "Lansdale against its usual", lambda d: css(d, f"{lansdale}.vs-about[data-vs-usual='about']"))
    title = css(driver, f"{lansdale} title")[0].get_attribute("textContent")
    assert title.endswith(": 4 calls, usual 2.67 (about the usual) (alert)"), title
    assert "previous 3 days" in css(driver, "#legend .legend-title")[0].text
    css(driver, "#legend button.legend-mode")[0].click()
    wait_for(driver, "the cells by count", lambda d: css(d, f"{lansdale}.q4") or css(d, f"{lansdale}[class*=' q']"))
    assert css(driver, "#legend button.legend-mode")[0].get_attribute("aria-pressed") == "false"

    css(driver, "#overview-filters select[name='category'] option[value='FIRE']")[0].click()
    wait_for(driver, "the FIRE figures", lambda d: tiles()[:2] and tiles()[0][1] == "0" and tiles()[1][1] == "2")
    assert not css(driver, card(ems["id"]))[0].is_displayed() and css(driver, card(fire["id"]))[0].is_displayed()
    assert tiles()[3][1] == "—" and tiles()[4][2] == "whole jurisdiction only", "no per-category open incidents or response times"
    # the map too: no EMS alert's cell and no EMS calls under FIRE
    wait_for(driver, "the map without Lansdale's EMS", lambda d: not css(d, lansdale) and css(d, f"#map svg path.cell[data-cell='{FAR}']"))
    # an area: the figures of its cells, the feed of its alerts, the map fitted to it and its outline marked
    area = css(driver, "#overview-filters input[name='area']")[0]
    area.send_keys(INSIDE_AREA, Keys.TAB)  # the change event
    wait_for(driver, "the area outlined", lambda d: css(d, f"#map svg g.places path.area.chosen[data-area='{INSIDE_AREA}']"))
    assert "FIRE, " + INSIDE_AREA + " only" in css(driver, "#feed-count")[0].text
    assert not console_errors(driver)
    screenshot(driver, "dashboard-at-a-glance", tmp_path)
