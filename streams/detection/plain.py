"""An alert in one plain sentence, for the person on the floor (pure).

The detectors explain an alert with counts, a window, a score and a p-value;
a dispatch supervisor reads "Traffic calls across Montgomery County, PA: 94 in
3 hours, about twice the usual 46 for a Friday evening". Before an alert is
published the detection agent names its areas (:mod:`streams.detection.naming`)
and then sets its ``summary`` with :func:`summarize`: what (the dominant
categories in words), where (the jurisdiction, the first named areas, or one
cell when no area holds it), how many against how many usual (the ratio in
words), and when (the part of the day on the jurisdiction's clock). No score,
no p-value, no caller detail: the record carries none, and the sentence only
reads the record.

>>> from zoneinfo import ZoneInfo
>>> from detectors.types import Alert, AlertKind, AlertState
>>> fri = 1453509420.0  # 2016-01-22 19:37 EST, a Friday
>>> alert = Alert(id="surge:jurisdiction:1", kind=AlertKind.SURGE, state=AlertState.OPEN, started_at=fri, at=fri,
...               cells=("882aac941dfffff",), window_min=180, observed=94, expected=46.2, score=9.0, p_value=1e-9,
...               categories={"TRAFFIC": 70, "EMS": 20, "FIRE": 4})
>>> summarize(alert, tz=ZoneInfo("America/New_York"), jurisdiction="Montgomery County, PA")
'Traffic calls across Montgomery County, PA: 94 in 3 hours, about twice the usual 46 for a Friday evening'
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from detectors.types import Alert, AlertKind, AlertState

#: Category codes in words; OTHER says nothing a supervisor can use, so it is left out.
CATEGORY_WORDS = {"EMS": "Medical", "FIRE": "Fire", "TRAFFIC": "Traffic", "POLICE": "Police", "OTHER": ""}
#: Ids of the jurisdiction-wide surge alerts start with this (as :data:`detectors.calibration.JURISDICTION_ID`).
JURISDICTION_ID = "surge:jurisdiction:"
#: Share of the calls one category must hold to lead the sentence alone, and two to lead it together.
_DOMINANT = 0.6
_DOMINANT_TWO = 0.8
_SMALL = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_ZONE_NAME = re.compile(r"event zone '([^']*)'")
_SECONDS = re.compile(r"\b(\d+) s\b")


def with_summary(alert: Alert, *, tz: ZoneInfo, jurisdiction: str = "") -> Alert:
    """``alert`` with its ``summary`` set by :func:`summarize` (what the agent publishes)."""
    return dataclasses.replace(alert, summary=summarize(alert, tz=tz, jurisdiction=jurisdiction))


def summarize(alert: Alert, *, tz: ZoneInfo, jurisdiction: str = "") -> str:
    """One plain sentence for ``alert``: times on the clock of ``tz``, ``jurisdiction`` the name a county-wide alert uses.

    >>> from detectors.types import Alert, AlertKind, AlertState
    >>> sun = 1706490000.0  # 2024-01-28 17:00 PST, a Sunday
    >>> local = Alert(id="surge:c:1", kind=AlertKind.SURGE, state=AlertState.OPEN, started_at=sun, at=sun + 900,
    ...               cells=("8829a1d7a3fffff",), window_min=15, observed=9, expected=1.2, score=6.0, p_value=1e-6,
    ...               categories={"EMS": 8, "OTHER": 1}, areas=("Hollywood",))
    >>> la = ZoneInfo("America/Los_Angeles")
    >>> summarize(local, tz=la)
    'Medical calls in Hollywood: 9 in 15 minutes, where about one is usual on a Sunday evening'
    >>> closed = dataclasses.replace(local, state=AlertState.CLOSED, at=sun + 3 * 3600 + 1200)
    >>> summarize(closed, tz=la)
    'Ended: Medical calls in Hollywood are back to usual (opened 17:00 PST, lasted 3 h 20 min)'
    >>> outage = Alert(id="feed_outage:1", kind=AlertKind.FEED_OUTAGE, state=AlertState.OPEN, started_at=sun,
    ...                at=sun + 2700, cells=(), window_min=45, observed=0, expected=15.3, score=6.6, p_value=2e-7)
    >>> summarize(outage, tz=la)
    'No calls received for 45 minutes where about 15 were expected: check the CAD feed'
    """
    if alert.kind is AlertKind.FEED_OUTAGE:
        return _outage(alert, tz)
    what = _what(alert)
    where = _where(alert, jurisdiction)
    if alert.state is AlertState.CLOSED:
        if alert.kind is AlertKind.ANOMALY:
            subject = f"the mix of calls {where}".strip()
            return f"Ended: {subject} is back to usual ({_span(alert, tz)})"
        what = "calls" if what == "Calls" else what
        return f"Ended: {_join(what, where)} are back to usual ({_span(alert, tz)})"
    if alert.kind is AlertKind.ANOMALY:
        sentence = f"Unusual mix of calls {where}".rstrip() + f": {_anomaly_detail(alert)}"
        sentence += f" ({alert.observed} calls in {duration_words(alert.window_min)})"
    else:
        sentence = f"{_join(what, where)}: {alert.observed} in {duration_words(alert.window_min)}, "
        # the usual is the window's: its middle on the local clock says which part of which day
        sentence += f"{compared(alert.observed, alert.expected)} {_day_part(alert.at - alert.window_min * 30.0, tz)}"
    if alert.state is AlertState.UPDATE:
        sentence += f" (since {_opened(alert, tz)})"
    return sentence


def compared(observed: int, expected: float) -> str:
    """How ``observed`` compares with ``expected``, in words (rounded as a person would say it).

    The phrase ends with the word that leads to the day part ("for a Friday evening", "on a Sunday night").

    >>> compared(94, 46.2), compared(9, 1.2), compared(3, 0.3)
    ('about twice the usual 46 for', 'where about one is usual on', 'where fewer than one is usual on')
    >>> compared(30, 9.6), compared(60, 40)
    ('three times the usual 10 for', '50 % more than the usual 40 for')
    >>> compared(41, 40), compared(300, 12), compared(20, 40)
    ('about the usual 40 for', 'far more than the usual 12 for', 'half the usual 40 for')
    """
    if expected < 0.5:
        return "where fewer than one is usual on"
    if expected < 2.5:
        n = round(expected)
        return f"where about {number_words(n)} {'is' if n == 1 else 'are'} usual on"
    usual = round(expected)
    ratio = observed / expected
    if ratio >= 10:
        return f"far more than the usual {usual} for"
    if ratio >= 2.5:
        return f"{_SMALL[round(ratio)]} times the usual {usual} for"
    if ratio >= 1.85:
        return f"about twice the usual {usual} for"
    if ratio >= 1.15:
        return f"{round((ratio - 1) * 10) * 10} % more than the usual {usual} for"
    if ratio > 0.85:
        return f"about the usual {usual} for"
    if ratio > 0.35:
        return f"half the usual {usual} for" if 0.4 <= ratio <= 0.6 else f"fewer than the usual {usual} for"
    return f"far fewer than the usual {usual} for"


def number_words(n: int) -> str:
    """Small counts in words, larger ones in digits: ``number_words(1) == 'one'``, ``number_words(12) == '12'``."""
    return _SMALL[n] if 0 <= n < len(_SMALL) else str(n)


def duration_words(minutes: float) -> str:
    """A window or a wait in words.

    >>> duration_words(15), duration_words(60), duration_words(180), duration_words(90), duration_words(1)
    ('15 minutes', 'an hour', '3 hours', '90 minutes', 'a minute')
    >>> duration_words(135), duration_words(400)
    ('2 h 15 min', '6 h 40 min')
    """
    m = round(minutes)
    if m == 1:
        return "a minute"
    if m == 60:
        return "an hour"
    if m > 60 and m % 60 == 0:
        return f"{m // 60} hours"
    if m >= 120:
        return f"{m // 60} h {m % 60} min"
    return f"{m} minutes"


def clock(epoch: float, tz: ZoneInfo) -> str:
    """``epoch`` on the wall clock of ``tz`` with its abbreviation, e.g. ``'19:37 EST'``."""
    return datetime.fromtimestamp(epoch, tz).strftime("%H:%M %Z")


def _span(alert: Alert, tz: ZoneInfo) -> str:
    minutes = max(0, round((alert.at - alert.started_at) / 60))
    lasted = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    return f"opened {_opened(alert, tz)}, lasted {lasted}"


def _opened(alert: Alert, tz: ZoneInfo) -> str:
    """When ``alert`` started on the local clock: '19:37 EST', dated ('Fri 22 Jan 19:37 EST') when this record is of another day."""
    opened = clock(alert.started_at, tz)
    if datetime.fromtimestamp(alert.started_at, tz).date() != datetime.fromtimestamp(alert.at, tz).date():
        opened = datetime.fromtimestamp(alert.started_at, tz).strftime("%a %d %b ") + opened
    return opened


def _day_part(epoch: float, tz: ZoneInfo) -> str:
    """'a Friday evening', 'a Sunday night' (the small hours belong to the night before), 'a Monday morning'."""
    local = datetime.fromtimestamp(epoch, tz)
    h = local.hour
    if h < 5:
        return f"a {datetime.fromtimestamp(epoch - 6 * 3600, tz).strftime('%A')} night"
    part = "morning" if h < 12 else "afternoon" if h < 17 else "evening" if h < 21 else "night"
    return f"a {local.strftime('%A')} {part}"


def _what(alert: Alert) -> str:
    """'Traffic calls', 'Medical and Fire calls', or 'Calls' when no named category dominates."""
    total = sum(alert.categories.values())
    ranked = sorted(alert.categories.items(), key=lambda kv: -kv[1])
    words = [(CATEGORY_WORDS.get(c, ""), n) for c, n in ranked]
    if total and words[0][0] and words[0][1] >= _DOMINANT * total:
        return f"{words[0][0]} calls"
    if len(words) > 1 and words[0][0] and words[1][0] and words[0][1] + words[1][1] >= _DOMINANT_TWO * total:
        return f"{words[0][0]} and {words[1][0]} calls"
    return "Calls"


def _where(alert: Alert, jurisdiction: str) -> str:
    """'across <jurisdiction>', 'in A', 'in A and B', 'in A, B and 3 more areas', 'in one neighbourhood (cell ...)'."""
    if alert.kind is AlertKind.ZONE_SURGE:
        m = _ZONE_NAME.search(alert.reason)
        return f"in event zone {m.group(1) if m else alert.zone or 'unknown'}"
    if alert.id.startswith(JURISDICTION_ID):
        return f"across {jurisdiction or 'the jurisdiction'}"
    names = alert.areas
    if len(names) == 1:
        return f"in {names[0]}"
    if len(names) == 2:
        return f"in {names[0]} and {names[1]}"
    if len(names) > 2:
        more = len(names) - 2
        return f"in {names[0]}, {names[1]} and {more} more area{'s' if more > 1 else ''}"
    if alert.cells:
        return f"in one neighbourhood (cell {alert.cells[0]})"
    return ""


def _join(what: str, where: str) -> str:
    return f"{what} {where}".strip()


def _outage(alert: Alert, tz: ZoneInfo) -> str:
    """The feed went quiet: say so, and where to look (the feed, not the county).

    >>> from detectors.types import Alert, AlertKind, AlertState
    >>> a = Alert(id="feed_outage:0", kind=AlertKind.FEED_OUTAGE, state=AlertState.CLOSED, started_at=0.0, at=3000.0,
    ...           cells=(), window_min=50, observed=0, expected=2.0, score=0.9, p_value=0.1)
    >>> _outage(a, ZoneInfo("Asia/Tokyo"))
    'Feed back: calls are arriving again after 50 minutes without any (from 09:00 JST)'
    """
    if alert.state is AlertState.CLOSED:
        since = clock(alert.started_at, tz)
        return f"Feed back: calls are arriving again after {duration_words(alert.window_min)} without any (from {since})"
    usual = "fewer than one was" if alert.expected < 0.5 else f"about {number_words(round(alert.expected))} were"
    return f"No calls received for {duration_words(alert.window_min)} where {usual} expected: check the CAD feed"


def _anomaly_detail(alert: Alert) -> str:
    """The anomaly detector's own sentence (shares, priority, response times) with categories in words and seconds in minutes.

    >>> from detectors.types import Alert, AlertKind, AlertState
    >>> a = Alert(id="anomaly:x:0", kind=AlertKind.ANOMALY, state=AlertState.OPEN, started_at=0.0, at=3600.0, cells=(),
    ...           window_min=60, observed=12, expected=10.0, score=0.9, p_value=None,
    ...           reason="mean dispatch time 540 s against a usual 120 s; TRAFFIC 80% of calls against a usual 35%")
    >>> _anomaly_detail(a)
    'mean dispatch time 9 min against a usual 2 min; Traffic 80% of calls against a usual 35%'
    """
    text = alert.reason
    for code, word in CATEGORY_WORDS.items():
        text = re.sub(rf"\b{code}\b", word or "other", text)
    text = _SECONDS.sub(lambda m: f"{max(1, round(int(m.group(1)) / 60))} min", text)
    return text or "the calls differ from the usual mix"
