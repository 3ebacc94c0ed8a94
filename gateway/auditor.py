"""What the gateway itself writes to the audit log (:mod:`gateway.audit`), and the refusal counts ``/metrics`` shows.

Records written on a request's or a connection's path (:meth:`Auditor.quietly`,
:meth:`Auditor.refused_request`) never fail it: when Redis cannot take them
they are dropped, as they always were. :meth:`Auditor.flush_rate_limited` runs
once a second and lets Redis errors through to its timer, which logs them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from websockets.http11 import Request

from gateway.audit import AuditAction, AuditLog, AuditRecord
from gateway.http import clip
from gateway.limits import RateLimits
from gateway.tokens import Claims


class Auditor:
    """Audit records of refusals, connections and reads; ``refused`` counts refusals by code since start.

    ``rate_limits`` names the gateway's rate limits by what they key on (``"address"``, ``"token"``):
    :meth:`flush_rate_limited` writes one record per key each refused in the last second.
    """

    def __init__(self, audit: AuditLog, rate_limits: Mapping[str, RateLimits], *, clock: Callable[[], float] = time.time) -> None:
        self.audit = audit
        self.rate_limits = rate_limits
        self.clock = clock
        #: refusals by code (HTTP, handshakes, messages, websockets' own closes), for /metrics
        self.refused: dict[str, int] = {}

    def count(self, code: str) -> None:
        """Count one refusal with ``code`` (every refusal is counted, audited or not)."""
        self.refused[code] = self.refused.get(code, 0) + 1

    async def quietly(self, action: AuditAction, claims: Claims, remote: str, detail: dict) -> None:
        """Record ``action`` by the holder of ``claims``; dropped when Redis cannot take it."""
        with contextlib.suppress(RedisError, OSError):
            await self.audit.record(
                AuditRecord(action, claims.subject, claims.role.value, claims.agency, remote=remote, detail=detail, at=self.clock())
            )

    async def refused_request(self, request: Request, remote: str, code: str, claims: Claims | None = None, **detail: object) -> None:
        """Count and record an HTTP request refused with ``code`` (its caller named when its token was verified)."""
        self.count(code)
        path = urlsplit(request.path).path
        record = AuditRecord(
            AuditAction.REFUSED,
            actor=claims.subject if claims else "",
            role=claims.role.value if claims else "",
            agency=claims.agency if claims else "",
            target=str(clip(path, 200)),
            remote=remote,
            detail={"code": code, **{k: clip(v) for k, v in detail.items()}},
            at=self.clock(),
        )
        with contextlib.suppress(RedisError, OSError):
            await self.audit.record(record)

    async def flush_rate_limited(self) -> None:
        """One ``rate_limited`` audit record per address or token refused for its rate in the last second."""
        records = [
            AuditRecord(AuditAction.RATE_LIMITED, actor=who if kind == "token" else "", remote=who if kind == "address" else "",
                        detail={"by": kind, "refused": n}, at=self.clock())
            for kind, limits in self.rate_limits.items()
            for who, n in limits.take_refused().items()
        ]  # fmt: skip
        if records:
            await self.audit.record_many(records)
