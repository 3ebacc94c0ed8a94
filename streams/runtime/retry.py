"""Trying again while Redis (or Kafka, in a rebuild) cannot be reached: the agents' one retry loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.counting.planproc import PlanProcessDied
from streams.counting.rebuild import RebuildError
from streams.counting.state import StateError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest wait between two tries while Redis cannot be reached.
RETRY_MAX_S = 5.0


async def until_reachable(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, again and again while it fails because Redis (or Kafka, in a rebuild) cannot be reached.

    Backs off from 0.5 s to :data:`RETRY_MAX_S`, logging ``what`` failed at
    each try. Any other failure is raised at once. An agent that raised
    instead would be restarted by Faust without what it had in hand (a
    batch, alerts).
    """
    delay = 0.5
    while True:
        try:
            return await attempt()
        except (StateError, RebuildError, RedisError, PlanProcessDied) as exc:
            if not unreachable(exc):
                raise
            log.warning("%s failed, trying again in %.1f s: %s", what, delay, exc)
        await asyncio.sleep(delay)
        delay = min(2 * delay, RETRY_MAX_S)


def unreachable(exc: BaseException | None) -> bool:
    """Redis could not be reached (or Kafka, during a rebuild; or the plan process died): worth trying again, unlike a refused script.

    A failover counts as unreachable: the dead primary's connections fail, and a
    command that reaches a primary demoted to a replica is refused with ``READONLY``
    (``ReadOnlyError``; Sentinel-managed connections turn it into a ``ConnectionError``).

    >>> unreachable(StateError("commit failed")), unreachable(RedisConnectionError("refused"))
    (False, True)
    >>> unreachable(ReadOnlyError("READONLY You can't write against a read only replica."))
    True
    """
    while exc is not None:
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError | RebuildError | PlanProcessDied):
            return True
        exc = exc.__cause__
    return False
