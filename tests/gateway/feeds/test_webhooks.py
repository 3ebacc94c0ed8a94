"""Partners' webhooks and CAP feed through a real gateway process, real Redis and a local receiver (gateway/feeds)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from detectors.types import AlertKind, AlertState
from gateway.agreements import DEFAULT_AGREEMENTS
from gateway.feeds.cap import ATOM_NS, CAP_NS
from gateway.feeds.signing import delivery_id, delivery_key, verify
from gateway.policy import derive_id_key, opaque_alert_id
from tests.gateway.feeds.receiver import Receiver, wait_for
from tests.gateway.live import FAR, IN_LANSDALE, LANSDALE, ROOT, SECRET, GatewayProcess, make_alert, publish, recv_until, token
from tests.stackutil import free_port

pytestmark = pytest.mark.stack

HOOK_SECRET = "septa-webhook-key-" + "k" * 30
SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parents[1] / "vendor" / "CAP-v1.2.xsd")
ID_KEY = derive_id_key(SECRET)
DELIVERY_KEY = delivery_key(SECRET)
C, A = f"{{{CAP_NS}}}", f"{{{ATOM_NS}}}"
#: a second cell of the Lansdale zone (an alert's cells; never to be sent to a partner)
IN_LANSDALE_2 = sorted(LANSDALE.cells)[1]
NOTE = "caller John Doe at 12 Main St"


def agreements_file(tmp: Path, url: str, *, cap: bool = True) -> Path:
    """The demo agreements with SEPTA's webhook (and CAP feed) added; the school agreements have neither."""
    text = DEFAULT_AGREEMENTS.read_text()
    septa_end = text.index("[agreement.mciu-1]")
    feed = f'webhook_url = "{url}"\nwebhook_secret_env = "WF_WEBHOOK_SECRET_SEPTA"\ncap = {"true" if cap else "false"}\n\n'
    path = tmp / "agreements.toml"
    path.write_text(text[:septa_end] + feed + text[septa_end:])
    return path


def feed_env(agreements: Path, **extra: str) -> dict[str, str]:
    return {
        "WF_GATEWAY_AGREEMENTS": str(agreements),
        "WF_WEBHOOK_SECRET_SEPTA": HOOK_SECRET,
        "WF_FEEDS_ALLOW_HTTP": "1",
        "WF_FEEDS_BACKOFF_S": "0.05",
        "WF_FEEDS_BACKOFF_MAX_S": "0.2",
        "WF_FEEDS_ATTEMPTS": "4",
        "WF_FEEDS_LOCK_S": "1.5",
        "WF_FEEDS_SENDER": "911@test-county.example",
        **extra,
    }


@pytest.fixture
def receiver():
    rcv = Receiver().start()
    yield rcv
    rcv.stop()


@pytest.fixture
def feed_gw(prefix, tmp_path, receiver):
    g = GatewayProcess(prefix, env_extra=feed_env(agreements_file(tmp_path, receiver.url))).start(tmp_path)
    yield g
    g.stop()


def inside(name: str, **kw) -> dict:
    """An alert touching the Lansdale station zone (SEPTA's)."""
    return make_alert(f"surge:{IN_LANSDALE}:{name}", (IN_LANSDALE, IN_LANSDALE_2, FAR), **kw)


def opaque(alert: dict) -> str:
    return opaque_alert_id(ID_KEY, alert["id"])


def body_of(req) -> dict:
    return json.loads(req.body)


def payload(frame: dict) -> dict:
    return frame.get("alert") or frame.get("action") or {}


def assert_signed(rcv: Receiver) -> None:
    for req in rcv.all():
        assert verify(HOOK_SECRET.encode(), req.timestamp, req.body, req.signature, now=time.time()), req.delivery


def first_deliveries(rcv: Receiver) -> list[str]:
    """Delivery ids in the order they were first delivered (2xx)."""
    return list(dict.fromkeys(r.delivery for r in rcv.delivered()))


