"""``GET /api/doors``: the live doors' health for supervisors, a stalled poller told from a quiet one, against a real gateway and Redis.

The status hashes are planted as the poller (:meth:`streams.intake.feedstate.PollStatus.fields`) and the HTTP intake
(:func:`streams.intake.doors.http_fields`) write them; the gateway works health out again from the times they hold,
because a dead poller cannot write that it is stalled.
"""

from __future__ import annotations

import time

import pytest

from streams.intake.doors import door_key, doors_key, http_fields
from streams.intake.feedstate import PollStatus
from tests.gateway.live import token

pytestmark = pytest.mark.stack


def plant_poller(r, prefix: str, name: str, *, last_success_ago: float, new_rows_ago: float, written_ago: float) -> None:
    now = time.time()
    status = PollStatus(
        name, "http://portal.example/resource/abcd-1234.json", 60.0, 5, started_at=now - 86400,
        last_success_at=now - last_success_ago, last_new_rows_at=now - new_rows_ago, newest_event_at=now - new_rows_ago - 300,
        last_error="HTTP 500 from the portal" if last_success_ago > 180 else "",
    )  # fmt: skip
    r.hset(door_key(prefix, f"poll:{name}"), mapping=status.fields(now - written_ago))
    r.sadd(doors_key(prefix), f"poll:{name}")


def test_supervisors_see_each_door_a_dead_poller_as_stalled_and_a_quiet_one_as_quiet(gw, r, prefix):
    # written as healthy 20 min ago, then the process died: the gateway's clock, not the hash, says stalled
    plant_poller(r, prefix, "dead-portal", last_success_ago=1200, new_rows_ago=1200, written_ago=1200)
    plant_poller(r, prefix, "quiet-portal", last_success_ago=30, new_rows_ago=3600, written_ago=30)
    plant_poller(r, prefix, "busy-portal", last_success_ago=30, new_rows_ago=30, written_ago=30)
    cad = http_fields("county-cad", heartbeat_s=60, now=time.time() - 900, accepted_calls=3, newest_event_at=None)
    r.hset(door_key(prefix, "http:county-cad"), mapping=cad)
    r.sadd(doors_key(prefix), "http:county-cad")
    status, body = gw.get_json("/api/doors", token("supervisor"))
    assert status == 200, body
    by = {(d["kind"], d["name"]): d for d in body["doors"]}
    assert {k: d["health"] for k, d in by.items()} == {
        ("poll", "busy-portal"): "ok",
        ("poll", "dead-portal"): "stalled",
        ("poll", "quiet-portal"): "quiet",
        ("http", "county-cad"): "silent",
    }
    assert "not arriving" in by[("poll", "dead-portal")]["sentence"] and "HTTP 500" in by[("poll", "dead-portal")]["sentence"]
    assert "quiet" in by[("poll", "quiet-portal")]["sentence"] and "not arriving" not in by[("poll", "quiet-portal")]["sentence"]
    assert "no push for 15 min" in by[("http", "county-cad")]["sentence"]


def test_no_live_door_gives_an_empty_list_and_only_supervisors_may_ask(gw, r, prefix):
    status, body = gw.get_json("/api/doors", token("supervisor"))
    assert (status, body["doors"]) == (200, [])
    for who in (token("commander", zones=("septa-lansdale",), agency="Event command"), token("transit", zones=("septa-lansdale",))):
        status, _ = gw.get("/api/doors", who)
        assert status in (403, 404), status
    assert gw.get("/api/doors")[0] == 401


def test_a_door_not_heard_of_for_two_weeks_is_no_longer_listed(gw, r, prefix):
    plant_poller(r, prefix, "retired", last_success_ago=20 * 86400, new_rows_ago=20 * 86400, written_ago=20 * 86400)
    status, body = gw.get_json("/api/doors", token("supervisor"))
    assert (status, body["doors"]) == (200, [])
