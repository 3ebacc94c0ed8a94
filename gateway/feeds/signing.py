"""Webhook signatures, delivery ids and the retry schedule (pure).

A webhook request carries three headers:

===========================  ==================================================================
``X-Watchfloor-Delivery``    :func:`delivery_id`: the same on every attempt of one delivery, so the
                             receiver can drop a repeat (at-least-once delivery); also the CAP
                             message's ``identifier``
``X-Watchfloor-Timestamp``   the attempt's time, epoch seconds (refuse one far from your clock: replays)
``X-Watchfloor-Signature``   ``sha256=`` and the hex HMAC-SHA256, keyed with the agreement's secret,
                             of ``"<timestamp>.<body>"`` (:func:`signature`; check it with :func:`verify`)
===========================  ==================================================================

A delivery id is a keyed hash of the agreement and the stream id (the key derived from
the gateway secret, :func:`delivery_key`): a plain hash would let a partner find the
stream id by trying the milliseconds around an alert, and stream ids date activity
outside its scope (see :mod:`gateway.cursors`).

Examples
--------
>>> sig = signature(b"k" * 32, 1700000000, b'{"type":"alert"}')
>>> sig[:7], verify(b"k" * 32, "1700000000", b'{"type":"alert"}', sig, now=1700000100)
('sha256=', True)
>>> verify(b"k" * 32, "1700000000", b'{"type":"alert"}', sig, now=1700001000)  # too old: a replay
False
>>> [round(backoff_s(n, 1.0, 300.0, 0.999), 2) for n in (1, 2, 3, 10)]
[1.0, 2.0, 4.0, 299.85]
"""

from __future__ import annotations

import email.utils
import enum
import hashlib
import hmac
import math

#: how far from the receiver's clock a timestamp may be before :func:`verify` refuses it (seconds)
TOLERANCE_S = 300


def delivery_key(secret: bytes) -> bytes:
    """The key of delivery ids, derived from the gateway secret (the token key itself is never reused).

    >>> len(delivery_key(b"s" * 32))
    32
    """
    return hmac.new(secret, b"watchfloor feed deliveries v1", hashlib.sha256).digest()


def delivery_id(key: bytes, agreement: str, stream_id: str) -> str:
    """The id of the delivery of stream entry ``stream_id`` to ``agreement``: stable, opaque, a valid CAP identifier.

    >>> d = delivery_id(b"k" * 32, "septa", "1700000000000-0")
    >>> d == delivery_id(b"k" * 32, "septa", "1700000000000-0"), d.startswith("wf-septa-"), len(d)
    (True, True, 33)
    >>> d == delivery_id(b"k" * 32, "septa", "1700000000000-1")
    False
    """
    mac = hmac.new(key, f"{agreement}\n{stream_id}".encode(), hashlib.sha256).hexdigest()[:24]
    return f"wf-{agreement}-{mac}"


def signature(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with ``secret`` of ``b"<timestamp>." + body``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: bytes, timestamp: str, body: bytes, header: str, *, now: float, tolerance_s: float = TOLERANCE_S) -> bool:
    """Whether ``header`` (``X-Watchfloor-Signature``) signs ``body`` at ``timestamp``, within ``tolerance_s`` of ``now``.

    What a receiver does (in constant time, on the raw body bytes, before parsing them).
    """
    try:
        t = int(timestamp)
    except ValueError:
        return False
    if abs(now - t) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, t, body), header)


class Verdict(enum.StrEnum):
    """What one attempt's answer means: delivered, worth another attempt, or never going to be taken."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


def classify(status: int | None) -> Verdict:
    """The verdict on an attempt answered with HTTP ``status`` (None: no answer, a network error or a timeout).

    2xx: delivered. No answer, 408, 425, 429 and 5xx: the receiver is busy or down, so try again.
    Anything else (a redirect, which is never followed; 400, 401, 403, 404, 410, 413, ...): this
    receiver refuses this request, and the same request will be refused again.

    >>> [classify(s).value for s in (None, 200, 204, 302, 400, 401, 408, 429, 500, 503)]
    ['retry', 'delivered', 'delivered', 'refused', 'refused', 'refused', 'retry', 'retry', 'retry', 'retry']
    """
    if status is None or status in (408, 425, 429) or 500 <= status <= 599:
        return Verdict.RETRY
    if 200 <= status <= 299:
        return Verdict.DELIVERED
    return Verdict.REFUSED


def backoff_s(attempt: int, base_s: float, max_s: float, u: float) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt (1, 2, ...): capped exponential with jitter.

    ``min(max_s, base_s * 2 ** (attempt - 1))``, scaled by ``0.5 + u / 2`` for ``u`` in [0, 1): "equal
    jitter", so that gateways retrying at once spread out, and no wait is under half its step.
    """
    step = min(max_s, base_s * 2.0 ** min(attempt - 1, 60))
    return step * (0.5 + 0.5 * min(max(u, 0.0), 1.0))


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds an HTTP ``Retry-After`` asks to wait (delay-seconds or an HTTP date, RFC 9110 s. 10.2.3), or None.

    >>> retry_after_s("120", 0.0), retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0), retry_after_s("soon", 0.0)
    (120.0, 10.0, None)
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def next_delay(
    verdict: Verdict,
    attempt: int,
    *,
    age_s: float,
    attempts: int,
    max_age_s: float,
    base_s: float,
    max_s: float,
    retry_after: float | None,
    u: float,
) -> float | None:
    """Seconds before the next attempt of a delivery whose ``attempt``-th attempt got ``verdict``, or None to stop.

    None when it was delivered, refused, or failed ``attempts`` times, or when ``age_s`` (since its first
    attempt) has reached ``max_age_s``: then it is dead-lettered. A ``Retry-After`` is honoured up to
    ``max_s``; a wait that would carry it past ``max_age_s`` is shortened to end there (one last try).

    >>> kw = dict(attempts=3, max_age_s=3600.0, base_s=1.0, max_s=300.0, retry_after=None, u=1.0)
    >>> next_delay(Verdict.RETRY, 1, age_s=0.0, **kw), next_delay(Verdict.RETRY, 3, age_s=5.0, **kw)
    (1.0, None)
    >>> next_delay(Verdict.RETRY, 1, age_s=0.0, **{**kw, "retry_after": 1e6})  # Retry-After: honoured, capped
    300.0
    >>> next_delay(Verdict.REFUSED, 1, age_s=0.0, **kw) is None
    True
    """
    if verdict is not Verdict.RETRY or attempt >= attempts or age_s >= max_age_s:
        return None
    delay = backoff_s(attempt, base_s, max_s, u)
    if retry_after is not None and math.isfinite(retry_after):
        delay = min(max_s, max(retry_after, 0.0))
    return min(delay, max(0.0, max_age_s - age_s))
