"""Subscriptions: filters narrow what a scope sees, never widen it, and match on what the view shows."""

from __future__ import annotations

from pathlib import Path

import h3
import pytest

from gateway.agreements import DEFAULT_AGREEMENTS, load_agreements
from gateway.policy import scope_for, view
from gateway.protocol import ProtocolError, Subscribe, parse_client_message
from gateway.subscriptions import Filter, build_filter, filter_counts, matches
from gateway.tokens import Claims, Role
from gateway.zones import event_zone, load_zone_files, polygon_cells

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0
ZONES = load_zone_files(sorted((ROOT / "infra" / "zones").glob("*.geojson")))
PARADE = event_zone(
    id="parade-2016",
    name="Norristown parade",
    polygon={"type": "Polygon", "coordinates": [[[-75.36, 40.105], [-75.33, 40.105], [-75.33, 40.12], [-75.36, 40.12], [-75.36, 40.105]]]},
    starts_at=NOW - 3600,
    ends_at=NOW + 3600,
    agency="NPD",
)
ALL = {**ZONES, PARADE.id: PARADE}
LANSDALE = ZONES["septa-lansdale"]
IN_LANSDALE = sorted(LANSDALE.cells)
FAR = h3.latlng_to_cell(40.30, -75.45, 8)


AGREEMENTS = load_agreements(DEFAULT_AGREEMENTS)


def _scope(role: str, zones: tuple[str, ...] = ()):
    agreement = "septa" if role == "transit" else None
    agency = "SEPTA" if role == "transit" else "AG"
    return scope_for(Claims("desk", Role(role), agency, zones, NOW + 3600, NOW, "j", agreement=agreement), ALL, NOW, agreements=AGREEMENTS)


SUPERVISOR = _scope("supervisor")
TRANSIT = _scope("transit", ("septa-lansdale", "septa-ambler"))
COMMANDER = _scope("commander", ("parade-2016",))


def _box(lng: float, lat: float, d: float) -> dict:
    return {
        "type": "Polygon",
        "coordinates": [[[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d], [lng - d, lat - d]]],
    }


def _refused(msg: Subscribe, scope) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        build_filter(msg, scope, ALL, NOW)
    return info.value


def _alert(cells, kind="surge", score=7.0, categories=None) -> dict:
    return {
        "id": f"{kind}:{cells[0] if cells else 'x'}:1",
        "kind": kind,
        "state": "open",
        "started_at": NOW - 600,
        "at": NOW,
        "cells": list(cells),
        "window_min": 15,
        "observed": 12,
        "expected": 2.0,
        "score": score,
        "p_value": 1e-7,
        "categories": {"TRAFFIC": 10, "FIRE": 2} if categories is None else categories,
        "model": "m",
        "model_version": "1",
        "reason": "detector text",
    }


def _delivered(f: Filter, raw: dict, scope) -> bool:
    v = view(raw, scope, NOW)
    return v is not None and matches(f, v, raw)


# -- build_filter ---------------------------------------------------------------------


def test_partner_naming_another_zone_is_not_allowed():
    """A partner naming a zone outside its token is refused with zone_not_allowed, naming the zone."""
    err = _refused(Subscribe(zones=("septa-lansdale", "school-cheltenham-hs")), TRANSIT)
    assert err.code == "zone_not_allowed" and "'school-cheltenham-hs'" in err.message


def test_partner_naming_an_unknown_zone_gets_the_same_answer():
    """A partner naming a zone that does not exist gets zone_not_allowed too (no oracle of other zones)."""
    assert _refused(Subscribe(zones=("no-such-zone",)), TRANSIT).code == "zone_not_allowed"


def test_commander_naming_a_station_is_not_allowed():
    """A commander may name only its event zones."""
    assert _refused(Subscribe(zones=("septa-lansdale",)), COMMANDER).code == "zone_not_allowed"


def test_supervisor_naming_an_unknown_zone():
    """A supervisor may name any known zone; an unknown one is unknown_zone."""
    assert build_filter(Subscribe(zones=("school-cheltenham-hs", "parade-2016")), SUPERVISOR, ALL, NOW).zones == {
        "school-cheltenham-hs",
        "parade-2016",
    }
    err = _refused(Subscribe(zones=("nowhere",)), SUPERVISOR)
    assert err.code == "unknown_zone" and "'nowhere'" in err.message


