"""Hostile input against a real gateway and real Redis: every refusal has a clear code, is audited, and slows no one else.

Extends ``test_server.py`` (which has one case each of a malformed frame, a forged,
edited or expired token, an oversize frame and a subscribe flood) to the whole
table: malformed and oversize frames, floods, invalid polygons, and tokens that
are forged, expired, unsigned, edited, from the future, too long-lived, for
another role, or replayed after being revoked.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator

import h3
import jwt
import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from gateway.tokens import issue
from tests.gateway.live import FAR, IN_LANSDALE, REDIS_URL, ROOT, SECRET, GatewayProcess, make_alert, publish, recv_until, token

pytestmark = pytest.mark.stack

#: Montgomery County's bounding box, as the worker's WF_JURISDICTION would say it
JURISDICTION = "39.95,-75.70,40.45,-75.00"
LANSDALE = ("septa-lansdale",)
OTHER_SECRET = b"another-secret-" + b"y" * 40
#: hostile inputs each test tries, reported at the end of the module
TRIED: dict[str, int] = {}


_TRIED_LOCK = threading.Lock()


def tried(kind: str, n: int = 1) -> None:
    with _TRIED_LOCK:  # the flood test counts from several threads
        TRIED[kind] = TRIED.get(kind, 0) + n


@pytest.fixture(scope="module", autouse=True)
def report_tried() -> Iterator[None]:
    yield
    print(f"\nhostile inputs tried: {sum(TRIED.values())} ({', '.join(f'{k} {n}' for k, n in sorted(TRIED.items()))})")


@pytest.fixture(scope="module")
def hprefix(stack) -> Iterator[str]:
    prefix = f"gh{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):  # only this module's own keys
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def hr(stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def hgw(hprefix, tmp_path_factory) -> Iterator[GatewayProcess]:
    """One gateway for the module (each test uses its own connections and subjects), with a jurisdiction."""
    g = GatewayProcess(hprefix, env_extra={"WF_JURISDICTION": JURISDICTION}).start(tmp_path_factory.mktemp("hostile"))
    yield g
    g.stop()


# -- helpers ------------------------------------------------------------------------------


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unb64(text: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def connected(gw: GatewayProcess, tok: str, **kw):
    ws = gw.ws(tok, **kw)
    recv_until(ws, lambda f: f["type"] == "caught_up")
    return ws


def close_of(ws, timeout_s: float = 10.0) -> tuple[int | None, str]:
    """Read until the server closes the socket; its close code and reason."""
    deadline = time.monotonic() + timeout_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            ws.recv(timeout=left)
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
    except TimeoutError:
        pass
    raise AssertionError(f"the gateway did not close the socket within {timeout_s} s")


def send_and_error(ws, message: str | bytes) -> dict:
    ws.send(message)
    return recv_until(ws, lambda f: f["type"] in ("error", "subscribed", "zone_created"))[0]


def audit(gw: GatewayProcess, since: float, **query: str) -> list[dict]:
    q = "&".join([f"since={since:.3f}"] + [f"{k}={v}" for k, v in query.items()])
    status, body = gw.get_json(f"/api/audit?{q}", token("supervisor", subject="auditor"))
    assert status == 200, body
    return body["records"]


def wait_audited(gw: GatewayProcess, since: float, pred: Callable[[dict], bool], timeout_s: float = 10.0, **query: str) -> dict:
    """The first audit record since ``since`` matching ``pred`` (records of a closed socket are written as it ends)."""
    deadline = time.monotonic() + timeout_s
    while True:
        hits = [r for r in audit(gw, since, **query) if pred(r)]
        if hits:
            return hits[0]
        assert time.monotonic() < deadline, f"no matching audit record ({query}) within {timeout_s} s"
        time.sleep(0.2)


def refused_with(gw: GatewayProcess, since: float, code: str, **query: str) -> list[dict]:
    return [r for r in audit(gw, since, action="refused", **query) if r["detail"]["code"] == code]


def cli(*args: str, prefix: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WF_GATEWAY_SECRET=SECRET.decode(), WF_REDIS_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "gateway.tokens", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def ring_around(cell: str, d: float = 0.01) -> list[list[float]]:
    lat, lng = h3.cell_to_latlng(cell)
    return [[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d], [lng - d, lat - d]]


def polygon(*rings) -> dict:
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


def create_zone(zone_id: str, geometry: object, **extra) -> str:
    now = time.time()
    msg = {"type": "create_zone", "id": zone_id, "name": "Hostile test", "polygon": geometry, "starts_at": now - 60, "ends_at": now + 3600}
    return json.dumps({**msg, **extra})


# -- tokens ---------------------------------------------------------------------------------


def _claims(role: str = "supervisor", zones: list[str] | None = None, iat: float | None = None, ttl: float = 3600) -> dict:
    iat = time.time() if iat is None else iat
    return {"sub": "mallory", "role": role, "agency": "X", "zones": zones or [], "iat": iat, "exp": iat + ttl, "jti": uuid.uuid4().hex}


def _edited(**changes) -> str:
    head, payload, sig = token("transit", zones=LANSDALE, subject="edited").split(".")
    return ".".join([head, b64({**unb64(payload), **changes}), sig])


def _signature() -> str:
    return token("supervisor").split(".")[2]


def _hs512() -> str:
    with warnings.catch_warnings():  # the test secret is short for HS512; the point is the algorithm
        warnings.simplefilter("ignore")
        return jwt.encode(_claims(), SECRET, algorithm="HS512")


#: (id, token builder, HTTP status, error code); the WebSocket handshake is refused the same way
TOKEN_CASES: list[tuple[str, Callable[[], str | None], int, str]] = [
    ("missing", lambda: None, 401, "missing"),
    ("garbage", lambda: "not.a.token", 401, "malformed"),
    ("two-parts", lambda: "abc.def", 401, "malformed"),
    (
        "forged-other-secret",
        lambda: issue(b"another-secret-" + b"y" * 40, subject="m", role="supervisor", agency="X"),
        401,
        "bad_signature",
    ),
    ("alg-none", lambda: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}.", 401, "bad_signature"),
    (
        "alg-none-with-signature",
        lambda: f"{b64({'alg': 'none'})}.{b64(_claims())}.{token('supervisor').split('.')[2]}",
        401,
        "bad_signature",
    ),
    ("hs512-same-secret", _hs512, 401, "bad_signature"),
    ("edited-role", lambda: _edited(role="supervisor", zones=[]), 401, "bad_signature"),
    ("edited-zones", lambda: _edited(zones=["septa-lansdale", "septa-ambler"]), 401, "bad_signature"),
    ("edited-expiry", lambda: _edited(exp=time.time() + 86400 * 365), 401, "bad_signature"),
    ("expired", lambda: issue(SECRET, subject="late", role="supervisor", agency="X", ttl_s=3600, now=time.time() - 7200), 401, "expired"),
    (
        "issued-in-future",
        lambda: issue(SECRET, subject="early", role="supervisor", agency="X", now=time.time() + 3600),
        401,
        "not_yet_valid",
    ),
    ("too-long-lived", lambda: token("supervisor", subject="forever", ttl_s=24 * 3600), 401, "too_long_lived"),
    ("signed-no-jti", lambda: jwt.encode({k: v for k, v in _claims().items() if k != "jti"}, SECRET, algorithm="HS256"), 401, "malformed"),
    ("signed-unknown-role", lambda: jwt.encode(_claims(role="mayor"), SECRET, algorithm="HS256"), 401, "malformed"),
    ("signed-huge-exp", lambda: jwt.encode({**_claims(), "exp": 1e400}, SECRET, algorithm="HS256"), 401, "malformed"),
    (
        "partner-unknown-zone",
        lambda: token("transit", zones=("nowhere",), subject="lost", agreement="septa", agency="SEPTA"),
        403,
        "no_scope",
    ),
    (
        "partner-unknown-agreement",
        lambda: token("transit", zones=("septa-lansdale",), subject="lost", agreement="made-up", agency="SEPTA"),
        403,
        "no_scope",
    ),
    (
        "partner-other-agency",
        lambda: token("transit", zones=("septa-lansdale",), subject="lost", agreement="septa", agency="NJ Transit"),
        403,
        "no_scope",
    ),
    (
        "partner-without-agreement",
        lambda: jwt.encode({**_claims(), "role": "transit", "sub": "lost", "zones": ["septa-lansdale"]}, SECRET, algorithm="HS256"),
        403,
        "no_scope",
    ),
    (
        "not-before-in-future",
        lambda: issue(SECRET, subject="early", role="supervisor", agency="X", not_before=time.time() + 3600),
        401,
        "not_yet_valid",
    ),
    ("commander-no-such-event", lambda: token("commander", zones=("no-such-event",), subject="cmd-lost"), 403, "no_scope"),
]


@pytest.mark.parametrize("channel", ["http", "ws"])
@pytest.mark.parametrize(("tok", "status", "code"), [c[1:] for c in TOKEN_CASES], ids=[c[0] for c in TOKEN_CASES])
def test_bad_tokens_are_refused_with_their_reason_and_audited(hgw, channel, tok, status, code):
    """Each bad token is refused (HTTP status and JSON error code, at the API and at the WebSocket handshake) and audited with that code."""
    since = time.time() - 0.05
    bad = tok()
    tried("token")
    if channel == "http":
        got, body = hgw.get_json("/api/alerts", bad)
        target = "/api/alerts"
    else:
        with pytest.raises(InvalidStatus) as exc:
            hgw.ws(bad)
        got, body = exc.value.response.status_code, json.loads(exc.value.response.body)
        target = "/ws"
    assert (got, body["error"]) == (status, code), body
    assert body["message"]
    records = [r for r in refused_with(hgw, since, code) if r["target"] == target]
    assert records, f"no audit record of the {code} refusal"
    if status == 403:  # a verified token: the record names who it was
        assert records[-1]["actor"] in ("lost", "cmd-lost")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "malformed"),
        ({"Authorization": "Bearer"}, "malformed"),
        ({"Authorization": "Bearer "}, "malformed"),
        ({"Authorization": "Token abc.def.ghi"}, "malformed"),
        ({"Authorization": "Bearer " + "A" * 6000}, "malformed"),
    ],
    ids=["basic", "bearer-alone", "bearer-blank", "other-scheme", "bearer-huge"],
)
def test_malformed_authorization_headers_are_401(hgw, headers, code):
    """Authorization headers that are not 'Bearer <token>' get 401 with a code, audited."""
    since = time.time() - 0.05
    tried("auth header")
    status, body = hgw.get("/api/alerts", headers=headers)
    assert (status, json.loads(body)["error"]) == (401, code)
    assert refused_with(hgw, since, code)


def test_a_token_in_the_query_string_does_not_authenticate_the_api(hgw):
    """The API reads the Authorization header only: a supervisor token in ?token= is ignored (401 missing)."""
    tried("auth header")
    status, body = hgw.get_json(f"/api/audit?token={token('supervisor')}")
    assert (status, body["error"]) == (401, "missing")


def test_websocket_with_two_tokens_or_a_bad_last_id_is_refused_with_400(hgw):
    """A handshake naming the token twice, or a last_id that is not a stream id, is refused with 400 and audited."""
    since = time.time() - 0.05
    good = token("supervisor", subject="twice")
    for query, code in ((f"token={good}&token={good}", "bad_token"), (f"token={good}&last_id=../../etc", "bad_last_id")):
        tried("handshake")
        with pytest.raises(InvalidStatus) as exc:
            connect(f"ws://127.0.0.1:{hgw.port}/ws?{query}", open_timeout=10, legacy=True)
        assert exc.value.response.status_code == 400
        assert json.loads(exc.value.response.body)["error"] == code
        assert refused_with(hgw, since, code)
    # once the token is verified, the record names its holder
    assert refused_with(hgw, since, "bad_last_id")[0]["actor"] == "twice"


def test_token_longer_lived_than_the_setting_is_refused_and_the_setting_raises_the_limit(hgw, hprefix, tmp_path):
    """A 20 h token is refused by a gateway with the default 12 h limit and accepted by one configured for 24 h."""
    long_lived = token("supervisor", subject="night-shift", ttl_s=20 * 3600)
    tried("token")
    status, body = hgw.get_json("/api/me", long_lived)
    assert (status, body["error"]) == (401, "too_long_lived") and "43200" in body["message"]
    other = GatewayProcess(hprefix, env_extra={"WF_GATEWAY_MAX_TOKEN_TTL_S": "86400"}).start(tmp_path)
    try:
        assert other.get_json("/api/me", long_lived)[0] == 200
    finally:
        other.stop()


def test_token_that_expires_while_connected_is_closed_with_4401_and_audited(hgw):
    """A socket whose token expires is closed with 4401; the disconnection is audited with that code."""
    since = time.time() - 0.05
    ws = connected(hgw, token("supervisor", subject="short-lived", ttl_s=2))
    code, reason = close_of(ws)
    assert code == 4401 and "expired" in reason
    wait_audited(hgw, since, lambda r: r["detail"].get("code") == 4401, action="disconnect", actor="short-lived")


# -- replayed tokens: revocation ------------------------------------------------------------------


def test_revoked_token_is_refused_everywhere_and_its_open_socket_closed(hgw, hprefix, hr):
    """After `gateway.tokens revoke TOKEN`, replaying it is refused (401 revoked, HTTP and handshake), its open socket is closed
    with 4401, each refusal is audited with the reason, and the id is kept only until the token expires."""
    since = time.time() - 0.05
    stolen = token("supervisor", subject="stolen-desk", ttl_s=1800)
    assert hgw.get_json("/api/me", stolen)[0] == 200
    open_ws = connected(hgw, stolen)
    out = cli("revoke", stolen, prefix=hprefix)
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    jti = unb64(stolen.split(".")[1])["jti"]
    assert printed["revoked"] == jti and printed["subject"] == "stolen-desk" and printed["replicated"] is None  # no replica here
    code, reason = close_of(open_ws)
    assert (code, reason) == (4401, "token revoked: reconnect with a new one")
    for _ in range(3):  # replayed
        tried("replay")
        status, body = hgw.get_json("/api/alerts", stolen)
        assert (status, body["error"]) == (401, "revoked") and body["message"].startswith("token revoked")
        with pytest.raises(InvalidStatus) as exc:
            hgw.ws(stolen)
        assert exc.value.response.status_code == 401 and json.loads(exc.value.response.body)["error"] == "revoked"
    # a new token for the same desk is not affected: revocation is per token
    assert hgw.get_json("/api/me", token("supervisor", subject="stolen-desk"))[0] == 200
    records = refused_with(hgw, since, "revoked", actor="stolen-desk")
    assert {r["target"] for r in records} >= {"/api/alerts", "/ws"}
    assert any(r["detail"]["message"] == "token revoked while connected" for r in records)
    assert all(r["role"] == "supervisor" for r in records)
    # kept until the token would have expired, and no longer
    exp = unb64(stolen.split(".")[1])["exp"]
    assert hr.zscore(f"{hprefix}:revoked", jti) == pytest.approx(exp)
    assert 0 < hr.ttl(f"{hprefix}:revoked") <= exp - time.time() + 2
    assert 'watchfloor_gateway_refused_total{code="revoked"}' in hgw.metrics()


def test_revoking_by_token_id_refuses_the_partner_token(hgw, hprefix):
    """`revoke JTI` (the id `inspect` shows) refuses that token from then on."""
    partner = token("transit", zones=LANSDALE, agency="SEPTA", subject="septa-lost-laptop")
    status, me = hgw.get_json("/api/me", partner)
    assert status == 200
    out = cli("revoke", me["claims"]["token_id"], prefix=hprefix)
    assert out.returncode == 0, out.stderr
    tried("replay")
    status, body = hgw.get_json("/api/zones", partner)
    assert (status, body["error"]) == (401, "revoked")


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (lambda: issue(b"z" * 40, subject="m", role="supervisor", agency="X"), "bad_signature"),
        (lambda: issue(SECRET, subject="gone", role="supervisor", agency="X", ttl_s=60, now=time.time() - 3600), "expired already"),
        (lambda: "not a token id", "give a whole token or its jti"),
    ],
    ids=["forged", "expired", "not-an-id"],
)
def test_revoke_refuses_what_it_cannot_revoke(hprefix, arg, message):
    """`revoke` of a forged token, an expired one or something that is no id exits 1 saying why, and records nothing."""
    out = cli("revoke", arg(), prefix=hprefix)
    assert out.returncode == 1 and message in out.stderr and out.stdout == ""


def test_issue_refuses_a_lifetime_the_gateways_would_refuse(hprefix):
    """`issue --ttl 2d` fails when gateways accept at most WF_GATEWAY_MAX_TOKEN_TTL_S (12 h by default)."""
    out = cli("issue", "--role", "supervisor", "--agency", "CCC", "--subject", "s", "--ttl", "2d", prefix=hprefix)
    assert out.returncode == 2 and "WF_GATEWAY_MAX_TOKEN_TTL_S" in out.stderr


# -- another role's actions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "zones", "agency"),
    [("transit", LANSDALE, "SEPTA"), ("school", ("school-north-penn-hs",), "North Penn SD")],
)
def test_partner_cannot_do_what_its_role_may_not(hgw, hr, hprefix, role, zones, agency):
    """A partner's ack, resolve and create_zone get 'forbidden' error frames and its audit reads 403; each refusal is audited."""
    since = time.time() - 0.05
    subject = f"{role}-intruder"
    tok = token(role, zones=zones, agency=agency, subject=subject)
    alert_id = f"surge:{IN_LANSDALE}:{uuid.uuid4().hex[:6]}"
    publish(hr, hprefix, make_alert(alert_id, (IN_LANSDALE,)))
    ws = connected(hgw, tok)
    attempts = [
        json.dumps({"type": "ack", "alert_id": alert_id, "note": "mine now"}),
        json.dumps({"type": "resolve", "alert_id": alert_id}),
        create_zone("partner-zone", polygon(ring_around(IN_LANSDALE))),
    ]
    for message in attempts:
        tried("role")
        err = send_and_error(ws, message)
        assert (err["type"], err["code"]) == ("error", "forbidden"), err
        assert role in err["message"]
    for path in ("/api/audit", "/api/audit/export?format=csv", "/api/audit/export?format=jsonl", "/api/audit?actor=auditor"):
        tried("role")
        status, body = hgw.get_json(path, tok)
        assert (status, body["error"]) == (403, "forbidden")
    assert len(refused_with(hgw, since, "forbidden", actor=subject)) == len(attempts) + 4
    assert hr.hget(f"{hprefix}:zones", "partner-zone") is None
    ws.close()


