"""CAP 1.2 messages and the Atom feed (gateway/feeds/cap.py), built from the frames a partner's dashboard gets.

Every message is validated against the OASIS CAP 1.2 schema (tests/gateway/vendor/CAP-v1.2.xsd).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import h3
import pytest
import xmlschema

from detectors.types import AlertKind
from gateway.agreements import DEFAULT_AGREEMENTS, load_agreements
from gateway.feeds.cap import ATOM_NS, CAP_NS, Area, Message, Sender, atom_feed, cap_polygons, next_message
from gateway.frames import frame_for
from gateway.policy import scope_for
from gateway.settings import DEFAULT_ZONES
from gateway.tokens import Claims, Role
from gateway.zones import load_zone_files
from streams.ingest.schema import CATEGORIES

SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parents[1] / "vendor" / "CAP-v1.2.xsd")
ZONES = load_zone_files(sorted(DEFAULT_ZONES.glob("*.geojson")))
AGREEMENTS = load_agreements(DEFAULT_AGREEMENTS)
SEPTA = AGREEMENTS["septa"]
CLAIMS = Claims("feed:septa", Role.TRANSIT, SEPTA.agency, (), 2e9, 0.0, "feed:septa", agreement="septa")
SCOPE = scope_for(CLAIMS, ZONES, 1.7e9, agreements=AGREEMENTS, id_key=b"i" * 32, cursor_key=b"c" * 32)
AREAS = {z.id: Area(z.name, cap_polygons(z.polygon)) for z in SCOPE.zones}
SENDER = Sender("911@centre.example", "Test County 911", "septa", SEPTA.agency)
LANSDALE = ZONES["septa-lansdale"]
INSIDE = sorted(LANSDALE.cells)[:2]
FAR = h3.latlng_to_cell(40.2454, -75.6496, 8)
C = f"{{{CAP_NS}}}"


def raw(state: str = "open", *, kind: str = "surge", cells=None, categories=None, at: float = 1700000047.5, observed: int = 12) -> dict:
    cells = INSIDE + [FAR] if cells is None else cells
    return {
        "id": f"{kind}:{INSIDE[0]}:1699999980",
        "kind": kind,
        "state": state,
        "started_at": 1699999980.0,
        "at": at,
        "cells": cells,
        "window_min": 15,
        "observed": observed,
        "expected": 3.14159,
        "score": 12.5,
        "p_value": 1e-12,
        "categories": categories or {"TRAFFIC": 9, "EMS": 3},
        "model": "surge-poisson-scan",
        "model_version": "1",
        "reason": f"{observed} calls in 15 min in 7 cells around {INSIDE[0]}",
    }


def frames_of(records):
    """The partner's frames of stream entries (alert records or actions), as gateway.frames makes them."""
    out = []
    for n, (alert, action) in enumerate(records):
        known = raw() if action is not None else None
        framed = frame_for(f"{1700000000000 + n}-0", alert, action, SCOPE, status=None, known=known, now=1700000100.0)
        if framed is not None:
            out.append(framed)
    return out


def messages_of(frames):
    state, out = {}, []
    for n, f in enumerate(frames):
        before = state.get(f.view["id"])
        m, new = next_message(f.kind, f.view, f.payload, before, identifier=f"wf-septa-{n:04d}", sender=SENDER, areas=AREAS)
        if new is None:
            state.pop(f.view["id"], None)
        else:
            state[f.view["id"]] = new
        out.append(m)
    return out


def cap(message: Message) -> ET.Element:
    SCHEMA.validate(message.xml.decode())  # raises with the reason when it is not valid CAP 1.2
    return ET.fromstring(message.xml)