def ack(g: GatewayProcess, alert_id: str, action: str = "ack") -> None:
    """A supervisor acknowledges (or resolves) an alert over the WebSocket, as the dashboard does."""
    with g.ws(token("supervisor", subject="sup-7")) as ws:
        recv_until(ws, lambda m: m["type"] == "caught_up")
        ws.send(json.dumps({"type": action, "alert_id": alert_id, "note": NOTE}))
        recv_until(ws, lambda m: m["type"] == "action" and m["action"]["alert_id"] == alert_id)


def audit(g: GatewayProcess) -> list[dict]:
    status, body = g.get_json("/api/audit?action=feed_delivery", token("supervisor", subject="auditor"))
    assert status == 200, body
    return body["records"]


def test_the_webhook_carries_exactly_the_partners_dashboard_frames_signed_in_stream_order_and_nothing_else(feed_gw, r, receiver):
    g = feed_gw
    with g.ws(token("transit")) as dash:
        recv_until(dash, lambda m: m["type"] == "caught_up")
        a = inside("a", categories={"TRAFFIC": 9, "EMS": 2, "FIRE": 1})
        publish(r, g.prefix, a)
        publish(r, g.prefix, make_alert(f"surge:{FAR}:far", (FAR,)))  # outside every SEPTA zone
        publish(r, g.prefix, inside("small", observed=2, categories={"EMS": 2}))  # below k
        publish(r, g.prefix, {**a, "state": AlertState.UPDATE.value, "observed": 13, "score": 7.3})  # nothing a partner sees changed
        publish(r, g.prefix, make_alert("feed_outage:jurisdiction:1", (), kind=AlertKind.FEED_OUTAGE))
        ack(g, a["id"])
        publish(r, g.prefix, {**a, "state": AlertState.CLOSED.value, "categories": {"TRAFFIC": 12, "FIRE": 3}})
        shown = []

        def four_shown() -> bool:
            shown.extend(f for f in _frames(dash) if f["type"] in ("alert", "action"))
            return len(shown) >= 4

        wait_for(four_shown, what="4 dashboard frames")
        wait_for(lambda: len(receiver.delivered()) >= len(shown), what="the webhooks")
        time.sleep(0.5)
        shown += [f for f in _frames(dash) if f["type"] in ("alert", "action")]
    sent = [body_of(req) for req in receiver.delivered()]
    # the same frames as the dashboard, in the same order: alert (open), outage, action, alert (closed)
    assert [(f["type"], payload(f)) for f in sent] == [(f["type"], payload(f)) for f in shown]
    assert [f["type"] for f in sent] == ["alert", "alert", "action", "alert"]
    assert payload(sent[0])["id"] == opaque(a) and payload(sent[3])["state"] == "closed"
    assert_signed(receiver)
    everything = b"\n".join(req.body for req in receiver.all()).decode() + json.dumps([(q.delivery, q.timestamp) for q in receiver.all()])
    for secret in [IN_LANSDALE, IN_LANSDALE_2, FAR, a["id"], NOTE, "sup-7", '"observed"', '"expected"', '"score"', '"p_value"', '"model"',
                   '"cells"', "calls in 15 min", opaque(inside("small")), opaque(make_alert(f"surge:{FAR}:far", (FAR,)))]:  # fmt: skip
        assert secret not in everything, secret
    assert not re.search(r"\b\d{13}-\d+\b", everything)  # no stream id (they date activity outside the scope)
    records = audit(g)
    assert sorted(rec["detail"]["outcome"] for rec in records) == ["delivered"] * 4
    assert {rec["target"] for rec in records} == {"septa"}


def _frames(ws) -> list[dict]:
    out = []
    while True:
        try:
            out.append(json.loads(ws.recv(timeout=0.3)))
        except TimeoutError:
            return out


