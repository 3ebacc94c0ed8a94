"""A file of past calls as a history for offline replays: every call with usable coordinates, read by the source adapters.

The adapter side of :mod:`detectors.evaluation` (which does no I/O): it reads
any file :func:`streams.ingest.sources.read_source` reads (a built-in format or a
mapping, in a given time zone) and returns plain
``(event_time, lat, lng, category, dispatch_s)`` records, the form
:meth:`detectors.evaluation.calls.Calls.from_history` takes.

Examples
--------
>>> import tempfile, pathlib
>>> from streams.ingest.history import read_history
>>> path = pathlib.Path(tempfile.mkdtemp()) / "calls.csv"
>>> _ = path.write_text(
...     "lat,lng,desc,zip,title,timeStamp,twp,addr,e\\n"
...     "40.29,-75.58,x,19525,EMS: BACK PAINS/INJURY,2015-12-10 17:40:00,NEW HANOVER,REINDEER CT,1\\n"
...     "0,0,x,19525,Fire: GAS-ODOR/LEAK,2015-12-10 17:41:00,NEW HANOVER,REINDEER CT,1\\n"
... )
>>> calls, skipped = read_history(path, progress=False)
>>> [(c[3], c[1]) for c in calls], dict(skipped)
([('EMS', 40.29)], {'no_coordinates': 1})
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from datetime import datetime

from tqdm import tqdm

from streams.ingest.mapping import Mapping
from streams.ingest.sources import Row, read_source

#: One call: (event time in epoch seconds, lat, lng, category, seconds from received to dispatched or None).
HistoryCall = tuple[float, float, float, str, float | None]


def _usable(lat: float | None, lng: float | None) -> bool:
    return lat is not None and lng is not None and -90 <= lat <= 90 and -180 <= lng <= 180 and not (lat == 0 and lng == 0)


def _dispatch_s(row: Row) -> float | None:
    """Seconds from the call's received time to its first ``dispatched`` update, if it has one."""
    dispatched = next((u["at"] for u in row.updates if u["status"] == "dispatched"), None)
    if dispatched is None:
        return None
    return datetime.fromisoformat(dispatched.replace("Z", "+00:00")).timestamp() - row.event_time


def read_history(
    path: str | os.PathLike[str],
    progress: bool = True,
    *,
    fmt: str | Mapping = "auto",
    timezone: str | None = None,
) -> tuple[list[HistoryCall], Counter[str]]:
    """Every call of ``path`` with usable coordinates, in file order, and the rows skipped per reason.

    Rows the mapping rejects are counted under their reason; calls without coordinates, with coordinates
    out of range or at (0, 0) under ``"no_coordinates"``. ``progress`` shows a progress bar on stderr.
    ``fmt`` (a built-in format's name, ``"auto"`` or a mapping) and ``timezone`` (of times without an
    offset) as :func:`streams.ingest.sources.read_source` takes them, and it raises what that raises
    (``OSError``, ``UnknownFormat``, ``MappingError``).
    """
    calls: list[HistoryCall] = []
    skipped: Counter[str] = Counter()
    rows = tqdm(
        read_source(path, fmt, timezone=timezone),
        desc=f"reading {os.path.basename(path)}",
        unit=" rows",
        file=sys.stderr,
        disable=not progress,
    )
    for row in rows:
        if not isinstance(row, Row):
            skipped[row.reason] += 1
            continue
        lat, lng = row.call.get("lat"), row.call.get("lng")
        if lat is None or lng is None or not _usable(lat, lng):  # the None tests narrow the types; _usable repeats them
            skipped["no_coordinates"] += 1
            continue
        calls.append((row.event_time, lat, lng, row.call["category"], _dispatch_s(row)))
    return calls, skipped