def test_commander_cannot_create_other_zones_or_act_outside_its_own(hgw, hr, hprefix):
    """A commander may not create a zone its token does not name, nor acknowledge an alert outside its event zone."""
    since = time.time() - 0.05
    sup = connected(hgw, token("supervisor", subject="cmd-setup"))
    assert send_and_error(sup, create_zone("hostile-event", polygon(ring_around(FAR))))["type"] == "zone_created"
    cmd = connected(hgw, token("commander", zones=("hostile-event",), agency="Event command", subject="cmd-1"))
    outside = f"surge:{IN_LANSDALE}:{uuid.uuid4().hex[:6]}"
    publish(hr, hprefix, make_alert(outside, (IN_LANSDALE,)))
    recv_until(sup, lambda f: f["type"] == "alert" and f["alert"]["id"] == outside)
    tried("role", 3)
    err = send_and_error(cmd, create_zone("another-event", polygon(ring_around(FAR))))
    assert err["code"] == "forbidden" and "hostile-event" in err["message"]
    err = send_and_error(cmd, json.dumps({"type": "ack", "alert_id": outside}))
    assert err["code"] == "forbidden" and "outside" in err["message"]
    assert hgw.get_json("/api/audit", token("commander", zones=("hostile-event",), agency="Event command"))[0] == 403
    assert len(refused_with(hgw, since, "forbidden", actor="cmd-1")) == 2
    sup.close()
    cmd.close()


