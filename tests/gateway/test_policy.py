"""Policy: supervisors see everything, commanders their active event zones, partners what their agreement's disclosure rule allows."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.agreements import DEFAULT_AGREEMENTS, load_agreements
from gateway.policy import (
    Scope,
    ScopeError,
    alert_id_for,
    derive_id_key,
    scope_for,
    severity,
    view,
    view_counts,
    visible_cells,
    zone_counts,
)
from gateway.tokens import Claims, Role
from gateway.zones import event_zone, load_zone_files
from tests.gateway.live import agreement_for

ROOT = Path(__file__).resolve().parents[2]
ZONES = load_zone_files(sorted((ROOT / "infra" / "zones").glob("*.geojson")))
NOW = 1_700_000_000.0
K = 3
PARTNER_KEYS = {"id", "kind", "state", "severity", "extent", "started_at", "at", "units", "zones", "categories", "reason"}
AGREEMENTS = load_agreements(DEFAULT_AGREEMENTS)

LANSDALE = ZONES["septa-lansdale"]
AMBLER = ZONES["septa-ambler"]
IN_LANSDALE = sorted(LANSDALE.cells)
# a cell a few km from every SEPTA station zone, with a res-7 parent none of them has
FAR = h3.latlng_to_cell(40.30, -75.45, 8)
SEPTA_PARENTS = {h3.cell_to_parent(c, 7) for z in ZONES.values() if z.agency == "SEPTA" for c in z.cells}
assert h3.cell_to_parent(FAR, 7) not in SEPTA_PARENTS
# a cell just outside Lansdale's zone (adjacent to it)
NEXT_TO_LANSDALE = sorted(set(h3.grid_ring(h3.latlng_to_cell(40.2418, -75.2838, 8), 2)) - LANSDALE.cells)[0]

PARADE_POLYGON = {
    "type": "Polygon",
    "coordinates": [[[-75.36, 40.105], [-75.33, 40.105], [-75.33, 40.12], [-75.36, 40.12], [-75.36, 40.105]]],
}
PARADE = event_zone(
    id="parade-2016", name="Norristown parade", polygon=PARADE_POLYGON, starts_at=NOW - 3600, ends_at=NOW + 3600, agency="NPD"
)
ALL_ZONES = {**ZONES, PARADE.id: PARADE}


def _claims(role: str, zones: tuple[str, ...] = (), agency: str = "SEPTA", agreement: str | None = None) -> Claims:
    if role in ("transit", "school") and agreement is None:
        agreement = agreement_for(role, zones)
        agency = AGREEMENTS[agreement].agency
    return Claims("desk-1", Role(role), agency, zones, NOW + 3600, NOW - 60, "jti-1", agreement=agreement)


def _scope(claims: Claims, now: float = NOW, **kw) -> Scope:
    return scope_for(claims, ALL_ZONES, now, agreements=AGREEMENTS, **kw)


def _transit(*zone_ids: str) -> Scope:
    return _scope(_claims("transit", zone_ids or ("septa-lansdale", "septa-ambler")))


def _surge(cells, observed=12, categories=None, **kw) -> dict:
    anchor = cells[0] if cells else "jurisdiction"
    alert = {
        "id": f"surge:{anchor}:1699999920",
        "kind": "surge",
        "state": "open",
        "started_at": 1699999920.0,
        "at": NOW - 13.25,
        "cells": list(cells),
        "window_min": 15,
        "observed": observed,
        "expected": 3.14159,
        "score": 7.2345,
        "p_value": 5.83e-8,
        "categories": {"TRAFFIC": 9, "EMS": 2, "FIRE": 1} if categories is None else categories,
        "model": "surge-poisson-scan",
        "model_version": "1.0",
        "reason": f"{observed} calls (11 incidents) in 15 min in 7 cells around {anchor}, 3.1 expected (p = 6e-08)",
    }
    alert.update(kw)
    return alert


def _outage(**kw) -> dict:
    alert = {
        "id": "feed_outage:1699998000",
        "kind": "feed_outage",
        "state": "open",
        "started_at": 1699998000.0,
        "at": NOW,
        "cells": [],
        "window_min": 33,
        "observed": 0,
        "expected": 14.523,
        "score": 6.307,
        "p_value": 4.9e-7,
        "categories": {},
        "model": "feed-monitor",
        "model_version": "1.0",
        "reason": "no call for 33 min while 14.5 were expected: the feed, not the county, went quiet",
    }
    alert.update(kw)
    return alert


def _ints(x):
    """Every int (not bool) anywhere in a JSON-like value."""
    if isinstance(x, bool):
        return
    if isinstance(x, int):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _ints(k)
            yield from _ints(v)
    elif isinstance(x, list | tuple):
        for v in x:
            yield from _ints(v)


def _assert_partner_safe(v: dict, raw: dict, scope: Scope) -> None:
    """The checks every partner view must pass: the allow-list, no count at all, no cell, no detector text or id."""
    assert set(v) == PARTNER_KEYS
    assert list(_ints(v)) == [], v  # no number but times (floats)
    text = json.dumps(v)
    for cell in raw["cells"]:
        assert cell not in text
    assert raw["id"] not in text
    if raw["reason"]:
        assert raw["reason"] not in text
    assert set(v["zones"]) <= {z.id for z in scope.zones} and set(v["units"]) <= set(scope.unit_ids)
    assert v["started_at"] % 60 == 0 and v["at"] % 60 == 0


# -- partners -------------------------------------------------------------------------


def test_partner_view_is_an_allow_list_without_counts_or_cells():
    """A transit partner gets only the allowed keys: its unit touched, categories with k calls or more by name, its own reason."""
    scope = _transit()
    raw = _surge([IN_LANSDALE[0], IN_LANSDALE[1], FAR, NEXT_TO_LANSDALE])
    v = view(raw, scope, NOW)
    _assert_partner_safe(v, raw, scope)
    assert v["zones"] == ["septa-lansdale"] and v["units"] == ["septa-lansdale"] and v["extent"] == "area"
    assert v["categories"] == ["TRAFFIC"] and v["severity"] == "medium"
    assert (v["started_at"], v["at"]) == (1699999920.0, 1699999980.0)
    assert v["reason"] == "More calls than usual (mostly TRAFFIC) in an area that includes Lansdale station"


def test_partner_does_not_see_an_alert_of_fewer_than_k_calls():
    """An alert of 2 calls touching the zone is not shown at all: its existence would say a call or two happened there."""
    raw = _surge([IN_LANSDALE[0]], observed=2, categories={"EMS": 1, "TRAFFIC": 1})
    assert view(raw, _transit(), NOW) is None
    assert view({**raw, "observed": 3}, _transit(), NOW) is not None


def test_partner_sees_a_jurisdiction_wide_alert_as_jurisdiction_wide():
    """The county-wide surge of a blizzard is not presented as local to a station: its extent is the jurisdiction."""
    raw = _surge([IN_LANSDALE[0], FAR], id="surge:jurisdiction:1699999920", observed=94)
    v = view(raw, _transit(), NOW)
    _assert_partner_safe(v, raw, _transit())
    assert v["extent"] == "jurisdiction"
    assert v["reason"].startswith("More calls than usual across the whole jurisdiction") and "Lansdale station" in v["reason"]


def test_partner_out_of_scope_alerts_are_none():
    """Alerts with no cell in the partner's zones (even adjacent ones) are not delivered."""
    scope = _transit()
    assert view(_surge([FAR]), scope, NOW) is None
    assert view(_surge([NEXT_TO_LANSDALE]), scope, NOW) is None
    assert view(_surge([]), scope, NOW) is None