def test_bad_polygon_carries_the_zone_error():
    """An invalid polygon is bad_polygon with the validation message."""
    ring = _box(-75.28, 40.24, 0.01)["coordinates"][0][:-1]
    err = _refused(Subscribe(polygon={"type": "Polygon", "coordinates": [ring]}), SUPERVISOR)
    assert err.code == "bad_polygon" and "ring is not closed" in err.message


def test_partner_polygon_outside_scope_is_refused():
    """A partner polygon with no cell in its zones is refused: it can never widen the scope."""
    err = _refused(Subscribe(polygon=_box(-75.45, 40.30, 0.01)), TRANSIT)
    assert err.code == "polygon_outside_scope"


def test_partner_polygon_selects_the_zones_it_overlaps():
    """A partner polygon larger than its zone becomes the zones of its own it overlaps (partner views carry no cells)."""
    big = _box(-75.2838, 40.2418, 0.05)
    f = build_filter(Subscribe(polygon=big), TRANSIT, ALL, NOW)
    assert f.cells is None and f.zones == {"septa-lansdale"}


def test_supervisor_polygon_is_kept_whole():
    """A supervisor polygon gives its res-8 cells, unrestricted."""
    box = _box(-75.45, 40.30, 0.01)
    assert build_filter(Subscribe(polygon=box), SUPERVISOR, ALL, NOW).cells == polygon_cells(box)


def test_commander_polygon_is_cut_to_its_event_zone():
    """A commander polygon keeps only its event zone's cells, at res 8."""
    box = _box(-75.345, 40.1125, 0.05)
    f = build_filter(Subscribe(polygon=box), COMMANDER, ALL, NOW)
    assert f.cells == polygon_cells(box) & PARADE.cells


@pytest.mark.parametrize(("categories", "code"), [(("TRAFFIC", "ARSON"), "unknown_category"), ((), "bad_categories")])
def test_categories_must_be_known(categories, code):
    """Categories are among EMS, FIRE, TRAFFIC, POLICE, OTHER, and not an empty list."""
    err = _refused(Subscribe(categories=categories), SUPERVISOR)
    assert err.code == code
    if code == "unknown_category":
        assert "ARSON" in err.message and "EMS, FIRE, TRAFFIC, POLICE, OTHER" in err.message


def test_empty_zone_list_is_refused():
    """An empty zone list is refused (leave it out for all zones)."""
    assert _refused(Subscribe(zones=()), SUPERVISOR).code == "bad_zones"


def test_filter_from_a_parsed_message():
    """A parsed subscribe frame builds the filter it describes."""
    msg = parse_client_message('{"type": "subscribe", "zones": ["septa-lansdale"], "categories": ["traffic"], "min_severity": "high"}')
    f = build_filter(msg, TRANSIT, ALL, NOW)
    assert f == Filter(cells=None, categories=frozenset({"TRAFFIC"}), min_severity="high", zones=frozenset({"septa-lansdale"}))
    assert f.to_json() == {"zones": ["septa-lansdale"], "cells": None, "categories": ["TRAFFIC"], "min_severity": "high"}


def test_filter_refuses_unknown_severity():
    """A Filter's min_severity is one of low, medium, high."""
    with pytest.raises(ValueError, match="min_severity must be one of low, medium, high"):
        Filter(min_severity="urgent")


# -- matches --------------------------------------------------------------------------


def test_everything_matches_whatever_the_scope_shows():
    """Filter.everything passes every alert a scope may see."""
    for scope in (SUPERVISOR, TRANSIT):
        assert _delivered(Filter.everything(), _alert(IN_LANSDALE[:2]), scope)


@pytest.mark.parametrize(
    ("min_severity", "score", "wanted"),
    [("low", 1.0, True), ("medium", 5.0, False), ("medium", 6.5, True), ("high", 6.5, False), ("high", 10.0, True)],
)
def test_min_severity(min_severity, score, wanted):
    """Alerts below min_severity are not sent."""
    assert _delivered(Filter(min_severity=min_severity), _alert(IN_LANSDALE[:1], score=score), SUPERVISOR) is wanted


