"""Searching the alerts of the night (``GET /api/alerts``): each filter alone and combined, refusals, and no oracle for partners."""

from __future__ import annotations

import json
import math
import time
from urllib.parse import urlencode

import pytest

from detectors.types import AlertKind, AlertState
from gateway.http import HttpError
from gateway.policy import scope_for, view
from gateway.search import MAX_QUERY, parse, searchable
from gateway.tokens import Claims, Role
from tests.gateway.live import (
    AGREEMENTS,
    FAR,
    IN_LANSDALE,
    INSIDE_AREA,
    OUTSIDE_AREA,
    ZONES,
    GatewayProcess,
    make_alert,
    publish,
    recv_until,
    token,
)

#: a minute-aligned time three hours ago: the night's alerts are placed after it
T = math.floor(time.time() / 60) * 60 - 3 * 3600
#: what the raw reason of the partner test's alert says and no view of it shows
RAW_ONLY = "hydrant-7731 near the caller's door"


def alert(alert_id: str, cells: tuple[str, ...], at: float, *, summary: str, reason: str, areas: list[str], **kw) -> dict:
    """An alert record as the worker publishes it (named areas, plain summary), spanning ``[at - 600, at]``."""
    return {**make_alert(alert_id, cells, at=at, **kw), "summary": summary, "reason": reason, "areas": areas}


def partner_scope():
    now = time.time()
    claims = Claims("septa-desk", Role.TRANSIT, "SEPTA", ("septa-lansdale",), now + 3600, now, "j", agreement="septa")
    return scope_for(claims, ZONES, now, agreements=AGREEMENTS)


# ---------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("query", "precise", "code", "message"),
    [
        ({"state": ["resolved"]}, True, "bad_state", "state must be one of open, closed, all, got 'resolved'"),
        ({"since": ["yesterday"]}, True, "bad_since", "since must be epoch seconds, got 'yesterday'"),
        ({"until": ["nan"]}, True, "bad_until", "until must be finite epoch seconds, got nan"),
        ({"since": ["2000"], "until": ["1000"]}, True, "bad_range", "since (2000) is after until (1000)"),
        ({"category": ["Medical"]}, True, "bad_category", "category must be one of EMS, FIRE, TRAFFIC, POLICE, OTHER, got 'Medical'"),
        ({"category": ["EMS", "FIRE"]}, True, "bad_category", "category given 2 times"),
        ({"area": ["  "]}, True, "bad_area", "area is empty; name an area (as /api/places names it) or leave it out"),
        ({"q": ["x" * (MAX_QUERY + 1)]}, True, "bad_query", f"q must be at most {MAX_QUERY} characters, got {MAX_QUERY + 1}"),
        ({"min_severity": ["urgent"]}, False, "bad_severity", "min_severity must be one of low, medium, high, got 'urgent'"),
        ({"area": ["Lansdale Borough"]}, False, "unknown_parameter", "unknown parameter 'area'; allowed: category, kind, limit, "
                                                                      "min_severity, q, since, state, until"),
    ],
)  # fmt: skip
def test_a_bad_search_is_refused_naming_the_parameter_and_what_was_expected(query, precise, code, message):
    """Each malformed parameter gives a 400 with its own code and a message saying what was expected and what came."""
    with pytest.raises(HttpError) as exc:
        parse(query, precise=precise)
    assert (exc.value.status, exc.value.code, exc.value.message) == (400, code, message)


def test_the_time_filter_keeps_alerts_whose_span_overlaps_the_range_bounds_included():
    """An alert spanning [100, 200] is kept by any range that touches it, and by none that misses it by a second."""
    v = {"kind": "surge", "state": "open", "severity": "low", "started_at": 100.0, "at": 200.0}
    hits = {
        (s, u): parse({k: [str(x)] for k, x in (("since", s), ("until", u)) if x is not None}, precise=True).matches(v, [])
        for s, u in ((None, 100), (200, None), (150, 160), (0, 1000), (None, 99), (201, None), (0, 99.5), (200.5, 300))
    }
    assert [k for k, hit in hits.items() if hit] == [(None, 100), (200, None), (150, 160), (0, 1000)]
    assert not parse({"since": ["0"]}, precise=True).matches({**v, "at": None}, [])  # no time: in no range


def test_partners_search_only_the_text_of_their_own_view():
    """A partner's q reaches its view's reason and its own units' and zones' names; never the raw reason, summary or areas."""
    scope = partner_scope()
    raw = alert("surge:p:1", (IN_LANSDALE,), T, summary=f"EMS calls in {INSIDE_AREA}", reason=RAW_ONLY, areas=[INSIDE_AREA])
    v = view(raw, scope, time.time())
    assert v is not None
    assert searchable(v, scope) == [v["reason"], "Lansdale station", "Lansdale station"]  # the unit's name, then the zone's
    assert searchable(raw, None) == [f"EMS calls in {INSIDE_AREA}", RAW_ONLY, INSIDE_AREA]


# ---------------------------------------------------------------------- live


