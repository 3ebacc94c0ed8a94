"""GET /api/alerts/{id}/records: each alert's own page (its records and the actions on it), as each role may see it."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import h3
import pytest

from detectors.types import AlertState
from gateway.policy import derive_id_key, opaque_alert_id
from tests.gateway.live import FAR, IN_LANSDALE, SECRET, GatewayProcess, make_alert, publish, recv_until, token

pytestmark = pytest.mark.stack

NOTE = "Engine 12 en route; caller at 123 Main St"
PARTNER_ACTION_KEYS = {"action", "at"}


def path_of(alert_id: str) -> str:
    return f"/api/alerts/{quote(alert_id, safe='')}/records"


def opaque(alert_id: str) -> str:
    """A partner's id for the alert, as the test gateway (same secret) gives it."""
    return opaque_alert_id(derive_id_key(SECRET), alert_id)


def tell_story(gw: GatewayProcess, r, prefix: str, alert_id: str, cell: str) -> tuple[float, list[dict]]:
    """Publish an alert's open, two updates, a supervisor's acknowledgement with a note, and its close.

    The first update (in the open's minute, on a call more) changes nothing a partner sees; the second makes the
    alert high. Returns the open's minute and the records published.
    """
    t0 = (time.time() // 60) * 60 - 600
    base = {"started_at": t0 - 300}
    opened = {**make_alert(alert_id, (cell,), observed=12, at=t0 + 5), **base}
    same_minute = {**make_alert(alert_id, (cell,), observed=13, state=AlertState.UPDATE, at=t0 + 20), **base}
    high = {**make_alert(alert_id, (cell,), observed=25, state=AlertState.UPDATE, at=t0 + 70), **base}
    closed = {**make_alert(alert_id, (cell,), observed=25, state=AlertState.CLOSED, at=t0 + 130), **base}
    sup = gw.ws(token("supervisor", subject="sup-anna"))
    recv_until(sup, lambda f: f["type"] == "caught_up")
    for record in (opened, same_minute, high):
        publish(r, prefix, record)
    recv_until(sup, lambda f: f["type"] == "alert" and f["alert"]["at"] == t0 + 70)
    sup.send(json.dumps({"type": "ack", "alert_id": alert_id, "note": NOTE}))
    recv_until(sup, lambda f: f["type"] == "action")
    publish(r, prefix, closed)
    recv_until(sup, lambda f: f["type"] == "alert" and f["alert"]["state"] == "closed")
    sup.close()
    return t0, [opened, same_minute, high, closed]


def test_a_supervisor_sees_the_open_two_updates_the_acknowledgement_with_its_note_and_who_and_the_close_in_order(gw, prefix, r):
    """Every record of the alert as /api/alerts gives it, and the acknowledgement with who made it and the note, oldest first."""
    alert_id = f"surge:{FAR}:1700000000"
    publish(r, prefix, make_alert(f"surge:{IN_LANSDALE}:other", (IN_LANSDALE,)))  # another alert's records are not its own
    t0, published = tell_story(gw, r, prefix, alert_id, FAR)
    status, body = gw.get_json(path_of(alert_id), token("supervisor"))
    assert status == 200, body
    assert body["id"] == alert_id
    kinds = [(rec["type"], rec["alert"]["state"] if rec["type"] == "alert" else rec["action"]["action"]) for rec in body["records"]]
    assert kinds == [("alert", "open"), ("alert", "update"), ("alert", "update"), ("action", "ack"), ("alert", "closed")]
    alerts = [rec["alert"] for rec in body["records"] if rec["type"] == "alert"]
    assert [a["observed"] for a in alerts] == [p["observed"] for p in published]
    assert [a["at"] for a in alerts] == [t0 + 5, t0 + 20, t0 + 70, t0 + 130]
    assert all(a["id"] == alert_id and "severity" in a and a["cells"] == [FAR] for a in alerts)
    action = body["records"][3]["action"]
    assert {k: action[k] for k in ("alert_id", "action", "by", "role", "agency", "note")} == {
        "alert_id": alert_id,
        "action": "ack",
        "by": "sup-anna",
        "role": "supervisor",
        "agency": "Montgomery County 911",
        "note": NOTE,
    }
    assert body["records"][3]["at"] == action["at"] and abs(action["at"] - time.time()) < 60
    ats = [rec["at"] for rec in body["records"]]
    assert ats[:3] == sorted(ats[:3]) and ats[4] == t0 + 130


def test_a_partner_sees_its_alert_with_identical_views_collapsed_actions_without_who_or_note_and_minute_times(gw, prefix, r):
    """A partner gets the generalized views, the update that changes nothing it sees left out, the acknowledgement as
    {action, at} to the minute, and no count, cell, name or note anywhere."""
    alert_id = f"surge:{IN_LANSDALE}:1700000000"
    t0, _ = tell_story(gw, r, prefix, alert_id, IN_LANSDALE)
    partner = token("transit", zones=("septa-lansdale",), subject="septa-desk")
    mine = opaque(alert_id)
    status, body = gw.get_json(path_of(mine), partner)
    assert status == 200, body
    assert body["id"] == mine
    records = body["records"]
    kinds = [(rec["type"], rec["alert"]["state"] if rec["type"] == "alert" else rec["action"]["action"]) for rec in records]
    # open, the update in the open's minute collapsed into it, the update that made it high, the ack, the close
    assert kinds == [("alert", "open"), ("alert", "open"), ("action", "ack"), ("alert", "closed")]
    assert [rec["alert"]["severity"] for rec in records if rec["type"] == "alert"] == ["medium", "high", "high"]
    assert [rec["at"] for rec in records if rec["type"] == "alert"] == [t0, t0 + 60, t0 + 120]
    action = records[2]["action"]
    assert set(action) == PARTNER_ACTION_KEYS and action["at"] % 60 == 0 and records[2]["at"] == action["at"]
    for rec in records:
        assert rec["at"] % 60 == 0
        if rec["type"] == "alert":
            v = rec["alert"]
            assert v["id"] == mine and v["units"] == ["septa-lansdale"]
            assert not {"observed", "expected", "score", "cells", "status"} & set(v)
            assert v["started_at"] % 60 == 0 and v["at"] % 60 == 0
    text = json.dumps(body)
    for secret in ("sup-anna", "Main St", "Montgomery County 911", IN_LANSDALE, alert_id):
        assert secret not in text


def test_a_partner_gets_one_and_the_same_404_for_another_zone_s_alert_an_unknown_id_and_a_detector_id(gw, prefix, r):
    """Nothing tells an alert that exists outside the partner's scope from one that does not exist."""
    inside = f"surge:{IN_LANSDALE}:1"
    publish(r, prefix, make_alert(inside, (IN_LANSDALE,)))
    publish(r, prefix, make_alert(f"surge:{FAR}:1", (FAR,)))
    small = f"surge:{IN_LANSDALE}:small"
    publish(r, prefix, make_alert(small, (IN_LANSDALE,), observed=2))  # in its zone, below k
    sup = token("supervisor")
    deadline = time.monotonic() + 10
    while len(gw.get_json("/api/alerts", sup)[1]["alerts"]) < 3:
        assert time.monotonic() < deadline, "the gateway did not read the alerts"
        time.sleep(0.1)
    partner = token("transit", zones=("septa-lansdale",))
    assert gw.get_json(path_of(opaque(inside)), partner)[0] == 200
    answers = {}
    for label, asked in {
        "another zone's": opaque(f"surge:{FAR}:1"),
        "below k": opaque(small),
        "unknown": opaque("surge:nowhere:1"),
        "detector id": inside,
        "detector id, not encoded": inside,
        "not an id": "a-" + "0" * 24,
        "long": "a-" + "f" * 500,
    }.items():
        path = path_of(asked) if label != "detector id, not encoded" else f"/api/alerts/{asked}/records"
        answers[label] = gw.get(path, partner)
    assert {label: status for label, (status, _) in answers.items()} == dict.fromkeys(answers, 404)
    bodies = {body for _, body in answers.values()}
    assert len(bodies) == 1, bodies
    assert json.loads(bodies.pop())["error"] == "not_found"
    # and a supervisor asking a partner's id is told the same as for any unknown id
    status, body = gw.get_json(path_of(opaque(inside)), sup)
    assert (status, body["error"]) == (404, "not_found")
    assert gw.get_json(path_of(inside), sup)[0] == 200


def test_a_commander_gets_the_records_of_its_event_zone_s_alerts_and_404_for_others(gw, prefix, r):
    """A commander reads the alerts its event zone holds; one outside it answers exactly as an unknown id does."""
    centre = h3.cell_to_latlng(FAR)
    ring = [[centre[1] + dx, centre[0] + dy] for dx, dy in ((-0.01, -0.01), (0.01, -0.01), (0.01, 0.01), (-0.01, 0.01), (-0.01, -0.01))]
    sup = gw.ws(token("supervisor"))
    recv_until(sup, lambda f: f["type"] == "caught_up")
    now = time.time()
    zone = {"type": "create_zone", "id": "fair-2026", "name": "County fair", "polygon": {"type": "Polygon", "coordinates": [ring]}}
    sup.send(json.dumps({**zone, "starts_at": now - 60, "ends_at": now + 3600}))
    created, _ = recv_until(sup, lambda f: f["type"] in ("zone_created", "error"))
    assert created["type"] == "zone_created"
    publish(r, prefix, make_alert("surge:fair:1", (FAR,)))
    publish(r, prefix, make_alert("surge:elsewhere:1", (IN_LANSDALE,)))
    recv_until(sup, lambda f: f["type"] == "alert" and f["alert"]["id"] == "surge:elsewhere:1")
    sup.close()
    cmd = token("commander", zones=("fair-2026",), agency="Fair command")
    status, body = gw.get_json(path_of("surge:fair:1"), cmd)
    assert status == 200 and [rec["alert"]["id"] for rec in body["records"]] == ["surge:fair:1"]
    outside = gw.get(path_of("surge:elsewhere:1"), cmd)
    unknown = gw.get(path_of("surge:nowhere:1"), cmd)
    assert outside[0] == 404 and outside == unknown