def test_an_alerts_lifecycle_gives_an_alert_then_updates_each_referencing_every_earlier_message():
    action = {"alert_id": raw()["id"], "action": "ack", "by": "sup-7", "note": "caller at 12 Main St", "at": 1700000075.2}
    frames = frames_of(
        [(raw(), None), (raw("update", categories={"TRAFFIC": 9, "FIRE": 4}), None), (None, action), (raw("closed", at=1700000400.0), None)]
    )
    msgs = messages_of(frames)
    roots = [cap(m) for m in msgs]
    assert [r.findtext(f"{C}msgType") for r in roots] == ["Alert", "Update", "Update", "Update"]
    refs = [(r.findtext(f"{C}references") or "").split() for r in roots]
    sent = [r.findtext(f"{C}sent") for r in roots]
    assert refs[0] == []
    for i in range(1, 4):
        assert refs[i] == [f"911@centre.example,wf-septa-{j:04d},{sent[j]}" for j in range(i)]
    ended = roots[3].find(f"{C}info")
    assert ended is not None
    assert ended.findtext(f"{C}urgency") == "Past" and ended.findtext(f"{C}responseType") == "AllClear"
    assert "acknowledged" in (roots[2].findtext(f".//{C}description") or "")
    # every message of the alert names the same incident: the partner's opaque id
    assert {r.findtext(f"{C}incidents") for r in roots} == {frames[0].view["id"]}
    assert all(r.findtext(f"{C}scope") == "Restricted" and "septa" in (r.findtext(f"{C}restriction") or "") for r in roots)


def test_a_message_says_only_what_the_view_says_never_a_cell_a_count_or_the_detectors_text():
    note = "caller at 12 Main St"
    frames = frames_of([(raw(), None), (None, {"alert_id": raw()["id"], "action": "resolve", "by": "sup-7", "note": note, "at": 1.7e9})])
    for m in messages_of(frames):
        text = m.xml.decode()
        for secret in [*INSIDE, FAR, "3.14159", "12.5", "1e-12", "surge-poisson-scan", "calls in 15 min", note, "sup-7", raw()["id"]]:
            assert secret not in text
        assert not re.search(r"\b8[0-9a-f]{14}\b", text)  # no H3 cell id of any resolution-8 form
        assert not re.search(r"T\d\d:\d\d:(?!00)\d\d\+", text)  # times to the minute only


def test_every_kind_and_category_gives_a_schema_valid_message_with_the_mapped_cap_categories():
    seen = set()
    for kind in AlertKind:
        for cat in CATEGORIES:
            frames = frames_of([(raw(kind=kind.value, categories={cat: 10}), None)])
            assert frames, (kind, cat)
            root = cap(messages_of(frames)[0])
            categories = [c.text for c in root.iter(f"{C}category")]
            seen.update(categories)
            if kind is AlertKind.FEED_OUTAGE:
                assert categories == ["Infra"] and root.findtext(f".//{C}severity") == "Unknown"
            elif kind is AlertKind.ANOMALY:
                assert root.findtext(f".//{C}certainty") == "Possible"
    assert {"Health", "Fire", "Transport", "Security", "Other", "Infra"} <= seen


def test_categories_below_k_are_not_named_and_an_alert_with_none_shown_is_safety():
    root = cap(messages_of(frames_of([(raw(categories={"TRAFFIC": 2, "EMS": 2}, observed=4), None)]))[0])
    assert [c.text for c in root.iter(f"{C}category")] == ["Safety"]


def test_the_area_is_the_partners_zone_outline_closed_lat_lon_never_the_alerts_cells():
    root = cap(messages_of(frames_of([(raw(), None)]))[0])
    areas = root.findall(f".//{C}area")
    assert [a.findtext(f"{C}areaDesc") for a in areas] == [LANSDALE.name]
    polygons = [p.text or "" for p in areas[0].findall(f"{C}polygon")]
    assert polygons
    zone_outline = set()
    coords = LANSDALE.polygon["coordinates"]
    for ring in coords if LANSDALE.polygon["type"] == "Polygon" else [r for poly in coords for r in poly]:
        zone_outline |= {(round(lat, 6), round(lng, 6)) for lng, lat in ring}
    for text in polygons:
        pairs = [tuple(float(x) for x in p.split(",")) for p in text.split(" ")]
        assert len(pairs) >= 4 and pairs[0] == pairs[-1]
        assert all(39 < lat < 41 and -76 < lon < -75 for lat, lon in pairs)  # lat,lon in that order
        assert set(pairs) <= zone_outline  # the zone's own outline, nothing else


