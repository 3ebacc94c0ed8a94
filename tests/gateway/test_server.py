"""The gateway process against real Redis and real WebSocket clients: auth, scope, resume, slow clients, lifecycle, audit."""

from __future__ import annotations

import base64
import json
import socket
import time

import h3
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from detectors.types import AlertState
from gateway.tokens import issue
from tests.gateway.live import FAR, IN_LANSDALE, REDIS_URL, SECRET, GatewayProcess, drain, make_alert, publish, recv_until, token

pytestmark = pytest.mark.stack


def frames_of(frames: list[dict], kind: str) -> list[dict]:
    return [f for f in frames if f["type"] == kind]


def all_strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [k, *all_strings(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in all_strings(v)]
    return []


def test_http_refuses_missing_forged_and_expired_tokens_and_audits_each(gw, prefix, r):
    """API calls without a token, with a forged one or an expired one get 401 with the reason, and each refusal is audited."""
    assert gw.get_json("/api/alerts")[0] == 401
    forged = issue(b"another-secret-" + b"y" * 40, subject="mallory", role="supervisor", agency="X")
    status, body = gw.get_json("/api/alerts", forged)
    assert (status, body["error"]) == (401, "bad_signature")
    expired = token("supervisor", ttl_s=1)
    time.sleep(1.5)
    status, body = gw.get_json("/api/alerts", expired)
    assert (status, body["error"]) == (401, "expired")
    head, payload, sig = token("transit", zones=("septa-lansdale",)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "supervisor"  # privilege escalation by editing the payload
    edited = ".".join([head, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="), sig])
    assert gw.get_json("/api/alerts", edited)[1]["error"] == "bad_signature"
    status, body = gw.get_json("/api/audit", token("transit", zones=("septa-lansdale",)))
    assert (status, body["error"]) == (403, "forbidden")
    _, audit = gw.get_json("/api/audit?action=refused", token("supervisor"))
    codes = [rec["detail"]["code"] for rec in audit["records"]]
    assert codes.count("bad_signature") == 2 and "missing" in codes and "expired" in codes and "forbidden" in codes


def test_websocket_handshake_refused_without_valid_token(gw):
    """A WebSocket without a token or with a forged one is refused at the handshake with HTTP 401."""
    for bad in (None, "not.a.token", issue(b"z" * 40, subject="m", role="supervisor", agency="X")):
        with pytest.raises(InvalidStatus) as exc:
            gw.ws(bad)
        assert exc.value.response.status_code == 401


def test_supervisor_gets_everything_and_partner_only_its_zone_generalized(gw, prefix, r):
    """A supervisor receives every alert precisely; a transit partner only the one at its station, as its station's unit,
    with no cell, count or statistic, and a sealed stream id."""
    sup = gw.ws(token("supervisor"))
    partner = gw.ws(token("transit", zones=("septa-lansdale",), agency="SEPTA"))
    for ws in (sup, partner):
        recv_until(ws, lambda f: f["type"] == "caught_up")
    inside = make_alert("surge:inside:1", (IN_LANSDALE, FAR), observed=12, categories={"TRAFFIC": 10, "EMS": 2})
    outside = make_alert("surge:outside:1", (FAR,), observed=30)
    publish(r, prefix, inside)
    publish(r, prefix, outside)
    got_sup = frames_of(drain(sup), "alert")
    got_partner = frames_of(drain(partner), "alert")
    assert [f["alert"]["id"] for f in got_sup] == ["surge:inside:1", "surge:outside:1"]
    assert got_sup[0]["alert"]["cells"] == [IN_LANSDALE, FAR] and got_sup[0]["alert"]["reason"] == inside["reason"]
    assert len(got_partner) == 1
    seen = got_partner[0]["alert"]
    strings = all_strings(got_partner)
    assert FAR not in strings and IN_LANSDALE not in strings and not any("surge:inside" in s for s in strings)
    assert not {"cells", "observed", "expected", "score", "p_value", "model", "model_version", "window_min"} & set(seen)
    assert seen["zones"] == ["septa-lansdale"] and seen["units"] == ["septa-lansdale"]
    assert seen["categories"] == ["TRAFFIC"]  # EMS 2 < k = 3, and no counts at all
    assert seen["extent"] == "area" and "Lansdale station" in seen["reason"]
    assert inside["reason"] not in strings
    assert got_partner[0]["id"].startswith("c-") and got_partner[0]["id"] != got_sup[0]["id"]
    sup.close()
    partner.close()


def test_resume_by_id_gives_every_missed_alert_once_in_order(gw, prefix, r):
    """A client that reconnects with its last id receives what it missed, then live alerts, with no gap and no duplicate."""
    ws = gw.ws(token("supervisor"))
    recv_until(ws, lambda f: f["type"] == "caught_up")
    ids = [publish(r, prefix, make_alert(f"surge:a:{i}", (FAR,))) for i in range(3)]
    got = frames_of(drain(ws), "alert")
    assert [f["id"] for f in got] == ids
    ws.close()
    missed = [publish(r, prefix, make_alert(f"surge:b:{i}", (FAR,))) for i in range(5)]
    ws = gw.ws(token("supervisor"), last_id=got[-1]["id"])
    live = []
    first, frames = recv_until(ws, lambda f: f["type"] == "caught_up")
    live.append(publish(r, prefix, make_alert("surge:c:0", (FAR,))))
    frames += drain(ws)
    alerts = [f["id"] for f in frames_of(frames, "alert")]
    assert alerts == missed + live
    assert first["id"] == missed[-1]
    ws.close()


def test_gateway_restart_and_second_gateway_deliver_the_same_alerts(gw, prefix, r, tmp_path):
    """Two gateways on one Redis deliver the same alerts; after one restarts, its clients resume by id with no gap and no duplicate."""
    other = GatewayProcess(prefix).start(tmp_path)
    try:
        a = gw.ws(token("supervisor"))
        b = other.ws(token("supervisor"))
        for ws in (a, b):
            recv_until(ws, lambda f: f["type"] == "caught_up")
        sent = [publish(r, prefix, make_alert(f"surge:r:{i}", (FAR,))) for i in range(4)]
        got_a = [f["id"] for f in frames_of(drain(a), "alert")]
        got_b = [f["id"] for f in frames_of(drain(b), "alert")]
        assert got_a == got_b == sent
        gw.stop()
        with pytest.raises(ConnectionClosed) as closed:
            a.recv(timeout=5)
        assert closed.value.rcvd.code == 1001
        during = [publish(r, prefix, make_alert(f"surge:d:{i}", (FAR,))) for i in range(3)]
        gw.proc = None
        gw.start(tmp_path)
        a = gw.ws(token("supervisor"), last_id=got_a[-1])
        frames = drain(a)
        assert [f["id"] for f in frames_of(frames, "alert")] == during
        a.close()
        b.close()
    finally:
        other.stop()


def _raw_ws_that_never_reads(port: int, tok: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then neither reads nor answers pings."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(b"0123456789abcdef").decode()
    s.sendall(
        (
            f"GET /ws?token={tok} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b"101" in s.recv(200)
    return s


def test_slow_client_is_closed_and_others_get_everything(prefix, r, tmp_path):
    """A client that stops reading is closed as too slow while a reading client receives every alert."""
    g = GatewayProcess(prefix, env_extra={"WF_GATEWAY_QUEUE": "16"}).start(tmp_path)
    slow = _raw_ws_that_never_reads(g.port, token("supervisor", subject="slow"))
    try:
        fast = g.ws(token("supervisor", subject="fast"), max_size=None)
        recv_until(fast, lambda f: f["type"] == "caught_up")
        big = tuple(h3.grid_disk(FAR, 12))[:300]  # about 5 KB per alert
        pipe = r.pipeline(transaction=False)
        for i in range(2000):
            pipe.xadd(f"{prefix}:alerts", {"alert": json.dumps(make_alert(f"surge:s:{i}", big))})
        pipe.execute()
        ids = []
        deadline = time.monotonic() + 60
        while len(ids) < 2000 and time.monotonic() < deadline:
            f = json.loads(fast.recv(timeout=10))
            if f["type"] == "alert":
                ids.append(f["alert"]["id"])
        assert ids == [f"surge:s:{i}" for i in range(2000)]
        assert "watchfloor_gateway_closed_slow_total 1" in g.metrics()
        # the close handshake cannot finish with a peer that does not read: it ends at the close timeout
        deadline = time.monotonic() + 30
        while not (audit := g.get_json("/api/audit?action=disconnect&actor=slow", token("supervisor"))[1]["records"]):
            assert time.monotonic() < deadline, "the slow client's disconnection was never audited"
            time.sleep(0.5)
        assert audit[0]["detail"]["code"] in (4408, 1006)
        fast.close()
    finally:
        slow.close()
        g.stop()


def test_dead_connection_is_detected_by_heartbeat(prefix, tmp_path):
    """A client that never answers pings is dropped within a few ping intervals."""
    g = GatewayProcess(prefix, env_extra={"WF_GATEWAY_PING_S": "0.5"}).start(tmp_path)
    s = _raw_ws_that_never_reads(g.port, token("supervisor"))
    try:

        def clients() -> str:
            return g.metrics()

        deadline = time.monotonic() + 10
        while 'watchfloor_gateway_clients{role="supervisor"} 1' not in clients():
            assert time.monotonic() < deadline, "the client never registered"
            time.sleep(0.1)
        # pings every 0.5 s, each given 0.5 s for its pong, then at most a 1 s close timeout
        deadline = time.monotonic() + 15
        while 'watchfloor_gateway_clients{role="supervisor"} 0' not in clients():
            assert time.monotonic() < deadline, "the dead client was never dropped"
            time.sleep(0.2)
    finally:
        s.close()
        g.stop()


def test_every_client_hears_a_heartbeat_frame_at_the_announced_interval_when_nothing_else_happens(prefix, tmp_path):
    """Pages cannot see pings: a ``heartbeat`` frame is what tells them a quiet gateway from one gone from the network."""
    g = GatewayProcess(prefix, env_extra={"WF_GATEWAY_HEARTBEAT_S": "0.3", "WF_GATEWAY_COUNTS_S": "3600"}).start(tmp_path)
    try:
        partner = g.ws(token("transit", zones=("septa-lansdale",), agency="SEPTA", subject="septa-desk"))
        welcome = json.loads(partner.recv(timeout=10))
        assert welcome["type"] == "welcome" and welcome["heartbeat_s"] == 0.3
        t0, beats = time.monotonic(), []
        while len(beats) < 5:
            f = json.loads(partner.recv(timeout=5))
            if f["type"] == "heartbeat":
                beats.append((time.monotonic(), f))
        elapsed = beats[-1][0] - beats[0][0]
        assert 4 * 0.3 * 0.5 < elapsed < 4 * 0.3 * 3, f"5 heartbeats spread over {elapsed:.2f} s at 0.3 s"
        # the gateway's clock and nothing else
        assert all(set(f) == {"type", "at"} and abs(f["at"] - time.time()) < 60 for _, f in beats)
        assert time.monotonic() - t0 < 10
        partner.close()
    finally:
        g.stop()


def test_ack_and_resolve_are_broadcast_to_those_who_saw_the_alert_and_audited(gw, prefix, r):
    """An acknowledgement reaches all who saw the alert (partners without the note); partners cannot acknowledge; the audit records it."""
    sup = gw.ws(token("supervisor", subject="sup-anna"))
    partner = gw.ws(token("transit", zones=("septa-lansdale",), agency="SEPTA", subject="septa-desk"))
    for ws in (sup, partner):
        recv_until(ws, lambda f: f["type"] == "caught_up")
    publish(r, prefix, make_alert("surge:ack:1", (IN_LANSDALE,)))
    recv_until(sup, lambda f: f["type"] == "alert")
    recv_until(partner, lambda f: f["type"] == "alert")
    partner.send(json.dumps({"type": "ack", "alert_id": "surge:ack:1"}))
    err, _ = recv_until(partner, lambda f: f["type"] == "error")
    assert err["code"] == "forbidden"
    sup.send(json.dumps({"type": "ack", "alert_id": "surge:ack:1", "note": "Engine 12 en route; caller at 123 Main St"}))
    a, _ = recv_until(sup, lambda f: f["type"] == "action")
    assert a["action"]["by"] == "sup-anna" and a["action"]["note"].startswith("Engine 12")
    p, _ = recv_until(partner, lambda f: f["type"] == "action")
    assert p["action"]["action"] == "ack" and "note" not in p["action"] and "by" not in p["action"]
    assert not any("Main St" in s for s in all_strings(p))
    sup.send(json.dumps({"type": "resolve", "alert_id": "surge:ack:1", "note": "cleared"}))
    recv_until(partner, lambda f: f["type"] == "action" and f["action"]["action"] == "resolve")
    status, current = gw.get_json("/api/alerts?state=all", token("supervisor"))
    assert current["alerts"][0]["alert"]["status"]["action"] == "resolve"
    assert gw.get_json("/api/alerts", token("supervisor"))[1]["alerts"] == []  # resolved is no longer open
    _, audit = gw.get_json("/api/audit?target=surge:ack:1", token("supervisor"))
    assert [rec["action"] for rec in audit["records"]] == ["ack", "resolve"]
    status, csv_body = gw.get("/api/audit/export?format=csv", token("supervisor"))
    assert status == 200 and b"sup-anna" in csv_body and b",ack," in csv_body
    time.sleep(1.5)  # deliveries are audited once a second
    _, delivered = gw.get_json("/api/audit?action=deliver", token("supervisor"))
    who = {tuple(x) for rec in delivered["records"] for x in rec["detail"]["recipients"]}
    assert ("septa-desk", "transit", "SEPTA") in who and ("sup-anna", "supervisor", "Montgomery County 911") in who
    sup.close()
    partner.close()


def test_subscriptions_filter_and_cannot_widen_scope(gw, prefix, r):
    """A subscription by category gets only matching alerts; a partner naming another agency's zone is refused."""
    sup = gw.ws(token("supervisor"))
    recv_until(sup, lambda f: f["type"] == "caught_up")
    sup.send(json.dumps({"type": "subscribe", "categories": ["FIRE"]}))
    recv_until(sup, lambda f: f["type"] == "subscribed")
    publish(r, prefix, make_alert("surge:t:1", (FAR,), categories={"TRAFFIC": 12}))
    publish(r, prefix, make_alert("surge:f:1", (FAR,), categories={"FIRE": 12}))
    assert [f["alert"]["id"] for f in frames_of(drain(sup), "alert")] == ["surge:f:1"]
    partner = gw.ws(token("school", zones=("school-north-penn-hs",), agency="North Penn SD"))
    recv_until(partner, lambda f: f["type"] == "caught_up")
    partner.send(json.dumps({"type": "subscribe", "zones": ["septa-lansdale"]}))
    err, _ = recv_until(partner, lambda f: f["type"] == "error")
    assert err["code"] == "zone_not_allowed"
    sup.close()
    partner.close()


def test_hostile_frames_are_refused_without_hurting_the_connection(gw, prefix, r):
    """Malformed JSON, binary frames and unknown types get error frames; an oversize frame closes with 1009; a flood is rate-limited."""
    ws = gw.ws(token("supervisor"))
    recv_until(ws, lambda f: f["type"] == "caught_up")
    ws.send("{not json")
    assert recv_until(ws, lambda f: f["type"] == "error")[0]["code"] == "bad_json"
    ws.send(b"\x00\x01")
    assert recv_until(ws, lambda f: f["type"] == "error")[0]["code"] == "binary_frame"
    ws.send(json.dumps({"type": "subscribe", "polygon": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}))
    assert recv_until(ws, lambda f: f["type"] == "error")[0]["code"] == "bad_polygon"
    publish(r, prefix, make_alert("surge:h:1", (FAR,)))
    assert recv_until(ws, lambda f: f["type"] == "alert")[0]["alert"]["id"] == "surge:h:1"
    for _ in range(60):
        ws.send(json.dumps({"type": "subscribe"}))
    frames = []
    with pytest.raises(ConnectionClosed) as flooded:  # 20 refusals close the socket
        while True:
            frames.append(json.loads(ws.recv(timeout=5)))
    assert "rate_limited" in [f.get("code") for f in frames] and flooded.value.rcvd.code == 4429
    big = gw.ws(token("supervisor"))
    big.send("x" * (200 * 1024))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            big.recv(timeout=5)
    assert closed.value.rcvd.code == 1009
    ws.close()


def test_event_zone_commander_sees_its_zone_only_while_active(gw, prefix, r):
    """A supervisor creates an event zone; its commander receives alerts inside it and its live count, and nothing outside it."""
    centre = h3.cell_to_latlng(FAR)
    ring = [[centre[1] + dx, centre[0] + dy] for dx, dy in ((-0.01, -0.01), (0.01, -0.01), (0.01, 0.01), (-0.01, 0.01), (-0.01, -0.01))]
    sup = gw.ws(token("supervisor"))
    recv_until(sup, lambda f: f["type"] == "caught_up")
    now = time.time()
    polygon = {"type": "Polygon", "coordinates": [ring]}
    zone = {
        "type": "create_zone",
        "id": "fair-2026",
        "name": "County fair",
        "polygon": polygon,
        "starts_at": now - 60,
        "ends_at": now + 3600,
    }
    sup.send(json.dumps(zone))
    created, _ = recv_until(sup, lambda f: f["type"] in ("zone_created", "error"))
    assert created["type"] == "zone_created" and FAR in created["zone"]["cells"]
    assert json.loads(r.hget(f"{prefix}:zones", "fair-2026"))["kind"] == "event"
    cmd = gw.ws(token("commander", zones=("fair-2026",), agency="Fair command"))
    recv_until(cmd, lambda f: f["type"] == "caught_up")
    publish(r, prefix, make_alert("surge:fair:1", (FAR,)))
    publish(r, prefix, make_alert("surge:elsewhere:1", (IN_LANSDALE,)))
    minute = int(time.time() // 60)
    r.hset(f"{prefix}:b:{minute}", mapping={f"{FAR}|ALL": 7, f"{IN_LANSDALE}|ALL": 9})
    r.set(f"{prefix}:wm:call:0", time.time())
    frames = drain(cmd, quiet_s=1.5)
    assert [f["alert"]["id"] for f in frames_of(frames, "alert")] == ["surge:fair:1"]
    counts = frames_of(frames, "counts")[-1]
    assert counts["zones"] == {"fair-2026": 7} and IN_LANSDALE not in counts["cells"]
    sup.close()
    cmd.close()


def test_rest_hotspots_history_and_zones_are_scoped(gw, prefix, r):
    """Hot spots, a cell's history and zones come back precise for a supervisor; a partner gets its units in the newest
    closed hour of its released table only (k-suppressed), no cell history, and its zones."""
    now = time.time()
    # the newest hour that has settled (ended 120 s of event time ago, WF_GATEWAY_SETTLE_S): what a partner is given
    last_hour = int((now - 120) // 3600) * 3600 - 3600
    minute = int(now // 60)
    for m, mapping in (
        (minute, {f"{FAR}|ALL": 5, f"{FAR}|TRAFFIC": 5, f"{IN_LANSDALE}|ALL": 4, f"{IN_LANSDALE}|EMS": 2, f"{IN_LANSDALE}|FIRE": 2}),
        (last_hour // 60, {f"{IN_LANSDALE}|ALL": 4, f"{IN_LANSDALE}|EMS": 4, f"{FAR}|ALL": 9, f"{FAR}|EMS": 9}),
    ):
        r.hset(f"{prefix}:b:{m}", mapping=mapping)
    r.set(f"{prefix}:wm:call:1", now)
    sup, partner = token("supervisor"), token("transit", zones=("septa-lansdale",), agency="SEPTA")
    _, hs = gw.get_json("/api/hotspots", sup)
    assert {c["cell"]: c["count"] for c in hs["cells"]} == {FAR: 5, IN_LANSDALE: 4}
    assert len(hs["cells"][0]["boundary"]) == 6
    _, hp = gw.get_json("/api/hotspots", partner)
    assert hp["cells"] == [] and hp["window_min"] == 60 and hp["at"] == last_hour + 3600
    assert [(u["unit"], u["calls"]) for u in hp["units"]] == [("septa-lansdale", {"all": 4})]
    assert gw.get_json("/api/hotspots?window=15", partner)[1]["error"] == "bad_window"  # no free windows for partners
    status, body = gw.get_json(f"/api/cells/{FAR}/history?hours=1", partner)
    assert (status, body["error"]) == (403, "forbidden")
    status, body = gw.get_json(f"/api/cells/{IN_LANSDALE}/history?hours=1&step=60", partner)
    assert (status, body["error"]) == (403, "forbidden")  # partners read their released table instead
    _, rel = gw.get_json("/api/released?hours=2", partner)
    assert rel["windows"][-1]["values"] == {"septa-lansdale": {"all": 4}} and rel["windows"][-1]["start"] == last_hour
    _, hist = gw.get_json(f"/api/cells/{IN_LANSDALE}/history?hours=1&step=60", sup)
    assert hist["bins"][-1]["categories"] == {"EMS": 2, "FIRE": 2}
    _, zones = gw.get_json("/api/zones", partner)
    assert [z["id"] for z in zones["zones"]] == ["septa-lansdale"]
    assert gw.get_json("/api/hotspots?window=abc", sup)[0] == 400


def test_actions_reach_clients_that_read_the_alert_elsewhere_and_resume_with_them(gw, prefix, r):
    """A client that learnt of an alert from /api/alerts gets its acknowledgement live; one that was away gets it on resume."""
    sid = publish(r, prefix, make_alert("surge:late:1", (IN_LANSDALE,)))
    time.sleep(0.5)
    status, current = gw.get_json("/api/alerts", token("supervisor"))
    assert [a["alert"]["id"] for a in current["alerts"]] == ["surge:late:1"] and current["last_id"] == sid
    watcher = gw.ws(token("supervisor", subject="watcher"), last_id=current["last_id"])
    recv_until(watcher, lambda f: f["type"] == "caught_up")
    partner_tok = token("transit", zones=("septa-lansdale",), agency="SEPTA")
    cursor = gw.get_json("/api/alerts?state=all", partner_tok)[1]["alerts"][0]["id"]  # partners resume from sealed cursors
    assert cursor.startswith("c-") and sid not in cursor
    assert gw.get_json("/api/alerts", partner_tok)[1]["last_id"] != cursor  # sealed afresh each time: nothing to compare
    away = gw.ws(partner_tok, last_id=cursor)
    recv_until(away, lambda f: f["type"] == "caught_up")
    away.close()
    actor = gw.ws(token("supervisor", subject="actor"))
    recv_until(actor, lambda f: f["type"] == "caught_up")
    actor.send(json.dumps({"type": "ack", "alert_id": "surge:late:1", "note": "on it"}))
    got, _ = recv_until(watcher, lambda f: f["type"] == "action")
    assert got["action"]["by"] == "actor"
    back = gw.ws(partner_tok, last_id=cursor)
    frames = drain(back)
    actions = frames_of(frames, "action")
    assert len(actions) == 1 and set(actions[0]["action"]) == {"alert_id", "action", "at"}
    _, mine = gw.get_json("/api/alerts", partner_tok)
    assert mine["alerts"][0]["alert"]["status"]["action"] == "ack" and "note" not in mine["alerts"][0]["alert"]["status"]
    for ws in (watcher, actor, back):
        ws.close()


def test_cell_outlines_are_served_only_within_scope(gw):
    """Any cell's outline for a supervisor; a partner gets its own zones' cells, nothing else (not even their parents)."""
    sup, partner = token("supervisor"), token("transit", zones=("septa-lansdale",), agency="SEPTA")
    status, body = gw.get_json(f"/api/cells?ids={FAR},{IN_LANSDALE}", sup)
    assert status == 200 and [c["cell"] for c in body["cells"]] == [FAR, IN_LANSDALE] and len(body["cells"][0]["boundary"]) == 6
    parent = h3.cell_to_parent(IN_LANSDALE, 7)
    assert gw.get_json(f"/api/cells?ids={IN_LANSDALE}", partner)[0] == 200
    status, body = gw.get_json(f"/api/cells?ids={parent},{IN_LANSDALE}", partner)
    assert (status, body["error"]) == (403, "out_of_scope")
    status, body = gw.get_json(f"/api/cells?ids={IN_LANSDALE},{FAR}", partner)
    assert (status, body["error"]) == (403, "out_of_scope")
    assert gw.get_json("/api/cells?ids=nonsense", sup)[0] == 400


def test_a_partner_is_sent_an_alert_update_only_when_what_it_sees_changes(gw, prefix, r):
    """Updates of an alert that change only the detector's figures (hidden from partners) send a partner nothing, since each
    frame would date another call; a change it can see (severity, categories) and the close are sent. Supervisors get all."""
    sup = gw.ws(token("supervisor"))
    partner = gw.ws(token("transit", zones=("septa-lansdale",)))
    for ws in (sup, partner):
        recv_until(ws, lambda f: f["type"] == "caught_up")
    updates = [
        make_alert("surge:dedup:1", (IN_LANSDALE,), observed=12, score=7.0, categories={"TRAFFIC": 12}),
        make_alert("surge:dedup:1", (IN_LANSDALE,), observed=13, score=7.1, categories={"TRAFFIC": 13}, state=AlertState.UPDATE),
        make_alert("surge:dedup:1", (IN_LANSDALE,), observed=14, score=7.3, categories={"TRAFFIC": 14}, state=AlertState.UPDATE),
        make_alert("surge:dedup:1", (IN_LANSDALE,), observed=25, score=11.0, categories={"TRAFFIC": 25}, state=AlertState.UPDATE),
        make_alert("surge:dedup:1", (IN_LANSDALE,), observed=25, score=11.0, categories={"TRAFFIC": 25}, state=AlertState.CLOSED),
    ]
    for a in updates:
        publish(r, prefix, a)
    got_sup = frames_of(drain(sup), "alert")
    got_partner = frames_of(drain(partner), "alert")
    assert len(got_sup) == 5
    assert [(f["alert"]["state"], f["alert"]["severity"]) for f in got_partner] == [
        ("open", "medium"),
        ("open", "high"),
        ("closed", "high"),
    ]
    sup.close()
    partner.close()


def test_an_alert_published_right_after_the_handshake_reaches_the_new_client(prefix, r):
    """A client that sees an alert published the moment its socket opens, before its caught_up, still gets it: it is live
    from the stream position at its handshake, not from wherever the hub has read to once the handler's first await (the
    connect audit, made slow here) is done. A real gateway in this process, on the real Redis."""
    import asyncio

    from websockets.asyncio.client import connect as aconnect

    from gateway.audit import AuditLog
    from gateway.server import Gateway
    from gateway.settings import load_gateway_settings
    from gateway.store import Store
    from tests.stackutil import free_port

    class SlowAudit(AuditLog):
        async def record(self, record):
            await asyncio.sleep(0.5)  # a busy Redis: the hub reads on meanwhile
            return await super().record(record)

    async def scenario() -> list[str]:
        settings = load_gateway_settings({"WF_GATEWAY_SECRET": SECRET.decode()}, port=free_port(), redis_prefix=prefix, redis_url=REDIS_URL)
        store = Store.from_url(settings.redis_url, prefix, settings.partitions)
        gateway = Gateway(settings, store, SlowAudit(store.client, prefix))
        await gateway.start()
        got = []
        try:
            async with aconnect(f"ws://127.0.0.1:{gateway.port}/ws?token={token('supervisor')}") as ws:
                publish(r, prefix, make_alert("surge:quick:1", (FAR,)))
                async with asyncio.timeout(5):
                    while not got or got[-1] != "caught_up":
                        frame = json.loads(await ws.recv())
                        got.append(frame["alert"]["id"] if frame["type"] == "alert" else frame["type"])
        finally:
            await gateway.stop()
            await store.close()
        return got

    assert "surge:quick:1" in asyncio.run(scenario())


def test_alert_records_appended_again_after_a_failover_reach_nobody_twice(gw, prefix, r):
    """After a lossy Redis failover the detection worker appends again, under new ids, the records Redis lost: the
    same bodies byte for byte. A supervisor and a partner connected through it, and a supervisor resuming from an
    original's id, get each record once, in the order made, and the next new record; /metrics counts the copies."""
    sup = gw.ws(token("supervisor"))
    partner = gw.ws(token("transit", zones=("septa-lansdale",)))
    for ws in (sup, partner):
        recv_until(ws, lambda f: f["type"] == "caught_up")
    at = time.time()
    high = {"observed": 25, "score": 11.0, "categories": {"TRAFFIC": 25}}
    made = [
        make_alert("surge:copy:1", (IN_LANSDALE,), observed=12, score=7.0, categories={"TRAFFIC": 12}, at=at),
        make_alert("surge:copy:1", (IN_LANSDALE,), **high, state=AlertState.UPDATE, at=at + 60),
        make_alert("surge:copy:1", (IN_LANSDALE,), **high, state=AlertState.CLOSED, at=at + 120),
    ]
    first = [publish(r, prefix, a) for a in made]
    copies = [publish(r, prefix, a) for a in made[1:]]  # the two Redis lost, made again
    after = make_alert("surge:copy:2", (IN_LANSDALE,), at=at + 180)
    newest = publish(r, prefix, after)
    got = frames_of(drain(sup), "alert")
    assert [f["id"] for f in got] == [*first, newest]
    assert [f["alert"]["state"] for f in frames_of(drain(partner), "alert")] == ["open", "open", "closed", "open"]
    sup.close()
    partner.close()
    again = gw.ws(token("supervisor"), last_id=first[0])
    _, frames = recv_until(again, lambda f: f["type"] == "caught_up")
    assert [f["id"] for f in frames_of(frames, "alert")] == [first[1], first[2], newest]
    assert not set(copies) & {f.get("id") for f in frames}
    again.close()
    assert "watchfloor_gateway_copies_total 2" in gw.metrics()