# -- malformed frames -------------------------------------------------------------------------------

_NOW = 1_900_000_000
_ZONE = {"type": "create_zone", "id": "z", "name": "Z", "polygon": polygon(ring_around(FAR)), "starts_at": _NOW, "ends_at": _NOW + 60}


def _zone_text(**fields: str) -> str:
    """A create_zone message with some fields replaced by raw JSON text (for values json.dumps cannot write)."""
    text = json.dumps({**_ZONE, **dict.fromkeys(fields, "@@")})
    for name, raw in fields.items():
        text = text.replace(f'"{name}": "@@"', f'"{name}": {raw}', 1)
    return text


#: (id, frame, error code); each is refused with an error frame and the connection stays usable
FRAMES: list[tuple[str, str | bytes, str]] = [
    ("binary", b"\x00\x01\x02", "binary_frame"),
    ("binary-json", json.dumps({"type": "subscribe"}).encode(), "binary_frame"),
    ("not-json", "{not json", "bad_json"),
    ("empty", "", "bad_json"),
    ("whitespace", "   ", "bad_json"),
    ("trailing-garbage", '{"type": "subscribe"} trailing', "bad_json"),
    ("array", "[]", "bad_message"),
    ("string", '"subscribe"', "bad_message"),
    ("null", "null", "bad_message"),
    ("number", "42", "bad_message"),
    ("no-type", "{}", "unknown_type"),
    ("unknown-type", '{"type": "launch"}', "unknown_type"),
    ("type-number", '{"type": 7}', "unknown_type"),
    ("type-object", '{"type": {"$ne": null}}', "unknown_type"),
    ("type-with-nul", '{"type": "subscribe\\u0000"}', "unknown_type"),
    ("type-huge", json.dumps({"type": "x" * 100_000}), "unknown_type"),
    ("unknown-field", '{"type": "subscribe", "role": "supervisor"}', "unknown_field"),
    ("many-unknown-fields", json.dumps({"type": "subscribe", **{f"f{i}": i for i in range(5000)}}), "unknown_field"),
    ("zones-string", '{"type": "subscribe", "zones": "septa-lansdale"}', "bad_zones"),
    ("zones-numbers", '{"type": "subscribe", "zones": [1, 2]}', "bad_zones"),
    ("zones-too-many", json.dumps({"type": "subscribe", "zones": [f"z{i}" for i in range(201)]}), "bad_zones"),
    ("categories-object", '{"type": "subscribe", "categories": {"FIRE": 1}}', "bad_categories"),
    ("severity-number", '{"type": "subscribe", "min_severity": 3}', "bad_severity"),
    ("severity-list", '{"type": "subscribe", "min_severity": ["high"]}', "bad_severity"),
    ("severity-unknown", '{"type": "subscribe", "min_severity": "apocalyptic"}', "bad_severity"),
    ("polygon-string", '{"type": "subscribe", "polygon": "all of it"}', "bad_polygon"),
    ("polygon-list", '{"type": "subscribe", "polygon": [[0, 0]]}', "bad_polygon"),
    ("ack-id-number", '{"type": "ack", "alert_id": 5}', "bad_alert_id"),
    ("ack-id-empty", '{"type": "ack", "alert_id": ""}', "bad_alert_id"),
    ("ack-id-huge", json.dumps({"type": "ack", "alert_id": "a" * 10_000}), "bad_alert_id"),
    ("note-too-long", json.dumps({"type": "ack", "alert_id": "x", "note": "n" * 5000}), "bad_note"),
    ("note-object", '{"type": "ack", "alert_id": "x", "note": {"text": "hi"}}', "bad_note"),
    ("huge-integer", '{"type": "subscribe", "min_severity": ' + "9" * 5000 + "}", "bad_json"),
    ("huge-float-time", _zone_text(starts_at="1e999"), "bad_time"),
    ("nan-time", _zone_text(ends_at="NaN"), "bad_time"),
    ("negative-infinity-time", _zone_text(starts_at="-Infinity"), "bad_time"),
    ("time-string", _zone_text(starts_at='"tomorrow"'), "bad_time"),
    ("time-bool", _zone_text(starts_at="true"), "bad_time"),
    ("threshold-huge", _zone_text(threshold="1e308"), "bad_threshold"),
    ("threshold-bool", _zone_text(threshold="true"), "bad_threshold"),
    ("zone-id-path", _zone_text(id='"../../etc/passwd"'), "bad_zone_id"),
    ("zone-id-long", _zone_text(id=json.dumps("z" * 65)), "bad_zone_id"),
    ("zone-name-control", _zone_text(name='"Parade\\nroute"'), "bad_zone_name"),
    ("zone-name-empty", _zone_text(name='"   "'), "bad_zone_name"),
    ("deep-array", "[" * 60_000 + "]" * 60_000, "bad_json"),
    ("deep-object", '{"a":' * 20_000 + "1" + "}" * 20_000, "bad_json"),
    ("deep-inside-message", '{"type": "subscribe", "zones": ' + "[" * 5000 + "]" * 5000 + "}", "bad_json"),
    ("deep-polygon", '{"type": "subscribe", "polygon": {"type": "Polygon", "coordinates": ' + "[" * 900 + "]" * 900 + "}}", "bad_polygon"),
]


