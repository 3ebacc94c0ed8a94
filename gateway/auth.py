"""Who is calling: a token this gateway accepts now, the ``Authorization`` header, and a browser's ``Origin``.

:meth:`Authenticator.verify` checks a token's signature, dates and lifetime
(:func:`gateway.tokens.verify`) and that it was not revoked (one Redis read);
:func:`bearer_token` and :func:`check_origin` read headers and do no I/O. Every
refusal is an :class:`~gateway.http.HttpError` with the status and code the
client is answered with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from redis.exceptions import RedisError
from websockets.http11 import Request

from gateway.http import HttpError, clip
from gateway.store import Store
from gateway.tokens import Claims, TokenError, verify


class Authenticator:
    """Verifies tokens signed with ``secret``, at most ``max_ttl_s`` long-lived, against the revoked ones in ``store``."""

    def __init__(self, secret: bytes, max_ttl_s: float, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.max_ttl_s = max_ttl_s
        self.store = store
        self.clock = clock

    async def verify(self, token: str | None) -> Claims:
        """The claims of a token this gateway accepts now: signed, in date, not too long-lived, not revoked."""
        try:
            claims = verify(self.secret, token, now=self.clock(), max_ttl_s=self.max_ttl_s)
        except TokenError as exc:
            raise HttpError(401, exc.code, exc.message) from exc
        try:
            revoked = await self.store.is_revoked(claims.token_id)
        except (RedisError, OSError) as exc:
            # refused rather than let a revoked token through while Redis cannot say
            raise HttpError(503, "unavailable", "cannot check the token against the revoked ones; retry shortly", claims) from exc
        if revoked:
            raise HttpError(401, "revoked", "token revoked: ask for a new one", claims)
        return claims

    async def bearer(self, request: Request) -> Claims:
        """The verified claims of the request's ``Authorization: Bearer`` token."""
        return await self.verify(bearer_token(request))


def bearer_token(request: Request) -> str:
    """The token of the one ``Authorization: Bearer <token>`` header; 400 when it is sent twice, 401 when missing or not Bearer."""
    headers = request.headers.get_all("Authorization")
    if len(headers) > 1:
        raise HttpError(400, "duplicate_header", f"Authorization given {len(headers)} times; send it once")
    header = headers[0] if headers else ""
    scheme, _, token = header.partition(" ")
    if not header:
        raise HttpError(401, "missing", "send Authorization: Bearer <token>")
    if scheme.lower() != "bearer" or not token:
        raise HttpError(401, "malformed", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def check_origin(request: Request, allowed: Collection[str]) -> None:
    """A browser (which always sends Origin) may open the socket from this gateway's origin or one in ``allowed``.

    Clients that are not browsers send no Origin and cannot be made to carry a victim's token by another
    site, so they are let through; ``null`` (sandboxed frames, files) and every other origin are refused.
    """
    origins = request.headers.get_all("Origin")
    if not origins:
        return
    if len(origins) > 1:
        raise HttpError(400, "duplicate_header", "Origin given more than once")
    origin = origins[0].rstrip("/")
    own = {f"{scheme}://{h}" for h in request.headers.get_all("Host") for scheme in ("http", "https")}
    if origin not in own and origin not in allowed:
        raise HttpError(403, "bad_origin", f"origin {clip(origin, 100)!r} may not open this gateway's feed (WF_GATEWAY_ORIGINS)")


def peer_origin(request: Request, peers: Collection[str]) -> str | None:
    """The request's ``Origin`` when it is one of ``peers`` (``WF_GATEWAY_PEERS``): a dashboard served by another
    gateway, calling this one's API after its own was lost. None otherwise (no Origin, several, or another one):
    such a request gets no CORS headers, so a browser does not let the page read the answer."""
    origins = request.headers.get_all("Origin")
    if len(origins) != 1:
        return None
    origin = origins[0].rstrip("/")
    return origin if origin in peers else None
