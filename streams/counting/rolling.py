"""Event-time window arithmetic and H3 cell keys (pure).

Counts are kept per one-minute event-time bucket; rolling totals over 15
minutes, 1 hour and 24 hours are sums over the buckets that end at a given
minute, so any window is answered exactly from the same data.
"""

from __future__ import annotations

import math

import h3

BUCKET_S = 60
#: Rolling windows answered from buckets, in minutes.
WINDOWS_MIN = {"15m": 15, "1h": 60, "24h": 1440}
#: Upper edges (seconds) of response-time histogram bins; the last bin is open.
RT_BINS_S = (60, 120, 180, 300, 480, 600, 900, 1200, 1800, 3600)


def minute_of(ts: float) -> int:
    """The event-time minute (epoch minutes) that ``ts`` (epoch seconds) falls in.

    >>> minute_of(119.999), minute_of(120.0), minute_of(-0.5)
    (1, 2, -1)
    """
    return math.floor(ts / BUCKET_S)


def hour_of(ts: float) -> int:
    """The event-time hour (epoch hours) that ``ts`` falls in.

    >>> hour_of(7199.0), hour_of(7200.0)
    (1, 2)
    """
    return math.floor(ts / 3600)


def window_minutes(end_minute: int, length_min: int) -> range:
    """The bucket minutes of a window of ``length_min`` minutes ending with ``end_minute``.

    >>> list(window_minutes(100, 3))
    [98, 99, 100]
    """
    if length_min < 1:
        raise ValueError(f"a window must be at least one minute, got {length_min}")
    return range(end_minute - length_min + 1, end_minute + 1)


def cells_for(lat: float, lng: float, resolutions: tuple[int, ...]) -> tuple[str, ...]:
    """The H3 cells containing a point at each resolution, in the given order.

    >>> cells_for(40.1224422, -75.3383233, (8, 7))
    ('882aac95d1fffff', '872aac95dffffff')
    """
    finest = h3.latlng_to_cell(lat, lng, resolutions[0])
    return (finest, *[h3.cell_to_parent(finest, r) for r in resolutions[1:]])


def rt_bin(seconds: float) -> str:
    """The histogram bin label of a response time.

    >>> rt_bin(45), rt_bin(60), rt_bin(61), rt_bin(99999)
    ('le60', 'le60', 'le120', 'inf')
    """
    for edge in RT_BINS_S:
        if seconds <= edge:
            return f"le{edge}"
    return "inf"