def test_an_outage_touching_none_of_the_zones_names_the_jurisdiction_without_a_polygon():
    frames = frames_of([(raw(kind="feed_outage", cells=[]), None)])
    root = cap(messages_of(frames)[0])
    areas = root.findall(f".//{C}area")
    assert [a.findtext(f"{C}areaDesc") for a in areas] == ["The whole jurisdiction"]
    assert root.find(f".//{C}polygon") is None


def test_an_action_on_an_alert_the_feed_never_sent_makes_no_message_and_a_closed_first_sight_is_an_alert():
    action = {"alert_id": raw()["id"], "action": "ack", "at": 1.7e9}
    framed = frames_of([(None, action)])[0]
    assert next_message(framed.kind, framed.view, framed.payload, None, identifier="wf-x", sender=SENDER, areas=AREAS) == (None, None)
    root = cap(messages_of(frames_of([(raw("closed"), None)]))[0])
    assert root.findtext(f"{C}msgType") == "Alert" and root.find(f"{C}references") is None


def test_an_alert_out_of_the_partners_zones_or_below_k_makes_no_frame_so_no_message():
    assert frames_of([(raw(cells=[FAR]), None), (raw(observed=2, categories={"EMS": 2}), None)]) == []


@pytest.mark.parametrize(
    ("geometry", "count"),
    [
        ({"type": "Polygon", "coordinates": [[[-75.3, 40.1], [-75.2, 40.1], [-75.2, 40.2]]]}, 1),  # an unclosed ring is closed
        ({"type": "MultiPolygon", "coordinates": [[[[-75.3, 40.1], [-75.2, 40.1], [-75.2, 40.2], [-75.3, 40.1]]]] * 2}, 2),
        ({"type": "Polygon", "coordinates": [[[-75.3, 40.1], [-75.3, 40.1], [-75.2, 40.1], [-75.3, 40.1]]]}, 0),  # degenerate
    ],
)
def test_cap_polygons_are_closed_rings_of_four_or_more_pairs(geometry, count):
    polygons = cap_polygons(geometry)
    assert len(polygons) == count
    for p in polygons:
        pairs = p.split(" ")
        assert len(pairs) >= 4 and pairs[0] == pairs[-1]


def test_the_atom_feed_lists_the_messages_newest_first_each_with_its_cap_message_inline_and_a_link():
    msgs = messages_of(frames_of([(raw(), None), (raw("closed", at=1700000400.0), None)]))[::-1]
    doc = atom_feed(
        msgs,
        feed_id="urn:watchfloor:feed:septa",
        title="t",
        author="Test County 911",
        self_href="/feeds/cap.atom",
        href_of={m.identifier: f"/feeds/cap/{m.identifier}.xml" for m in msgs},
        updated_if_empty=0.0,
    )
    root = ET.fromstring(doc)
    A = f"{{{ATOM_NS}}}"
    assert root.tag == f"{A}feed" and root.findtext(f"{A}id") == "urn:watchfloor:feed:septa"
    entries = root.findall(f"{A}entry")
    assert [e.findtext(f"{A}id") for e in entries] == [f"urn:watchfloor:cap:{m.identifier}" for m in msgs]
    assert root.findtext(f"{A}updated") == entries[0].findtext(f"{A}updated") == "2023-11-14T22:20:00Z"
    for e, m in zip(entries, msgs, strict=True):
        link = e.find(f"{A}link")
        assert link is not None and link.get("href") == f"/feeds/cap/{m.identifier}.xml" and link.get("type") == "application/cap+xml"
        content = e.find(f"{A}content")
        assert content is not None and content.get("type") == "application/cap+xml"
        inline = content.find(f"{C}alert")
        assert inline is not None
        SCHEMA.validate(ET.tostring(inline, encoding="unicode"))
        assert shape(inline) == shape(ET.fromstring(m.xml))  # the message itself, whatever the prefixes


def shape(el: ET.Element) -> tuple:
    return (el.tag, (el.text or "").strip(), sorted(el.attrib.items()), [shape(c) for c in el])
