"""The feeds' Redis keys (adapter): cursors, locks, what each feed remembers, CAP messages, dead letters.

==================================  ======  ==============================================================
key                                 type    holds
==================================  ======  ==============================================================
``P:feeds:{agreement}:lock``        string  the gateway delivering the agreement's feed (expires unless
                                            renewed): one deliverer per agreement across gateways
``P:feeds:{agreement}:cursor``      string  the last stream id delivered (2xx) or dead-lettered; a feed
                                            resumes after it
``P:feeds:{agreement}:shown``       hash    partner alert id -> digest of the view last sent
                                            (:func:`gateway.frames.first_showing`), while the alert is open
``P:feeds:{agreement}:capstate``    hash    partner alert id -> JSON ``{refs, view}``: what its next CAP
                                            message updates (:func:`gateway.feeds.cap.next_message`)
``P:feeds:{agreement}:cap``         zset    CAP identifiers by stream position: the newest
                                            ``WF_FEEDS_CAP_KEEP``
``P:feeds:{agreement}:capxml``      hash    CAP identifier -> JSON ``{sent, msg_type, headline, xml}``
``P:feeds:deadletters``             stream  deliveries given up (every agreement), newest 10,000 kept:
                                            supervisors read them at ``GET /api/feeds/deadletters``
==================================  ======  ==============================================================

The cursor, the alert's remembered state and its CAP message are written together by one
script that first checks the lock is still this deliverer's (:meth:`FeedStore.commit`): a
deliverer that lost its lock (paused past its expiry) moves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import redis.asyncio as aioredis

from gateway.feeds.cap import Message
from gateway.store import StreamEntries, stream_id

#: dead letters kept (approximately: MAXLEN ~)
DEAD_LETTERS_KEPT = 10_000

_RENEW_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS: lock, cursor, shown, capstate, cap (zset), capxml
# ARGV: owner, cursor, alert id ('' for none), shown digest ('' deletes), capstate mode (keep/set/del), capstate JSON,
#       CAP identifier ('' for none), its score, its JSON, how many to keep
_COMMIT_LUA = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('set', KEYS[2], ARGV[2])
if ARGV[3] ~= '' then
  if ARGV[4] == '' then
    redis.call('hdel', KEYS[3], ARGV[3])
  else
    redis.call('hset', KEYS[3], ARGV[3], ARGV[4])
  end
  if ARGV[5] == 'set' then
    redis.call('hset', KEYS[4], ARGV[3], ARGV[6])
  elseif ARGV[5] == 'del' then
    redis.call('hdel', KEYS[4], ARGV[3])
  end
end
if ARGV[7] ~= '' then
  redis.call('zadd', KEYS[5], ARGV[8], ARGV[7])
  redis.call('hset', KEYS[6], ARGV[7], ARGV[9])
  local extra = redis.call('zcard', KEYS[5]) - tonumber(ARGV[10])
  if extra > 0 then
    local old = redis.call('zrange', KEYS[5], 0, extra - 1)
    redis.call('zremrangebyrank', KEYS[5], 0, extra - 1)
    redis.call('hdel', KEYS[6], unpack(old))
  end
end
return 1
"""


def position(sid: str) -> int:
    """A stream id as one integer that sorts like it (a zset score; exact in a double up to sequence 999).

    >>> position("1700000000000-3") < position("1700000000001-0")
    True
    """
    ms, seq = stream_id(sid)
    return ms * 1000 + min(seq, 999)


class FeedStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.dead_key = f"{prefix}:feeds:deadletters"
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._commit = client.register_script(_COMMIT_LUA)

    def key(self, agreement: str, what: str) -> str:
        return f"{self.prefix}:feeds:{agreement}:{what}"

    # -- the lock ----------------------------------------------------------------

    async def acquire(self, agreement: str, owner: str, ttl_ms: int) -> bool:
        """Take the agreement's lock for ``ttl_ms`` (or renew it when ``owner`` holds it); whether it is ours now."""
        if await self.client.set(self.key(agreement, "lock"), owner, nx=True, px=ttl_ms):
            return True
        return bool(await self._renew(keys=[self.key(agreement, "lock")], args=[owner, ttl_ms]))

    async def renew(self, agreement: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[self.key(agreement, "lock")], args=[owner, ttl_ms]))

    async def release(self, agreement: str, owner: str) -> None:
        await self._release(keys=[self.key(agreement, "lock")], args=[owner])

    # -- what a feed remembers ---------------------------------------------------------

    async def cursor(self, agreement: str) -> str | None:
        return cast(str | None, await self.client.get(self.key(agreement, "cursor")))

    async def remembered(self, agreement: str) -> tuple[dict[str, str], dict[str, dict]]:
        """The feed's ``shown`` digests and CAP states, by partner alert id."""
        shown = cast(dict[str, str], await self.client.hgetall(self.key(agreement, "shown")))
        states = cast(dict[str, str], await self.client.hgetall(self.key(agreement, "capstate")))
        return dict(shown), {k: json.loads(v) for k, v in states.items()}

    async def commit(
        self,
        agreement: str,
        owner: str,
        cursor: str,
        *,
        alert_id: str = "",
        shown: str | None = None,
        cap_state: tuple[str, dict | None] = ("keep", None),
        message: Message | None = None,
        keep: int = 200,
    ) -> bool:
        """Move the cursor to ``cursor`` with the alert's new ``shown`` digest and CAP state (``("set", state)``,
        ``("del", None)`` or ``("keep", None)``) and its CAP ``message``; False (nothing written) when
        ``owner`` no longer holds the lock."""
        mode, state = cap_state
        keys = [self.key(agreement, k) for k in ("lock", "cursor", "shown", "capstate", "cap", "capxml")]
        args: list[str | int] = [owner, cursor, alert_id, shown or "", mode, json.dumps(state) if state is not None else ""]
        if message is None:
            args += ["", 0, "", keep]
        else:
            body = {"sent": message.sent, "msg_type": message.msg_type, "headline": message.headline, "xml": message.xml.decode()}
            args += [message.identifier, position(cursor), json.dumps(body), keep]
        return bool(await self._commit(keys=keys, args=args))

    # -- CAP messages --------------------------------------------------------------------

    async def cap_messages(self, agreement: str, limit: int) -> list[Message]:
        """The newest ``limit`` CAP messages of the agreement, newest first."""
        ids = cast(list[str], await self.client.zrevrange(self.key(agreement, "cap"), 0, limit - 1))
        if not ids:
            return []
        bodies = cast(list[str | None], await self.client.hmget(self.key(agreement, "capxml"), ids))
        return [_message(i, b) for i, b in zip(ids, bodies, strict=True) if b is not None]

    async def cap_message(self, agreement: str, identifier: str) -> Message | None:
        body = cast(str | None, await self.client.hget(self.key(agreement, "capxml"), identifier))
        return None if body is None else _message(identifier, body)

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letter(self, fields: Mapping[str, str]) -> str:
        entry: dict[Any, Any] = dict(fields)  # redis-py types a field as any of bytes, str, int, float (and dicts are invariant)
        return cast(str, await self.client.xadd(self.dead_key, entry, maxlen=DEAD_LETTERS_KEPT, approximate=True))

    async def dead_letters(self, agreement: str | None, limit: int) -> list[dict]:
        """The newest dead letters (of ``agreement``, or of every agreement), newest first, each with its ``id``."""
        out: list[dict] = []
        last = "+"
        while len(out) < limit:
            page = cast(StreamEntries, await self.client.xrevrange(self.dead_key, max=last, count=500))
            if last != "+":
                page = page[1:]  # the entry at ``last`` was read already
            if not page:
                break
            for sid, fields in page:
                if agreement is None or fields.get("agreement") == agreement:
                    out.append({"id": sid, **fields})
                    if len(out) >= limit:
                        break
            last = page[-1][0]
        return out


def _message(identifier: str, body: str) -> Message:
    data = json.loads(body)
    return Message(identifier, float(data["sent"]), str(data["msg_type"]), str(data["headline"]), str(data["xml"]).encode())