def listed(gw: GatewayProcess, tok: str, **params: str) -> list[str]:
    """The ids ``/api/alerts`` answers with these parameters, newest first (asserts a 200)."""
    status, body = gw.get_json("/api/alerts?" + urlencode(params), tok)
    assert status == 200, body
    return [a["alert"]["id"] for a in body["alerts"]]


def refusal(gw: GatewayProcess, tok: str, **params: str) -> tuple[int, str]:
    status, body = gw.get_json("/api/alerts?" + urlencode(params), tok)
    return status, body.get("error")


def wait_listed(gw: GatewayProcess, tok: str, n: int, timeout_s: float = 10.0) -> None:
    """Wait until the gateway's hub has read ``n`` alerts (as ``state=all`` lists them)."""
    deadline = time.monotonic() + timeout_s
    while len(got := listed(gw, tok, state="all")) < n:
        assert time.monotonic() < deadline, f"the gateway listed {len(got)} of {n} published alerts after {timeout_s} s"
        time.sleep(0.1)


@pytest.mark.stack
def test_a_supervisor_searches_the_night_by_state_time_category_area_and_text(gw, prefix, r):
    """Each filter alone and combined returns exactly the alerts it names, newest first; bad parameters get precise 400s."""
    sup = token("supervisor", subject="sup-night")
    # published oldest first: the newest first order of the answers is C, D, B, A
    a = alert(
        "surge:a:1",
        (IN_LANSDALE,),
        T,
        state=AlertState.CLOSED,
        categories={"EMS": 8, "TRAFFIC": 4},
        summary=f"EMS calls in {INSIDE_AREA}: 12 in 15 minutes",
        reason="12 calls in 15 min",
        areas=[INSIDE_AREA],
    )
    b = alert(
        "surge:b:1",
        (FAR,),
        T + 3600,
        state=AlertState.UPDATE,
        categories={"FIRE": 12},
        score=12.0,
        summary=f"Fire calls in {OUTSIDE_AREA}",
        reason="12 calls in 15 min",
        areas=[OUTSIDE_AREA],
    )
    d = alert(
        "anomaly:d:1",
        (IN_LANSDALE, FAR),
        T + 5400,
        kind=AlertKind.ANOMALY,
        score=0.95,
        categories={"EMS": 3, "POLICE": 9},
        summary="An unusual mix of calls",
        reason="call mix",
        areas=[INSIDE_AREA, OUTSIDE_AREA],
    )
    c = alert(
        "surge:c:1",
        (FAR,),
        T + 7200,
        categories={"TRAFFIC": 12},
        summary=f"Traffic calls in {OUTSIDE_AREA}",
        reason="water main break on Route 100",
        areas=[OUTSIDE_AREA],
    )
    ws = gw.ws(sup)
    recv_until(ws, lambda f: f["type"] == "caught_up")
    for x in (a, b, d, c):
        publish(r, prefix, x)
    recv_until(ws, lambda f: f["type"] == "alert" and f["alert"]["id"] == "surge:c:1")
    ws.send(json.dumps({"type": "resolve", "alert_id": "surge:c:1", "note": "main shut off"}))  # open, but resolved
    recv_until(ws, lambda f: f["type"] == "action" and f["action"]["alert_id"] == "surge:c:1")
    ws.close()
    wait_listed(gw, sup, 4)

    cases: list[tuple[dict[str, str], list[str]]] = [
        # state: an update is open; closed is closed by the detector or resolved by a supervisor
        ({}, ["anomaly:d:1", "surge:b:1"]),
        ({"state": "open"}, ["anomaly:d:1", "surge:b:1"]),
        ({"state": "closed"}, ["surge:c:1", "surge:a:1"]),
        ({"state": "all"}, ["surge:c:1", "anomaly:d:1", "surge:b:1", "surge:a:1"]),
        # time: the span [at - 600, at] overlaps [since, until], bounds included
        ({"state": "all", "since": str(T + 3600), "until": str(T + 3600)}, ["surge:b:1"]),
        ({"state": "all", "since": str(T + 3601)}, ["surge:c:1", "anomaly:d:1"]),
        ({"state": "all", "until": str(T - 1)}, ["surge:a:1"]),
        ({"state": "all", "since": str(T - 100), "until": str(T - 50)}, ["surge:a:1"]),  # started before since, still going
        ({"state": "all", "since": str(T + 5000), "until": str(T + 6000)}, ["anomaly:d:1"]),
        ({"state": "all", "since": str(T + 7201)}, []),
        # category: among the alert's categories
        ({"state": "all", "category": "EMS"}, ["anomaly:d:1", "surge:a:1"]),
        ({"state": "all", "category": "FIRE"}, ["surge:b:1"]),
        ({"state": "all", "category": "OTHER"}, []),
        # area: one of its named areas, case ignored
        ({"state": "all", "area": INSIDE_AREA}, ["anomaly:d:1", "surge:a:1"]),
        ({"state": "all", "area": OUTSIDE_AREA.lower()}, ["surge:c:1", "anomaly:d:1", "surge:b:1"]),
        ({"state": "all", "area": "Lansdale"}, []),  # a name, not a part of one
        # q: summary, reason and area names, case ignored
        ({"state": "all", "q": "fire calls"}, ["surge:b:1"]),
        ({"state": "all", "q": "WATER MAIN"}, ["surge:c:1"]),  # in the reason only
        ({"state": "all", "q": "lansdale"}, ["anomaly:d:1", "surge:a:1"]),  # D: in its areas only
        ({"state": "all", "q": "main shut off"}, []),  # the supervisor's note is not searched
        ({"state": "all", "q": "x" * MAX_QUERY}, []),
        # combined
        ({"state": "closed", "area": OUTSIDE_AREA}, ["surge:c:1"]),
        ({"state": "all", "category": "EMS", "since": str(T + 1)}, ["anomaly:d:1"]),
        ({"category": "EMS", "q": "unusual", "min_severity": "medium", "area": INSIDE_AREA}, ["anomaly:d:1"]),
        ({"state": "all", "kind": "surge", "category": "EMS"}, ["surge:a:1"]),
        ({"state": "all", "category": "TRAFFIC", "until": str(T + 3600)}, ["surge:a:1"]),
        ({"state": "all", "min_severity": "high", "q": "calls"}, ["surge:b:1"]),
        ({"state": "all", "area": OUTSIDE_AREA, "limit": "2"}, ["surge:c:1", "anomaly:d:1"]),
    ]
    wrong = [(params, got, want) for params, want in cases if (got := listed(gw, sup, **params)) != want]
    assert wrong == []

    refusals = [
        ({"state": "resolved"}, "bad_state"),
        ({"since": str(T + 10), "until": str(T)}, "bad_range"),
        ({"since": "last night"}, "bad_since"),
        ({"until": "inf"}, "bad_until"),
        ({"category": "ems"}, "bad_category"),
        ({"area": ""}, "bad_area"),
        ({"q": "x" * (MAX_QUERY + 1)}, "bad_query"),
        ({"areas": INSIDE_AREA}, "unknown_parameter"),
    ]
    assert [(params, refusal(gw, sup, **params)) for params, _ in refusals] == [(p, (400, code)) for p, code in refusals]


