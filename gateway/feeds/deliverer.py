"""Each agreement's feed, delivered (adapter over aiohttp's client and Redis).

One :class:`Feeds` per gateway; one :class:`Deliverer` per agreement with a feed. A
deliverer holds the agreement's lock (:class:`gateway.feeds.store.FeedStore`), reads
the alerts stream after the agreement's cursor, never past the hub's position, and
for each entry makes the frame a WebSocket session of the agreement would receive
(:func:`gateway.frames.frame_for` and :func:`gateway.frames.first_showing`, with the
alerts' statuses as of each entry and the hub's latest records, as a live session gets them). For a frame it

1. POSTs it to the agreement's ``webhook_url``, signed (:mod:`gateway.feeds.signing`),
   retrying network errors, 408, 425, 429 and 5xx with capped exponential backoff and
   jitter (``Retry-After`` honoured), until a 2xx, a refusal (another 4xx, a redirect:
   never followed), ``WF_FEEDS_ATTEMPTS`` attempts or ``WF_FEEDS_MAX_AGE_S``; given up,
   the delivery goes to the dead letters;
2. makes its CAP message when the agreement has ``cap = true``;
3. audits the outcome (one ``feed_delivery`` record per delivery, whatever its attempts);
4. moves the cursor past it, with the alert's remembered state and its CAP message, in one
   script that checks the lock is still ours.

At-least-once: the cursor moves only after 2xx or a dead letter, so a gateway that stops
mid-delivery leaves it to the next deliverer, which sends it again with the same
``X-Watchfloor-Delivery``. In stream order: one delivery at a time per agreement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from gateway.audit import AuditAction, AuditLog, AuditRecord
from gateway.feeds.cap import Area, Sender, cap_polygons, next_message
from gateway.feeds.config import FeedSettings, FeedTarget
from gateway.feeds.signing import Verdict, classify, delivery_id, delivery_key, next_delay, retry_after_s, signature
from gateway.feeds.store import FeedStore
from gateway.frames import Framed, first_showing, frame_for, status_of
from gateway.hub import Entry, Hub, parse_entry
from gateway.policy import Scope
from gateway.scopes import Scopes
from gateway.store import Store, stream_id
from gateway.tokens import Claims

log = logging.getLogger(__name__)

#: longest wait for the hub to read on when the feed has caught up (it is woken as soon as the hub does)
POLL_S = 0.2
#: seconds before a deliverer that failed (Redis down) or does not hold the lock tries again
IDLE_S = 1.0
#: bytes of a receiver's answer read (and dropped)
ANSWER_BYTES = 4096


class LockLost(Exception):
    """This deliverer no longer holds its agreement's lock: another gateway delivers the feed now."""


@dataclass(frozen=True)
class Outcome:
    """How one delivery ended: ``delivered`` or ``dead_letter``, after ``attempts``, the last status or error."""

    outcome: str
    attempts: int
    status: int | None
    error: str | None
    seconds: float