def test_categories_match_any_shown_category():
    """An alert passes a category filter when one of its categories is wanted; alerts without categories pass."""
    f = build_filter(Subscribe(categories=("TRAFFIC", "POLICE")), SUPERVISOR, ALL, NOW)
    assert _delivered(f, _alert(IN_LANSDALE[:1]), SUPERVISOR)
    assert not _delivered(f, _alert(IN_LANSDALE[:1], categories={"EMS": 5}), SUPERVISOR)
    assert _delivered(f, _alert(IN_LANSDALE[:1], categories={}), SUPERVISOR)


def test_partner_category_filter_sees_no_suppressed_category():
    """A partner filtering on a category it was shown below k learns nothing: matching uses the view's categories."""
    f = build_filter(Subscribe(categories=("FIRE",)), TRANSIT, ALL, NOW)
    assert not _delivered(f, _alert(IN_LANSDALE[:1], categories={"TRAFFIC": 10, "FIRE": 2}), TRANSIT)
    # the same view (FIRE withheld) whether or not there was a FIRE call
    assert _delivered(f, _alert(IN_LANSDALE[:1], categories={"FIRE": 2}), TRANSIT) == _delivered(
        f, _alert(IN_LANSDALE[:1], categories={}), TRANSIT
    )


def test_zone_filter():
    """A zone filter passes alerts touching the zone and not others in scope."""
    f = build_filter(Subscribe(zones=("septa-ambler",)), TRANSIT, ALL, NOW)
    assert not _delivered(f, _alert(IN_LANSDALE[:2]), TRANSIT)
    assert _delivered(f, _alert(sorted(ZONES["septa-ambler"].cells)[:1]), TRANSIT)


def test_polygon_filter_for_supervisors_matches_raw_cells():
    """A supervisor's polygon passes alerts with a cell inside it and not others."""
    f = build_filter(Subscribe(polygon=_box(-75.45, 40.30, 0.005)), SUPERVISOR, ALL, NOW)
    assert _delivered(f, _alert([FAR]), SUPERVISOR)
    assert not _delivered(f, _alert(IN_LANSDALE[:1]), SUPERVISOR)


def test_partner_polygon_filter_matches_generalized_cells():
    """A partner's polygon over its zone passes alerts in that zone (matched at res 7)."""
    f = build_filter(Subscribe(polygon=_box(-75.2838, 40.2418, 0.002)), TRANSIT, ALL, NOW)
    assert _delivered(f, _alert(IN_LANSDALE), TRANSIT)
    assert not _delivered(f, _alert(sorted(ZONES["septa-ambler"].cells)), TRANSIT)


def test_feed_outages_pass_place_filters():
    """A feed outage passes every zone and polygon filter: it is everywhere."""
    outage = _alert([], kind="feed_outage", categories={})
    for scope, msg in ((TRANSIT, Subscribe(zones=("septa-ambler",))), (SUPERVISOR, Subscribe(polygon=_box(-75.45, 40.30, 0.005)))):
        assert _delivered(build_filter(msg, scope, ALL, NOW), outage, scope)


def test_filter_never_widens_scope():
    """Whatever a partner subscribes to, alerts outside its zones stay out."""
    for msg in (Subscribe(), Subscribe(zones=("septa-lansdale",)), Subscribe(polygon=_box(-75.2838, 40.2418, 0.2))):
        assert not _delivered(build_filter(msg, TRANSIT, ALL, NOW), _alert([FAR]), TRANSIT)


def test_counts_follow_the_subscription_zones():
    """A client following one zone gets the counts of that zone's cells only and that zone's count."""
    ambler = sorted(ZONES["septa-ambler"].cells)[0]
    sup_cells = {IN_LANSDALE[0]: 4, ambler: 6, FAR: 9}
    f = build_filter(Subscribe(zones=("septa-lansdale",)), SUPERVISOR, ALL, NOW)
    cells, zones = filter_counts(f, sup_cells, {"septa-lansdale": 4, "septa-ambler": 6}, SUPERVISOR, ALL)
    assert cells == {IN_LANSDALE[0]: 4} and zones == {"septa-lansdale": 4}
    assert filter_counts(Filter.everything(), sup_cells, {"x": 1}, SUPERVISOR, ALL) == (sup_cells, {"x": 1})
