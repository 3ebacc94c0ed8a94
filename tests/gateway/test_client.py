"""gateway.client against real gateways sharing Redis and secrets: moving on loss, resuming by id, peers' CORS and origins."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gateway.client import ClientRefused
from gateway.cursors import cursor_key, unseal
from gateway.tokens import issue
from tests.gateway.live import (
    FAR,
    IN_LANSDALE,
    SECRET,
    ClientThread,
    GatewayProcess,
    agreement_for,
    make_alert,
    publish,
    token,
)

pytestmark = pytest.mark.stack
LANSDALE = ("septa-lansdale",)


@pytest.fixture
def pair(prefix, tmp_path):
    """Two gateways on one Redis prefix and secret, each told both addresses (WF_GATEWAY_PEERS)."""
    a, b = GatewayProcess(prefix), GatewayProcess(prefix)
    peers = f"{a.base},{b.base}"
    for g in (a, b):
        g.env_extra["WF_GATEWAY_PEERS"] = peers
        g.start(tmp_path)
    yield a, b
    for g in (a, b):
        g.stop()


def ids(frames: list[dict]) -> list[str]:
    return [f["id"] for f in frames]


def test_the_client_moves_to_the_next_gateway_on_sigkill_and_resumes_without_gap_or_repeat(pair, prefix, r):
    """A supervisor's and a partner's client on gateway 1, killed with SIGKILL, carry on through gateway 2 from where they
    were: every alert of their scope once, in order (the partner's sealed cursor, sealed by gateway 1, opens on gateway 2)."""
    a, b = pair
    sup = ClientThread([a.base, b.base], token("supervisor")).start()
    partner = ClientThread([a.base, b.base], token("transit", zones=LANSDALE)).start()
    try:
        for c in (sup, partner):
            c.wait_for("caught_up on gateway 1", lambda c: c.of("caught_up"))
        before = [publish(r, prefix, make_alert(f"surge:k:{i}", (IN_LANSDALE if i % 2 else FAR,))) for i in range(6)]
        sup.wait_for("the first alerts", lambda c: len(c.of("alert")) == 6)
        partner.wait_for("the partner's first alerts", lambda c: len(c.of("alert")) == 3)
        a.kill()
        killed = time.monotonic()
        during = [publish(r, prefix, make_alert(f"surge:m:{i}", (IN_LANSDALE if i % 2 else FAR,))) for i in range(6)]
        for c in (sup, partner):
            c.wait_for("caught_up on gateway 2", lambda c: [e for e in c.client.events if e.kind == "caught_up" and e.gateway == 1])
        after = [publish(r, prefix, make_alert(f"surge:n:{i}", (IN_LANSDALE if i % 2 else FAR,))) for i in range(4)]
        every = before + during + after
        sup.wait_for("every alert", lambda c: len(c.of("alert")) >= len(every))
        partner.wait_for("every partner alert", lambda c: len(c.of("alert")) >= len(every) // 2)
        time.sleep(0.5)  # a repeat would arrive now
        assert ids(sup.of("alert")) == every
        key, agreement = cursor_key(SECRET), agreement_for("transit", LANSDALE)
        assert [unseal(key, i, agreement) for i in ids(partner.of("alert"))] == every[1::2]
        for c in (sup, partner):
            kinds = [(e.kind, e.gateway) for e in c.client.events]
            assert kinds[:3] == [("connected", 0), ("caught_up", 0), ("lost", 0)] and kinds[-2:] == [("connected", 1), ("caught_up", 1)]
            resumed = next(e.at for e in c.client.events if e.kind == "caught_up" and e.gateway == 1)
            assert resumed - killed < 2.0, f"resumed {resumed - killed:.2f} s after the kill"
    finally:
        sup.stop()
        partner.stop()


def test_a_client_given_a_dead_address_first_starts_on_the_next_one(prefix, r, tmp_path):
    g = GatewayProcess(prefix).start(tmp_path)
    dead = GatewayProcess(prefix)  # a free port nobody listens on
    c = ClientThread([dead.base, g.base], token("supervisor")).start()
    try:
        c.wait_for("caught_up on the live gateway", lambda c: c.of("caught_up"))
        sid = publish(r, prefix, make_alert("surge:z:1", (FAR,)))
        c.wait_for("the alert", lambda c: ids(c.of("alert")) == [sid])
        assert [(e.kind, e.gateway) for e in c.client.events] == [("lost", 0), ("connected", 1), ("caught_up", 1)]
    finally:
        c.stop()
        g.stop()


def test_a_refused_token_ends_the_client_instead_of_going_round_the_gateways(gw):
    forged = issue(b"another-secret-" + b"y" * 40, subject="x", role="supervisor", agency="A", zones=(), ttl_s=600)
    c = ClientThread([gw.base, gw.base], forged).start()
    deadline = time.monotonic() + 10
    while c.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    c.stop()
    assert isinstance(c.error, ClientRefused) and c.error.code == 401, c.error
    assert [e.kind for e in c.client.events] == [], "refused at the handshake: never connected, never moved"


def _request(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_a_peer_lets_the_other_gateways_page_use_its_api_and_feed_and_no_other_page(pair):
    """Gateway 2 answers gateway 1's page (its Origin) with CORS headers, its preflight included, and accepts its socket;
    another origin gets no CORS header and its socket is refused. /api/me lists the peers; the CSP names them."""
    a, b = pair
    tok = token("supervisor")
    auth = {"Authorization": f"Bearer {tok}"}
    status, headers, _ = _request(f"{b.base}/api/me", "OPTIONS", {"Origin": a.base, "Access-Control-Request-Method": "GET",
                                                                 "Access-Control-Request-Headers": "authorization"})  # fmt: skip
    assert status == 204 and headers["Access-Control-Allow-Origin"] == a.base
    assert "Authorization" in headers["Access-Control-Allow-Headers"] and "GET" in headers["Access-Control-Allow-Methods"]
    status, headers, body = _request(f"{b.base}/api/me", headers={"Origin": a.base, **auth})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == a.base
    assert json.loads(body)["gateways"] == [a.base, b.base]
    status, headers, _ = _request(f"{b.base}/api/me", headers={"Origin": a.base})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == a.base, "the page must be able to read a refusal"
    for origin in ("http://evil.example", "null"):
        status, headers, _ = _request(f"{b.base}/api/me", headers={"Origin": origin, **auth})
        assert "Access-Control-Allow-Origin" not in headers
        status, headers, _ = _request(f"{b.base}/api/me", "OPTIONS", {"Origin": origin, "Access-Control-Request-Method": "GET"})
        assert status != 204 and "Access-Control-Allow-Origin" not in headers
    with connect(f"ws://127.0.0.1:{b.port}/ws?token={tok}", origin=a.base, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{b.port}/ws?token={tok}", origin="http://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    _, headers, _ = _request(f"{a.base}/")
    connect_src = next(d for d in headers["Content-Security-Policy"].split("; ") if d.startswith("connect-src"))
    assert connect_src == f"connect-src 'self' {a.base} ws://127.0.0.1:{a.port} {b.base} ws://127.0.0.1:{b.port}"
