"""Gateway settings, read from the environment (pure).

Every value but the signing secret has a default that runs next to the local
stack. A malformed value raises :class:`GatewaySettingsError` naming the
variable, what it found and what it expected. Built by :func:`load_gateway_settings`,
never at import time.

==============================  ==============  ===================================================
variable                        default         meaning
==============================  ==============  ===================================================
``WF_GATEWAY_SECRET``           (required)      signs and checks tokens; 32+ characters
``WF_GATEWAY_HOST`` / ``_PORT`` 127.0.0.1/8765  where the gateway listens
``WF_GATEWAY_ZONES``            infra/zones     GeoJSON files or folders of partners' zones
``WF_GATEWAY_K``                3               the least k an agreement may set (counts below k are withheld)
``WF_GATEWAY_AGREEMENTS``       infra/sharing/  the data-sharing agreements (TOML, :mod:`gateway.agreements`)
                                agreements.toml
``WF_GATEWAY_SETTLE_S``         120             seconds of event time after a window ends before partners get it
``WF_GATEWAY_ORIGINS``          same origin     other browser origins allowed to open the WebSocket (comma-separated)
``WF_GATEWAY_PEERS``            unset           public base URLs of every gateway (``http://10.0.0.5:8080,...``): the
                                                dashboard moves along them when its gateway is lost (:func:`read_peers`)
``WF_GATEWAY_TILES``            unset           map tile URL template (``https://host/{z}/{x}/{y}.png``) for the dashboard
``WF_GATEWAY_BASEMAP``          unset           the agency's basemap, drawn with MapLibre: a local ``.pmtiles`` file (served
                                                at ``/basemap.pmtiles``) or an https style, tile template or PMTiles URL
``WF_GATEWAY_API_RATE``         5               API requests per second per token (a burst of four times that)
``WF_GATEWAY_ANON_RATE``        5               refused or unauthenticated requests per second per address (burst x4)
``WF_GATEWAY_AUDIT_DAYS``       365             days the audit log keeps its records
``WF_GATEWAY_QUEUE``            256             frames queued per client before it is closed as too slow
``WF_GATEWAY_COUNTS_S``         5               seconds between ``counts`` frames
``WF_GATEWAY_PING_S``           20              keepalive ping interval and timeout
``WF_GATEWAY_HEARTBEAT_S``      10              seconds between ``heartbeat`` frames: a dashboard that hears nothing for
                                                three of them takes its gateway for lost and moves on
``WF_GATEWAY_MAX_MESSAGE``      131072          largest client frame, bytes (larger: closed with 1009)
``WF_GATEWAY_RATE``             10              client messages per second (a burst of twice that)
``WF_GATEWAY_BACKLOG``          2048            pending TCP connections
``WF_GATEWAY_MAX_TOKEN_TTL_S``  43200 (12 h)    longest token lifetime (exp - iat) accepted; also how
                                                long a revoked bare token id is kept
``WF_JURISDICTION``             unset           the worker's bounding box; event zones must lie inside
``WF_PROFILE``                  unset           the jurisdiction profile (TOML, :mod:`streams.jurisdiction`): the
                                                dashboard's time zone and the names of places; unset: UTC, no names
``WF_REDIS_URL``, ``WF_REDIS_PREFIX``, ``WF_PARTITIONS``: the worker's
``WF_REDIS_SENTINELS``          unset           Redis Sentinels ``host:port,...``: connect to the primary they name
                                                and follow a failover (``WF_REDIS_URL`` then gives only db and password)
``WF_REDIS_SENTINEL_SERVICE``   watchfloor      the primary's service name at the Sentinels
==============================  ==============  ===================================================
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.tokens import DEFAULT_MAX_TOKEN_TTL_S, MAX_TTL_S
from streams.ingest.schema import Jurisdiction
from streams.runtime.settings import DEFAULT_SENTINEL_SERVICE, read_env, sentinel_addresses

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZONES = ROOT / "infra" / "zones"
DEFAULT_AGREEMENTS = ROOT / "infra" / "sharing" / "agreements.toml"


class GatewaySettingsError(ValueError):
    """An environment variable holds a value the gateway cannot use."""


#: where the gateway serves a local basemap file (:mod:`gateway.static`, with HTTP Range)
BASEMAP_PATH = "/basemap.pmtiles"
#: PMTiles v3 header (https://github.com/protomaps/PMTiles/blob/main/spec/v3/spec.md, section 3): 127 bytes,
#: ``PMTiles`` then the version byte; the tile type is byte 99, the zooms bytes 100-101, the bounds (E7 degrees) 102-117
PMTILES_HEADER_BYTES = 127
PMTILES_MAGIC = b"PMTiles"
PMTILES_TILE_TYPES = {1: "mvt", 2: "png", 3: "jpg", 4: "webp", 5: "avif"}
#: tile types of an https tile template, by its extension
TEMPLATE_TILE_TYPES = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".pbf": "mvt", ".mvt": "mvt"}


@dataclass(frozen=True)
class Basemap:
    """The agency's basemap (``WF_GATEWAY_BASEMAP``), read by :func:`read_basemap`.

    ``kind`` is ``pmtiles`` (``path`` a local archive served at :data:`BASEMAP_PATH`, or ``url`` an https one),
    ``style`` (``url`` a MapLibre style JSON) or ``tiles`` (``url`` an https ``{z}/{x}/{y}`` template).
    """

    kind: str
    url: str
    path: Path | None = None
    #: ``png``, ``jpg``, ``webp``, ``avif`` (raster) or ``mvt`` (vector); None for a style
    tile_type: str | None = None
    min_zoom: int | None = None
    max_zoom: int | None = None
    #: [west, south, east, north] from a local archive's header
    bounds: tuple[float, float, float, float] | None = None

    @property
    def origin(self) -> str | None:
        """The other origin the page must reach (CSP ``connect-src`` and ``img-src``), None for a local file."""
        if self.path is not None:
            return None
        u = urlsplit(self.url)
        return f"{u.scheme}://{u.netloc}"

    def to_json(self) -> dict[str, object]:
        """What ``/api/me`` tells the page (never the local path)."""
        out: dict[str, object] = {"kind": self.kind, "url": self.url, "tile_type": self.tile_type}
        if self.min_zoom is not None:
            out.update(min_zoom=self.min_zoom, max_zoom=self.max_zoom)
        if self.bounds is not None:
            out["bounds"] = list(self.bounds)
        return out


def pmtiles_header(head: bytes, where: str) -> dict[str, Any]:
    """Tile type, zooms and bounds from the first bytes of a PMTiles v3 archive; ValueError naming ``where`` otherwise.

    >>> head = b"PMTiles" + bytes([3]) + bytes(91) + bytes([2, 0, 14]) + struct.pack("<4i", -10 * 10**7, -5 * 10**7, 10 * 10**7, 5 * 10**7)
    >>> pmtiles_header(head + bytes(9), "x")
    {'tile_type': 'png', 'min_zoom': 0, 'max_zoom': 14, 'bounds': (-10.0, -5.0, 10.0, 5.0)}
    >>> pmtiles_header(b"PMTiles" + bytes([2]) + bytes(119), "x.pmtiles")
    Traceback (most recent call last):
    ...
    ValueError: x.pmtiles is PMTiles version 2; the dashboard reads version 3 (convert it: pmtiles convert OLD NEW)
    """
    if not head.startswith(PMTILES_MAGIC):
        found = repr(head[:7].decode("ascii", "replace")) if head else "an empty file"
        raise ValueError(f"{where} is not a PMTiles archive: it should start with 'PMTiles', found {found}")
    if len(head) < PMTILES_HEADER_BYTES:
        raise ValueError(f"{where} is cut short: a PMTiles header is {PMTILES_HEADER_BYTES} bytes, the file has {len(head)}")
    if head[7] != 3:
        raise ValueError(f"{where} is PMTiles version {head[7]}; the dashboard reads version 3 (convert it: pmtiles convert OLD NEW)")
    tile_type = PMTILES_TILE_TYPES.get(head[99])
    if tile_type is None:
        raise ValueError(f"{where} holds tiles of unknown type {head[99]}; expected vector (mvt) or raster (png, jpg, webp, avif)")
    west, south, east, north = (v / 1e7 for v in struct.unpack_from("<4i", head, 102))
    return {"tile_type": tile_type, "min_zoom": head[100], "max_zoom": head[101], "bounds": (west, south, east, north)}


def read_basemap(text: str) -> Basemap:
    """``WF_GATEWAY_BASEMAP``: a local ``.pmtiles`` file, or an https style (``.json``), PMTiles or ``{z}/{x}/{y}`` URL.

    >>> read_basemap("https://maps.example.gov/style.json").to_json()
    {'kind': 'style', 'url': 'https://maps.example.gov/style.json', 'tile_type': None}
    >>> read_basemap("https://maps.example.gov/{z}/{x}/{y}.pbf").tile_type
    'mvt'
    >>> read_basemap("http://maps.example.gov/style.json")
    Traceback (most recent call last):
    ...
    ValueError: 'http://maps.example.gov/style.json' is not https: the page may reach other origins only over https
    """
    text = text.strip()
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ValueError(f"{path} {what} (expected a .pmtiles file or an https URL)")
        with path.open("rb") as f:
            head = f.read(PMTILES_HEADER_BYTES)
        return Basemap("pmtiles", BASEMAP_PATH, path=path, **pmtiles_header(head, str(path)))
    u = urlsplit(text)
    if u.scheme != "https":
        raise ValueError(f"{text!r} is not https: the page may reach other origins only over https")
    if not u.hostname or u.username or u.password:
        raise ValueError(f"{text!r} is not a URL like https://maps.example.gov/style.json (no host, or credentials in it)")
    if all(p in u.path for p in ("{z}", "{x}", "{y}")):
        tile_type = TEMPLATE_TILE_TYPES.get(Path(u.path).suffix.lower())
        if tile_type is None:
            raise ValueError(f"{text!r}: a tile template must end in one of {', '.join(TEMPLATE_TILE_TYPES)}")
        return Basemap("tiles", text, tile_type=tile_type)
    if u.path.endswith(".pmtiles"):
        return Basemap("pmtiles", text)
    if u.path.endswith(".json"):
        return Basemap("style", text)
    raise ValueError(f"{text!r} is neither a style (.json), a PMTiles archive (.pmtiles) nor a tile template with {{z}}, {{x}} and {{y}}")


@dataclass(frozen=True)
class GatewaySettings:
    secret: bytes
    host: str = "127.0.0.1"
    port: int = 8765
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: the worker's ``WF_REDIS_SENTINELS`` and ``WF_REDIS_SENTINEL_SERVICE`` (see :mod:`streams.runtime.redisconn`)
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_service: str = DEFAULT_SENTINEL_SERVICE
    #: must match the worker's ``WF_REDIS_PREFIX``
    redis_prefix: str = "wf"
    #: partitions of the calls topic (the worker's ``WF_PARTITIONS``): where the watermarks are
    partitions: int = 4
    #: GeoJSON files (or folders of ``*.geojson``) with partners' named zones
    zone_paths: tuple[Path, ...] = (DEFAULT_ZONES,)
    #: counts below k are suppressed in partners' views
    k: int = 3
    #: frames queued for one client before it is closed as too slow
    queue_size: int = 256
    #: seconds between activity-count frames
    counts_every_s: float = 5.0
    #: WebSocket keepalive: ping every N s, close when no pong within N s
    ping_s: float = 20.0
    #: seconds between ``heartbeat`` frames (browsers answer pings unseen by the page: a frame is what it can watch)
    heartbeat_s: float = 10.0
    #: largest client frame accepted, bytes (a polygon of 2,000 vertices fits)
    max_message: int = 128 * 1024
    #: client messages per second allowed (a burst of twice that is tolerated)
    rate_per_s: float = 10.0
    #: refused client messages tolerated before the connection is closed
    max_errors: int = 20
    #: pending TCP connections (a restarted gateway is reconnected to by every client at once)
    backlog: int = 2048
    #: longest token lifetime (exp - iat) accepted, seconds (``WF_GATEWAY_MAX_TOKEN_TTL_S``, 12 h by
    #: default): a longer-lived token is refused (401 ``too_long_lived``), which also bounds how long
    #: a revoked token id is kept (:func:`gateway.tokens.revocation`); at most 7 days
    max_token_ttl_s: float = DEFAULT_MAX_TOKEN_TTL_S
    #: the worker's ``WF_JURISDICTION`` (``min_lat,min_lng,max_lat,max_lng``); when set, event
    #: zones must lie inside it (the detectors see no call outside it)
    jurisdiction: Jurisdiction | None = None
    #: the jurisdiction profile, the worker's ``WF_PROFILE`` (TOML, :func:`streams.jurisdiction.load_profile`):
    #: the zone the dashboard shows times in and the named areas; None: UTC and no names
    profile: Path | None = None
    #: the data-sharing agreements file (:mod:`gateway.agreements`)
    agreements_path: Path = DEFAULT_AGREEMENTS
    #: seconds of event time after a window's end before partners are given it (late calls counted by then)
    settle_s: float = 120.0
    #: browser origins besides the gateway's own allowed to open the WebSocket (``https://host[:port]``)
    origins: tuple[str, ...] = ()
    #: map tile URL template for the dashboard, or None for no tiles
    tiles: str | None = None
    #: the agency's basemap drawn under the map with MapLibre (``WF_GATEWAY_BASEMAP``), or None
    basemap: Basemap | None = None
    #: API requests per second per token (bursts of four times that)
    api_rate_per_s: float = 5.0
    #: refused or unauthenticated requests per second per client address (bursts of four times that)
    anon_rate_per_s: float = 5.0
    #: days the audit log keeps records
    audit_days: float = 365.0
    #: public base URLs of every gateway a dashboard may move to (``WF_GATEWAY_PEERS``, :func:`read_peers`); empty: only this one
    peers: tuple[str, ...] = ()

    @property
    def peer_sockets(self) -> tuple[str, ...]:
        """The peers' WebSocket origins (``ws://`` or ``wss://``), for the CSP's ``connect-src``.

        >>> GatewaySettings(b"s" * 32, peers=("http://10.0.0.5:8080", "https://gw2.example.org")).peer_sockets
        ('ws://10.0.0.5:8080', 'wss://gw2.example.org')
        """
        return tuple("ws" + p.removeprefix("http") for p in self.peers)

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise GatewaySettingsError(
                "WF_GATEWAY_SECRET must be at least 32 characters; create one with "
                'python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if not 0 < self.port < 65536:
            raise GatewaySettingsError(f"WF_GATEWAY_PORT must be 1..65535, found {self.port}")
        for name in ("k", "queue_size", "max_message", "partitions", "max_errors", "backlog"):
            if getattr(self, name) < 1:
                raise GatewaySettingsError(f"{name} must be >= 1, found {getattr(self, name)}")
        for origin in self.origins:
            u = urlsplit(origin)
            if u.scheme not in ("http", "https") or not u.netloc or u.path or u.query:
                raise GatewaySettingsError(f"WF_GATEWAY_ORIGINS: {origin!r} is not an origin like https://dash.example.org[:port]")
        if self.tiles is not None:
            u = urlsplit(self.tiles)
            same_origin = self.tiles.startswith("/") and not self.tiles.startswith("//")
            if not (same_origin or (u.scheme == "https" and u.netloc)) or not all(p in self.tiles for p in ("{z}", "{x}", "{y}")):
                raise GatewaySettingsError(
                    f"WF_GATEWAY_TILES: {self.tiles!r} must be an https URL or a /path template with {{z}}, {{x}} and {{y}}"
                )
        try:
            if self.peers != read_peers(",".join(self.peers)):
                raise ValueError(f"{self.peers!r} are not base URLs as read_peers writes them (no trailing /, each once)")
        except ValueError as exc:
            raise GatewaySettingsError(f"WF_GATEWAY_PEERS: {exc}") from None
        if self.tiles is not None and self.basemap is not None:
            raise GatewaySettingsError(
                "WF_GATEWAY_TILES and WF_GATEWAY_BASEMAP are both set: the map has one background; unset one of them"
            )
        for name in ("counts_every_s", "ping_s", "heartbeat_s", "rate_per_s", "api_rate_per_s", "anon_rate_per_s", "audit_days"):
            if not getattr(self, name) > 0:
                raise GatewaySettingsError(f"{name} must be > 0, found {getattr(self, name)}")
        if self.settle_s < 0:
            raise GatewaySettingsError(f"WF_GATEWAY_SETTLE_S must be >= 0, found {self.settle_s}")
        if not 0 < self.max_token_ttl_s <= MAX_TTL_S:
            raise GatewaySettingsError(
                f"WF_GATEWAY_MAX_TOKEN_TTL_S must be more than 0 and at most {MAX_TTL_S:.0f} (7 days), found {self.max_token_ttl_s}"
            )

    def zone_files(self) -> list[Path]:
        """The zone files: each path itself, or the ``*.geojson`` files of a folder, sorted."""
        files: list[Path] = []
        for p in self.zone_paths:
            if p.is_dir():
                files += sorted(p.glob("*.geojson"))
            elif p.exists():
                files.append(p)
            else:
                raise GatewaySettingsError(f"WF_GATEWAY_ZONES: {p} does not exist")
        return files


def read_peers(text: str) -> tuple[str, ...]:
    """``WF_GATEWAY_PEERS``: comma-separated public base URLs of every gateway, each ``http(s)://host[:port]``.

    The order is the dashboards' round robin ("gateway 1", "gateway 2", ...). Each is written as a browser writes
    its origin (lower case, no trailing ``/``, no default port), and a URL given twice is kept once.

    >>> read_peers("http://10.0.0.5:8080, http://10.0.0.6:8080/, HTTPS://GW3.example.org:443")
    ('http://10.0.0.5:8080', 'http://10.0.0.6:8080', 'https://gw3.example.org')
    >>> read_peers("http://10.0.0.5:8080/gw")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 'http://10.0.0.5:8080/gw' is not a base URL like https://gw1.example.org[:port]: no path, ... (found path '/gw')
    """
    peers: list[str] = []
    for item in text.split(","):
        url = item.strip()
        if not url:
            continue
        u = urlsplit(url.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{url!r} is not a base URL like https://gw1.example.org[:port] (http or https and a host)")
        if u.username or u.password:
            raise ValueError(f"{url!r} holds credentials; a peer is a public address (the token travels on its own)")
        extra = next((f"{name} {value!r}" for name, value in (("path", u.path), ("query", u.query), ("fragment", u.fragment)) if value), "")
        if extra:
            raise ValueError(f"{url!r} is not a base URL like https://gw1.example.org[:port]: no path, query or fragment (found {extra})")
        try:
            port = u.port
        except ValueError as exc:  # not a number, or out of range
            raise ValueError(f"{url!r}: {exc}") from None
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        # as browsers write an Origin: lower case, no default port
        base = f"{u.scheme}://{host}" + (f":{port}" if port is not None and port != {"http": 80, "https": 443}[u.scheme] else "")
        if base not in peers:
            peers.append(base)
    return tuple(peers)


def peers(text: str) -> tuple[str, ...]:
    """:func:`read_peers` under the name a malformed ``WF_GATEWAY_PEERS`` is reported with ("cannot read .. as peers")."""
    return read_peers(text)


def basemap(text: str) -> Basemap:
    """:func:`read_basemap` under the name a malformed ``WF_GATEWAY_BASEMAP`` is reported with ("cannot read .. as basemap")."""
    return read_basemap(text)


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(p.strip()) for p in text.split(",") if p.strip())


_ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "WF_GATEWAY_HOST": ("host", str),
    "WF_GATEWAY_PORT": ("port", int),
    "WF_REDIS_URL": ("redis_url", str),
    "WF_REDIS_SENTINELS": ("redis_sentinels", sentinel_addresses),
    "WF_REDIS_SENTINEL_SERVICE": ("redis_sentinel_service", str),
    "WF_REDIS_PREFIX": ("redis_prefix", str),
    "WF_PARTITIONS": ("partitions", int),
    "WF_GATEWAY_ZONES": ("zone_paths", _paths),
    "WF_GATEWAY_K": ("k", int),
    "WF_GATEWAY_QUEUE": ("queue_size", int),
    "WF_GATEWAY_COUNTS_S": ("counts_every_s", float),
    "WF_GATEWAY_HEARTBEAT_S": ("heartbeat_s", float),
    "WF_GATEWAY_PING_S": ("ping_s", float),
    "WF_GATEWAY_MAX_MESSAGE": ("max_message", int),
    "WF_GATEWAY_RATE": ("rate_per_s", float),
    "WF_GATEWAY_BACKLOG": ("backlog", int),
    "WF_GATEWAY_MAX_TOKEN_TTL_S": ("max_token_ttl_s", float),
    "WF_JURISDICTION": ("jurisdiction", Jurisdiction.parse),
    "WF_PROFILE": ("profile", Path),
    "WF_GATEWAY_AGREEMENTS": ("agreements_path", Path),
    "WF_GATEWAY_SETTLE_S": ("settle_s", float),
    "WF_GATEWAY_ORIGINS": ("origins", lambda t: tuple(o.strip().rstrip("/") for o in t.split(",") if o.strip())),
    "WF_GATEWAY_TILES": ("tiles", str),
    "WF_GATEWAY_BASEMAP": ("basemap", basemap),
    "WF_GATEWAY_API_RATE": ("api_rate_per_s", float),
    "WF_GATEWAY_ANON_RATE": ("anon_rate_per_s", float),
    "WF_GATEWAY_AUDIT_DAYS": ("audit_days", float),
    "WF_GATEWAY_PEERS": ("peers", peers),
}


def load_gateway_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> GatewaySettings:
    """Build :class:`GatewaySettings` from the environment, then apply ``overrides``.

    >>> s = load_gateway_settings({"WF_GATEWAY_SECRET": "x" * 40, "WF_GATEWAY_PORT": "9000"})
    >>> s.port, s.k, s.max_token_ttl_s
    (9000, 3, 43200.0)
    >>> load_gateway_settings({"WF_GATEWAY_SECRET": "x" * 40, "WF_GATEWAY_K": "three"})
    Traceback (most recent call last):
    ...
    gateway.settings.GatewaySettingsError: WF_GATEWAY_K: cannot read 'three' as int (invalid literal for int() with base 10: 'three')
    >>> load_gateway_settings({})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gateway.settings.GatewaySettingsError: WF_GATEWAY_SECRET is not set: the gateway signs and checks tokens with it; ...
    """
    env = os.environ if environ is None else environ
    values = read_env(_ENV, env, GatewaySettingsError)
    values.update(overrides)
    if "secret" not in values:
        text = env.get("WF_GATEWAY_SECRET", "")
        if not text:
            raise GatewaySettingsError(
                "WF_GATEWAY_SECRET is not set: the gateway signs and checks tokens with it; "
                'create one with python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        values["secret"] = text.encode()
    return GatewaySettings(**values)  # type: ignore[arg-type]  # read_env's values are typed object; each was cast for its field
