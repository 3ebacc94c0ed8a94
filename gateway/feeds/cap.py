"""Partners' alerts as OASIS CAP 1.2 messages, and the Atom feed that lists them (pure: ElementTree, no I/O).

Each CAP message is made from one frame the partner's dashboard shows
(:func:`gateway.frames.frame_for`): its view, never the detector's record. So a
message has no count, no statistic, no cell and no time finer than the minute.

Lifecycle (CAP 1.2 s. 3.2.1, ``msgType``)
-----------------------------------------
=====================  =========  ==============================================================
frame                  msgType    why
=====================  =========  ==============================================================
alert, first shown     Alert      "initial information requiring attention by targeted recipients"
alert, changed view    Update     "updates and supercedes the earlier message(s) identified in
                                  <references>": each earlier message of the alert
alert, closed          Update     urgency ``Past``, responseType ``AllClear``: the alert ended; its
                                  earlier messages were true, so they are superseded, not retracted.
                                  ``Cancel`` "cancels the earlier message(s)": for a message sent in
                                  error, which ours never are (CAP 1.2 added ``AllClear`` for this)
action (ack, resolve)  Update     the last view with its new ``status`` (the centre handled it)
=====================  =========  ==============================================================

A closed alert first seen closed (the feed started after it opened) is an ``Alert``
with nothing to reference. An action on an alert the feed never sent makes no message
(there is nothing to update); the webhook still carries its frame.

Fields
------
===============  ==============================================================================
identifier       the delivery id (:func:`gateway.feeds.signing.delivery_id`): stable, opaque
sent, onset      the view's times (to the minute), ``+00:00`` (CAP forbids ``Z``)
scope            ``Restricted``, ``restriction`` naming the data-sharing agreement
incidents        the partner's opaque alert id: every message of one alert shares it
category         the view's categories (those with at least k calls): EMS ``Health``, FIRE
                 ``Fire``, TRAFFIC ``Transport``, POLICE ``Security``, OTHER ``Other``; none shown:
                 ``Safety``; a feed outage: ``Infra`` (the 911 centre's call feed)
urgency          ``Past`` once closed; else ``Immediate`` at severity high, ``Expected`` below
severity         high ``Severe``, medium ``Moderate``, low ``Minor`` (never ``Extreme``: call
                 counts alone cannot say a threat is extraordinary); a feed outage ``Unknown``
                 (it says nothing of the places, only that alerts may be missing)
certainty        ``Observed`` (the calls were received; an outage is observed); ``Possible`` for
                 an anomaly (an unusual mix of calls, not evidence of one event)
headline         the view's plain sentence (``reason``), cut to 160 characters
description      the sentence, and whether the centre acknowledged or resolved it
area             one per zone the view names: ``areaDesc`` its name, ``polygon`` its outline (the
                 zone's own, as ``GET /api/zones`` gives it), never the alert's cells; an alert of
                 the whole jurisdiction touching none of the zones: ``areaDesc`` only
parameter        ``WatchfloorKind``, ``WatchfloorState``, ``WatchfloorSeverity``, ``WatchfloorExtent``
===============  ==============================================================================
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
#: how Atom entries' content and links name a CAP message (OASIS CAP 1.2 s. 3.1, IANA)
CAP_MIME = "application/cap+xml"
#: Watchfloor's call categories -> CAP 1.2 categories (s. 3.2.2)
CATEGORIES = {"EMS": "Health", "FIRE": "Fire", "TRAFFIC": "Transport", "POLICE": "Security", "OTHER": "Other"}
SEVERITY = {"high": "Severe", "medium": "Moderate", "low": "Minor"}
EVENTS = {
    "surge": "More 911 calls than usual",
    "zone_surge": "More 911 calls than usual",
    "anomaly": "Unusual mix of 911 calls",
    "feed_outage": "911 call feed outage",
}
ACTIONS = {"ack": "acknowledged", "resolve": "resolved"}
#: references kept per alert: its first message and the newest ones
MAX_REFERENCES = 20
HEADLINE_LIMIT = 160

# Prefixes in ElementTree's registry: CAP elements inside an Atom document as cap:, Atom's own unprefixed
# (default_namespace cannot be used there: Atom's attributes are unqualified names).
ET.register_namespace("cap", CAP_NS)
ET.register_namespace("", ATOM_NS)


def _c(tag: str) -> str:
    return f"{{{CAP_NS}}}{tag}"


def _a(tag: str) -> str:
    return f"{{{ATOM_NS}}}{tag}"


def cap_time(t: float) -> str:
    """A CAP 1.2 time: ``YYYY-MM-DDThh:mm:ss+00:00`` (s. 3.3.2: ``Z`` is not allowed), seconds dropped.

    >>> cap_time(1700000047.9)
    '2023-11-14T22:14:07+00:00'
    """
    return datetime.fromtimestamp(math.floor(t), UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def atom_time(t: float) -> str:
    """An RFC 3339 time for Atom (RFC 4287 s. 3.3).

    >>> atom_time(1700000040.0)
    '2023-11-14T22:14:00Z'
    """
    return datetime.fromtimestamp(math.floor(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cap_polygons(geometry: Mapping[str, Any]) -> tuple[str, ...]:
    """A GeoJSON Polygon or MultiPolygon as CAP polygons: each outer ring as ``lat,lon`` pairs, closed, 4+ pairs.

    CAP polygons have no holes: an inner ring is left out, so the polygon covers a little more than the
    zone (never less). Rings with fewer than 3 distinct positions are skipped.

    >>> cap_polygons({"type": "Polygon", "coordinates": [[[-75.3, 40.1], [-75.2, 40.1], [-75.2, 40.2], [-75.3, 40.1]]]})
    ('40.1,-75.3 40.1,-75.2 40.2,-75.2 40.1,-75.3',)
    >>> cap_polygons({"type": "Point", "coordinates": [-75.3, 40.1]})
    ()
    """
    kind = geometry.get("type")
    coords = geometry.get("coordinates") or []
    parts = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
    out = []
    for polygon in parts:
        if not polygon:
            continue
        ring = [(float(p[1]), float(p[0])) for p in polygon[0]]
        if len(set(ring)) < 3:
            continue
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        out.append(" ".join(f"{_num(lat)},{_num(lon)}" for lat, lon in ring))
    return tuple(out)


def _num(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Area:
    """One zone as a CAP area: its name and outline (:func:`cap_polygons`)."""

    name: str
    polygons: tuple[str, ...]


@dataclass(frozen=True)
class Sender:
    """Who the messages are from: CAP ``sender`` (globally unique) and ``senderName``; the agreement they are restricted to."""

    sender: str
    name: str
    agreement: str
    agency: str


@dataclass(frozen=True)
class Message:
    """One CAP message as the feed keeps it: ``identifier``, ``sent`` (epoch s), ``msg_type``, ``headline``, the XML."""

    identifier: str
    sent: float
    msg_type: str
    headline: str
    xml: bytes


def next_message(
    kind: str,
    seen: Mapping[str, Any],
    payload: Mapping[str, Any],
    state: Mapping[str, Any] | None,
    *,
    identifier: str,
    sender: Sender,
    areas: Mapping[str, Area],
) -> tuple[Message | None, dict[str, Any] | None]:
    """The CAP message of one frame a partner is sent, and the alert's new state (None: forget it).

    ``kind`` and ``payload`` are the frame's (:class:`gateway.frames.Framed`): an ``alert`` frame's payload
    is its view, an ``action`` frame's ``{alert_id, action, at}``; ``seen`` is the alert's view. ``state``
    is what the feed kept of the alert from its previous message (``{"refs": [...], "view": {...}}``), or
    None. ``areas`` maps zone ids to :class:`Area`.
    """
    refs: list[str] = list(state["refs"]) if state else []
    if kind == "alert":
        shown = dict(payload)
        sent = _time(shown.get("at"))
    else:
        if state is None:
            return None, None  # an action on an alert this feed never sent: nothing to update
        shown = dict(state["view"])
        shown["status"] = {"action": payload.get("action"), "at": payload.get("at")}
        sent = _time(payload.get("at")) or _time(shown.get("at"))
    msg_type = "Update" if refs else "Alert"
    root = alert_element(shown, identifier=identifier, sender=sender, sent=sent, msg_type=msg_type, references=refs, areas=areas)
    message = Message(identifier, sent, msg_type, _headline(shown), to_xml(root, CAP_NS))
    if shown.get("state") == "closed":
        return message, None
    refs.append(f"{sender.sender},{identifier},{cap_time(sent)}")  # how a later message references it (s. 3.2.1)
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
    return message, {"refs": refs, "view": shown}


def alert_element(
    seen: Mapping[str, Any],
    *,
    identifier: str,
    sender: Sender,
    sent: float,
    msg_type: str,
    references: Sequence[str],
    areas: Mapping[str, Area],
) -> ET.Element:
    """The CAP 1.2 ``alert`` element of a partner's alert view (elements in the schema's order)."""
    alert = ET.Element(_c("alert"))
    _sub(alert, "identifier", identifier)
    _sub(alert, "sender", sender.sender)
    _sub(alert, "sent", cap_time(sent))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", f"Data-sharing agreement {sender.agreement} ({sender.agency}): for its staff only, not for redistribution")
    if references:
        _sub(alert, "references", " ".join(references))
    _sub(alert, "incidents", str(seen.get("id", "")))
    alert.append(info_element(seen, sender=sender, areas=areas))
    return alert


def info_element(seen: Mapping[str, Any], *, sender: Sender, areas: Mapping[str, Area]) -> ET.Element:
    kind = str(seen.get("kind", ""))
    closed = seen.get("state") == "closed"
    sev = str(seen.get("severity", ""))
    info = ET.Element(_c("info"))
    _sub(info, "language", "en-US")
    for category in categories(seen):
        _sub(info, "category", category)
    _sub(info, "event", EVENTS.get(kind, "Unusual 911 calls"))
    _sub(info, "responseType", "AllClear" if closed else "Monitor")
    _sub(info, "urgency", "Past" if closed else "Immediate" if sev == "high" else "Expected")
    _sub(info, "severity", "Unknown" if kind == "feed_outage" else SEVERITY.get(sev, "Unknown"))
    _sub(info, "certainty", "Possible" if kind == "anomaly" else "Observed")
    onset = _time(seen.get("started_at"))
    if onset:
        _sub(info, "onset", cap_time(onset))
    _sub(info, "senderName", sender.name)
    _sub(info, "headline", _headline(seen))
    _sub(info, "description", description(seen))
    for name, value in (("Kind", kind), ("State", "closed" if closed else "open"), ("Severity", sev), ("Extent", seen.get("extent"))):
        param = ET.SubElement(info, _c("parameter"))
        _sub(param, "valueName", f"Watchfloor{name}")
        _sub(param, "value", str(value or ""))
    zones = [z for z in seen.get("zones") or () if z in areas]
    for z in zones:
        area = ET.SubElement(info, _c("area"))
        _sub(area, "areaDesc", areas[z].name)
        for polygon in areas[z].polygons:
            _sub(area, "polygon", polygon)
    if not zones:
        area = ET.SubElement(info, _c("area"))
        _sub(area, "areaDesc", "The whole jurisdiction" if seen.get("extent") == "jurisdiction" else "Not named")
    return info


def categories(seen: Mapping[str, Any]) -> list[str]:
    """The CAP categories of a view (see the module docstring), each once.

    >>> categories({"kind": "surge", "categories": ["EMS", "TRAFFIC"]}), categories({"kind": "surge", "categories": []})
    (['Health', 'Transport'], ['Safety'])
    """
    if seen.get("kind") == "feed_outage":
        return ["Infra"]
    out = list(dict.fromkeys(CATEGORIES[c] for c in seen.get("categories") or () if c in CATEGORIES))
    return out or ["Safety"]


def description(seen: Mapping[str, Any]) -> str:
    """The view's sentence, and whether the 911 centre acknowledged or resolved the alert.

    >>> description({"reason": "More calls than usual near Ambler station", "status": {"action": "ack", "at": 60.0}})
    'More calls than usual near Ambler station. The 911 centre has acknowledged this alert.'
    """
    text = str(seen.get("reason", "")).rstrip(".")
    status = seen.get("status")
    if isinstance(status, Mapping) and status.get("action") in ACTIONS:
        text += f". The 911 centre has {ACTIONS[status['action']]} this alert"
    return text + "."


def _headline(seen: Mapping[str, Any]) -> str:
    text = str(seen.get("reason", "")) or EVENTS.get(str(seen.get("kind", "")), "Alert")
    return text if len(text) <= HEADLINE_LIMIT else text[: HEADLINE_LIMIT - 1] + "…"


def _time(t: object) -> float:
    return float(t) if isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) and t > 0 else 0.0


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, _c(tag))
    el.text = text
    return el


def to_xml(root: ET.Element, default_namespace: str | None = None) -> bytes:
    """The document of ``root``, UTF-8 with its declaration, ``default_namespace`` unprefixed."""
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=default_namespace)
    return text


# ---------------------------------------------------------------------- the Atom feed


def atom_feed(
    messages: Iterable[Message],
    *,
    feed_id: str,
    title: str,
    author: str,
    self_href: str,
    href_of: Mapping[str, str],
    updated_if_empty: float,
) -> bytes:
    """An Atom feed (RFC 4287) of ``messages`` (newest first, as given), each entry's content the CAP message inline.

    ``href_of`` maps each message's identifier to its own URL (``/feeds/cap/<identifier>.xml``). Content of an
    XML media type is carried inline as XML (RFC 4287 s. 4.1.3.3), with a ``link`` to the message too.
    """
    messages = list(messages)
    feed = ET.Element(_a("feed"))
    ET.SubElement(feed, _a("id")).text = feed_id
    ET.SubElement(feed, _a("title")).text = title
    newest = max((m.sent for m in messages), default=updated_if_empty)
    ET.SubElement(feed, _a("updated")).text = atom_time(newest)
    ET.SubElement(ET.SubElement(feed, _a("author")), _a("name")).text = author
    ET.SubElement(feed, _a("link"), rel="self", href=self_href)
    for m in messages:
        entry = ET.SubElement(feed, _a("entry"))
        ET.SubElement(entry, _a("id")).text = f"urn:watchfloor:cap:{m.identifier}"
        ET.SubElement(entry, _a("title")).text = f"{m.msg_type}: {m.headline}"
        ET.SubElement(entry, _a("updated")).text = atom_time(m.sent)
        ET.SubElement(entry, _a("link"), rel="alternate", type=CAP_MIME, href=href_of[m.identifier])
        content = ET.SubElement(entry, _a("content"), type=CAP_MIME)
        content.append(ET.fromstring(m.xml))
    return to_xml(feed)
