"""The dashboard's accessibility in a real headless Chromium (issue 21, items 7 and 9).

For each role's view (the login page, a supervisor with an open, a resolved and an ended alert card in the feed, a
transit partner with the same three) axe-core, vendored in tests/gateway/vendor (never fetched during a test), finds
no WCAG 2.0/2.1 A or AA violation; at 1366x768 and 1920x1080 the page does not scroll sideways and Tab reaches every
visible control.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import h3
import pytest
import redis
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from detectors.types import AlertState
from tests.gateway.live import IN_LANSDALE, LANSDALE, GatewayProcess, make_alert, publish, token
from tests.gateway.test_dashboard import WAIT_S, browser, card, console_errors, css, log_in, screenshot, wait_for
from tests.gateway.test_forecast_api import plant_forecast

__all__ = ["browser"]  # the fixture, imported so this module's tests can ask for it

pytestmark = pytest.mark.stack

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SIZES = ((1366, 768), (1920, 1080))
#: what Tab must reach: every control a person can operate, as axe and the browser count them
CONTROLS = "button, input, textarea, select, summary, a[href], [tabindex]:not([tabindex='-1'])"

#: runs axe on the whole document with the WCAG 2.0/2.1 A and AA rules; Selenium's callback is the last argument
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
  .then((r) => done({violations: r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.map(String), summary: n.failureSummary})),
  }))}))
  .catch((e) => done({error: String(e && e.stack || e)}));
"""

#: the visible, enabled controls, kept on window for TAB_STEP; returns how each reads (for failure messages)
LIST_CONTROLS = """
const visible = (e) => {
  if (e.disabled || e.getClientRects().length === 0 || getComputedStyle(e).visibility !== 'visible') return false;
  const closed = e.closest('details:not([open])');
  return !closed || e === closed.querySelector(':scope > summary');
};
window.__wfControls = [...document.querySelectorAll(arguments[0])].filter(visible);
return window.__wfControls.map((e) => e.outerHTML.slice(0, 120));
"""
#: which of those controls has the focus now (-1: none of them, e.g. the body)
TAB_STEP = "return window.__wfControls.indexOf(document.activeElement);"


def axe_violations(driver: WebDriver) -> list[dict]:
    """axe-core's WCAG 2.x A/AA violations on the page as it is now."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text())
    driver.set_script_timeout(60)
    result = driver.execute_async_script(RUN_AXE, WCAG_TAGS)
    assert "error" not in result, f"axe failed: {result['error']}"
    return result["violations"]


def describe(violations: list[dict]) -> str:
    """Each violation's rule, impact and help, its first three nodes with why they fail, and the other nodes' targets."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} [{len(v['nodes'])} node(s)]")
        for n in v["nodes"][:3]:
            lines.append(f"    {' '.join(n['target'])}: {n['summary']}".replace("\n", " / "))
        if len(v["nodes"]) > 3:
            lines.append(f"    and: {', '.join(' '.join(n['target']) for n in v['nodes'][3:])}")
    return "\n".join(lines)


def assert_none_found(found: dict[str, list[dict]]) -> None:
    """No violation in any view (``found``: each view's violations, named as the failure should name it)."""
    failing = "\n".join(f"{view}:\n{describe(v)}" for view, v in found.items() if v)
    assert not failing, f"axe finds WCAG 2.x A/AA violations\n{failing}"


