"""Reading a Socrata dataset incrementally through its SODA API: the queries, the paging, the waits (pure).

The poller (:mod:`streams.intake.poller`) asks one question over and over:
*which rows have a cursor value at or after my position?* This module writes
that question as SoQL and says how to page through its answer and how long to
wait when the portal says no. It does no I/O.

The query
    ``GET /resource/<dataset>.json`` with ``$select=:*, *`` (the system fields
    ``:id`` and ``:updated_at`` with the data), ``$where=<cursor> >= '<low>'``
    (``AND (<time column> >= '<since>' OR <time column> IS NULL)`` to never read
    calls older than the floor, while a row without a call time is still read
    once and refused as the file door refuses it), ``$order=<cursor>, :id`` (a total order: rows sharing a cursor
    value come in ``:id`` order, the same on every request), ``$limit`` and
    ``$offset`` (`SODA paging <https://dev.socrata.com/docs/paging.html>`_:
    "use ``$order`` ... to ensure a stable order"). The read is inclusive
    (``>=``): rows published late with the position's own value are read, and
    what was already sent is recognised by id (:mod:`streams.intake.feedstate`).

The paging plan
    Pages of ``limit`` rows at offsets ``0, limit - 1, 2 (limit - 1), ...``
    until a page shorter than ``limit``: consecutive pages overlap by one row.
    If the previous page's last row is not on the next page, rows before it
    were removed or moved (a row edited during the read moves to the end of an
    ``:updated_at`` order) and an offset would now skip a row: the read starts
    again from the checkpoint (:func:`continues`). A row inserted before the
    offset only repeats one row, which the id memory skips.

Waiting
    A ``429`` answer is waited out for its ``Retry-After`` (seconds or an HTTP
    date, :func:`retry_after_s`; RFC 9110 section 10.2.3); a failing page
    (``5xx``, a timeout, a refused connection) is retried after a capped
    exponential backoff with jitter (:func:`backoff_s`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "RowKey", "backoff_s", "continues", "later", "page_params", "resource_url", "retry_after_s", "row_key", "shift_back", "soql_text",
]  # fmt: skip

#: The system field SODA documents for incremental reads: when the row was last published or changed.
UPDATED_AT = ":updated_at"
#: Rows per page by default; SODA 2.1 allows up to 50,000, smaller pages retry cheaper.
DEFAULT_PAGE_SIZE = 1000
_DATASET = re.compile(r"[a-z0-9]{4}-[a-z0-9]{4}")
_COLUMN = re.compile(r":?[A-Za-z_][A-Za-z0-9_]*")

RowKey = tuple[str, str]
"""A row's place in the read order: its cursor value and its ``:id``."""


class QueryError(ValueError):
    """A URL, column or time the poller cannot build a query from; the message says what to give instead."""


