"""Opaque resume cursors for partners (pure): a stream id sealed so that it tells nothing.

Supervisors and commanders resume from Redis stream ids. A stream id is the
time of the entry in milliseconds and its sequence: handed to a partner, the
ids of the alerts stream (which also carries every alert outside its scope)
would say when something happened elsewhere and how much. A partner gets each
id sealed with AES-GCM (a fresh random nonce each time, the agreement's id as
associated data) instead: the same id never looks the same twice, a cursor of
another agreement does not open, and a forged or altered one is refused.

>>> key = cursor_key(b"s" * 32)
>>> c = seal(key, "1700000000000-3", "septa")
>>> c.startswith("c-") and c != seal(key, "1700000000000-3", "septa")
True
>>> unseal(key, c, "septa")
'1700000000000-3'
>>> unseal(key, c, "mciu-1")
Traceback (most recent call last):
...
gateway.cursors.CursorError: not a cursor this gateway gave to this agreement
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "c-"
_NONCE = 12


class CursorError(ValueError):
    """A cursor that was not sealed by this gateway's secret for this agreement (or was altered)."""


def cursor_key(secret: bytes) -> bytes:
    """The AES-256 key of cursors, derived from the gateway secret (the token key itself is not reused)."""
    return hmac.new(secret, b"watchfloor partner cursors v1", hashlib.sha256).digest()


def seal(key: bytes, stream_id: str, agreement: str) -> str:
    """``stream_id`` (``<ms>-<seq>``) as an opaque cursor for ``agreement``."""
    ms, _, seq = stream_id.partition("-")
    plain = struct.pack(">QQ", int(ms), int(seq or 0))
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(key).encrypt(nonce, plain, agreement.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def unseal(key: bytes, cursor: str, agreement: str) -> str:
    """The stream id inside ``cursor``; :class:`CursorError` when it is not one of ours for ``agreement``."""
    if not cursor.startswith(PREFIX) or len(cursor) > 100:
        raise CursorError("not a cursor this gateway gave to this agreement")
    body = cursor[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        plain = AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], agreement.encode())
    except (binascii.Error, ValueError, InvalidTag):
        raise CursorError("not a cursor this gateway gave to this agreement") from None
    ms, seq = struct.unpack(">QQ", plain)
    return f"{ms}-{seq}"
