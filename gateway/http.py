"""HTTP responses, refusals and query parameters of the gateway (pure: builds websockets' Response objects, does no I/O).

Every response carries the same security headers: no caching, no MIME
sniffing, a Content-Security-Policy that lets the dashboard load only its own
scripts and styles, connect only to its own origin (and an https basemap's), load images only from
itself (and the configured tile or basemap host), start workers only from its own
scripts, and never be framed
(``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``), and no Referer
(token fragments and paths stay here).
"""

from __future__ import annotations

import http
import json
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

from gateway.tokens import Claims

#: longest client-supplied text a refusal message keeps
TEXT_LIMIT = 300


class HttpError(Exception):
    """A refused request; ``claims`` names the caller in the audit record when its token was verified."""

    def __init__(self, status: int, code: str, message: str, claims: Claims | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.claims = claims


def content_security_policy(tiles: str | None = None, basemap: str | None = None, peers: tuple[str, ...] = ()) -> str:
    """The dashboard's CSP; images also from the tile host of ``tiles`` (a URL template) when set,
    fetches and images from ``basemap`` (the origin of an https basemap, :attr:`gateway.settings.Basemap.origin`),
    and fetches and WebSockets to each of ``peers`` (``WF_GATEWAY_PEERS``' base URLs, where the page moves when
    its gateway is lost: its ``http(s)://`` origin for the API and its ``ws(s)://`` origin for the feed).

    MapLibre's worker is a same-origin script (``/static/vendor/maplibre-gl-csp-worker.js``), so ``worker-src``
    is ``'self'``: no ``blob:``.

    >>> content_security_policy("https://tile.example.org/{z}/{x}/{y}.png")  # doctest: +ELLIPSIS
    "default-src 'self'; connect-src 'self'; img-src 'self' data: https://tile.example.org; ...frame-ancestors 'none'"
    >>> content_security_policy(basemap="https://maps.example.gov")  # doctest: +ELLIPSIS
    "default-src 'self'; connect-src 'self' https://maps.example.gov; img-src 'self' data: https://maps.example.gov; ..."
    >>> content_security_policy(peers=("https://gw1.example.org", "http://10.0.0.6:8080")).split("; ")[1]
    "connect-src 'self' https://gw1.example.org wss://gw1.example.org http://10.0.0.6:8080 ws://10.0.0.6:8080"
    """
    extra = f" {basemap}" if basemap else ""
    img = "'self' data:" + (f" {origin_of(tiles)}" if tiles and not tiles.startswith("/") else "") + extra
    connect = "".join(f" {p} ws{p.removeprefix('http')}" for p in peers) + extra
    return (
        f"default-src 'self'; connect-src 'self'{connect}; img-src {img}; style-src 'self'; script-src 'self'; "
        "worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL.

    >>> origin_of("https://tile.example.org:8443/{z}/{x}/{y}.png")
    'https://tile.example.org:8443'
    """
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def response(
    status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None, *, csp: str | None = None
) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", csp or content_security_policy()),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Connection", "close"),
        ]
        + (extra or [])
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def json_response(status: int, body: object, extra: list[tuple[str, str]] | None = None, *, csp: str | None = None) -> Response:
    return response(status, json.dumps(body, separators=(",", ":")).encode(), "application/json", extra, csp=csp)


def clip(value: object, limit: int = TEXT_LIMIT) -> object:
    """Client-supplied text cut to ``limit`` characters (other values as they are).

    >>> clip("abcdef", limit=3), clip(3)
    ('abc… (6 chars)', 3)
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}… ({len(value)} chars)"
    return value


def one(query: dict, name: str) -> str | None:
    """The single value of query parameter ``name`` (None when absent); 400 when given twice."""
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise HttpError(400, f"bad_{name}", f"{name} given {len(values)} times")
    return values[0]


def integer(query: dict, name: str, default: int, low: int, high: int) -> int:
    text = one(query, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"bad_{name}", f"{name} must be an integer, got {clip(text, 40)!r}") from None
    if not low <= value <= high:
        raise HttpError(400, f"bad_{name}", f"{name} must be between {low} and {high}, got {value}")
    return value


def choice(query: dict, name: str, default: int, choices: tuple[int, ...]) -> int:
    """An integer parameter that must be one of ``choices`` (fixed windows: no free ones to difference)."""
    value = integer(query, name, default, min(choices), max(choices))
    if value not in choices:
        raise HttpError(400, f"bad_{name}", f"{name} must be one of {', '.join(map(str, choices))}, got {value}")
    return value


def epoch(query: dict, name: str) -> float | None:
    text = one(query, name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise HttpError(400, f"bad_{name}", f"{name} must be epoch seconds, got {clip(text, 40)!r}") from None


def only(query: dict, allowed: set[str]) -> None:
    """400 naming the first query parameter outside ``allowed`` (a typo must not silently mean the default)."""
    extra = sorted(set(query) - allowed)
    if extra:
        raise HttpError(
            400, "unknown_parameter", f"unknown parameter {clip(extra[0], 40)!r}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
