"""The audit log: who received, acknowledged or resolved what and when, and every refusal.

Records are appended to the Redis stream ``P:audit``; the gateway never rewrites
one. The stream id orders the records and gives their time.

One record per connection, refusal, subscription, action and zone change; one
``deliver`` record per alert entry per gateway each second, listing every
recipient (subject, role, agency), so that delivering one alert to 5,000
clients writes one record, not 5,000; one ``feed_delivery`` record per delivery
of a partner's webhook (:mod:`gateway.feeds`), however many attempts it took.

Bounded fields
    A record's text fields are clipped to :data:`TEXT_LIMIT` characters and every
    string inside its ``detail`` to :data:`DETAIL_TEXT_LIMIT` (:func:`clip_text`)
    as the record is serialised (:meth:`AuditRecord.content_fields`, the one way
    into the stream and into exports), so no caller can write an unbounded record
    (an unauthenticated client once added 1.4 MB to the stream in 0.2 s by
    requesting very long paths).

Hash chain
    Every entry carries ``prev``, the ``hash`` of the entry before it (64 zeros
    for the first ever, :data:`GENESIS`), and its own ``hash`` over ``prev`` and
    its other fields (:func:`record_hash` states exactly what is hashed). The
    newest hash is kept at ``P:audit:head``. Appends go through one Lua script
    that checks the head is still the one the hashes were computed from, adds
    the entries and moves the head, atomically; several gateways appending at
    once therefore keep one chain (:class:`AuditLog`). Every process writing the
    stream must append this way: an entry added by a plain ``XADD`` (a gateway of
    an earlier version) is reported as a break. Entries from before the chain
    existed are counted but not checked, as long as they all precede it.

    An edited, inserted, reordered or deleted record breaks the chain
    (:func:`verify_chain`). Records removed from the end leave a valid chain: the
    head key, compared with the last entry's hash, catches that while the head
    key is intact. The chain has no secret: whoever can write to Redis can
    rebuild the whole chain and the head. To detect that too, keep the last id and
    head printed by ``python -m gateway.audit verify`` outside Redis and check
    later that the entry still has that hash.

Retention
    Each append trims the entries older than ``retention_s`` (one year by
    default, :data:`DEFAULT_RETENTION_S`) with ``XADD ... MINID ~``: approximate
    trimming, which removes whole stream nodes (up to ``stream-node-max-entries``
    entries, 100 by default), so a few entries older than the retention may stay
    until their node is full. Verification then starts from the first kept
    entry, anchored at its ``prev``.

Verification
    ``python -m gateway.audit verify`` walks the whole stream and prints
    ``ok: ...`` (exit 0) or ``BROKEN at <id>: ...`` (exit 1); exit 2 when Redis
    cannot be read.

:func:`clip_text`, :class:`AuditRecord`, :func:`record_hash`, :class:`ChainVerifier`,
:func:`verify_chain` and :func:`to_csv` are pure; :class:`AuditLog` is the Redis
adapter and :func:`main` the command.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import enum
import hashlib
import io
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tqdm import tqdm

from streams.runtime.redisconn import ReplicaWarning, async_client, execute_waiting
from streams.runtime.settings import DEFAULT_SENTINEL_SERVICE, sentinel_addresses

log = logging.getLogger(__name__)

#: longest text field (actor, role, agency, target, remote) kept, characters (then a ``… (N chars)`` marker)
TEXT_LIMIT = 200
#: longest string kept anywhere inside ``detail``, characters (then a ``… (N chars)`` marker)
DETAIL_TEXT_LIMIT = 300
#: the ``prev`` of the first record ever appended
GENESIS = "0" * 64
#: records older than this are trimmed as new ones are appended (one year)
DEFAULT_RETENTION_S = 365 * 24 * 3600
#: compare-and-set attempts of one append before :class:`AuditAppendError`
DEFAULT_MAX_ATTEMPTS = 20
#: stream fields of the chain itself; every other field is hashed
CHAIN_FIELDS = ("prev", "hash")
TEXT_FIELDS = ("actor", "role", "agency", "target", "remote")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Entries of the stream as the client returns them: it decodes replies (decode_responses=True); redis-py's types
# also allow bytes, hence the casts to this where the stream is read.
_Entries = list[tuple[str, dict[str, str]]]


class AuditAction(enum.StrEnum):
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    REFUSED = "refused"
    DELIVER = "deliver"
    SUBSCRIBE = "subscribe"
    ACK = "ack"
    RESOLVE = "resolve"
    ZONE_CREATE = "zone_create"
    ZONE_UPDATE = "zone_update"
    RATE_LIMITED = "rate_limited"
    QUERY = "audit_query"
    EXPORT = "audit_export"
    READ = "read"
    ALLOCATION_ADOPT = "allocation_adopt"
    #: a request to the HTTP intake (streams.intake), in its own stream ``P:intake:audit``
    INTAKE = "intake"
    #: one delivery of a partner's feed (gateway.feeds): delivered or dead-lettered, with its attempts; one record
    #: per delivery, not per attempt (a receiver down for an hour would otherwise write hundreds per alert)
    FEED_DELIVERY = "feed_delivery"


# -- bounded fields (pure) -----------------------------------------------------

_CLIPPED = re.compile(r"… \((\d{1,15}) chars\)")


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to its first ``limit`` characters and a ``… (N chars)`` marker, N its length.

    Shorter text is returned as it is, and so is text already clipped to ``limit``
    with this marker (the gateway's own clipping uses it), so clipping twice
    changes nothing. The result has at most ``limit + 25`` characters.

    >>> clip_text("abcdef", 3)
    'abc… (6 chars)'
    >>> clip_text(clip_text("abcdef", 3), 3), clip_text("abc", 3)
    ('abc… (6 chars)', 'abc')
    """
    if len(text) <= limit:
        return text
    marker = _CLIPPED.fullmatch(text, limit)
    if marker is not None and int(marker.group(1)) > limit:
        return text
    return f"{text[:limit]}… ({len(text)} chars)"