@pytest.mark.parametrize(("message", "code"), [f[1:] for f in FRAMES], ids=[f[0] for f in FRAMES])
def test_malformed_frame_gets_an_error_frame_is_audited_and_the_connection_survives(hgw, message, code):
    """Each malformed frame gets an error frame with its code and a short message, is audited, and the connection keeps working."""
    subject = f"frames-{uuid.uuid4().hex[:8]}"
    since = time.time() - 0.05
    ws = connected(hgw, token("supervisor", subject=subject))
    tried("frame")
    err = send_and_error(ws, message)
    assert (err["type"], err["code"]) == ("error", code), err
    assert 0 < len(err["message"]) <= 1000  # nothing a client sent is echoed back at length
    records = refused_with(hgw, since, code, actor=subject)
    assert len(records) == 1 and len(records[0]["detail"]["message"]) <= 400
    assert send_and_error(ws, json.dumps({"type": "subscribe"}))["type"] == "subscribed"
    ws.close()


# -- oversize messages ------------------------------------------------------------------------------

MAX_MESSAGE = 128 * 1024


@pytest.mark.parametrize(
    ("message", "close_code", "refusal"),
    [
        ("x" * (MAX_MESSAGE + 1), 1009, "message_too_big"),
        (b"\x00" * (MAX_MESSAGE + 1), 1009, "message_too_big"),
        (["x" * 50_000] * 3, 1009, "message_too_big"),  # fragments that only add up to too much
        (json.dumps({"type": "subscribe", "polygon": polygon(ring_around(FAR) * 3000)}), 1009, "message_too_big"),
        (b"\xff\xfe not utf-8", 1007, "invalid_text"),
    ],
    ids=["text", "binary", "fragmented", "huge-polygon", "invalid-utf8-text"],
)
def test_oversize_or_undecodable_message_closes_the_socket_and_is_audited(hgw, message, close_code, refusal):
    """A frame over WF_GATEWAY_MAX_MESSAGE closes with 1009 (even in fragments), text that is not UTF-8 with 1007; both are audited."""
    subject = f"big-{uuid.uuid4().hex[:8]}"
    since = time.time() - 0.05
    ws = connected(hgw, token("supervisor", subject=subject))
    tried("oversize")
    try:
        ws.send(message, text=True) if refusal == "invalid_text" else ws.send(message)
        code = close_of(ws)[0]
    except ConnectionClosed as exc:  # closed before the last fragment went out
        code = exc.rcvd.code if exc.rcvd else None
    assert code == close_code
    record = wait_audited(hgw, since, lambda r: r["detail"]["code"] == refusal, action="refused", actor=subject)
    assert record["detail"]["message"]
    wait_audited(hgw, since, lambda r: r["detail"]["code"] == close_code, action="disconnect", actor=subject)


