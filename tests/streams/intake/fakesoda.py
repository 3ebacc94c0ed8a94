"""A local server that speaks enough of Socrata's SODA API for the poller's tests (not a mock of the client).

``GET /resource/<id>.json`` answers rows of an in-memory table, honouring ``$where`` (clauses
``col >= 'v'``, ``col > 'v'``, ``col = 'v'`` joined by ``AND``, each possibly a parenthesised ``OR`` of
those and ``col IS NULL``; text comparison, which orders SODA's ISO timestamps; a comparison with a null
is not true, as in SoQL), ``$order`` (columns, ascending), ``$limit`` and ``$offset``. Every row has
the system fields ``:id`` and ``:updated_at`` (a publication clock that moves forward a millisecond
at each write), as SODA returns them with ``$select=:*, *``. Faults are planned per request:
``fail_next(status, headers)`` answers the next request with that status; ``on_request(n, fn)``
runs ``fn`` just before the n-th request is answered (a row edited or published mid-read).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

_CLAUSE = re.compile(r"\s*(:?[A-Za-z_][A-Za-z0-9_]*)\s*(>=|>|=)\s*'((?:[^']|'')*)'\s*")
_IS_NULL = re.compile(r"\s*(:?[A-Za-z_][A-Za-z0-9_]*)\s+IS NULL\s*")


class FakeSoda:
    def __init__(self, dataset: str = "kzjm-xkqj") -> None:
        self.dataset = dataset
        self.rows: list[dict] = []
        self.requests: list[dict[str, str]] = []
        self._faults: list[tuple[int, dict[str, str]]] = []
        self._hooks: dict[int, Callable[[], None]] = {}
        self._clock = datetime(2024, 1, 1, 8, 0, 0, tzinfo=UTC)
        self._serial = 0

    # -- the table ---------------------------------------------------------------------

    def _tick(self) -> str:
        self._clock += timedelta(milliseconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self._clock.microsecond // 1000:03d}Z"

    def publish(self, *rows: dict) -> None:
        """Add rows, as a portal's upsert job publishes them (one publication time each)."""
        for row in rows:
            self._serial += 1
            self.rows.append({**row, ":id": f"row-{self._serial:05d}", ":updated_at": self._tick()})

    def edit(self, incident: str, **changes: object) -> None:
        """Change a published row's fields; its ``:updated_at`` moves to now."""
        row = next(r for r in self.rows if r.get("incident_number") == incident)
        row.update(changes)
        row[":updated_at"] = self._tick()

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._faults.append((status, headers or {}))

    def on_request(self, n: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` before answering the n-th request (1-based, counting from now on)."""
        self._hooks[len(self.requests) + n] = fn

    # -- the API -----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/resource/{name}", self._resource)
        return app

    async def _resource(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        self.requests.append(params)
        hook = self._hooks.pop(len(self.requests), None)
        if hook is not None:
            hook()
        if request.match_info["name"] != f"{self.dataset}.json":
            return web.json_response({"code": "not_found", "message": "no such dataset"}, status=404)
        if self._faults:
            status, headers = self._faults.pop(0)
            return web.json_response({"code": "error", "message": f"planned {status}"}, status=status, headers=headers)
        rows = [r for r in self.rows if _matches(r, params.get("$where", ""))]
        for column in reversed([c.strip() for c in params.get("$order", ":id").split(",")]):
            rows.sort(key=lambda r, c=column: str(r.get(c, "")))
        offset, limit = int(params.get("$offset", "0")), int(params.get("$limit", "1000"))
        return web.json_response(rows[offset : offset + limit])


def _matches(row: dict, where: str) -> bool:
    if not where:
        return True
    return all(_alternatives(row, clause) for clause in where.split(" AND "))


def _alternatives(row: dict, clause: str) -> bool:
    """One ``AND`` operand: a comparison, or ``(a OR b ...)`` of comparisons and ``col IS NULL``."""
    if clause.startswith("(") and clause.endswith(")"):
        return any(_alternatives(row, part) for part in clause[1:-1].split(" OR "))
    null = _IS_NULL.fullmatch(clause)
    if null is not None:
        return row.get(null.group(1)) is None
    m = _CLAUSE.fullmatch(clause)
    if m is None:
        raise web.HTTPBadRequest(text=f"query.soql.no-such-clause: {clause!r}")
    column, op, value = m.group(1), m.group(2), m.group(3).replace("''", "'")
    have = row.get(column)
    if have is None:  # SoQL: a comparison with null is not true
        return False
    have = str(have)
    return {">=": have >= value, ">": have > value, "=": have == value}[op]