def clip_json(value: object, limit: int = DETAIL_TEXT_LIMIT) -> object:
    """``value`` with every string in it clipped (:func:`clip_text`): dict keys and values, list and tuple items, at any depth.

    ``value`` is not modified; when nothing needs clipping the same object is
    returned (a delivery's detail lists thousands of recipients: no copy).

    >>> clip_json({"path": "/" + "a" * 9, "n": 3, "who": [("desk", "x" * 12)]}, limit=5)
    {'path': '/aaaa… (10 chars)', 'n': 3, 'who': [('desk', 'xxxxx… (12 chars)')]}
    >>> d = {"ok": ["short"]}
    >>> clip_json(d, limit=5) is d
    True
    """
    if isinstance(value, str):
        return clip_text(value, limit) if len(value) > limit else value
    if isinstance(value, dict):
        pairs = [(clip_json(k, limit), clip_json(v, limit)) for k, v in value.items()]
        if all(k2 is k and v2 is v for (k2, v2), (k, v) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    if isinstance(value, list | tuple):
        items = [clip_json(x, limit) for x in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _clip_field(value: str) -> str:
    return clip_text(value, TEXT_LIMIT) if isinstance(value, str) and len(value) > TEXT_LIMIT else value


#: a JSON string token with more than DETAIL_TEXT_LIMIT characters after its opening quote
_LONG_JSON_STRING = re.compile(f'"[^"]{{{DETAIL_TEXT_LIMIT + 1}}}')


def _may_hold_long_string(text: str) -> bool:
    """False when no string in the JSON ``text`` is longer than :data:`DETAIL_TEXT_LIMIT` (True may be a false alarm).

    A C-speed scan of the JSON made anyway, instead of a walk over a delivery's thousands
    of recipients (1.0 ms against 0.3 ms for 5,000). Each character of a string takes one
    or more characters in JSON, so a long string always has a long token; escaped quotes
    are blanked first so that they do not end a token early.

    >>> _may_hold_long_string(json.dumps(["x" * 300, "y"])), _may_hold_long_string(json.dumps(['"' * 301]))
    (False, True)
    """
    if "\\" in text:
        # \\ first: in \\" the backslash is escaped and the quote ends the string
        text = text.replace("\\\\", "..").replace('\\"', "..")
    return _LONG_JSON_STRING.search(text) is not None


# -- records (pure) --------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry. ``detail`` is JSON-able context (never caller data).

    Bounded as it is serialised (:meth:`content_fields`, the one way into the
    stream and into exports): text fields are clipped to :data:`TEXT_LIMIT`
    characters and every string inside ``detail`` to :data:`DETAIL_TEXT_LIMIT`.
    The object keeps what it was given. ``prev`` and ``hash`` are the entry's
    place in the chain: set on records read back from the stream
    (:meth:`from_fields`), empty on new ones (the log computes them as it appends).

    >>> f = AuditRecord(AuditAction.REFUSED, target="/" + "x" * 5000, detail={"path": ["y" * 400]}).to_fields()
    >>> f["target"][196:], json.loads(f["detail"])["path"][0][296:]
    ('xxxx… (5001 chars)', 'yyyy… (400 chars)')
    """

    action: AuditAction
    actor: str = ""
    role: str = ""
    agency: str = ""
    target: str = ""
    remote: str = ""
    detail: dict = field(default_factory=dict)
    at: float = 0.0
    prev: str = ""
    hash: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", AuditAction(self.action))  # frozen: set through object

    def content_fields(self) -> dict[str, str]:
        """The stream fields the record's hash covers (all but ``prev`` and ``hash``), clipped; ``at`` is now when unset."""
        # built by hand, not with dataclasses.asdict: that deep-copies ``detail``, which
        # for a delivery lists thousands of recipients, only to serialise it here
        detail = json.dumps(self.detail, separators=(",", ":"), sort_keys=True)
        if _may_hold_long_string(detail):
            detail = json.dumps(clip_json(self.detail, DETAIL_TEXT_LIMIT), separators=(",", ":"), sort_keys=True)
        return {
            "action": self.action.value,
            "actor": _clip_field(self.actor),
            "role": _clip_field(self.role),
            "agency": _clip_field(self.agency),
            "target": _clip_field(self.target),
            "remote": _clip_field(self.remote),
            "detail": detail,
            "at": f"{self.at or time.time():.3f}",
        }

    def to_fields(self) -> dict[str, str]:
        """The record's stream fields, with ``prev`` and ``hash`` when it has them."""
        fields = self.content_fields()
        if self.prev or self.hash:
            fields["prev"], fields["hash"] = self.prev, self.hash
        return fields

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
            prev=fields.get("prev", ""),
            hash=fields.get("hash", ""),
        )


# -- the hash chain (pure) -----------------------------------------------------


def canonical(fields: Mapping[str, str]) -> bytes:
    """The bytes an entry's hash covers besides ``prev``: its other fields as canonical JSON, UTF-8.

    Every stream field but ``prev`` and ``hash``, as one JSON object of strings
    with the names sorted, no whitespace and non-ASCII characters written as they
    are: RFC 8785 (JSON canonicalization) for such an object, and what Python's
    ``json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    writes.

    >>> canonical({"b": "2", "a": 'é"\\n', "hash": "ignored"})
    b'{"a":"\\xc3\\xa9\\\\"\\\\n","b":"2"}'
    """
    body = {k: v for k, v in fields.items() if k not in CHAIN_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _link(prev: str, body: bytes) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()


def record_hash(prev: str, fields: Mapping[str, str]) -> str:
    """The ``hash`` of an entry: hex SHA-256 of ``prev``, a line feed, then :func:`canonical` of its fields.

    That is ``sha256(prev + "\\n" + json)`` over UTF-8 bytes, where ``prev`` is the
    previous entry's hash as 64 lowercase hex digits (:data:`GENESIS` for the first
    entry ever) and ``json`` covers every field of the entry except ``prev`` and
    ``hash`` (``action``, ``actor``, ``role``, ``agency``, ``target``, ``remote``,
    ``detail``, ``at`` as written by :class:`AuditRecord`, and any other field, so
    an added field breaks the hash too). The stream id is not covered: Redis
    assigns it as the entry is added; the record's own time is ``at``.

    >>> record_hash(GENESIS, {"action": "ack", "at": "5.000"})
    '78bff09acbf21bce09eacad25ae21170126e851c47dc13c25c2cdd101d3cb060'
    >>> import hashlib  # the same, by hand
    >>> hashlib.sha256(("0" * 64 + "\\n" + '{"action":"ack","at":"5.000"}').encode()).hexdigest()[:16]
    '78bff09acbf21bce'
    """
    return _link(prev, canonical(fields))


_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ChainProblem:
    """Where a chain breaks: the entry's stream id ("" past the last entry), what is wrong, what was expected and found."""

    id: str
    what: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.what} (expected {self.expected}, found {self.found})"


@dataclass(frozen=True)
class ChainReport:
    """What a verification found.

    ``checked`` chained entries were verified, from ``first_id`` to ``last_id``;
    ``anchor`` is the ``prev`` of the first of them (:data:`GENESIS` when the log
    has never been trimmed) and ``last_hash`` the hash of the last. ``unchained``
    counts the entries before the first chained one (written before the chain
    existed): they are not checked. ``problem`` is the first problem found, or None.
    """

    checked: int = 0
    first_id: str = ""
    last_id: str = ""
    anchor: str = ""
    last_hash: str = ""
    unchained: int = 0
    problem: ChainProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        """One line for an operator.

        >>> print(ChainReport(2, "1-0", "2-0", GENESIS[:8], "ab12").summary())
        ok: 2 records from 1-0 to 2-0, anchored at 00000000, head ab12
        >>> print(ChainReport(1, "1-0", "1-0", "", "", problem=ChainProblem("2-0", "prev is not the hash before", "ab", "cd")).summary())
        BROKEN at 2-0: prev is not the hash before (expected ab, found cd)
        """
        if self.problem is not None:
            return f"BROKEN at {self.problem.id or 'the end of the stream'}: {self.problem}"
        older = f"; {self.unchained} earlier records predate the chain and were not checked" if self.unchained else ""
        if not self.checked:
            return f"ok: 0 chained records{older}"
        return f"ok: {self.checked} records from {self.first_id} to {self.last_id}, anchored at {self.anchor}, head {self.last_hash}{older}"


def _id_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


class ChainVerifier:
    """Checks entries fed one at a time in stream order; the pure core of :func:`verify_chain` and :meth:`AuditLog.verify`.

    Call :meth:`feed` with each ``(stream id, fields)`` in order; it returns False
    once a problem is found (later entries are not checked). Then, optionally,
    :meth:`check_end` with the head key and the stream's last id read together,
    and :meth:`report`.

    ``anchor``: the ``prev`` the first chained entry must have (e.g. :data:`GENESIS`
    for a log that was never trimmed); None takes the first entry's ``prev`` as it is.
    """

    def __init__(self, anchor: str | None = None) -> None:
        self.anchor = anchor
        self.checked = 0
        self.unchained = 0
        self.first_id = ""
        self.last_id = ""
        self.first_prev = ""
        self.last_hash = ""
        #: the last id fed, chained or not
        self.last_seen = ""
        self.problem: ChainProblem | None = None

    def feed(self, sid: str, fields: Mapping[str, str]) -> bool:
        if self.problem is not None:
            return False
        self.last_seen = sid
        prev, digest = fields.get("prev"), fields.get("hash")
        if prev is None and digest is None:
            if not self.checked:
                self.unchained += 1  # written before the chain began
                return True
            return self._fail(sid, "entry has no prev and hash fields (added without the chain)", "prev and hash", "neither")
        for name, value in (("prev", prev), ("hash", digest)):
            if value is None or not _HEX64.fullmatch(value):
                return self._fail(sid, f"malformed {name} field", "64 lowercase hex digits", repr(value))
        assert prev is not None and digest is not None
        if self.checked:
            if prev != self.last_hash:
                return self._fail(
                    sid,
                    f"prev is not the hash of the entry before ({self.last_id}): entries removed, inserted or reordered here",
                    self.last_hash,
                    prev,
                )
        elif self.anchor is not None and prev != self.anchor:
            return self._fail(sid, "the first entry's prev is not the anchor", self.anchor, prev)
        computed = record_hash(prev, fields)
        if computed != digest:
            return self._fail(sid, "hash does not match the entry's fields (edited)", computed, digest)
        if not self.checked:
            self.first_id, self.first_prev = sid, prev
        self.checked += 1
        self.last_id, self.last_hash = sid, digest
        return True

    def check_end(self, head: str | None, last_id: str | None) -> bool:
        """Compare the end of what was fed with the head key and the stream's last id (None: empty stream), read together."""
        if self.problem is not None:
            return False
        if (last_id or "") != self.last_seen:
            return self._fail(
                last_id or "",
                "the stream does not end at the last entry checked (entries removed while verifying?)",
                self.last_seen,
                last_id or "no entries",
            )
        if not self.checked:
            if head is not None:
                return self._fail("", f"the head key says {head} but the stream holds no chained entry", head, "no chained entry")
            return True
        if head is None:
            return self._fail(self.last_id, "the head key is missing", self.last_hash, "no head key")
        if head != self.last_hash:
            return self._fail(
                self.last_id, "the head key is not the last entry's hash: entries after it were removed", head, self.last_hash
            )
        return True

    def report(self) -> ChainReport:
        return ChainReport(self.checked, self.first_id, self.last_id, self.first_prev, self.last_hash, self.unchained, self.problem)

    def _fail(self, sid: str, what: str, expected: str, found: str) -> bool:
        self.problem = ChainProblem(sid, what, expected, found)
        return False


def verify_chain(rows: Iterable[tuple[str, Mapping[str, str]]], anchor: str | None = None) -> ChainReport:
    """Check the chain of ``(stream id, fields)`` rows in stream order; the report names the first problem.

    An edited, inserted, removed or reordered entry is reported; entries removed
    from the end are not (a chain alone cannot show it: :meth:`ChainVerifier.check_end`
    compares the head key). ``anchor`` as for :class:`ChainVerifier`.

    >>> rows, prev = [], GENESIS
    >>> for i in range(3):
    ...     f = AuditRecord(AuditAction.ACK, actor=f"sup-{i}", at=i + 1.0).content_fields()
    ...     f["prev"], f["hash"] = prev, record_hash(prev, f)
    ...     rows.append((f"{i + 1}-0", f))
    ...     prev = f["hash"]
    >>> report = verify_chain(rows)
    >>> report.ok, report.checked, report.first_id, report.last_id, report.anchor == GENESIS
    (True, 3, '1-0', '3-0', True)
    >>> rows[1][1]["actor"] = "someone-else"
    >>> problem = verify_chain(rows).problem
    >>> problem.id, problem.what
    ('2-0', "hash does not match the entry's fields (edited)")
    """
    verifier = ChainVerifier(anchor)
    for sid, fields in rows:
        if not verifier.feed(sid, fields):
            break
    return verifier.report()


# -- export (pure) -------------------------------------------------------------

COLUMNS = ("id", "at", "action", "actor", "role", "agency", "target", "remote", "detail", "prev", "hash")
#: a cell starting with one of these is read as a formula by spreadsheets (OWASP, "CSV Injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a ``'`` before a leading ``=``, ``+``, ``-``, ``@``, tab or carriage return.

    >>> csv_cell("=HYPERLINK(\\"http://x\\")"), csv_cell("@SUM(A1)"), csv_cell("ops-desk")
    ('\\'=HYPERLINK("http://x")', "'@SUM(A1)", 'ops-desk')
    """
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(rows: Iterable[tuple[str, AuditRecord]]) -> str:
    """Audit rows as CSV text (RFC 4180), one line per record, ``detail`` as JSON, with the chain's ``prev`` and ``hash``.

    Cells that a spreadsheet would read as a formula get a leading ``'``
    (:func:`csv_cell`); to recompute a hash from an export, drop that ``'`` first.
    Lines end with CR LF, so that a cell holding a bare CR is quoted too (with LF
    lines the csv module leaves it bare, and a spreadsheet starts a new row there).

    >>> text = to_csv([("1-0", AuditRecord(AuditAction.REFUSED, remote="10.0.0.9", detail={"code": "expired"}, at=1.5))])
    >>> print(*text.splitlines(), sep="\\n")
    id,at,action,actor,role,agency,target,remote,detail,prev,hash
    1-0,1.500,refused,,,,,10.0.0.9,"{""code"":""expired""}",,
    >>> print(to_csv([("2-0", AuditRecord(AuditAction.CONNECT, actor="=cmd|' /C calc'!A0", agency="+SEPTA", at=2.0))]).splitlines()[1])
    2-0,2.000,connect,'=cmd|' /C calc'!A0,,'+SEPTA,,,{},,
    """
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for sid, r in rows:
        f = r.to_fields()
        w.writerow([csv_cell(sid)] + [csv_cell(f.get(c, "")) for c in COLUMNS[1:]])
    return out.getvalue()


# -- the Redis adapter -----------------------------------------------------------

# KEYS[1] the stream, KEYS[2] the head key. ARGV[1] the head the hashes were computed
# from ('' when there was none), ARGV[2] the new head, ARGV[3] the retention in ms (''
# keeps everything), then per entry: the number n of field names and values, and those
# n strings. Returns {1, id...} when appended, {0, current head} when the head moved.
# The trimming threshold is computed from Redis's clock, which also makes the ids.
_APPEND_LUA = """
local head = redis.call('GET', KEYS[2]) or ''
if head ~= ARGV[1] then
  return {0, head}
end
local trim = nil
if ARGV[3] ~= '' then
  local t = redis.call('TIME')
  local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
  if minid > 0 then
    trim = string.format('%d', minid)
  end
end
local out = {1}
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local args = {KEYS[1]}
  if trim then
    args[#args + 1] = 'MINID'
    args[#args + 1] = '~'
    args[#args + 1] = trim
  end
  args[#args + 1] = '*'
  for j = i + 1, i + n do
    args[#args + 1] = ARGV[j]
  end
  out[#out + 1] = redis.call('XADD', unpack(args))
  i = i + n + 1
end
redis.call('SET', KEYS[2], ARGV[2])
return out
"""


class AuditError(RedisError):
    """The audit log could not do what was asked.

    A :class:`redis.RedisError`, so that callers that already survive a failed
    Redis write (the gateway suppresses ``RedisError`` around audit writes)
    survive this too.
    """


class AuditAppendError(AuditError):
    """Records were not appended (the message says why and whether they may have been)."""


@dataclass(eq=False)
class _Pending:
    """Records waiting to be appended: their content fields and canonical bytes, then their ids or the error."""

    entries: list[tuple[dict[str, str], bytes]]
    ids: list[str] | None = None
    error: BaseException | None = None


class AuditLog:
    """The append-only audit stream ``{prefix}:audit`` in Redis, hash-chained, head at ``{prefix}:audit:head``.

    ``retention_s``: entries older than this are trimmed as new ones are appended
    (None keeps all). ``max_attempts``: compare-and-set attempts of one append
    while other gateways keep moving the head, before :class:`AuditAppendError`.

    Appends from one instance are committed one batch at a time: records handed
    to :meth:`record` or :meth:`record_many` while a batch is being written go
    together in the next one (one script call), so concurrent callers in a
    process never race one another for the head. When a batch is written, every
    caller waiting on it wakes at once (a lock handed from caller to caller
    took one event-loop turn per caller: under load the last of 50 waited 50
    turns after its record was stored). An append that raises was not
    written, except when the connection failed after Redis ran the script: then
    it may have been (a caller that retries may write a record twice).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        retention_s: float | None = DEFAULT_RETENTION_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        replicated: bool = False,
    ) -> None:
        if retention_s is not None and not retention_s > 0:
            raise ValueError(f"retention_s must be a positive number of seconds, or None to keep every record; got {retention_s!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}")
        self.client = client
        self.key = f"{prefix}:audit"
        self.head_key = f"{prefix}:audit:head"
        self.retention_s = retention_s
        self.max_attempts = max_attempts
        #: each append waits for a replica to acknowledge it (Redis WAIT, up to REPLICA_WAIT_MS), so that a failover
        #: right after it does not lose the record: with Sentinels (``WF_REDIS_SENTINELS``)
        self.replicated = replicated
        self._unreplicated = ReplicaWarning(log, "audit records were", "a failover now would lose them")
        self._append_script = client.register_script(_APPEND_LUA)
        #: the head after this instance's last append (None: read it before the next)
        self._head: str | None = None
        self._queue: list[_Pending] = []
        #: set while a batch is being written, resolved when it is (written or failed)
        self._writing: asyncio.Future[None] | None = None

    async def record(self, record: AuditRecord) -> str:
        """Append one record; its stream id. Raises :class:`AuditAppendError` (a ``RedisError``) or the client's ``RedisError``."""
        return (await self._append([record]))[0]

    async def record_many(self, records: list[AuditRecord]) -> list[str]:
        """Append records in order, in one script call; their stream ids."""
        if not records:
            return []
        return await self._append(records)

    async def _append(self, records: list[AuditRecord]) -> list[str]:
        # the fields and their canonical bytes are made here, so that a record that cannot be
        # serialised fails its caller, not the batch it would have joined
        entries = []
        for r in records:
            fields = r.content_fields()
            entries.append((fields, canonical(fields)))
        mine = _Pending(entries)
        self._queue.append(mine)
        while mine.ids is None and mine.error is None:
            if self._writing is None:
                await self._write_queue(mine)  # mine is in the queue: this batch takes it
                continue
            try:
                # shielded: a cancelled caller must not cancel the future every waiter shares
                await asyncio.shield(self._writing)
            except BaseException:
                if mine in self._queue:  # cancelled before any batch took it: not written
                    self._queue.remove(mine)
                raise
        if mine.error is not None:
            raise mine.error
        assert mine.ids is not None
        return mine.ids

    async def _write_queue(self, mine: _Pending) -> None:
        """Write every queued record in one batch; waiters wake together when it is written (or failed).

        ``mine``, the caller's own records, gets the batch's error raised as it is; the others get
        :class:`AuditAppendError` naming it.
        """
        writing = self._writing = asyncio.get_running_loop().create_future()
        batch, self._queue = self._queue, []
        try:
            ids = await self._commit([e for p in batch for e in p.entries])
        except BaseException as exc:
            for p in batch:
                if p is not mine:
                    p.error = AuditAppendError(
                        f"not appended to {self.key}: the batch it was in failed ({exc!r}); it may or may not have been written"
                    )
            raise
        else:
            start = 0
            for p in batch:
                p.ids, start = ids[start : start + len(p.entries)], start + len(p.entries)
        finally:
            self._writing = None
            writing.set_result(None)

    async def _commit(self, entries: list[tuple[dict[str, str], bytes]]) -> list[str]:
        """Chain ``entries`` onto the head and append them with the compare-and-set script; retry when the head moved."""
        retention = "" if self.retention_s is None else str(int(self.retention_s * 1000))
        for attempt in range(self.max_attempts):
            if self._head is None:
                self._head = cast(str | None, await self.client.get(self.head_key)) or ""  # decoded replies: see _Entries
            head = self._head
            prev = head or GENESIS
            args = [head, "", retention]
            for fields, body in entries:
                digest = _link(prev, body)
                args.append(str(2 * len(fields) + 4))
                for name, value in fields.items():
                    args += (name, value)
                args += ("prev", prev, "hash", digest)
                prev = digest
            args[1] = prev
            reply = await self._run_append(args)
            if reply[0] == 1:
                self._head = prev
                return list(reply[1:])
            # another writer appended since the head was read: chain onto its head
            self._head = reply[1]
            log.debug("audit head moved under append %d of %d records; retrying", attempt + 1, len(entries))
            if attempt + 1 < self.max_attempts:
                # random, so that two writers that collided do not collide again in step
                await asyncio.sleep(random.uniform(0, min(0.1, 0.001 * 2**attempt)))
        raise AuditAppendError(
            f"{len(entries)} record(s) not appended to {self.key}: the head {self.head_key} moved under each of "
            f"{self.max_attempts} attempts (other writers appending all the time); nothing was written"
        )

    async def _run_append(self, args: list[str]) -> list:
        """The compare-and-set script; with a replica, then ``WAIT`` on the connection that ran it."""
        keys = [self.key, self.head_key]
        if not self.replicated:
            return cast(list, await self._append_script(keys=keys, args=args))
        pipe = self.client.pipeline(transaction=False)
        await self._append_script(keys=keys, args=args, client=pipe)
        (reply,), _ = await execute_waiting(pipe, self._unreplicated)
        return cast(list, reply)

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
            page = cast(_Entries, await self.client.xrange(self.key, min=lo, max=hi, count=1000))
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

    async def verify(self, *, anchor: str | None = None, page: int = 500, progress: Callable[[int], object] | None = None) -> ChainReport:
        """Check the chain of the whole stream, page by page, and the head key against its end.

        Entries appended while verifying are checked too: the walk ends when the
        stream's last id, read together with the head key, is the last entry
        checked. ``progress`` is called with the number of entries of each page.
        """
        verifier = ChainVerifier(anchor)
        lo = "-"
        for _ in range(100):
            while rows := cast(_Entries, await self.client.xrange(self.key, min=lo, max="+", count=page)):
                for sid, fields in rows:
                    if not verifier.feed(sid, fields):
                        return verifier.report()
                if progress is not None:
                    progress(len(rows))
                lo = f"({rows[-1][0]}"
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.get(self.head_key)
                pipe.xrevrange(self.key, "+", "-", count=1)
                head, tail = await pipe.execute()
            last_id = tail[0][0] if tail else None
            if last_id is not None and (not verifier.last_seen or _id_key(last_id) > _id_key(verifier.last_seen)):
                continue  # appended while the walk ran
            verifier.check_end(head, last_id)
            return verifier.report()
        raise AuditError(f"{self.key} kept growing while it was verified (100 rounds); verify again when it is quieter")


# -- the command -------------------------------------------------------------------


def _redacted(url: str) -> str:
    """``url`` without its password.

    >>> _redacted("redis://:s3cret@db:6379/0"), _redacted("redis://127.0.0.1:6379/0")
    ('redis://:***@db:6379/0', 'redis://127.0.0.1:6379/0')
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def _verify_command(
    url: str, prefix: str, anchor: str | None, sentinels: tuple[tuple[str, int], ...] = (), service: str = DEFAULT_SENTINEL_SERVICE
) -> int:
    # through the Sentinels when WF_REDIS_SENTINELS is set (the URL then gives only the db and password)
    client = async_client(url, sentinels, service, decode_responses=True, socket_connect_timeout=5, socket_timeout=60)
    audit = AuditLog(client, prefix, retention_s=None)
    try:
        total = await client.xlen(audit.key)
        # disable=None: no bar when stderr is not a terminal
        with tqdm(total=total, unit=" records", desc=f"verify {audit.key}", file=sys.stderr, disable=None, leave=False) as bar:
            report = await audit.verify(anchor=anchor, progress=bar.update)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        print(f"audit verify: Redis is not answering at {_redacted(url)} ({exc}); start it with: python -m infra.stack up", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"audit verify: cannot verify {audit.key} at {_redacted(url)}: {exc}", file=sys.stderr)
        return 2
    finally:
        await client.aclose()
    empty = f" ({audit.key} is empty or does not exist)" if report.ok and not report.checked and not report.unchained else ""
    print(report.summary() + empty)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.audit", description="The gateway's audit log in Redis.")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    v = sub.add_parser(
        "verify",
        help="check the hash chain of the whole audit stream",
        description="Walk the audit stream P:audit, check every entry's hash and link, and compare the head key P:audit:head "
        "with the last entry. Prints 'ok: ...' and exits 0, or 'BROKEN at <id>: ...' and exits 1; exits 2 when Redis cannot be read.",
    )
    v.add_argument(
        "--redis-url",
        default=os.environ.get("WF_REDIS_URL") or DEFAULT_REDIS_URL,
        help=f"Redis holding the log (default WF_REDIS_URL or {DEFAULT_REDIS_URL})",
    )
    v.add_argument("--prefix", default=os.environ.get("WF_REDIS_PREFIX") or "wf", help="key prefix P (default WF_REDIS_PREFIX or wf)")
    v.add_argument(
        "--anchor",
        default=None,
        help="the prev the first kept entry must have: 64 zeros for a log never trimmed, or a hash recorded earlier "
        "(default: taken from that entry)",
    )
    args = p.parse_args(argv)
    try:
        sentinels = sentinel_addresses(os.environ.get("WF_REDIS_SENTINELS", ""))
    except ValueError as exc:
        print(f"audit verify: WF_REDIS_SENTINELS: {exc}", file=sys.stderr)
        return 2
    service = os.environ.get("WF_REDIS_SENTINEL_SERVICE") or DEFAULT_SENTINEL_SERVICE
    return asyncio.run(_verify_command(args.redis_url, args.prefix, args.anchor, sentinels, service))


if __name__ == "__main__":
    sys.exit(main())
