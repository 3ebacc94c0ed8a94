"""The audit log: who received, acknowledged or resolved what and when, and every refusal.

Records are appended to the Redis stream ``P:audit`` and never rewritten or
trimmed by the gateway (retention is an operator's decision: export, then
``XTRIM``). The stream id orders the records and gives their time.

One record per connection, refusal, subscription, action and zone change; one
``deliver`` record per alert entry per gateway each second, listing every
recipient (subject, role, agency), so that delivering one alert to 5,000
clients writes one record, not 5,000.

:class:`AuditRecord` and :func:`to_csv` are pure; :class:`AuditLog` is the
Redis adapter.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis.asyncio as aioredis


class AuditAction(enum.StrEnum):
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    REFUSED = "refused"
    DELIVER = "deliver"
    SUBSCRIBE = "subscribe"
    ACK = "ack"
    RESOLVE = "resolve"
    ZONE_CREATE = "zone_create"
    QUERY = "audit_query"
    EXPORT = "audit_export"
    READ = "read"


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry. ``detail`` is JSON-able context (never caller data)."""

    action: AuditAction
    actor: str = ""
    role: str = ""
    agency: str = ""
    target: str = ""
    remote: str = ""
    detail: dict = field(default_factory=dict)
    at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        # built by hand, not with dataclasses.asdict: that deep-copies ``detail``, which
        # for a delivery lists thousands of recipients, only to serialise it here
        return {
            "action": self.action.value,
            "actor": self.actor,
            "role": self.role,
            "agency": self.agency,
            "target": self.target,
            "remote": self.remote,
            "detail": json.dumps(self.detail, separators=(",", ":"), sort_keys=True),
            "at": f"{self.at or time.time():.3f}",
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> AuditRecord:
        """The record back from its stream fields.

        >>> r = AuditRecord(AuditAction.ACK, actor="sup-1", role="supervisor", target="surge:x:1", at=5.0)
        >>> AuditRecord.from_fields(r.to_fields()) == r
        True
        """
        return cls(
            action=AuditAction(fields["action"]),
            actor=fields.get("actor", ""),
            role=fields.get("role", ""),
            agency=fields.get("agency", ""),
            target=fields.get("target", ""),
            remote=fields.get("remote", ""),
            detail=json.loads(fields.get("detail") or "{}"),
            at=float(fields.get("at", 0.0)),
        )


COLUMNS = ("id", "at", "action", "actor", "role", "agency", "target", "remote", "detail")


def to_csv(rows: Iterable[tuple[str, AuditRecord]]) -> str:
    """Audit rows as CSV text, one line per record, ``detail`` as JSON.

    >>> print(to_csv([("1-0", AuditRecord(AuditAction.REFUSED, remote="10.0.0.9", detail={"code": "expired"}, at=1.5))]).strip())
    id,at,action,actor,role,agency,target,remote,detail
    1-0,1.500,refused,,,,,10.0.0.9,"{""code"":""expired""}"
    """
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for sid, r in rows:
        f = r.to_fields()
        w.writerow([sid] + [f[c] for c in COLUMNS[1:]])
    return out.getvalue()


class AuditLog:
    """Append-only audit stream ``{prefix}:audit`` in Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:audit"

    async def record(self, record: AuditRecord) -> str:
        return await self.client.xadd(self.key, record.to_fields())

    async def record_many(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        pipe = self.client.pipeline(transaction=False)
        for r in records:
            pipe.xadd(self.key, r.to_fields())
        await pipe.execute()

    async def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 1000,
    ) -> list[tuple[str, AuditRecord]]:
        """Records in time order between ``since`` and ``until`` (epoch s), filtered; at most ``limit``."""
        lo = "-" if since is None else str(int(since * 1000))
        hi = "+" if until is None else str(int(until * 1000))
        out: list[tuple[str, AuditRecord]] = []
        while len(out) < limit:
            page = await self.client.xrange(self.key, min=lo, max=hi, count=1000)
            if not page:
                break
            for sid, fields in page:
                r = AuditRecord.from_fields(fields)
                if actor and r.actor != actor and not any(x[0] == actor for x in r.detail.get("recipients", ())):
                    continue
                if action and r.action != action:
                    continue
                if target and r.target != target:
                    continue
                out.append((sid, r))
                if len(out) >= limit:
                    break
            lo = f"({page[-1][0]}"
        return out

    async def length(self) -> int:
        return await self.client.xlen(self.key)