def test_partner_sees_only_its_token_zones():
    """A token for Ambler alone does not see an alert in Lansdale, another SEPTA zone."""
    assert view(_surge(IN_LANSDALE[:2]), _transit("septa-ambler"), NOW) is None
    assert view(_surge(IN_LANSDALE[:2]), _transit("septa-lansdale"), NOW) is not None


def test_school_partner_does_not_see_station_alerts():
    """A school partner's scope is its school zones: a station-only alert is None for it."""
    school = _scope(_claims("school", ("school-north-penn-hs",)))
    station_only = sorted(LANSDALE.cells - ZONES["school-north-penn-hs"].cells)
    assert view(_surge(station_only), school, NOW) is None


def test_partner_gets_feed_outages_without_figures():
    """Feed outages reach every partner: no units, no figures, a generated reason."""
    scope = _transit()
    raw = _outage()
    v = view(raw, scope, NOW)
    _assert_partner_safe(v, raw, scope)
    assert (v["units"], v["zones"], v["severity"], v["extent"]) == ([], [], "high", "jurisdiction")
    assert v["reason"] == "The 911 call feed has gone silent; alerts may be missing until it is back"


def test_partner_never_sees_event_zone_field_or_id():
    """A zone surge touching a partner zone is shown without its event zone id or its detector id."""
    scope = _transit()
    raw = _surge(IN_LANSDALE[:3], kind="zone_surge", id="zone:parade-2016:1699999920", zone="parade-2016")
    v = view(raw, scope, NOW)
    _assert_partner_safe(v, raw, scope)
    assert "parade-2016" not in json.dumps(v)
    assert v["kind"] == "zone_surge" and v["severity"] == "medium"