@pytest.mark.stack
def test_a_partner_filtering_on_what_its_view_withholds_learns_nothing(gw, prefix, r):
    """A partner filtering on a category withheld below k, on words of the raw reason, summary or areas, or on a time to
    the second gets what it gets for a value that matches nothing; a supervisor's same filters find the alert; and
    ``area`` is an unknown parameter for a partner, whatever the name."""
    partner = token("transit", zones=("septa-lansdale",), agency="SEPTA", subject="septa-desk")
    sup = token("supervisor")
    at = T + 47.5  # the partner is told T, to the minute
    raw = alert("surge:inside:1", (IN_LANSDALE,), at, observed=12, categories={"TRAFFIC": 10, "EMS": 2},
                summary=f"Traffic and EMS calls in {INSIDE_AREA}", reason=f"12 calls, {RAW_ONLY}", areas=[INSIDE_AREA])  # fmt: skip
    publish(r, prefix, raw)
    wait_listed(gw, sup, 1)
    shown = listed(gw, partner, state="all")
    assert len(shown) == 1 and shown[0].startswith("a-")  # the partner sees it, under its opaque id

    def same_as_nothing(**params: str) -> tuple[list[str], list[str]]:
        """What the partner gets for ``params``, and for the same query with a value that matches nothing."""
        nothing = {k: {"category": "FIRE", "q": "zz-matches-nothing", "since": str(T + 86400)}.get(k, v) for k, v in params.items()}
        return listed(gw, partner, state="all", **params), listed(gw, partner, state="all", **nothing)

    # the filters work for the partner on what it is shown (so the comparisons below can fail)
    assert listed(gw, partner, state="all", category="TRAFFIC") == shown
    assert listed(gw, partner, state="all", q="lansdale STATION") == shown  # its view's reason, its unit's name
    assert listed(gw, partner, state="all", since=str(T), until=str(T)) == shown
    # what it is not shown: exactly what a value that matches nothing gives, although the raw record matches
    probes = [
        {"category": "EMS"},  # 2 calls < k: withheld from its view
        {"q": "hydrant-7731"},  # the detector's reason
        {"q": INSIDE_AREA},  # the summary and areas (the partner's reason says "Lansdale station")
        {"q": "12 calls"},
        {"since": str(T + 30)},  # the raw end is T + 47.5; the partner is told T
    ]
    assert [same_as_nothing(**p) for p in probes] == [([], [])] * len(probes)
    assert [listed(gw, sup, state="all", **p) for p in probes] == [["surge:inside:1"]] * len(probes)
    # area: refused as any unknown parameter, with the same answer for a real area and a made-up one
    answers = [gw.get_json("/api/alerts?" + urlencode({"state": "all", "area": name}), partner) for name in (INSIDE_AREA, "Atlantis")]
    assert answers[0] == answers[1] and answers[0][0] == 400 and answers[0][1]["error"] == "unknown_parameter"
    assert "area" not in answers[0][1]["message"].split("allowed: ")[1]
    assert listed(gw, sup, state="all", area=INSIDE_AREA) == ["surge:inside:1"]
