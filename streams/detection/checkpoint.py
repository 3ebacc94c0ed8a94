"""The detectors' checkpoint format: a pickle signed with HMAC-SHA256, verified before it is unpickled (pure).

Unpickling runs code named by the bytes, and the checkpoint lives in Redis,
which anyone on its network may write. So the worker signs each checkpoint with
a secret key (``WF_CHECKPOINT_KEY``, see :func:`streams.runtime.settings.checkpoint_key`)
and unpickles only bytes whose signature verifies under that key. A checkpoint
written under another key, altered since, or written before checkpoints were
signed is refused with :class:`CheckpointRefused`, before ``pickle`` sees a byte.

Layout of a signed checkpoint::

    MAGIC (4 bytes, b"WFDC") | VERSION (1 byte) | MAC (32 bytes) | payload (the pickle)

``MAC = HMAC-SHA256(key, MAGIC | VERSION | offset | payload)``, with ``offset``
(the last detector-input offset the detectors have seen) as 8 bytes, signed,
big-endian: a signed state cannot be passed off with another offset.
The comparison is :func:`hmac.compare_digest` (constant time).

>>> key = b"k" * 32
>>> blob = sign(b"payload", key, offset=41)
>>> blob[:5], len(blob)
(b'WFDC\\x01', 44)
>>> verify(blob, key, offset=41)
b'payload'
>>> verify(blob, b"x" * 32, offset=41)
Traceback (most recent call last):
...
streams.detection.checkpoint.CheckpointRefused: its signature did not verify (written under another key, or altered since)
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct

#: First bytes of every signed checkpoint.
MAGIC = b"WFDC"
#: Format version (the byte after :data:`MAGIC`).
VERSION = 1
#: Shortest key accepted, in bytes: as long as the SHA-256 output (RFC 2104, section 3: at least L bytes).
MIN_KEY_BYTES = 32

_HEADER = MAGIC + bytes([VERSION])
_MAC_BYTES = hashlib.sha256().digest_size
_OFFSET = struct.Struct(">q")


class CheckpointRefused(ValueError):
    """The bytes are not a checkpoint signed under this key; they were not unpickled. The message says why."""


def check_key(key: bytes, name: str) -> bytes:
    """``key``, if it is long enough to sign checkpoints; a :class:`ValueError` naming ``name`` otherwise.

    >>> check_key(b"short", "WF_CHECKPOINT_KEY")
    Traceback (most recent call last):
    ...
    ValueError: WF_CHECKPOINT_KEY must hold at least 32 bytes (a random secret), found 5
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{name} must hold at least {MIN_KEY_BYTES} bytes (a random secret), found {len(key)}")
    return key


def sign(payload: bytes, key: bytes, *, offset: int) -> bytes:
    """The signed checkpoint of ``payload`` (a pickle) taken at detector-input ``offset``.

    Hashing releases the GIL for large inputs, so this may run in a thread
    beside the event loop (``asyncio.to_thread``).
    """
    return _HEADER + _mac(payload, key, offset) + payload


def verify(blob: bytes, key: bytes, *, offset: int) -> bytes:
    """The payload of a checkpoint made by :func:`sign` with ``key`` and ``offset``; :class:`CheckpointRefused` otherwise.

    >>> key = b"k" * 32
    >>> verify(pickle.dumps(1), key, offset=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.detection.checkpoint.CheckpointRefused: it is not a signed checkpoint (no WFDC header: ...)
    >>> verify(sign(b"p", key, offset=1), key, offset=2)
    Traceback (most recent call last):
    ...
    streams.detection.checkpoint.CheckpointRefused: its signature did not verify (written under another key, or altered since)
    """
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC or len(blob) < len(_HEADER) + _MAC_BYTES:
        raise CheckpointRefused(
            f"it is not a signed checkpoint (no {MAGIC.decode()} header: written by a version before signed checkpoints, "
            "or not by Watchfloor)"
        )
    if view[len(MAGIC)] != VERSION:
        raise CheckpointRefused(f"its format version is {view[len(MAGIC)]}, this worker reads {VERSION}")
    mac, payload = view[len(_HEADER) : len(_HEADER) + _MAC_BYTES], view[len(_HEADER) + _MAC_BYTES :]
    if not hmac.compare_digest(mac, _mac(payload, key, offset)):
        raise CheckpointRefused("its signature did not verify (written under another key, or altered since)")
    return payload.tobytes()


def restore(blob: bytes, key: bytes, *, offset: int) -> object:
    """The object pickled in a signed checkpoint, unpickled only after its signature verified (see :func:`verify`).

    Raises :class:`CheckpointRefused` when it does not verify, and what
    ``pickle.loads`` raises when the signed bytes are not a pickle this code
    can load (a checkpoint of another version of the code).

    >>> key = b"k" * 32
    >>> restore(sign(pickle.dumps({"n": 3}), key, offset=7), key, offset=7)
    {'n': 3}
    """
    return pickle.loads(verify(blob, key, offset=offset))


def _mac(payload: bytes | memoryview, key: bytes, offset: int) -> bytes:
    mac = hmac.new(key, _HEADER + _OFFSET.pack(offset), hashlib.sha256)
    mac.update(payload)
    return mac.digest()