def test_partner_closed_alert_reason():
    """A closed alert says it ended, from the allowed fields only."""
    v = view(_surge(IN_LANSDALE[:1], state="closed", reason="closed: no region of this surge has scored 6 for 20 min"), _transit(), NOW)
    assert v["state"] == "closed"
    assert v["reason"] == "Ended: more calls than usual (mostly TRAFFIC) in an area that includes Lansdale station"


def test_partner_drops_unknown_kinds_and_categories():
    """Kinds, states and categories outside the known sets never reach a partner."""
    scope = _transit()
    assert view({**_surge(IN_LANSDALE[:1]), "state": "exploded"}, scope, NOW) is None
    v = view(_surge(IN_LANSDALE[:1], categories={"TRAFFIC": 9, "CALLER 215-555-0100": 7}), scope, NOW)
    assert v["categories"] == ["TRAFFIC"]


def test_partner_ids_are_opaque_and_stable_for_a_key():
    """Partner ids hide the detector id, agree between scopes with one key, and differ under another key."""
    key = derive_id_key(b"g" * 32)
    a = _scope(_claims("transit", ("septa-lansdale",)), id_key=key)
    b = _scope(_claims("transit", ("septa-lansdale", "septa-ambler")), id_key=key)
    c = _scope(_claims("transit", ("septa-lansdale",)), id_key=derive_id_key(b"h" * 32))
    raw = _surge(IN_LANSDALE[:1])
    assert view(raw, a, NOW)["id"] == view(raw, b, NOW)["id"] == alert_id_for(raw["id"], a)
    assert view(raw, c, NOW)["id"] != view(raw, a, NOW)["id"]
    assert IN_LANSDALE[0] not in view(raw, a, NOW)["id"]
    # scopes made without a key agree within the process (the hub caches views per kind of client)
    assert view(raw, _transit("septa-lansdale"), NOW)["id"] == view(raw, _transit(), NOW)["id"]


def test_view_does_not_modify_the_alert():
    """No role's view changes the alert dict it was given."""
    raw = _surge(IN_LANSDALE[:2] + [FAR])
    before = copy.deepcopy(raw)
    supervisor = _scope(_claims("supervisor", agency="CCC"))
    for scope in (_transit(), supervisor):
        v = view(raw, scope, NOW)
        v.setdefault("cells", []).append("x")
        v["categories"] = {"X": 99}
    assert raw == before


