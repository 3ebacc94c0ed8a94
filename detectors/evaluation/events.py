"""Known real events of the shared data files: the surges and feed outages an evaluation reports on.

The dates and times come from ``../shared/data/README.md`` and from
``bench/calibrate.py``'s reading of the files; they are data, in the zone of
the files they were read from (:data:`EVENTS_TIMEZONE`, the Montgomery County
files'), and carry it. The days of an evaluation are counted in the zone of the
jurisdiction evaluated, which the caller passes (:func:`local_day`).

Examples
--------
>>> from zoneinfo import ZoneInfo
>>> from detectors.evaluation.events import REAL_SURGES, local_day
>>> REAL_SURGES[0].onset.isoformat()
'2016-01-22T19:30:00-05:00'
>>> local_day(REAL_SURGES[0].onset.timestamp(), ZoneInfo("America/New_York")).isoformat()
'2016-01-22'
>>> local_day(REAL_SURGES[0].onset.timestamp(), ZoneInfo("UTC")).isoformat()  # 00:30 UTC the next day
'2016-01-23'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from zoneinfo import ZoneInfo

#: Zone of the known events below (the Montgomery County, PA files they come from): data, not a default.
EVENTS_TIMEZONE = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class RealSurge:
    """A real surge of calls in one of the shared files.

    Parameters
    ----------
    name
        What it was and in which file.
    onset
        Its onset (local time) as read from the data.
    onset_note
        How the onset was read.
    dates
        Local dates that are neither clean nor injected.
    """

    name: str
    onset: datetime
    onset_note: str
    dates: tuple[date, ...]


@dataclass(frozen=True)
class Silence:
    """A known feed outage: no calls from ``start`` to ``end`` (received time), as ``source`` reports it."""

    start: datetime
    end: datetime
    source: str


def local_day(t: float, tz: tzinfo) -> date:
    """The local date in ``tz`` (the jurisdiction's zone) of epoch seconds ``t``."""
    return datetime.fromtimestamp(t, tz).date()


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=EVENTS_TIMEZONE)


#: Known real surges (shared/data/README.md). Onsets are read from the data:
#: the blizzard's Traffic calls first tripled their usual Friday-evening count
#: in the 15 minutes from 19:30 on 2016-01-22 (6 against 1.7; 11 against 1.6 from
#: 19:45); the sample file's snowstorm slice starts at its first call.
REAL_SURGES = (
    RealSurge(
        "2016-01 blizzard (main file)",
        _local("2016-01-22T19:30"),
        "first 15 min with Traffic calls at 3x the usual Friday evening; the README names 2016-01-23",
        (date(2016, 1, 22), date(2016, 1, 23), date(2016, 1, 24)),
    ),
    RealSurge(
        "2018-11-15 snowstorm (sample file)",
        _local("2018-11-15T12:00"),
        "start of the file's 12:00-15:00 slice that day (the storm was under way)",
        (date(2018, 11, 15),),
    ),
)
#: Known real feed outages, as silences in the received time the detectors see
#: (the README and calibrate.py give dispatch times, a few minutes later).
KNOWN_OUTAGES = (
    Silence(_local("2015-12-17T22:47"), _local("2015-12-18T05:27"), "data README (overnight gap)"),
    Silence(_local("2015-12-18T22:30"), _local("2015-12-19T06:08"), "data README (overnight gap)"),
    Silence(_local("2016-03-27T07:40"), _local("2016-03-27T08:38"), "calibrate.py (07:42-08:42 dispatch time)"),
    Silence(_local("2016-04-12T10:37"), _local("2016-04-12T12:10"), "calibrate.py (10:41-13:16 dispatch time)"),
    Silence(_local("2016-04-12T18:50"), _local("2016-04-12T20:04"), "calibrate.py (18:52-21:10 dispatch time)"),
    Silence(_local("2016-05-01T12:51"), _local("2016-05-02T01:57"), "data README (12:57 - 03:01 dispatch time)"),
    Silence(_local("2016-06-03T13:22"), _local("2016-06-03T14:42"), "calibrate.py (dispatch time; no gap in received time)"),
)