def resource_url(url: str) -> str:
    """The SODA endpoint of a dataset, from its API URL or its portal page's URL.

    >>> resource_url("https://data.seattle.gov/resource/kzjm-xkqj.json")
    'https://data.seattle.gov/resource/kzjm-xkqj.json'
    >>> resource_url("https://data.seattle.gov/Public-Safety/Seattle-Real-Time-Fire-911-Calls/kzjm-xkqj/about_data")
    'https://data.seattle.gov/resource/kzjm-xkqj.json'
    >>> resource_url("data.seattle.gov")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.intake.socrata.QueryError: 'data.seattle.gov' is not a dataset URL; expected https://HOST/resource/xxxx-xxxx.json ...
    """
    parts = urlsplit(url.strip())
    ids = _DATASET.findall(parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or not ids:
        raise QueryError(f"{url!r} is not a dataset URL; expected https://HOST/resource/xxxx-xxxx.json (or the dataset's page)")
    return urlunsplit((parts.scheme, parts.netloc, f"/resource/{ids[-1]}.json", "", ""))


def soql_text(value: str) -> str:
    """A SoQL string literal: single quotes, a quote inside doubled.

    >>> soql_text("O'Brien")
    "'O''Brien'"
    """
    return "'" + value.replace("'", "''") + "'"


def _column(name: str) -> str:
    if not _COLUMN.fullmatch(name):
        raise QueryError(f"column {name!r} is not a SODA field name; expected the API's name, e.g. datetime or :updated_at")
    return name


def page_params(
    *, cursor: str, low: str | None, limit: int, offset: int, time_column: str | None = None, since: str | None = None
) -> dict[str, str]:
    """The query string of one page: rows whose ``cursor`` is at or after ``low``, from ``offset``.

    ``low`` None reads from the start (or from ``since``, a floor on ``time_column``).

    >>> p = page_params(cursor=":updated_at", low="2024-01-01T08:00:00.000Z", limit=1000, offset=999,
    ...                 time_column="datetime", since="2024-01-01T00:00:00")
    >>> p["$where"]
    ":updated_at >= '2024-01-01T08:00:00.000Z' AND (datetime >= '2024-01-01T00:00:00' OR datetime IS NULL)"
    >>> p["$order"], p["$limit"], p["$offset"]
    (':updated_at, :id', '1000', '999')
    """
    if limit < 2:
        raise QueryError(f"page size {limit}; expected at least 2 (pages overlap by one row)")
    clauses = []
    if low is not None:
        clauses.append(f"{_column(cursor)} >= {soql_text(low)}")
    if since is not None and time_column is not None:
        floor = f"{_column(time_column)} >= {soql_text(since)}"
        # a row without a call time is read too (once, by its cursor), so that the mapping refuses it as
        # missing_field and it is dead-lettered as the file door does: a null is never >= anything in SoQL
        clauses.append(floor if time_column == cursor else f"({floor} OR {_column(time_column)} IS NULL)")
    params = {"$select": ":*, *", "$order": f"{_column(cursor)}, :id", "$limit": str(limit), "$offset": str(offset)}
    if clauses:
        params["$where"] = " AND ".join(clauses)
    return params


def row_key(record: Mapping[str, object], cursor: str) -> RowKey:
    """Where ``record`` sits in the read order (its cursor value and ``:id``, ``""`` where absent).

    >>> row_key({":id": "row-a", ":updated_at": "2024-01-01T08:00:00.000Z"}, ":updated_at")
    ('2024-01-01T08:00:00.000Z', 'row-a')
    """
    value, rid = record.get(cursor), record.get(":id")
    return (value if isinstance(value, str) else "", rid if isinstance(rid, str) else "")


def continues(previous_last: RowKey | None, page: Sequence[RowKey]) -> bool:
    """Whether ``page`` follows a page ending at ``previous_last`` without a gap (the overlap row is on it).

    >>> continues(("t1", "b"), [("t1", "b"), ("t2", "a")]), continues(("t1", "b"), [("t2", "a")]), continues(None, [])
    (True, False, True)
    """
    return previous_last is None or previous_last in page


def parse_time(text: str) -> datetime:
    """A SODA timestamp: floating (``2024-01-01T00:05:00.000``, read as UTC for arithmetic) or fixed (``...Z``).

    >>> parse_time("2024-01-01T00:05:00.000").isoformat(), parse_time("2024-01-01T08:05:00.5Z").isoformat()
    ('2024-01-01T00:05:00+00:00', '2024-01-01T08:05:00.500000+00:00')
    """
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{text!r} is not a SODA timestamp; expected ISO 8601 such as 2024-01-01T00:05:00.000") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def shift_back(text: str, seconds: float) -> str:
    """The timestamp ``seconds`` before ``text``, written in its form (floating or ``Z``, milliseconds).

    >>> shift_back("2024-01-01T00:05:00.000", 600), shift_back("2024-01-01T08:05:00.123Z", 0.5)
    ('2023-12-31T23:55:00.000', '2024-01-01T08:04:59.623Z')
    """
    dt = parse_time(text) - timedelta(seconds=seconds)
    out = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"
    return out + "Z" if text.strip().endswith("Z") else out


def later(a: str | None, b: str | None) -> str | None:
    """The later of two cursor values (either may be None).

    >>> later("2024-01-01T00:05:00.000", "2024-01-01T00:04:59.999"), later(None, "x")
    ('2024-01-01T00:05:00.000', 'x')
    """
    if a is None or b is None:
        return a if b is None else b
    return a if parse_time(a) >= parse_time(b) else b


def floating(ts: float, zone: str | None) -> str:
    """Epoch seconds as a SODA floating timestamp in ``zone`` (UTC when None), for ``--since``.

    >>> floating(1704096300.0, "America/Los_Angeles")
    '2024-01-01T00:05:00.000'
    """
    from zoneinfo import ZoneInfo

    dt = datetime.fromtimestamp(ts, ZoneInfo(zone) if zone else UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delay-seconds or an HTTP date), or None when absent or unreadable.

    >>> retry_after_s("7", 0.0), retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0), retry_after_s("soon", 0.0)
    (7.0, 10.0, None)
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def backoff_s(failures: int, *, base: float = 1.0, cap: float = 300.0, jitter: float = 0.5) -> float:
    """The wait after ``failures`` failures in a row (1 or more): ``base * 2**(failures-1)``, capped, times ``jitter`` in [0, 1).

    Half of the wait is fixed and half is jittered ("equal jitter", AWS Architecture Blog, *Exponential Backoff
    And Jitter*, 2015): retries from many pollers spread out, and none retries at once.

    >>> backoff_s(1, jitter=0.0), backoff_s(3, jitter=0.999), backoff_s(30, jitter=0.0)
    (0.5, 3.998, 150.0)
    """
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    ceiling = min(cap, base * math.pow(2.0, min(failures - 1, 62)))
    return ceiling / 2 + ceiling / 2 * jitter