def test_message_of_exactly_the_limit_is_read(hgw):
    """A frame of exactly WF_GATEWAY_MAX_MESSAGE bytes is read (and refused only for what it says)."""
    ws = connected(hgw, token("supervisor", subject="at-limit"))
    tried("oversize")
    assert send_and_error(ws, " " * (MAX_MESSAGE - 2) + "{}")["code"] == "unknown_type"
    ws.close()


# -- floods -----------------------------------------------------------------------------------------


def test_subscribe_flood_is_rate_limited_then_closed_with_4429_and_audited(hgw):
    """A burst of subscribes is served up to the rate allowance, then refused as rate_limited, then closed with 4429."""
    since = time.time() - 0.05
    ws = hgw.ws(token("supervisor", subject="subscribe-flood"), max_queue=None)
    recv_until(ws, lambda f: f["type"] == "caught_up")
    sent = 0
    try:
        for _ in range(500):
            ws.send(json.dumps({"type": "subscribe", "categories": ["FIRE"]}))
            sent += 1
    except ConnectionClosed:
        pass
    tried("flood", sent)
    frames = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(json.loads(ws.recv(timeout=10)))
    assert closed.value.rcvd.code == 4429
    kinds = [f.get("code", f["type"]) for f in frames]
    assert "subscribed" in kinds and kinds.count("rate_limited") == 20
    assert len(refused_with(hgw, since, "rate_limited", actor="subscribe-flood")) == 20


def test_twenty_bad_frames_close_the_connection_with_4400(hgw):
    """After 20 refused messages (within the rate) the connection is closed with 4400 and every refusal is audited."""
    since = time.time() - 0.05
    ws = hgw.ws(token("supervisor", subject="bad-frames"), max_queue=None)
    recv_until(ws, lambda f: f["type"] == "caught_up")
    for i in range(20):
        ws.send(f"not json {i}")
    tried("flood", 20)
    code, reason = close_of(ws)
    assert code == 4400 and "20" in reason
    assert len(refused_with(hgw, since, "bad_json", actor="bad-frames")) == 20


def test_polygon_flood_is_rate_limited(hgw):
    """Subscribes with 2,000-position polygons (the most expensive message) are rate limited like any other."""
    since = time.time() - 0.05
    ws = hgw.ws(token("transit", zones=LANSDALE, agency="SEPTA", subject="polygon-flood"), max_queue=None)
    recv_until(ws, lambda f: f["type"] == "caught_up")
    message = json.dumps({"type": "subscribe", "polygon": circle(IN_LANSDALE, 1999)})
    try:
        for _ in range(200):
            ws.send(message)
            tried("flood")
    except ConnectionClosed:
        pass
    assert close_of(ws, 30)[0] == 4429
    assert refused_with(hgw, since, "rate_limited", actor="polygon-flood")


def circle(cell: str, n: int, r: float = 0.01) -> dict:
    lat, lng = h3.cell_to_latlng(cell)
    ring = [[lng + r * math.cos(2 * math.pi * i / n), lat + r * math.sin(2 * math.pi * i / n)] for i in range(n)]
    return polygon(ring + [ring[0]])


# -- expensive requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "hours", "who"),
    [
        (h3.cell_to_parent(FAR, 0), 1, "supervisor"),  # 5.7 million res-8 cells
        (h3.cell_to_parent(FAR, 4), 24, "supervisor"),
        (h3.cell_to_parent(FAR, 6), 168, "supervisor"),
    ],
    ids=["res0-1h", "res4-24h", "res6-week"],
)
def test_cell_history_larger_than_the_budget_is_refused_at_once(hgw, cell, hours, who):
    """A history of more res-8 cell-minutes than the gateway reads for one call is refused with 400, without reading anything."""
    tried("expensive")
    status, body = hgw.get_json(f"/api/cells/{cell}/history?hours={hours}&step=60", token(who, subject="historian"))
    assert (status, body["error"]) == (400, "history_too_large") and "fewer hours or a finer cell" in body["message"]
    assert hgw.get("/healthz")[0] == 200


def test_partner_reads_no_cell_history_only_a_week_of_its_released_table(hgw):
    """A partner may not read any cell's history (coarse or its own): it reads its agreement's released table, a week at most."""
    tried("expensive")
    partner = token("transit", zones=LANSDALE, agency="SEPTA", subject="historian-partner")
    for cell in (h3.cell_to_parent(IN_LANSDALE, 0), IN_LANSDALE):
        status, body = hgw.get_json(f"/api/cells/{cell}/history?hours=168&step=60", partner)
        assert (status, body["error"]) == (403, "forbidden")
    status, body = hgw.get_json("/api/released?hours=168", partner)
    assert status == 200 and body["window_min"] == 60
    assert hgw.get_json("/api/released?hours=169", partner)[1]["error"] == "bad_hours"


# -- invalid polygons ------------------------------------------------------------------------------

_LAT, _LNG = h3.cell_to_latlng(FAR)
_D = 0.01
_A, _B, _C, _E = [_LNG - _D, _LAT - _D], [_LNG + _D, _LAT - _D], [_LNG + _D, _LAT + _D], [_LNG - _D, _LAT + _D]
_MID = [_LNG, _LAT]


def _shifted(dx: float, d: float) -> list[list[float]]:
    """A square of half-side ``d`` centred ``dx`` east of FAR (it crosses FAR's square when dx is near 0.01)."""
    return [
        [_LNG + dx - d, _LAT - d],
        [_LNG + dx + d, _LAT - d],
        [_LNG + dx + d, _LAT + d],
        [_LNG + dx - d, _LAT + d],
        [_LNG + dx - d, _LAT - d],
    ]


