"""Request signatures of the intake (pure): HMAC-SHA256 over ``"<timestamp>.<body>"``.

A CAD source signs each request with its secret (RFC 2104 HMAC with SHA-256)::

    X-Watchfloor-Source: county-cad
    X-Watchfloor-Timestamp: 1767225600                 # Unix seconds, when the request was made
    X-Watchfloor-Signature: sha256=<hex HMAC-SHA256(secret, "1767225600." + body)>

The timestamp is inside what is signed, and a request whose timestamp is more
than :data:`MAX_SKEW_S` from the intake's clock is refused, so a captured
request cannot be replayed later; one replayed within the window is a
duplicate of the original (the intake's idempotency keys) and changes nothing.

:func:`check_signature` says why a request is refused (for the intake's log);
the client is told the same thing whatever the reason, so that an outsider
cannot learn which source ids exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re

#: Largest difference between a request's timestamp and the intake's clock, seconds.
MAX_SKEW_S = 300
_HEX = re.compile(r"[0-9a-f]{64}")


class Unauthenticated(ValueError):
    """The request is not from a configured source; the message is for the intake's log, never for the client."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Watchfloor-Signature`` value of ``body`` sent at ``timestamp``.

    The same as ``printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET"``:

    >>> sign(b"k" * 32, "1767225600", b'{"type":"call"}')
    'sha256=59ede61d005915b654ec76f867b0ffb6b0d4a0e97a320f52a9cb3aae6e343f81'
    """
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_signature(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise :class:`Unauthenticated` unless ``signature`` is :func:`sign` of ``body`` at ``timestamp``, and ``timestamp`` is near ``now``.

    >>> check_signature(b"k" * 32, "1767225600", sign(b"k" * 32, "1767225600", b"{}"), b"{}", now=1767225610.0)
    >>> check_signature(b"k" * 32, "1767225600", sign(b"k" * 32, "1767225600", b"{}"), b"{}", now=1767226000.0)
    Traceback (most recent call last):
    ...
    streams.intake.auth.Unauthenticated: timestamp 1767225600 is 400 s from the intake's clock; at most 300 s are allowed
    """
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthenticated(f"X-Watchfloor-Timestamp must be Unix seconds (digits), found {timestamp!r:.40}")
    skew = abs(now - int(timestamp))
    if skew > MAX_SKEW_S:
        raise Unauthenticated(f"timestamp {timestamp} is {skew:.0f} s from the intake's clock; at most {MAX_SKEW_S} s are allowed")
    if signature is None or not signature.startswith("sha256=") or not _HEX.fullmatch(signature[7:]):
        raise Unauthenticated(f"X-Watchfloor-Signature must be sha256=<64 lowercase hex digits>, found {signature!r:.80}")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise Unauthenticated("the signature does not match the body and timestamp (wrong secret, or the body was changed)")
