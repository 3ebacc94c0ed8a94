"""Fan-out of the alerts stream to connected clients: scoped, filtered, resumable, bounded.

One :class:`Hub` per gateway process reads the Redis stream ``P:alerts`` (the
worker's alert records and the supervisors' actions) and hands each entry to
every client that may see it, as that client's role may see it
(:func:`gateway.policy.view`) and as its subscription asks
(:func:`gateway.subscriptions.matches`).

Nothing lost, nothing twice
---------------------------
A client that connects with ``last_id`` is registered first and only then
reads the stream after ``last_id``: entries the hub reads meanwhile wait in the
client's catch-up buffer. Once the backlog is sent, the buffer is drained,
skipping every id at or below the last one sent. Stream ids only grow, so the
client sees each entry after ``last_id`` once, in order, whatever the timing
and whichever gateway it reconnects to (all read the same stream).

An alert record the worker appended again (Redis lost its last writes in a
failover and the detection worker made them again from Kafka, under new ids)
is a copy: its body is byte for byte one the hub read before under an older
id. The hub remembers the bodies of the last :data:`RECENT_BODIES` records
and sends no copy, live or on resume, to a client or a partner's feed
(``watchfloor_gateway_copies_total``). A gateway started after the failover
never read the originals, so a client that resumes there from an original's
id gets the copies once.

What it keeps
-------------
Per alert (the newest :data:`KNOWN_ALERTS`): its latest record, its latest action
(``status``), and the stream ids of its records and of the actions on it
(:data:`RECORDS_PER_ALERT`: the first and the newest), for its page
(``GET /api/alerts/{id}/records``, which reads those entries back from the
stream). All of it is built from the entries the hub reads: after a restart,
from the newest ``warm`` entries :meth:`Hub.start` reads, then live.

Slow clients
------------
Each client has a bounded queue of frames. When it is full the client is
closed with :attr:`~gateway.protocol.CloseCode.TOO_SLOW` (its last id is in
the close reason, so it can resume); the hub never waits for a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from gateway.audit import AuditAction, AuditLog, AuditRecord
from gateway.frames import Framed, first_showing, frame_for, status_of
from gateway.policy import Scope, cursor_for, opaque_alert_id
from gateway.protocol import CloseCode, frame
from gateway.store import Store, stream_id
from gateway.subscriptions import Filter, matches
from gateway.tokens import PARTNER_ROLES, Claims

log = logging.getLogger(__name__)

#: alerts whose latest record the hub keeps (for actions and the REST API)
KNOWN_ALERTS = 50_000
#: stream ids kept per alert for its page: the first (its open) and the newest (an alert grows by a fifth per
#: update, so even a day-long one has tens of records)
RECORDS_PER_ALERT = 200
#: alert records whose body the hub remembers to recognise a copy appended again after a failover (a re-feed
#: makes again the records since the worker's last checkpoint: seconds to a minute of alerts)
RECENT_BODIES = 20_000
#: keys of partners' opaque ids indexed at once (a gateway has one: :func:`gateway.policy.derive_id_key` of its secret)
ID_KEYS = 2


@dataclass(eq=False)
class Client:
    """One connected WebSocket client, as the hub sees it."""

    claims: Claims
    scope: Scope
    filter: Filter
    queue_size: int
    remote: str = ""
    #: called once with (code, reason) when the hub drops the client
    close: Callable[[int, str], None] = lambda code, reason: None
    #: writes a frame at once when the connection's buffer has room (True) or declines (False)
    write_now: Callable[[str], bool] = lambda text: False
    queue: asyncio.Queue[str] = field(init=False)
    #: the writer task is between taking a frame from the queue and handing it to the socket
    sending: bool = False
    catching_up: bool = True
    pending: list[Entry] = field(default_factory=list)
    last_sent: tuple[int, int] = (0, 0)
    last_sent_id: str = ""
    closed: bool = False
    #: partners: alert id -> the view last sent, so that an update that changes nothing they see sends nothing
    shown: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)
        #: clients with the same key see the same views
        self.key = (self.claims.role, self.claims.agency, self.claims.zones, self.claims.agreement)
        self.partner = self.claims.role in PARTNER_ROLES
        #: how the audit log names this recipient
        self.who = (self.claims.subject, self.claims.role.value, self.claims.agency)

    def cursor(self) -> str:
        """Where this client resumes from, as it may be told (sealed for partners: :func:`gateway.policy.cursor_for`)."""
        return cursor_for(self.last_sent_id, self.scope)


class Hub:
    def __init__(self, store: Store, audit: AuditLog, *, clock: Callable[[], float] = time.time, gateway_id: str = "gateway") -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self.gateway_id = gateway_id
        self.clients: set[Client] = set()
        self.position = "0-0"
        #: alert id -> (stream id, latest alert record)
        self.alerts: OrderedDict[str, tuple[str, dict]] = OrderedDict()
        #: alert id -> last action (ack / resolve)
        self.status: dict[str, dict] = {}
        #: alert id -> stream ids of its records and the actions on it, oldest first (alerts in ``alerts`` only)
        self.record_ids: dict[str, list[str]] = {}
        #: id key -> partner's opaque alert id -> alert id (built on the first lookup with that key: :meth:`known_as`)
        self._opaque: OrderedDict[bytes, dict[str, str]] = OrderedDict()
        #: digest of an alert record's body -> the stream id it was first read under (the newest RECENT_BODIES)
        self._bodies: OrderedDict[str, str] = OrderedDict()
        self.stats = {"delivered": 0, "entries": 0, "closed_slow": 0, "redis_errors": 0, "copies": 0}
        #: stream id -> (alert id, recipients) delivered since the last audit flush
        self._deliveries: dict[str, tuple[str, list[tuple[str, str, str]]]] = {}
        self._ready = asyncio.Event()
        #: set (and replaced by a new one) each time the hub has read on: the partners' feeds wait on it
        self.advanced = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------

    async def start(self, warm: int = 5000) -> None:
        """Load the latest alert records and statuses, and take the stream's newest id as the live position."""
        self.status = await self.store.statuses()
        for sid, fields in await self.store.recent(warm):
            self._remember(sid, fields)
        self.position = await self.store.newest_id()
        self._ready.set()

    async def run(self) -> None:
        """Read the stream forever, handing each entry to the clients; survives Redis restarts."""
        await self._ready.wait()
        backoff = 0.1
        while True:
            try:
                entries = await self.store.read_new(self.position, block_ms=1000)
                backoff = 0.1
            except (RedisError, OSError) as exc:
                self.stats["redis_errors"] += 1
                log.warning("alerts stream unreadable (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for sid, fields in entries:
                self.dispatch(sid, fields)
                # let the clients' writers drain between entries: a burst read at once
                # must not fill the queue of a client that keeps up
                await asyncio.sleep(0)
            if entries:
                self.advanced.set()
                self.advanced = asyncio.Event()

    async def flush_audit(self) -> None:
        """Write one ``deliver`` record per entry delivered since the last flush (call every second)."""
        pending, self._deliveries = self._deliveries, {}
        now = self.clock()
        records = [
            AuditRecord(
                AuditAction.DELIVER,
                actor=self.gateway_id,
                target=sid,
                detail={"alert_id": alert_id, "count": len(recipients), "recipients": recipients},
                at=now,
            )
            for sid, (alert_id, recipients) in pending.items()
        ]
        try:
            await self.audit.record_many(records)
        except (RedisError, OSError) as exc:
            # keep them for the next flush rather than lose who received what
            log.warning("audit flush failed (%s); %d records kept for the next try", exc, len(records))
            for sid, (alert_id, recipients) in pending.items():
                self._deliveries.setdefault(sid, (alert_id, []))[1][:0] = recipients

    # -- clients ---------------------------------------------------------------

    async def attach(self, client: Client, last_id: str | None) -> str | None:
        """Register ``client``; send what it missed after ``last_id`` first. Returns a warning when history was trimmed."""
        self.clients.add(client)
        warning = None
        if last_id is None:
            client.last_sent = stream_id(self.position)
            client.last_sent_id = self.position
        else:
            client.last_sent = stream_id(last_id)
            client.last_sent_id = last_id
            oldest = await self.store.oldest_id()
            if oldest is not None and stream_id(oldest) > stream_id(last_id) and last_id != "0-0":
                # partners are not told the stream's ids (they would date activity outside their scope)
                where = "your cursor" if client.partner else oldest
                warning = f"history before {where} is no longer kept; resuming from the oldest kept"
            cursor = last_id
            while not client.closed:
                page = await self.store.read_after(cursor)
                if not page:
                    break
                for sid, fields in page:
                    self._deliver(client, parse_entry(sid, fields))
                cursor = page[-1][0]
        # drain what the live reader handed over meanwhile; no await from here on
        pending, client.pending = client.pending, []
        for entry in pending:
            self._deliver(client, entry)
        client.catching_up = False
        if not client.closed:
            self._put(client, frame("caught_up", id=client.cursor()))
        return warning

    def detach(self, client: Client) -> None:
        self.clients.discard(client)
        client.closed = True

    def dispatch(self, sid: str, fields: dict[str, str]) -> None:
        """Hand one stream entry to every client (the live path)."""
        self.position = sid
        self.stats["entries"] += 1
        entry = self._remember(sid, fields)
        cache: dict[tuple, Framed | None] = {}
        for client in list(self.clients):
            if client.catching_up:
                client.pending.append(entry)
                if len(client.pending) > 4 * client.queue_size:
                    self._drop(client, "too slow while catching up")
                continue
            self._deliver(client, entry, cache)

    # -- alerts' pages -----------------------------------------------------------

    def known_as(self, seen_id: str, scope: Scope) -> str | None:
        """The alert id of the alert ``scope`` knows as ``seen_id`` (the detector's id; a partner's opaque id), or
        None when the hub keeps no such alert. Whether ``scope`` may see it is the caller's question (:func:`view`).

        A partner's id is looked up in an index of every kept alert's opaque id, so that an unknown id and a
        known one cost the same (one dictionary lookup) and a detector's id is never a partner's."""
        if scope.role not in PARTNER_ROLES:
            return seen_id if seen_id in self.alerts else None
        index = self._opaque.get(scope.id_key)
        if index is None:
            index = self._opaque[scope.id_key] = {opaque_alert_id(scope.id_key, a): a for a in self.alerts}
            while len(self._opaque) > ID_KEYS:
                self._opaque.popitem(last=False)
        return index.get(seen_id)

    def copy_of(self, entry: Entry) -> str | None:
        """The older stream id under which the hub read ``entry``'s alert record, byte for byte, or None."""
        if not entry.digest:
            return None
        first = self._bodies.get(entry.digest)
        return first if first is not None and stream_id(first) < entry.id_t else None

    # -- internals -------------------------------------------------------------

    def _remember(self, sid: str, fields: dict[str, str]) -> Entry:
        entry = parse_entry(sid, fields)
        if entry.digest:
            original = self.copy_of(entry)
            if original is not None:
                self.stats["copies"] += 1
                log.info("alerts stream entry %s is a copy of %s (made again after Redis lost writes): not sent", sid, original)
                return entry
            self._bodies.setdefault(entry.digest, sid)
            while len(self._bodies) > RECENT_BODIES:
                self._bodies.popitem(last=False)
        if entry.alert is not None:
            alert_id = entry.alert["id"]
            if alert_id not in self.alerts:
                for key, index in self._opaque.items():
                    index[opaque_alert_id(key, alert_id)] = alert_id
            self.alerts[alert_id] = (sid, entry.alert)
            self.alerts.move_to_end(alert_id)
            self._keep_record(alert_id, sid)
            while len(self.alerts) > KNOWN_ALERTS:
                old, _ = self.alerts.popitem(last=False)
                self.record_ids.pop(old, None)
                for key, index in self._opaque.items():
                    index.pop(opaque_alert_id(key, old), None)
        elif entry.action is not None:
            a = entry.action
            self.status[a["alert_id"]] = status_of(a)
            if a["alert_id"] in self.alerts:
                self._keep_record(a["alert_id"], sid)
        return entry

    def _keep_record(self, alert_id: str, sid: str) -> None:
        ids = self.record_ids.setdefault(alert_id, [])
        ids.append(sid)
        if len(ids) > RECORDS_PER_ALERT:
            del ids[1]  # keep the first (the alert's open) and the newest

    def _deliver(self, client: Client, entry: Entry, cache: dict[tuple, Framed | None] | None = None) -> None:
        if client.closed or entry.id_t <= client.last_sent:
            return  # closed, or already sent (backlog and live overlap)
        if self.copy_of(entry) is not None:
            client.last_sent, client.last_sent_id = entry.id_t, entry.id  # sent under the original's id
            return
        text = self._frame_for(client, entry, {} if cache is None else cache)
        client.last_sent, client.last_sent_id = entry.id_t, entry.id
        if text is None:
            return
        if self._put(client, text):
            self.stats["delivered"] += 1
            delivered = self._deliveries.get(entry.id)
            if delivered is None:
                delivered = self._deliveries[entry.id] = (entry.alert_id, [])
            delivered[1].append(client.who)

    def _frame_for(self, client: Client, entry: Entry, cache: dict[tuple, Framed | None]) -> str | None:
        """The frame ``client`` gets for ``entry`` (:func:`gateway.frames.frame_for`), or None; computed once per kind of client."""
        key = client.key
        if key not in cache:
            known = None
            if entry.action is not None:
                kept = self.alerts.get(entry.action["alert_id"])
                known = kept[1] if kept else None
            status = self.status.get(entry.alert["id"]) if entry.alert is not None else None
            cache[key] = frame_for(entry.id, entry.alert, entry.action, client.scope, status=status, known=known, now=self.clock())
        framed = cache[key]
        if framed is None or not matches(client.filter, framed.view, framed.raw):
            return None
        if framed.kind == "alert" and client.partner and not first_showing(client.shown, framed.view):
            return None
        return framed.text

    def _put(self, client: Client, text: str) -> bool:
        # fast path, as websockets.broadcast does: nothing queued and room in the socket's
        # buffer, so write now (no queue, no writer wake-up); otherwise queue, in order
        if not client.sending and client.queue.empty() and client.write_now(text):
            return True
        try:
            client.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self._drop(client, "too slow")
            return False

    def _drop(self, client: Client, why: str) -> None:
        if client.closed:
            return
        self.stats["closed_slow"] += 1
        self.detach(client)
        reason = f"{why}: reconnect with last_id={client.cursor()}"
        log.info("closing %s (%s): %s", client.claims.subject, client.claims.role, reason)
        with contextlib.suppress(Exception):
            client.close(CloseCode.TOO_SLOW, reason[:120])

    def send(self, client: Client, text: str) -> None:
        """Queue a frame for one client (counts, replies); drops the client when it is too slow."""
        if not client.closed:
            self._put(client, text)

    async def heartbeat(self) -> None:
        """Send every connected client a ``heartbeat`` frame (its only content is the gateway's clock), so a page,
        which cannot see WebSocket pings, can tell a silent gateway from a quiet city."""
        text = frame("heartbeat", at=round(self.clock(), 3))
        for client in list(self.clients):
            self.send(client, text)


@dataclass(frozen=True)
class Entry:
    """One entry of the alerts stream, parsed once for all clients."""

    id: str
    id_t: tuple[int, int]
    alert: dict | None = None
    action: dict | None = None
    #: digest of an alert record's body as the stream holds it ("" for anything else): a copy has the original's
    digest: str = ""

    @property
    def alert_id(self) -> str:
        if self.alert is not None:
            return self.alert.get("id", "")
        if self.action is not None:
            return self.action.get("alert_id", "")
        return ""


def parse_entry(sid: str, fields: dict[str, str]) -> Entry:
    """An alerts-stream entry as an :class:`Entry`; malformed bodies give an entry nobody receives.

    >>> parse_entry("5-1", {"alert": '{"id": "surge:a:1"}'}).alert_id
    'surge:a:1'
    >>> parse_entry("5-2", {"alert": "not json"}).alert is None
    True
    >>> parse_entry("5-3", {"alert": '{"id": "a"}'}).digest == parse_entry("9-0", {"alert": '{"id": "a"}'}).digest
    True
    """
    alert = action = None
    digest = ""
    try:
        if "alert" in fields:
            alert = json.loads(fields["alert"])
            if not isinstance(alert, dict) or not isinstance(alert.get("id"), str):
                alert = None
            else:
                digest = hashlib.blake2b(fields["alert"].encode(), digest_size=12).hexdigest()
        elif "action" in fields:
            action = json.loads(fields["action"])
            if not isinstance(action, dict) or not isinstance(action.get("alert_id"), str):
                action = None
    except ValueError:
        log.warning("alerts stream entry %s is not JSON; nobody receives it", sid)
    return Entry(sid, stream_id(sid), alert, action, digest)