#: (id, geometry, words the error message must contain)
POLYGONS: list[tuple[str, object, str]] = [
    ("self-intersecting-bowtie", polygon([_A, _C, _B, _E, _A]), "crosses itself"),
    ("touches-itself-at-a-vertex", polygon([_A, _B, _MID, _C, _E, _MID, _A]), "touches itself"),
    ("spike", polygon([_A, _B, _C, _B, _E, _A]), "doubles back"),
    ("collinear-no-area", polygon([_A, _MID, _C, _A]), "doubles back"),
    ("open-ring", polygon([_A, _B, _C, _E]), "not closed"),
    ("too-few-positions", polygon([_A, _B, _A]), "at least 4 positions"),
    ("repeated-position", polygon([_A, _A, _B, _B, _A]), "at least 3 distinct positions"),
    ("empty-ring", polygon([]), "at least 4 positions"),
    ("no-rings", {"type": "Polygon", "coordinates": []}, "non-empty list of linear rings"),
    ("no-coordinates", {"type": "Polygon"}, "non-empty list of linear rings"),
    ("hole-crossing-shell", polygon([_A, _B, _C, _E, _A], _shifted(0.01, 0.005)[::-1]), "polygon ring 0 and polygon ring 1 cross"),
    (
        "multipolygon-overlapping",
        {"type": "MultiPolygon", "coordinates": [[ring_around(FAR)], [_shifted(0.01, 0.005)]]},
        "polygon 0 ring 0 and polygon 1 ring 0 cross",
    ),
    ("out-of-jurisdiction", polygon([[-74.01, 40.70], [-74.0, 40.70], [-74.0, 40.71], [-74.01, 40.70]]), "outside the jurisdiction"),
    # here a swap stays in range (|lng| < 90), so it is the jurisdiction that refuses it
    ("lat-lng-swapped", polygon([[p[1], p[0]] for p in (_A, _B, _C, _E, _A)]), "outside the jurisdiction"),
    ("latitude-out-of-range", polygon([[_A[0], 95.0], _B, _C, [_A[0], 95.0]]), "out of range"),
    (
        "pennsylvania",
        polygon([[-80.5, 39.7], [-74.7, 39.7], [-74.7, 42.3], [-80.5, 42.3], [-80.5, 39.7]]),
        "more than the 5000 allowed",
    ),
    ("too-many-positions", circle(FAR, 2001), "more than 2000 positions"),
    ("string-coordinates", polygon([[str(_A[0]), str(_A[1])], _B, _C, _A]), "finite numbers"),
    ("bool-coordinates", polygon([[True, False], _B, _C, [True, False]]), "finite numbers"),
    ("null-coordinates", polygon([[None, None], _B, _C, [None, None]]), "finite numbers"),
    ("one-number-position", polygon([[_A[0]], _B, _C, [_A[0]]]), "a position is [lng, lat]"),
    ("point", {"type": "Point", "coordinates": _MID}, "Polygon or MultiPolygon"),
    ("linestring", {"type": "LineString", "coordinates": [_A, _B]}, "Polygon or MultiPolygon"),
    ("feature", {"type": "Feature", "geometry": polygon([_A, _B, _C, _A])}, "Polygon or MultiPolygon"),
    ("feature-collection", {"type": "FeatureCollection", "features": []}, "Polygon or MultiPolygon"),
    ("no-type", {"coordinates": [[_A, _B, _C, _A]]}, "Polygon or MultiPolygon"),
    ("not-an-object", [[_A, _B, _C, _A]], "GeoJSON Polygon object"),
]


@pytest.mark.parametrize(("geometry", "words"), [p[1:] for p in POLYGONS], ids=[p[0] for p in POLYGONS])
def test_invalid_polygon_in_create_zone_is_refused_with_a_clear_error(hgw, hr, hprefix, geometry, words):
    """Each invalid polygon in create_zone gets a bad_polygon error naming the problem; nothing is stored; it is audited."""
    subject = f"zones-{uuid.uuid4().hex[:8]}"
    since = time.time() - 0.05
    ws = connected(hgw, token("supervisor", subject=subject))
    zone_id = f"bad-{uuid.uuid4().hex[:8]}"
    tried("polygon")
    err = send_and_error(ws, create_zone(zone_id, geometry))
    assert (err["type"], err["code"]) == ("error", "bad_polygon"), err
    assert words in err["message"], err["message"]
    assert hr.hget(f"{hprefix}:zones", zone_id) is None
    assert refused_with(hgw, since, "bad_polygon", actor=subject)
    ws.close()


@pytest.mark.parametrize(
    ("geometry", "code"),
    [
        (polygon([_A, _C, _B, _E, _A]), "bad_polygon"),
        (polygon([_A, _B, _C, _E]), "bad_polygon"),
        (circle(FAR, 2001), "bad_polygon"),
        (polygon(ring_around(FAR)), "polygon_outside_scope"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1e308, 0], [0, 1e308], [0, 0]]]}, "bad_polygon"),
    ],
    ids=["bowtie", "open", "too-many-positions", "outside-scope", "huge-numbers"],
)
def test_invalid_or_outside_polygon_in_a_partner_subscribe_is_refused(hgw, geometry, code):
    """A partner's subscribe with an invalid polygon, or one outside its zones, is refused with its code."""
    ws = connected(hgw, token("transit", zones=LANSDALE, agency="SEPTA", subject="polygon-partner"))
    tried("polygon")
    assert send_and_error(ws, json.dumps({"type": "subscribe", "polygon": geometry}))["code"] == code
    ws.close()


@pytest.mark.parametrize(
    "geometry",
    [
        polygon(ring_around(FAR)),
        circle(FAR, 1999),
        polygon(ring_around(FAR, 0.02), ring_around(FAR, 0.005)[::-1]),  # a hole
        {"type": "MultiPolygon", "coordinates": [[ring_around(FAR, 0.004)], [ring_around(h3.grid_disk(FAR, 6)[-1], 0.004)]]},
    ],
    ids=["square", "circle-1999-positions", "with-hole", "multipolygon"],
)
def test_valid_polygons_are_still_accepted(hgw, hr, hprefix, geometry):
    """The checks refuse no valid shape: a square, a 1,999-position circle, a polygon with a hole and a MultiPolygon are created."""
    ws = connected(hgw, token("supervisor", subject="zones-ok"))
    zone_id = f"ok-{uuid.uuid4().hex[:8]}"
    created = send_and_error(ws, create_zone(zone_id, geometry))
    assert created["type"] == "zone_created", created
    assert hr.hget(f"{hprefix}:zones", zone_id) is not None
    ws.close()