def set_viewport(driver: WebDriver, width: int, height: int) -> None:
    """The page's viewport exactly ``width`` x ``height`` CSS pixels (the window's size would include its chrome)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    wait_for(driver, f"a {width}x{height} viewport", lambda d: d.execute_script("return [innerWidth, innerHeight]") == [width, height])


def assert_no_horizontal_scroll(driver: WebDriver, where: str) -> None:
    scroll, inner = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{where}: the page scrolls sideways ({scroll} px wide in a {inner} px viewport)"


def assert_tab_reaches_every_control(driver: WebDriver, where: str) -> None:
    """Tab from the top of the page reaches each visible, enabled control (in whatever order) before it comes round."""
    controls = driver.execute_script(LIST_CONTROLS, CONTROLS)
    assert controls, f"{where}: no control on the page"
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    reached: set[int] = set()
    # each control once, plus a few stops that are no control (a scrolling panel, the end of the document)
    for _ in range(len(controls) + 10):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        reached.add(driver.execute_script(TAB_STEP))
        if len(reached - {-1}) == len(controls):
            return
    missed = [c for i, c in enumerate(controls) if i not in reached]
    raise AssertionError(f"{where}: Tab never reaches {len(missed)} of {len(controls)} controls: {missed}")


def publish_alerts(r: redis.Redis, prefix: str) -> list[dict]:
    """Three alerts in the Lansdale zone, one card of each look: an open one with its plain sentence, a high one a
    supervisor resolved (such cards are dimmed), a low one that ended."""
    alert = make_alert("surge:access:1", (IN_LANSDALE,), observed=9, expected=2.0, categories={"TRAFFIC": 7, "EMS": 2})
    alert["summary"] = "Traffic calls in Lansdale: 9 in 15 minutes, where about two are usual on a Friday evening"
    resolved = make_alert("surge:access:2", (IN_LANSDALE,), observed=30, score=12.0)
    ended = make_alert("surge:access:3", (IN_LANSDALE,), observed=5, score=3.0, state=AlertState.CLOSED)
    for a in (alert, resolved, ended):
        publish(r, prefix, a)
    action = {"alert_id": resolved["id"], "action": "resolve", "by": "sup-other", "role": "supervisor", "agency": "Montgomery County 911"}
    r.xadd(f"{prefix}:alerts", {"action": json.dumps({**action, "note": "cleared", "at": time.time(), "alert": resolved})})
    return [alert, resolved, ended]


def open_views(gw: GatewayProcess, prefix: str, r: redis.Redis, browser: Callable[[str], WebDriver]) -> dict[str, WebDriver]:
    """The three views, each in its own browser: the login page, a supervisor with the alerts' cards, a transit
    partner with the same alerts (its station is in their cell). The alerts come once both are live: a page that
    connects later is sent the open alerts only. A forecast set is in Redis, so the next-shift panel has its figures."""
    plant_forecast(r, prefix)
    login = browser("access-login")
    login.get(f"{gw.base}/")
    wait_for(login, "the login box", lambda d: css(d, "#login")[0].is_displayed())
    sup = browser("access-supervisor")
    log_in(sup, gw, token("supervisor", subject="sup-access"))
    partner = browser("access-transit")
    log_in(partner, gw, token("transit", zones=("septa-lansdale",), agency="SEPTA", subject="septa-access"))
    school = browser("access-school")
    log_in(school, gw, token("school", zones=("school-north-penn-hs",), subject="mciu-access"))
    commander = browser("access-commander")
    commander_token = token("commander", zones=(EVENT_ZONE,), agency="Event command", subject="cmd-access")
    open_event_zone(gw, r, prefix, commander_token)
    log_in(commander, gw, commander_token)
    alert, resolved, ended = publish_alerts(r, prefix)
    wait_for(sup, "the alert card", lambda d: css(d, f"{card(alert['id'])} .summary"))
    wait_for(sup, "the resolved alert's card", lambda d: css(d, f"{card(resolved['id'])}.resolved"))
    wait_for(sup, "the ended alert's card", lambda d: css(d, f"{card(ended['id'])}.closed"))
    wait_for(sup, "the zones' buttons", lambda d: css(d, "#zone-list button.zone"))
    wait_for(partner, "the partner's three alert cards", lambda d: len(css(d, ".alert-card .reason")) == 3)
    wait_for(partner, "the partner's resolved and ended cards", lambda d: len(css(d, ".alert-card.resolved, .alert-card.closed")) == 2)
    wait_for(partner, "the partner's places", lambda d: css(d, "#zone-list button.zone"))
    wait_for(school, "the school's places", lambda d: css(d, "#zone-list button.zone"))
    wait_for(commander, "the commander's alert card", lambda d: css(d, f"{card(alert['id'])} .summary"))
    wait_for(commander, "the commander's tiles", lambda d: len(css(d, "#overview-tiles .tile")) == 6)
    for driver in (sup, commander):
        wait_for(driver, "the next shift's forecast", lambda d: css(d, "#forecast-chart[data-hours='8']"))
    return {"login": login, "supervisor": sup, "transit": partner, "school": school, "commander": commander}


#: an event commander's zone over Lansdale, opened an hour ago
EVENT_ZONE = "access-event"


def open_event_zone(gw: GatewayProcess, r: redis.Redis, prefix: str, commander_token: str) -> None:
    """Writes an event zone as a supervisor's create_zone does and waits until the gateway has read it."""
    zone = {
        "id": EVENT_ZONE,
        "name": "Access event",
        "kind": "event",
        "agency": "Event command",
        "cells": sorted(LANSDALE.cells),
        "polygon": h3.cells_to_h3shape(sorted(LANSDALE.cells)).__geo_interface__,
        "active_from": time.time() - 3600,
        "active_until": None,
    }
    r.hset(f"{prefix}:zones", EVENT_ZONE, json.dumps(zone))
    r.incr(f"{prefix}:zones:version")
    deadline = time.monotonic() + WAIT_S
    while gw.get_json("/api/zones", commander_token)[0] != 200:
        assert time.monotonic() < deadline, f"the gateway never read the event zone {EVENT_ZONE}"
        time.sleep(0.2)