class Feeds:
    """The feeds of one gateway: a :class:`Deliverer` per agreement in ``targets`` (see the module docstring)."""

    def __init__(
        self,
        targets: dict[str, FeedTarget],
        settings: FeedSettings,
        *,
        gateway_id: str,
        secret: bytes,
        store: Store,
        hub: Hub,
        scopes: Scopes,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = targets
        self.settings = settings
        self.gateway_id = gateway_id
        self.store = FeedStore(store.client, store.keys.prefix)
        self.alerts = store
        self.hub = hub
        self.audit = audit
        self.clock = clock
        self.key = delivery_key(secret)
        self.deliverers = [Deliverer(self, t, _feed_scope(scopes, t.agreement)) for t in targets.values()]
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Start each deliverer; call after the hub has started (its position is where a new feed begins)."""
        if not self.deliverers:
            return
        for d in self.deliverers:
            # a new feed begins at the hub's position now, before the gateway answers anyone: an alert published
            # once this gateway is up is delivered (SET NX: a cursor another gateway set first is kept)
            await self.store.client.set(self.store.key(d.agreement, "cursor"), self.hub.position, nx=True)
        # no redirects are followed (each post says so too); no cookies kept between partners' receivers
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout)
        self._tasks = [asyncio.create_task(d.run(), name=f"feed-{d.agreement}") for d in self.deliverers]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for d in self.deliverers:
            with contextlib.suppress(RedisError, OSError):
                await d.release()
        if self.session is not None:
            await self.session.close()


def _feed_scope(scopes: Scopes, agreement: str) -> Scope:
    """The scope of a session holding the whole agreement (a token naming no zones), keyed like every token's."""
    a = scopes.agreements[agreement]
    claims = Claims(f"feed:{agreement}", a.role, a.agency, (), float("inf"), 0.0, f"feed:{agreement}", agreement=agreement)
    return scopes.scope(claims)


class Deliverer:
    """One agreement's feed (see the module docstring)."""

    def __init__(self, feeds: Feeds, target: FeedTarget, scope: Scope) -> None:
        self.feeds = feeds
        self.target = target
        self.scope = scope
        self.agreement = target.agreement
        self.owner = f"{feeds.gateway_id}:{uuid.uuid4().hex[:8]}"
        self.owned = False
        self.sender: Sender | None = None
        self.areas = {z.id: Area(z.name, cap_polygons(z.polygon)) for z in scope.zones}
        self.stats = {"delivered": 0, "dead_letters": 0, "cap_messages": 0}
        #: alert id -> its last action, as of the entry being delivered
        self.status: dict[str, dict] = {}

    async def run(self) -> None:
        """Deliver the feed whenever this gateway holds the lock; forever (until cancelled)."""
        s = self.feeds.settings
        while True:
            try:
                if await self.feeds.store.acquire(self.agreement, self.owner, int(s.lock_s * 1000)):
                    self.owned = True
                    log.info("feed %s: delivering from this gateway (%s)", self.agreement, self.owner)
                    renewer = asyncio.create_task(self._renew())
                    try:
                        await self._serve()
                    finally:
                        renewer.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await renewer
            except LockLost:
                log.warning("feed %s: lock lost; another gateway delivers it now", self.agreement)
            except (RedisError, OSError) as exc:
                log.warning("feed %s: Redis unavailable (%s); retrying in %.1f s", self.agreement, exc, IDLE_S)
            self.owned = False
            await asyncio.sleep(IDLE_S)

    async def release(self) -> None:
        if self.owned:
            self.owned = False
            await self.feeds.store.release(self.agreement, self.owner)

    async def _renew(self) -> None:
        s = self.feeds.settings
        while True:
            await asyncio.sleep(s.lock_s / 3)
            try:
                self.owned = await self.feeds.store.renew(self.agreement, self.owner, int(s.lock_s * 1000))
            except (RedisError, OSError) as exc:
                log.warning("feed %s: cannot renew the lock (%s)", self.agreement, exc)
                self.owned = False  # safe side: stop delivering until it is ours again
            if not self.owned:
                return

    def _check(self) -> None:
        if not self.owned:
            raise LockLost(self.agreement)

    async def _serve(self) -> None:
        fs, hub = self.feeds.store, self.feeds.hub
        cursor = await fs.cursor(self.agreement)
        if cursor is None:
            # a new feed starts at the present, as a new dashboard does: no history pushed at once
            cursor = hub.position
            if not await fs.commit(self.agreement, self.owner, cursor):
                raise LockLost(self.agreement)
        shown, states = await fs.remembered(self.agreement)
        # the alerts' statuses as this feed has read them: a live session's are those at each entry (the hub's
        # as it dispatches); from the hub's now on, moved by each action the feed reads, they are the same
        self.status = dict(hub.status)
        oldest = await self.feeds.alerts.oldest_id()
        if oldest is not None and cursor != "0-0" and stream_id(oldest) > stream_id(cursor):
            await self._audit("gap", {"cursor": cursor, "oldest": oldest})
            log.warning("feed %s: entries after %s were trimmed before delivery; resuming at %s", self.agreement, cursor, oldest)
        while True:
            self._check()
            advanced = hub.advanced  # taken before the position is compared: a move after it sets this one
            if stream_id(cursor) >= stream_id(hub.position):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(advanced.wait(), POLL_S)
                continue
            page = await self.feeds.alerts.read_after(cursor)
            moved = False
            for sid, fields in page:
                if stream_id(sid) > stream_id(hub.position):
                    break  # the hub has not read it yet: its statuses would be older than a session's
                self._check()
                entry = parse_entry(sid, fields)
                cursor, moved = sid, True
                if hub.copy_of(entry) is not None:
                    continue  # made again after a failover: the partner had the original
                framed = self._frame(entry)
                if framed is None or (framed.kind == "alert" and not first_showing(shown, framed.view)):
                    continue
                await self._deliver(sid, framed, shown, states)
                moved = False
            if moved and not await fs.commit(self.agreement, self.owner, cursor):
                raise LockLost(self.agreement)

    def _frame(self, entry: Entry) -> Framed | None:
        """The frame a session of the agreement receives for this entry (as the hub makes it)."""
        hub = self.feeds.hub
        sid = entry.id
        known = None
        if entry.action is not None:
            kept = hub.alerts.get(entry.action["alert_id"])
            known = kept[1] if kept else None
        if entry.action is not None:
            self.status[entry.action["alert_id"]] = status_of(entry.action)
        status = self.status.get(entry.alert["id"]) if entry.alert is not None else None
        return frame_for(sid, entry.alert, entry.action, self.scope, status=status, known=known, now=self.feeds.clock())

    async def _deliver(self, sid: str, framed: Framed, shown: dict[str, str], states: dict[str, dict]) -> None:
        settings = self.feeds.settings
        did = delivery_id(self.feeds.key, self.agreement, sid)
        alert_id = str(framed.view["id"])
        outcome = None
        if self.target.url is not None:
            outcome = await self._post(did, sid, framed)
        message = None
        cap_state: tuple[str, dict | None] = ("keep", None)
        if self.target.cap:
            message, state = next_message(
                framed.kind, framed.view, framed.payload, states.get(alert_id), identifier=did, sender=self._sender(), areas=self.areas
            )
            cap_state = ("set", state) if state is not None else ("del", None)
            if state is None:
                states.pop(alert_id, None)
            else:
                states[alert_id] = state
        if outcome is not None:
            detail: dict[str, Any] = {
                "delivery": did,
                "attempts": outcome.attempts,
                "status": outcome.status,
                "error": outcome.error,
                "seconds": round(outcome.seconds, 3),
                "frame": framed.kind,
                "alert_id": alert_id,
                "stream_id": sid,
            }
            await self._audit(outcome.outcome, detail)
        if not await self.feeds.store.commit(
            self.agreement,
            self.owner,
            sid,
            alert_id=alert_id,
            shown=shown.get(alert_id),
            cap_state=cap_state,
            message=message,
            keep=settings.cap_keep,
        ):
            raise LockLost(self.agreement)
        if message is not None:
            self.stats["cap_messages"] += 1

    def _sender(self) -> Sender:
        if self.sender is None:
            s = self.feeds.settings
            self.sender = Sender(s.sender, s.sender_name, self.agreement, self.scope.agency)
        return self.sender

    async def _post(self, did: str, sid: str, framed: Framed) -> Outcome:
        """POST the frame until it is delivered or given up (then dead-lettered); the outcome."""
        s = self.feeds.settings
        assert self.target.url is not None and self.feeds.session is not None
        body = framed.text.encode()
        first = self.feeds.clock()
        started = time.monotonic()
        attempt = 0
        while True:
            self._check()
            attempt += 1
            ts = int(self.feeds.clock())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Watchfloor-feeds/1",
                "X-Watchfloor-Delivery": did,
                "X-Watchfloor-Timestamp": str(ts),
                "X-Watchfloor-Signature": signature(self.target.secret, ts, body),
            }
            status, retry_after, error = await self._attempt(body, headers)
            verdict = classify(status)
            if verdict is Verdict.DELIVERED:
                self.stats["delivered"] += 1
                return Outcome("delivered", attempt, status, None, time.monotonic() - started)
            delay = next_delay(
                verdict,
                attempt,
                age_s=self.feeds.clock() - first,
                attempts=s.attempts,
                max_age_s=s.max_age_s,
                base_s=s.backoff_s,
                max_s=s.backoff_max_s,
                retry_after=retry_after_s(retry_after, self.feeds.clock()),
                u=random.random(),
            )
            log.info("feed %s: delivery %s attempt %d: %s", self.agreement, did, attempt, error or status)
            if delay is None:
                why = error or f"HTTP {status}" + (" (a redirect: not followed)" if status is not None and 300 <= status < 400 else "")
                await self.feeds.store.dead_letter(
                    {
                        "agreement": self.agreement,
                        "delivery": did,
                        "stream_id": sid,
                        "alert_id": str(framed.view["id"]),
                        "frame": framed.kind,
                        "attempts": str(attempt),
                        "status": "" if status is None else str(status),
                        "error": why,
                        "verdict": verdict.value,
                        "first_at": f"{first:.3f}",
                        "last_at": f"{self.feeds.clock():.3f}",
                        "url": self.target.url,
                        "body": framed.text,
                    }
                )
                self.stats["dead_letters"] += 1
                log.warning("feed %s: delivery %s dead-lettered after %d attempt(s): %s", self.agreement, did, attempt, why)
                return Outcome("dead_letter", attempt, status, why, time.monotonic() - started)
            await asyncio.sleep(delay)

    async def _attempt(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None, str | None]:
        """One POST: (status, Retry-After, None), or (None, None, the error) when no answer came."""
        assert self.target.url is not None and self.feeds.session is not None
        try:
            async with self.feeds.session.post(self.target.url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(ANSWER_BYTES)
                return resp.status, resp.headers.get("Retry-After"), None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, None, f"{type(exc).__name__}: {exc}"[:300]

    async def _audit(self, outcome: str, detail: dict[str, Any]) -> None:
        """One ``feed_delivery`` record; logged, not raised, when the log cannot be written (delivery goes on)."""
        record = AuditRecord(
            AuditAction.FEED_DELIVERY,
            actor=self.feeds.gateway_id,
            role="gateway",
            target=self.agreement,
            detail={"outcome": outcome, **detail},
            at=self.feeds.clock(),
        )
        try:
            await self.feeds.audit.record(record)
        except (RedisError, OSError) as exc:
            log.error("feed %s: audit record of %s not written (%s)", self.agreement, detail.get("delivery", outcome), exc)