# -- none slows other clients ----------------------------------------------------------------------------------


class Flooder(threading.Thread):
    """Runs ``attack`` over and over until stopped, collecting what each round ended with."""

    def __init__(self, name: str, attack: Callable[[], object], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.attack = attack
        self.stop_event = stop
        self.outcomes: list[object] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.outcomes.append(self.attack())
            except Exception as exc:  # noqa: BLE001 -- reported by the test, not swallowed
                self.errors.append(exc)
                time.sleep(0.05)


FLOOD_SUBJECTS = ("flood-frames", "flood-poly", "flood-big")


def _spam_until_closed(gw: GatewayProcess, tok: str, messages: Callable[[int], str | bytes]) -> int | None:
    """Send messages as fast as possible until the gateway has refused 20 (it closes the socket then); its close code."""
    ws = gw.ws(tok, max_queue=None)
    refused = 0
    try:
        for i in range(10_000):
            if refused >= 20:
                break
            ws.send(messages(i))
            tried("flood frame")
            while True:  # whatever has arrived, without waiting
                try:
                    refused += json.loads(ws.recv(timeout=0))["type"] == "error"
                except TimeoutError:
                    break
        return close_of(ws, 30)[0]
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    finally:
        ws.close()


def _oversize(gw: GatewayProcess, tok: str) -> int | None:
    ws = gw.ws(tok, max_queue=None)
    try:
        ws.send("x" * (MAX_MESSAGE + 1))
        return close_of(ws)[0]
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    finally:
        ws.close()


def _bad_handshake(gw: GatewayProcess, bad: Callable[[], str]) -> int:
    try:
        gw.ws(bad()).close()
    except InvalidStatus as exc:
        return exc.response.status_code
    return 101


def test_a_hostile_flood_does_not_slow_a_bystander(prefix, r, tmp_path):
    """While other clients flood the gateway (bad frames, oversize frames, polygon subscribes, bad tokens on the socket and the API),
    a supervisor connected all along receives every alert published meanwhile, in order; each flooder is closed with its code."""
    gw = GatewayProcess(prefix).start(tmp_path)
    stop = threading.Event()
    bad_tokens = [c[1] for c in TOKEN_CASES if c[2] == 401 and c[0] != "missing"]
    polygon_message = json.dumps({"type": "subscribe", "polygon": circle(IN_LANSDALE, 1999)})
    partner = token("transit", zones=LANSDALE, agency="SEPTA", subject="flood-poly")
    history = "/api/released?hours=168"
    r.set(f"{prefix}:wm:call:0", time.time())  # so that histories are read
    frames = [b"\x00", "{nope", "[]", '{"type": "launch"}', "[" * 60_000 + "]" * 60_000, '{"type": "ack", "alert_id": 5}']
    flooders = {
        "frames": Flooder(
            "frames", lambda: _spam_until_closed(gw, token("supervisor", subject="flood-frames"), lambda i: frames[i % len(frames)]), stop
        ),
        "polygons": Flooder(
            "polygons",
            lambda: _spam_until_closed(gw, partner, lambda i: polygon_message),
            stop,
        ),
        "oversize": Flooder("oversize", lambda: _oversize(gw, token("supervisor", subject="flood-big")), stop),
        "handshakes": Flooder("handshakes", lambda: _bad_handshake(gw, bad_tokens[int(time.monotonic() * 1000) % len(bad_tokens)]), stop),
        "api": Flooder("api", lambda: gw.get("/api/alerts", bad_tokens[int(time.monotonic() * 1000) % len(bad_tokens)]())[0], stop),
        # the most expensive read a partner may ask for: a week of its released table
        "history": Flooder("history", lambda: gw.get(history, partner)[0], stop),
    }
    bystander = connected(gw, token("supervisor", subject="bystander"))
    try:
        for f in flooders.values():
            f.start()
        time.sleep(1.0)  # the flood is on before the first alert
        published: list[str] = []

        def publish_all() -> None:
            for i in range(150):
                published.append(publish(r, prefix, make_alert(f"surge:bystander:{i}", (FAR,))))
                time.sleep(0.02)

        publisher = threading.Thread(target=publish_all, daemon=True)
        publisher.start()
        received: list[tuple[str, str]] = []
        deadline = time.monotonic() + 60  # the one sanity bound: generous
        while len(received) < 150:
            left = deadline - time.monotonic()
            assert left > 0, f"the bystander received {len(received)} of 150 alerts within 60 s"
            f = json.loads(bystander.recv(timeout=left))
            if f["type"] == "alert":
                received.append((f["id"], f["alert"]["id"]))
        publisher.join()
    finally:
        stop.set()
        for f in flooders.values():
            f.join(timeout=30)
        bystander.close()
        health = gw.get("/healthz")[0]
        time.sleep(0.5)  # the last flooders' disconnections are being audited
        closed_with = {who: {r["detail"]["code"] for r in audit(gw, 0, action="disconnect", actor=who)} for who in FLOOD_SUBJECTS}
        gw.stop()
    assert [alert_id for _, alert_id in received] == [f"surge:bystander:{i}" for i in range(150)]
    assert [sid for sid, _ in received] == published
    for name, f in flooders.items():
        assert not f.errors, f"{name}: {f.errors[:3]}"
        assert f.outcomes, f"{name} never completed a round"
        tried("flood round", len(f.outcomes))
    # each flooder was closed with its code: as the gateway audited it, and as the flooder saw it
    assert closed_with["flood-frames"] and closed_with["flood-frames"] <= {4400, 4429}
    assert (closed_with["flood-poly"], closed_with["flood-big"]) == ({4429}, {1009})
    assert set(flooders["frames"].outcomes) <= {4400, 4429} and set(flooders["polygons"].outcomes) == {4429}
    assert set(flooders["oversize"].outcomes) == {1009}
    assert set(flooders["handshakes"].outcomes) == {401} and set(flooders["api"].outcomes) == {401}
    assert set(flooders["history"].outcomes) == {200}
    assert health == 200


# -- an outside tester's attacks on the previous gateway, each now a test ----------------------------------


def test_commander_cannot_widen_move_backdate_extend_or_lower_its_zone(hgw):
    """A commander whose token names a supervisor's event zone may only narrow it: a county-wide polygon, an earlier start,
    a later end or a threshold below the supervisor's floor are refused; a narrower zone is accepted; each change is audited
    with before and after."""
    since = time.time() - 0.05
    now = time.time()
    sup = connected(hgw, token("supervisor", subject="zone-sup"))
    base = {"starts_at": now - 60, "ends_at": now + 3600, "threshold": 4.0, "floor": 3.0}
    assert send_and_error(sup, create_zone("parade", polygon(ring_around(FAR, 0.004)), **base))["type"] == "zone_created"
    cmd = connected(hgw, token("commander", zones=("parade", "never-made"), agency="Event command", subject="zone-cmd"))
    mine = polygon(ring_around(FAR, 0.004))
    base = {**base, "floor": None}  # what a commander may send
    county = polygon([[-75.65, 40.05], [-75.1, 40.05], [-75.1, 40.4], [-75.65, 40.4], [-75.65, 40.05]])
    attempts = [
        (create_zone("parade", county, **base), "outside it"),
        (create_zone("parade", mine, **{**base, "starts_at": now - 13.5 * 86400}), "before"),
        (create_zone("parade", mine, **{**base, "ends_at": now + 7200}), "after"),
        (create_zone("parade", mine, **{**base, "threshold": 1.0}), "below the supervisor's floor"),
        (create_zone("parade", mine, **{**base, "floor": 1.0, "threshold": 1.0}), "only a supervisor sets"),  # the floor itself
        (create_zone("never-made", mine, **base), "does not exist"),
    ]
    tried("zone widening", len(attempts))
    for message, words in attempts:
        err = send_and_error(cmd, message)
        assert err["type"] == "error" and err["code"] == "forbidden" and words in err["message"], err
    narrower = create_zone("parade", polygon(ring_around(FAR, 0.002)), **{**base, "threshold": 3.5, "ends_at": now + 1800})
    got = send_and_error(cmd, narrower)
    assert got["type"] == "zone_created" and len(got["zone"]["cells"]) >= 1
    updates = audit(hgw, since, action="zone_update", actor="zone-cmd")
    assert len(updates) == 1
    before, after = updates[0]["detail"]["before"], updates[0]["detail"]["after"]
    assert after["cells"] <= before["cells"] and after["active_until"] < before["active_until"] and after["threshold"] == 3.5
    assert audit(hgw, since, action="zone_create", actor="zone-sup")[0]["detail"]["before"] is None
    assert len(refused_with(hgw, since, "forbidden", actor="zone-cmd")) == len(attempts)
    sup.close()
    cmd.close()


@pytest.mark.parametrize(("origin", "status"), [("null", 403), ("https://evil.example", 403), (None, 101), ("own", 101)])
def test_websocket_handshake_checks_the_origin(hgw, origin, status):
    """A browser page from another origin (or a sandboxed one, Origin: null) cannot open a feed with a token it holds;
    the gateway's own page and clients that send no Origin can."""
    tried("origin")
    headers = {} if origin is None else {"Origin": hgw.base if origin == "own" else origin}
    try:
        ws = hgw.ws(token("supervisor", subject="origin"), additional_headers=headers)
        ws.close()
        got = 101
    except InvalidStatus as exc:
        got = exc.response.status_code
        assert json.loads(exc.response.body)["error"] == "bad_origin"
    assert got == status


def test_every_answer_forbids_framing_and_foreign_images(hgw):
    """The dashboard and the API answer with a CSP that forbids framing and images from other hosts, and X-Frame-Options."""
    for path, tok in (("/", None), ("/api/me", token("supervisor")), ("/api/nothing", None)):
        req = urllib.request.Request(hgw.base + path, headers={"Authorization": f"Bearer {tok}"} if tok else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                headers = resp.headers
        except urllib.error.HTTPError as exc:
            headers = exc.headers
        assert len(headers.get_all("Content-Security-Policy")) == 1, path  # one policy, not a default and an override
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "img-src 'self' data:;" in csp and " * " not in f" {csp} "
        assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"


def test_metrics_need_a_supervisor_token(hgw):
    """/metrics is not public: 401 without a token, 403 for a partner, the Prometheus text for a supervisor."""
    assert hgw.get("/metrics")[0] == 401
    assert hgw.get("/metrics", token("transit", zones=LANSDALE))[0] == 403
    assert "watchfloor_gateway_clients" in hgw.metrics()


def test_two_authorization_headers_are_a_bad_request_not_a_crash(hgw):
    """Two Authorization headers get 400 duplicate_header (not a 500 with a traceback), audited."""
    since = time.time() - 0.05
    conn = http.client.HTTPConnection("127.0.0.1", hgw.port, timeout=10)
    conn.putrequest("GET", "/api/alerts")
    conn.putheader("Authorization", f"Bearer {token('supervisor')}")
    conn.putheader("Authorization", "Bearer other")
    conn.endheaders()
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert (resp.status, body["error"]) == (400, "duplicate_header")
    assert refused_with(hgw, since, "duplicate_header")


@pytest.mark.parametrize("last_id", ["1-", "-1", "1-2-3", "c-forged"])
def test_a_bad_last_id_is_refused_with_a_code_and_audited(hgw, last_id):
    """A last_id that is not a stream id (or, for a partner, not a cursor it was given) is refused with 400 bad_last_id,
    audited, instead of opening the socket and failing in Redis."""
    since = time.time() - 0.05
    who = token("transit", zones=LANSDALE) if last_id.startswith("c-") else token("supervisor")
    with pytest.raises(InvalidStatus) as exc:
        hgw.ws(who, last_id=last_id)
    assert (exc.value.response.status_code, json.loads(exc.value.response.body)["error"]) == (400, "bad_last_id")
    assert refused_with(hgw, since, "bad_last_id")


def _handshake_status(gw: GatewayProcess, tok: str) -> int:
    try:
        gw.ws(tok).close()
    except InvalidStatus as exc:
        return exc.response.status_code
    return 101


def test_api_calls_are_limited_per_token_and_refusals_per_address(hprefix, tmp_path):
    """A token past WF_GATEWAY_API_RATE calls (or handshakes) a second gets 429; an address past WF_GATEWAY_ANON_RATE refusals a second
    gets 429, and those are audited as one rate_limited record each second rather than one record each."""
    g = GatewayProcess(hprefix, env_extra={"WF_GATEWAY_API_RATE": "2", "WF_GATEWAY_ANON_RATE": "2"}).start(tmp_path)
    try:
        tok = token("transit", zones=LANSDALE, subject="hasty")
        statuses = [g.get("/api/me", tok)[0] for _ in range(20)]
        assert statuses[:8] == [200] * 8 and 429 in statuses
        # handshakes count too: reconnecting does not buy a fresh allowance of messages
        assert _handshake_status(g, tok) == 429
        since = time.time() - 0.05
        knocks = [g.get("/api/alerts", "not.a.token")[0] for _ in range(40)]
        assert knocks[:8] == [401] * 8 and knocks.count(429) >= 20
        time.sleep(1.5)
        limited = [r for r in audit(g, since, action="rate_limited") if r["detail"]["by"] == "address"]
        assert limited and sum(r["detail"]["refused"] for r in limited) == knocks.count(429)
        assert len(audit(g, since, action="refused")) < 15  # not one record per knock
    finally:
        g.stop()