cell_pool = st.sampled_from(IN_LANSDALE + sorted(AMBLER.cells) + sorted(h3.grid_ring(IN_LANSDALE[0], 3)) + [FAR])


@st.composite
def alerts(draw) -> dict:
    kind = draw(st.sampled_from(["surge", "anomaly", "zone_surge", "feed_outage"]))
    cells = [] if kind == "feed_outage" else draw(st.lists(cell_pool, max_size=12, unique=True))
    counts = st.integers(min_value=0, max_value=40)
    categories = draw(st.dictionaries(st.sampled_from(["EMS", "FIRE", "TRAFFIC", "POLICE", "OTHER"]), counts, max_size=5))
    observed = draw(counts)
    t = draw(st.floats(min_value=1.6e9, max_value=1.8e9))
    return {
        "id": f"{kind}:{cells[0] if cells else 'x'}:{int(t)}",
        "kind": kind,
        "state": draw(st.sampled_from(["open", "update", "closed"])),
        "started_at": t - draw(st.floats(min_value=0, max_value=7200)),
        "at": t,
        "cells": cells,
        "window_min": draw(st.sampled_from([5, 15, 30, 60])),
        "observed": observed,
        "expected": draw(st.floats(min_value=0, max_value=50)),
        "score": draw(st.floats(min_value=0, max_value=300)),
        "p_value": draw(st.floats(min_value=0, max_value=1)),
        "categories": categories,
        "model": "m",
        "model_version": "1",
        "reason": f"{observed} calls in cells {' '.join(cells)} (p = tiny)",
    }


@settings(max_examples=300, deadline=None)
@given(alerts())
def test_random_alerts_never_leak_to_partners(raw):
    """For any alert, a partner's view is None or has no cell, no number, no detector text; alerts of fewer than k calls are None."""
    scope = _scope(_claims("transit", ("septa-lansdale",)))
    v = view(raw, scope, NOW)
    touches = bool(set(raw["cells"]) & LANSDALE.cells)
    if raw["kind"] != "feed_outage" and (not touches or raw["observed"] < scope.k):
        assert v is None
        return
    assert v is not None
    _assert_partner_safe(v, raw, scope)
    assert v["categories"] == sorted(c for c, n in raw["categories"].items() if n >= scope.k)


# -- commanders -----------------------------------------------------------------------


def _commander() -> Scope:
    return _scope(_claims("commander", ("parade-2016",), agency="NPD"))


IN_PARADE = sorted(PARADE.cells)


def test_commander_sees_precise_alerts_in_active_zone():
    """While the event zone is active a commander gets the whole alert, its severity and the zone touched."""
    raw = _surge(IN_PARADE[:2] + [FAR])
    v = view(raw, _commander(), NOW)
    assert v == {**raw, "severity": "medium", "zones": ["parade-2016"]}


def test_commander_sees_nothing_when_zone_inactive():
    """Before the event starts or after it ends, a commander gets no alert, not even a feed outage."""
    scope = _commander()
    for t in (NOW - 3 * 3600, NOW + 2 * 3600):
        assert view(_surge(IN_PARADE[:2], at=t, started_at=t - 600), scope, t) is None
        assert view(_outage(at=t, started_at=t - 1800), scope, t) is None


def test_commander_gets_the_close_of_an_alert_that_opened_during_the_event():
    """The close of an alert that started while the zone was active reaches the commander after the end."""
    end = PARADE.active_until
    raw = _surge(IN_PARADE[:1], state="closed", started_at=end - 900, at=end + 60)
    assert view(raw, _commander(), end + 61) is not None