def test_a_failing_receiver_gets_each_delivery_again_under_the_same_id_and_misses_nothing_once_it_recovers(feed_gw, r, receiver):
    g = feed_gw
    receiver.answer = lambda d, attempt, body: {1: (500, {}), 2: (429, {"Retry-After": "0"})}.get(attempt, (200, {}))
    alerts = [inside(f"retry-{n}") for n in range(3)]
    for a in alerts:
        publish(r, g.prefix, a)
    wait_for(lambda: len(receiver.delivered()) == 3, what="3 deliveries")
    assert [payload(body_of(q))["id"] for q in receiver.delivered()] == [opaque(a) for a in alerts]  # stream order
    for d in first_deliveries(receiver):
        tries = [q for q in receiver.all() if q.delivery == d]
        assert [q.status for q in tries] == [500, 429, 200]
        assert len({q.body for q in tries}) == 1  # the same body every time
    assert_signed(receiver)
    wait_for(lambda: len(audit(g)) == 3, what="3 audit records")
    assert sorted((rec["detail"]["outcome"], rec["detail"]["attempts"]) for rec in audit(g)) == [("delivered", 3)] * 3


def test_records_appended_again_after_a_lossy_failover_are_not_delivered_again(feed_gw, r, receiver):
    """The detection worker appends again, under new ids, the records a lossy Redis failover lost (the same bodies): the
    partner's receiver gets each view once, in the order made, never an older state after a newer one."""
    g = feed_gw
    at = time.time()
    made = [
        inside("copy", categories={"TRAFFIC": 9}, at=at),
        inside("copy", observed=25, score=11.0, categories={"TRAFFIC": 25}, state=AlertState.UPDATE, at=at + 60),
        inside("copy", observed=25, score=11.0, categories={"TRAFFIC": 25}, state=AlertState.CLOSED, at=at + 120),
    ]
    for a in made:
        publish(r, g.prefix, a)
    wait_for(lambda: len(receiver.delivered()) == 3, what="3 deliveries")
    for a in made[1:]:
        publish(r, g.prefix, a)  # the two Redis lost, made again
    last = inside("after")
    publish(r, g.prefix, last)
    wait_for(lambda: len(receiver.delivered()) >= 4, what="the next alert's delivery")
    time.sleep(0.5)
    sent = [payload(body_of(q)) for q in receiver.delivered()]
    assert [(s["id"], s["state"]) for s in sent] == [(opaque(made[0]), "open")] * 2 + [(opaque(made[0]), "closed"), (opaque(last), "open")]
    assert "watchfloor_gateway_copies_total 2" in g.metrics()


def test_a_gateway_killed_mid_delivery_is_replaced_and_the_feed_resumes_after_its_cursor_with_no_gap(prefix, tmp_path, r, receiver):
    env = feed_env(agreements_file(tmp_path, receiver.url), WF_FEEDS_ATTEMPTS="100", WF_FEEDS_BACKOFF_MAX_S="0.1")
    down = [True]
    receiver.answer = lambda d, attempt, body: (503, {}) if down[0] else (200, {})
    first = GatewayProcess(prefix, env_extra=env).start(tmp_path)
    alerts = [inside(f"restart-{n}") for n in range(4)]
    try:
        for a in alerts[:2]:
            publish(r, prefix, a)
        wait_for(lambda: len(receiver.all()) >= 2, what="the first delivery's retries")
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)  # no goodbye: the lock is left to expire
        first.proc.wait(10)
    finally:
        first.stop()
    for a in alerts[2:]:
        publish(r, prefix, a)  # while no gateway runs
    down[0] = False
    second = GatewayProcess(prefix, env_extra=env).start(tmp_path)
    try:
        wait_for(lambda: len(first_deliveries(receiver)) == 4, timeout_s=20, what="every delivery after the restart")
        time.sleep(0.5)
    finally:
        second.stop()
    expected = [delivery_id(DELIVERY_KEY, "septa", sid) for sid in _stream_ids(r, prefix, alerts)]
    assert first_deliveries(receiver) == expected  # none missing, in stream order
    delivered = [q.delivery for q in receiver.delivered()]
    assert all(delivered.count(d) == 1 for d in expected[1:])  # only the one in flight may come twice
    assert [payload(body_of(q))["id"] for q in receiver.delivered()][-3:] == [opaque(a) for a in alerts[1:]]