def open_details(driver: WebDriver) -> None:
    """Opens every card's "Details" (the statistics hidden behind it), as a person would: by clicking its summary;
    then the next shift's panel and an allocation recommended (its tables and the Adopt button), then the
    history panel, its search answered (form, timeline and list), and the first item of its list."""
    for summary in css(driver, ".alert-card details.stats > summary"):
        summary.click()
    wait_for(driver, "the alerts' statistics", lambda d: all(e.is_displayed() for e in css(d, ".alert-card details.stats .score")))
    summary = css(driver, "#forecast-toggle > summary")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    css(driver, "#allocation-form input[name='units']")[0].send_keys("8", Keys.ENTER)
    wait_for(driver, "the recommended allocation", lambda d: css(d, "#allocation-table:not([hidden]) tbody tr"))
    css(driver, "#history-toggle > summary")[0].click()
    wait_for(driver, "the history's list", lambda d: css(d, "#history-list li.history-item summary"))
    css(driver, "#history-list li.history-item summary")[0].click()


def test_dashboard_has_no_wcag_a_or_aa_violations_for_any_role(gw, prefix, r, browser):
    """axe-core finds no WCAG 2.0/2.1 A or AA violation on the login page, the supervisor's board with its alert cards
    (their statistics closed, then open), the transit and school partners' boards and an event commander's."""
    views = open_views(gw, prefix, r, browser)
    found = {"the login view": axe_violations(views["login"]), "the supervisor view": axe_violations(views["supervisor"])}
    open_details(views["supervisor"])
    found["the supervisor view, the alerts' details open"] = axe_violations(views["supervisor"])
    found["the transit partner's view"] = axe_violations(views["transit"])
    found["the school partner's view"] = axe_violations(views["school"])
    found["the event commander's view"] = axe_violations(views["commander"])
    assert_none_found(found)
    for name, driver in views.items():
        assert not console_errors(driver), f"the {name} page logged errors"


def test_dashboard_fits_common_screens_and_tab_reaches_every_control(gw, prefix, r, browser, tmp_path):
    """At 1366x768 and 1920x1080, for each role's view, the page does not scroll sideways, Tab reaches every visible
    control (the supervisor's with the alerts' details open, so their summaries and the controls after them count) and
    axe still finds nothing (a panel that scrolls at one size only must be reachable too); a screenshot of each lands
    in out/screenshots."""
    views = open_views(gw, prefix, r, browser)
    open_details(views["supervisor"])
    found: dict[str, list[dict]] = {}
    for name, driver in views.items():
        for width, height in SIZES:
            where = f"{name} at {width}x{height}"
            set_viewport(driver, width, height)
            assert_no_horizontal_scroll(driver, where)
            assert_tab_reaches_every_control(driver, where)
            driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
            assert screenshot(driver, f"access-{name}-{width}x{height}", tmp_path).stat().st_size > 5_000
            found[where] = axe_violations(driver)
        assert not console_errors(driver), f"the {name} page logged errors"
    assert_none_found(found)