def test_commander_out_of_zone_alerts_are_none_but_outages_arrive():
    """Alerts outside the event zone are None for its commander; feed outages during the event arrive."""
    scope = _commander()
    assert view(_surge([FAR]), scope, NOW) is None
    v = view(_outage(), scope, NOW)
    assert v["reason"] == _outage()["reason"] and v["zones"] == []


# -- supervisors ----------------------------------------------------------------------


def test_supervisor_gets_everything():
    """A supervisor gets every alert unchanged plus severity and the zones it touches, as a deep copy."""
    scope = scope_for(_claims("supervisor", agency="CCC"), ALL_ZONES, NOW)
    raw = _surge(IN_LANSDALE[:1] + IN_PARADE[:1] + [FAR], observed=1, categories={"EMS": 1})
    v = view(raw, scope, NOW)
    touched = sorted(z.id for z in ALL_ZONES.values() if z.cells & set(raw["cells"]))
    assert {"parade-2016", "septa-lansdale"} <= set(touched)
    assert v == {**raw, "severity": "medium", "zones": touched}
    assert v["cells"] is not raw["cells"]
    assert view(_surge([FAR]), scope, NOW)["zones"] == []
    assert view(_outage(), scope, NOW)["severity"] == "high"


# -- severity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        ({"kind": "feed_outage", "score": 0.1, "observed": 0}, "high"),
        ({"kind": "surge", "score": 10.0, "observed": 3}, "high"),
        ({"kind": "surge", "score": 2.0, "observed": 20}, "high"),
        ({"kind": "surge", "score": 6.0, "observed": 19}, "medium"),
        ({"kind": "surge", "score": 5.99, "observed": 19}, "low"),
        ({"kind": "surge", "score": 12.0, "observed": 25, "state": "closed"}, "high"),
        ({"kind": "anomaly", "score": 0.9, "observed": 50}, "medium"),
        ({"kind": "anomaly", "score": 0.89, "observed": 50}, "low"),
        ({"kind": "zone_surge", "score": 3.0, "observed": 4}, "medium"),
        ({"kind": "zone_surge", "score": 11.0, "observed": 4}, "high"),
    ],
)
def test_severity(alert, expected):
    """Severity follows the documented thresholds per kind, whatever the state."""
    assert severity(alert) == expected


def test_severity_refuses_unknown_kind():
    """An alert kind the policy does not know is an error, not a guess."""
    with pytest.raises(ValueError, match="unknown alert kind 'quake'"):
        severity({"kind": "quake", "score": 1})


# -- scopes ---------------------------------------------------------------------------


def test_scope_for_each_role():
    """Supervisors get every zone; partners their agreement's units holding their token's zones; commanders their event zones."""
    assert {z.id for z in _scope(_claims("supervisor", agency="CCC")).zones} == set(ALL_ZONES)
    partner = _scope(_claims("transit", ("septa-lansdale",)))
    assert [z.id for z in partner.zones] == ["septa-lansdale"] and partner.unit_ids == ("septa-lansdale",)
    everything = _scope(_claims("transit", agreement="septa", agency="SEPTA"))  # no zones named: the whole agreement
    assert {z.id for z in everything.zones} == set(AGREEMENTS["septa"].zones)
    commander = _scope(_claims("commander", ("parade-2016", "septa-lansdale"), agency="NPD"))
    assert [z.id for z in commander.zones] == ["parade-2016"]
    assert partner.k == AGREEMENTS["septa"].k


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (_claims("transit", ("no-such-zone",), agency="SEPTA", agreement="septa"), "token names no zone of agreement 'septa'"),
        (_claims("transit", ("septa-lansdale",), agency="SEPTA", agreement="nope"), "no data-sharing agreement this gateway has: nope"),
        (_claims("transit", ("septa-lansdale",), agency="NJ Transit", agreement="septa"), "is for SEPTA \\(transit\\), not for"),
        (_claims("school", ("septa-lansdale",), agency="SEPTA", agreement="septa"), "is for SEPTA \\(transit\\), not for"),
        (_claims("commander", ("septa-lansdale",), agency="NPD"), "token names no known event zone: septa-lansdale"),
    ],
)
def test_scope_for_refuses_tokens_naming_nothing_known(claims, message):
    """A partner token without a known agreement, for another agency or role, or naming none of its zones, and a commander
    token naming no event zone, entitle to nothing (ScopeError)."""
    with pytest.raises(ScopeError, match=message):
        _scope(claims)