def _stream_ids(r, prefix: str, alerts: list[dict]) -> list[str]:
    ids = {a["id"] for a in alerts}
    return [sid for sid, fields in r.xrange(f"{prefix}:alerts") if "alert" in fields and json.loads(fields["alert"])["id"] in ids]


def test_two_gateways_deliver_each_alert_once_between_them(prefix, tmp_path, r, receiver):
    env = feed_env(agreements_file(tmp_path, receiver.url))
    gateways = [GatewayProcess(prefix, env_extra=env).start(tmp_path) for _ in range(2)]
    try:
        alerts = [inside(f"pair-{n}") for n in range(6)]
        for a in alerts:
            publish(r, prefix, a)
        wait_for(lambda: len(receiver.delivered()) >= 6, what="6 deliveries")
        time.sleep(1.0)
    finally:
        for g in gateways:
            g.stop()
    assert [q.delivery for q in receiver.all()] == first_deliveries(receiver)  # each once, no second sender
    assert [payload(body_of(q))["id"] for q in receiver.all()] == [opaque(a) for a in alerts]


def test_a_delivery_that_keeps_failing_is_dead_lettered_the_feed_goes_on_and_only_supervisors_read_it(feed_gw, r, receiver):
    g = feed_gw
    poison, broken, fine = inside("poison"), inside("broken"), inside("fine")

    def answer(d, attempt, body):
        seen = payload(json.loads(body)).get("id")
        return {opaque(poison): (400, {}), opaque(broken): (500, {})}.get(seen, (204, {}))

    receiver.answer = answer
    for a in (poison, broken, fine):
        publish(r, g.prefix, a)
    wait_for(lambda: len(receiver.delivered()) == 1, what="the delivery after the dead letters")
    assert payload(body_of(receiver.delivered()[0]))["id"] == opaque(fine)
    status, body = g.get_json("/api/feeds/deadletters", token("supervisor", subject="sup-1"))
    assert status == 200, body
    letters = body["deadletters"]
    assert [(d["alert_id"], d["attempts"], d["status"]) for d in letters] == [(opaque(broken), "4", "500"), (opaque(poison), "1", "400")]
    assert all(d["agreement"] == "septa" and d["delivery"].startswith("wf-septa-") for d in letters)
    for who, code in ((token("transit"), 403), (token("school", zones=("school-north-penn-hs",)), 403), (None, 401),
                      (token("commander", zones=("septa-lansdale",)), 403)):  # fmt: skip
        assert g.get("/api/feeds/deadletters", who)[0] == code
    outcomes = sorted((rec["detail"]["outcome"], rec["detail"]["attempts"]) for rec in audit(g))
    assert outcomes == [("dead_letter", 1), ("dead_letter", 4), ("delivered", 1)]
    text = g.metrics()
    assert 'watchfloor_gateway_feed_delivered_total{agreement="septa"} 1' in text
    assert 'watchfloor_gateway_feed_dead_letters_total{agreement="septa"} 2' in text


def test_the_cap_feed_is_read_with_the_partners_token_holds_valid_cap_and_matches_the_webhooks(feed_gw, r, receiver):
    g = feed_gw
    a = inside("cap", categories={"TRAFFIC": 9})
    publish(r, g.prefix, a)
    publish(r, g.prefix, {**a, "state": AlertState.UPDATE.value, "categories": {"TRAFFIC": 9, "FIRE": 5}})
    ack(g, a["id"])
    publish(r, g.prefix, {**a, "state": AlertState.CLOSED.value})
    wait_for(lambda: len(receiver.delivered()) == 4, what="4 webhooks")
    partner = token("transit")
    status, doc = g.get("/feeds/cap.atom", partner)
    assert status == 200, doc
    feed = ET.fromstring(doc)
    entries = feed.findall(f"{A}entry")
    alerts = [e.find(f"{A}content/{C}alert") for e in entries]
    for el in alerts:
        assert el is not None
        SCHEMA.validate(ET.tostring(el, encoding="unicode"))
    hooks = receiver.delivered()[::-1]  # the feed lists the newest first
    assert [el.findtext(f"{C}identifier") for el in alerts] == [q.delivery for q in hooks]
    assert [el.findtext(f"{C}msgType") for el in alerts] == ["Update", "Update", "Update", "Alert"]
    for el, q in zip(alerts, hooks, strict=True):
        frame = body_of(q)
        view = frame["alert"] if frame["type"] == "alert" else None
        assert el.findtext(f"{C}incidents") == opaque(a)
        if view is not None:
            assert el.findtext(f".//{C}headline") == view["reason"]
        assert [x.findtext(f"{C}areaDesc") for x in el.iter(f"{C}area")] == [LANSDALE.name]
    assert [c.text for c in alerts[2].iter(f"{C}category")] == ["Fire", "Transport"]
    text = doc.decode()
    for secret in [IN_LANSDALE, IN_LANSDALE_2, FAR, a["id"], NOTE, "sup-7"]:
        assert secret not in text
    # each message at its own URL, the same document
    for e in entries:
        href = e.find(f"{A}link").get("href")
        status, one = g.get(href, partner)
        assert status == 200 and ET.fromstring(one).findtext(f"{C}identifier") == href.rsplit("/", 1)[1][:-4]
    assert g.get("/feeds/cap/wf-septa-000000000000000000000000.xml", partner)[0] == 404
    # ETag: unchanged, 304
    etag = _etag(g, partner)
    assert g.get("/feeds/cap.atom", partner, headers={"If-None-Match": etag})[0] == 304


def _etag(g: GatewayProcess, tok: str) -> str:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(g.base + "/feeds/cap.atom", headers={"Authorization": f"Bearer {tok}"})) as resp:
        return resp.headers["ETag"]


def test_the_cap_feed_refuses_no_token_another_agreement_a_narrowed_token_and_an_agreement_without_it(feed_gw):
    g = feed_gw
    sup = token("supervisor", subject="sup-1")
    school = token("school", zones=("school-north-penn-hs",))
    cases = [
        (None, "/feeds/cap.atom", 401, "missing"),
        (token("transit"), "/feeds/cap.atom?agreement=mciu-1", 403, "forbidden"),
        (token("transit"), "/feeds/cap.atom?agreement=nope", 403, "forbidden"),  # the same answer: nothing to probe
        (token("transit", zones=("septa-lansdale",)), "/feeds/cap.atom", 403, "forbidden"),
        (school, "/feeds/cap.atom", 403, "not_shared"),
        (token("commander", zones=("septa-lansdale",)), "/feeds/cap.atom", 403, "no_scope"),  # as for the API
        (sup, "/feeds/cap.atom", 400, "bad_agreement"),
        (sup, "/feeds/cap.atom?agreement=nope", 404, "not_found"),
        (sup, "/feeds/cap.atom?agreement=mciu-1", 403, "not_shared"),
        (sup, "/feeds/cap.atom?agreement=septa", 200, None),
        (token("transit"), "/feeds/cap.atom?agreement=septa", 200, None),
    ]
    for tok, path, status, code in cases:
        got, body = g.get(path, tok)
        assert got == status, (path, body)
        if code is not None:
            assert json.loads(body)["error"] == code


def test_a_gateway_whose_agreement_names_a_webhook_secret_that_is_not_set_refuses_to_start(tmp_path, prefix):
    env = {**os.environ, **feed_env(agreements_file(tmp_path, "http://127.0.0.1:9/hook")), "WF_GATEWAY_SECRET": SECRET.decode()}
    env.pop("WF_WEBHOOK_SECRET_SEPTA")
    env.update(WF_REDIS_PREFIX=prefix, WF_GATEWAY_PORT=str(free_port()))
    done = subprocess.run([sys.executable, "-m", "gateway"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "agreement 'septa': WF_WEBHOOK_SECRET_SEPTA is not set" in done.stderr