def test_scope_for_refuses_a_commander_whose_events_ended():
    """A commander token for an event zone that has ended entitles to nothing."""
    with pytest.raises(ScopeError, match="every event zone of this token has ended: parade-2016"):
        _scope(_claims("commander", ("parade-2016",), agency="NPD"), now=PARADE.active_until)


def test_scope_refuses_bad_parameters():
    """k below 1, or a partner scope without its agreement's plan, is refused."""
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        _scope(_claims("supervisor", agency="CCC"), k=0)
    with pytest.raises(ValueError, match="needs its agreement's plan"):
        Scope(Role.TRANSIT, "SEPTA", "desk", ())


# -- counts ---------------------------------------------------------------------------


COUNTS = {IN_LANSDALE[0]: 2, IN_LANSDALE[1]: 2, IN_PARADE[0]: 5, FAR: 1, NEXT_TO_LANSDALE: 40}


def test_supervisor_counts_are_unchanged():
    """Supervisors get every cell's count as it is."""
    scope = _scope(_claims("supervisor", agency="CCC"))
    assert visible_cells(scope) is None
    assert view_counts(COUNTS, scope, NOW) == COUNTS


def test_partner_counts_come_only_from_the_released_table():
    """Raw counts never reach a partner through the policy: view_counts and zone_counts give it nothing."""
    scope = _transit("septa-lansdale")
    assert view_counts({IN_LANSDALE[0]: 40, IN_LANSDALE[1]: 9}, scope, NOW) == {}
    assert zone_counts({IN_LANSDALE[0]: 40}, scope, NOW) == {}


def test_commander_counts_only_while_active():
    """Commanders get the precise counts of their active zones' cells, nothing once the zone is inactive."""
    scope = _commander()
    assert view_counts(COUNTS, scope, NOW) == {IN_PARADE[0]: 5}
    assert view_counts(COUNTS, scope, PARADE.active_until) == {}


def test_zone_counts():
    """Zone sums per scope: commanders only see active zones."""
    counts = {**COUNTS, IN_LANSDALE[2]: 1}
    assert zone_counts(counts, _commander(), NOW) == {"parade-2016": sum(n for c, n in counts.items() if c in PARADE.cells)}
    assert zone_counts(counts, _commander(), PARADE.active_until) == {}
    supervisor = zone_counts(counts, _scope(_claims("supervisor", agency="CCC")), NOW)
    assert supervisor["septa-ambler"] == 0 and supervisor["septa-lansdale"] == 5


def test_the_plain_summary_reaches_supervisors_and_never_partners():
    """The worker's ``summary`` names places and counts: supervisors get it, a partner's allow-listed view does not."""
    summary = "Traffic calls in Lansdale: 12 in 15 minutes, four times the usual 3 for a Tuesday evening"
    raw = _surge([IN_LANSDALE[0], IN_LANSDALE[1]], summary=summary, areas=["Lansdale"])
    assert view(raw, _scope(_claims("supervisor")), NOW)["summary"] == summary
    for scope in (_transit(), _scope(_claims("school", ("school-north-penn-hs",)))):
        v = view(raw, scope, NOW)
        if v is not None:
            assert "summary" not in v and summary not in json.dumps(v) and "Lansdale:" not in json.dumps(v)
    v = view(raw, _transit(), NOW)
    assert v is not None and "summary" not in v, "the transit partner's own zone holds the alert: it gets a view, without summary"
