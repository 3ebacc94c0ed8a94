"""Signed access tokens for the gateway (pure: no I/O besides the command line).

A token is a JWT signed with HMAC-SHA256 (RFC 7518 s. 3.2) under the gateway
secret ``WF_GATEWAY_SECRET``. It says who holds it (``sub``), in which role
(:class:`Role`), for which agency, and which zones a partner or event commander
may see. The gateway verifies it on every connection; nothing in it is trusted
before :func:`verify` returns.

Roles
-----
``supervisor``  the 911 centre: every alert, precise; ``zones`` is empty.
``transit``     a transit agency: what its data-sharing agreement (``agreement``) allows.
``school``      a school district: what its data-sharing agreement (``agreement``) allows.
``commander``   an event commander: precise alerts in its event zones while they are active.

Lifetime and revocation
-----------------------
A gateway accepts tokens whose lifetime (``exp - iat``) is at most
``WF_GATEWAY_MAX_TOKEN_TTL_S`` (12 h by default; :func:`verify`'s ``max_ttl_s``),
so that a stolen token is useful for a bounded time. Before that, a token is
withdrawn by revoking its id (``jti``): the gateway keeps revoked ids in Redis
until the token would have expired (:func:`revocation`, ``gateway.store``) and
refuses them on every handshake and API call (HTTP 401, ``revoked``); a socket
already open with it is closed with 4401.

Command line::

    export WF_GATEWAY_SECRET=$(python -c "import secrets; print(secrets.token_urlsafe(48))")
    python -m gateway.tokens issue --role transit --agency SEPTA --subject ops-desk-3 \\
        --agreement septa --zones septa-norristown-tc,septa-lansdale --ttl 8h
    python -m gateway.tokens inspect <token>
    python -m gateway.tokens revoke <token or its jti>   # also reads WF_REDIS_URL, WF_REDIS_PREFIX

Examples
--------
>>> secret = b"s" * 32
>>> token = issue(secret, subject="ops-desk-3", role="transit", agency="SEPTA", zones=("septa-lansdale",), now=1_700_000_000,
...               agreement="septa")
>>> claims = verify(secret, token, now=1_700_000_060)
>>> claims.role, claims.zones, claims.expires_at - claims.issued_at
(<Role.TRANSIT: 'transit'>, ('septa-lansdale',), 28800.0)
>>> verify(b"t" * 32, token, now=1_700_000_060)
Traceback (most recent call last):
...
gateway.tokens.TokenError: bad_signature: token signature does not match this gateway's secret
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import re
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings

ALGORITHM = "HS256"
#: Shortest secret accepted: HS256 keys must be at least the hash output size (RFC 7518 s. 3.2).
MIN_SECRET_BYTES = 32
#: Longest lifetime :func:`issue` gives; a gateway accepts at most its ``WF_GATEWAY_MAX_TOKEN_TTL_S``.
MAX_TTL_S = 7 * 24 * 3600.0
DEFAULT_TTL_S = 8 * 3600.0
#: Default of ``WF_GATEWAY_MAX_TOKEN_TTL_S``: a working shift and a half.
DEFAULT_MAX_TOKEN_TTL_S = 12 * 3600.0
#: How far in the future ``iat`` may be before a token is refused (clocks drift).
CLOCK_SKEW_S = 60.0
MAX_TEXT = 100
MAX_ZONES = 200
SECRET_ENV = "WF_GATEWAY_SECRET"
_REQUIRED = ("exp", "iat", "sub", "role", "agency", "zones", "jti")
_MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


class Role(enum.StrEnum):
    """Who holds a token; :mod:`gateway.policy` decides what each role sees."""

    SUPERVISOR = "supervisor"
    TRANSIT = "transit"
    SCHOOL = "school"
    COMMANDER = "commander"


#: Roles that see only their own zones, generalized (outside partner agencies).
PARTNER_ROLES = frozenset({Role.TRANSIT, Role.SCHOOL})


class TokenError(Exception):
    """A token that must be refused; ``code`` is one of missing, malformed, bad_signature, expired,
    not_yet_valid, too_long_lived (:func:`verify`) or revoked (the gateway, after :func:`verify`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    """What a verified token says. Times are epoch seconds."""

    subject: str
    role: Role
    agency: str
    zones: tuple[str, ...]
    expires_at: float
    issued_at: float
    token_id: str
    #: the data-sharing agreement of a partner token (:mod:`gateway.agreements`); None for other roles
    agreement: str | None = None
    #: the token is not valid before this time (``nbf``, RFC 7519 s. 4.1.5); None when unset
    not_before: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["role"] = self.role.value
        d["zones"] = list(self.zones)
        return d


def issue(
    secret: bytes,
    *,
    subject: str,
    role: Role | str,
    agency: str,
    zones: Sequence[str] = (),
    ttl_s: float = DEFAULT_TTL_S,
    now: float | None = None,
    agreement: str | None = None,
    not_before: float | None = None,
) -> str:
    """A signed token for ``subject``; raises ``ValueError`` naming the first bad argument.

    Partner roles (transit, school) need their data-sharing ``agreement`` and may
    name some of its zones (none: all of them); a commander needs the event
    zone(s) it commands; a supervisor sees everything and takes no zones.

    >>> issue(b"s" * 32, subject="desk", role="school", agency="MCIU", zones=("a",))
    Traceback (most recent call last):
    ...
    ValueError: a school token needs its data-sharing agreement (--agreement), got none
    """
    _check_secret(secret)
    try:
        role = Role(role)
    except ValueError:
        raise ValueError(f"role must be one of {', '.join(Role)}, got {role!r}") from None
    _check_text("subject", subject)
    _check_text("agency", agency)
    if isinstance(zones, str):
        raise ValueError(f"zones must be a sequence of zone ids, got the string {zones!r}")
    zones = tuple(zones)
    for z in zones:
        _check_text("zone id", z)
    if len(set(zones)) != len(zones):
        raise ValueError(f"zone ids must be distinct, got {', '.join(zones)}")
    if len(zones) > MAX_ZONES:
        raise ValueError(f"a token names at most {MAX_ZONES} zones, got {len(zones)}")
    if role is Role.SUPERVISOR and zones:
        raise ValueError(f"a supervisor token sees every zone and takes no zone ids, got {', '.join(zones)}")
    if role in PARTNER_ROLES:
        if agreement is None:
            raise ValueError(f"a {role} token needs its data-sharing agreement (--agreement), got none")
        _check_text("agreement", agreement)
    elif agreement is not None:
        raise ValueError(f"only partner tokens (transit, school) name an agreement, not a {role} token")
    if role is Role.COMMANDER and not zones:
        raise ValueError("a commander token needs the event zone id(s) it commands (--zones), got none")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not math.isfinite(ttl_s) or not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be more than 0 and at most {MAX_TTL_S:.0f} s (7 days), got {ttl_s!r}")
    iat = time.time() if now is None else float(now)
    payload = {
        "sub": subject,
        "role": role.value,
        "agency": agency,
        "zones": list(zones),
        "iat": iat,
        "exp": iat + float(ttl_s),
        "jti": secrets.token_urlsafe(16),
    }
    if agreement is not None:
        payload["agreement"] = agreement
    if not_before is not None:
        payload["nbf"] = float(not_before)
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify(secret: bytes, token: str | None, now: float | None = None, *, max_ttl_s: float = MAX_TTL_S) -> Claims:
    """The claims of a token signed with ``secret``, or :class:`TokenError` saying why it is refused.

    Only HS256 is accepted (never ``none``, never another algorithm: the
    algorithm in the token header is not trusted, RFC 8725 s. 3.1). ``iat``
    and ``nbf`` (when present) may be up to :data:`CLOCK_SKEW_S` in the future; ``exp`` has no grace; a
    lifetime ``exp - iat`` over ``max_ttl_s`` is refused (``too_long_lived``).
    Whether the token was revoked is the caller's to check (it needs Redis).

    >>> secret = b"s" * 32
    >>> verify(secret, issue(secret, subject="d", role="supervisor", agency="A", ttl_s=86400, now=0), now=10, max_ttl_s=43200)
    Traceback (most recent call last):
    ...
    gateway.tokens.TokenError: too_long_lived: token lives 86400 s, longer than the 43200 s this gateway accepts; ask for a shorter one
    """
    _check_secret(secret)
    if token is None or not isinstance(token, str) or not token.strip():
        raise TokenError("missing", "no token given; send one as ?token=... or 'Authorization: Bearer ...'")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # exp and iat are checked below against ``now`` (PyJWT only knows the wall clock)
            options={"require": list(_REQUIRED), "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
        raise TokenError("bad_signature", "token signature does not match this gateway's secret") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError("malformed", f"token lacks the claim {exc.claim!r}; required: {', '.join(_REQUIRED)}") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError("malformed", f"not a valid token ({exc})") from None
    claims = _claims(payload)
    t = time.time() if now is None else float(now)
    if claims.issued_at > t + CLOCK_SKEW_S:
        raise TokenError("not_yet_valid", f"token issued {claims.issued_at - t:.0f} s in the future; check the clocks")
    if claims.not_before is not None and claims.not_before > t + CLOCK_SKEW_S:
        raise TokenError("not_yet_valid", f"token not valid for another {claims.not_before - t:.0f} s (nbf)")
    if t >= claims.expires_at:
        raise TokenError("expired", f"token expired {t - claims.expires_at:.0f} s ago; ask for a new one")
    lifetime = claims.expires_at - claims.issued_at
    if lifetime > max_ttl_s:
        raise TokenError(
            "too_long_lived", f"token lives {lifetime:.0f} s, longer than the {max_ttl_s:.0f} s this gateway accepts; ask for a shorter one"
        )
    return claims


@dataclass(frozen=True)
class Revocation:
    """A token id to refuse until ``until`` (epoch s: when the token expires anyway); ``subject`` when known."""

    token_id: str
    until: float
    subject: str | None = None


_JTI = re.compile(r"[A-Za-z0-9_-]{1,100}")


def revocation(secret: bytes, token_or_id: str, *, now: float, max_ttl_s: float) -> Revocation:
    """What to record to revoke a token (given whole) or a token id (its ``jti``); ``ValueError`` otherwise.

    A whole token must carry this gateway's signature (so that nobody revokes on
    another's behalf by accident, and its expiry is known); it is kept until it
    expires. A bare id is kept for ``max_ttl_s`` plus the clock skew: no token
    the gateway accepts lives longer.

    >>> secret = b"s" * 32
    >>> token = issue(secret, subject="desk-3", role="supervisor", agency="A", ttl_s=3600, now=1000)
    >>> r = revocation(secret, token, now=2000, max_ttl_s=43200)
    >>> r.until, r.subject, r.token_id == verify(secret, token, now=2000).token_id
    (4600.0, 'desk-3', True)
    >>> revocation(secret, "Xq3-a_9", now=2000, max_ttl_s=43200)
    Revocation(token_id='Xq3-a_9', until=45260.0, subject=None)
    >>> revocation(secret, "not a token id", now=2000, max_ttl_s=43200)
    Traceback (most recent call last):
    ...
    ValueError: give a whole token or its jti (letters, digits, '-' and '_'), got 'not a token id'
    """
    text = token_or_id.strip()
    if text.count(".") == 2:
        try:
            claims = verify(secret, text, now=now, max_ttl_s=max(max_ttl_s, MAX_TTL_S))
        except TokenError as exc:
            if exc.code != "expired":
                raise ValueError(f"cannot revoke this token: {exc.code}: {exc.message}") from None
            raise ValueError("this token has expired already: no gateway accepts it, nothing to revoke") from None
        return Revocation(claims.token_id, claims.expires_at, claims.subject)
    if not _JTI.fullmatch(text):
        raise ValueError(f"give a whole token or its jti (letters, digits, '-' and '_'), got {text!r:.60}")
    return Revocation(text, now + max_ttl_s + CLOCK_SKEW_S)


def load_secret(env: Mapping[str, str]) -> bytes:
    """The signing secret from ``WF_GATEWAY_SECRET``; ``ValueError`` saying how to make one if absent or short.

    >>> load_secret({"WF_GATEWAY_SECRET": "x" * 40})[:3]
    b'xxx'
    >>> load_secret({})
    Traceback (most recent call last):
    ...
    ValueError: WF_GATEWAY_SECRET is not set; create one with: python -c "import secrets; print(secrets.token_urlsafe(48))"
    """
    value = env.get(SECRET_ENV)
    if not value:
        raise ValueError(f"{SECRET_ENV} is not set; create one with: {_MAKE_SECRET}")
    if len(value) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{SECRET_ENV} is {len(value)} characters, at least {MIN_SECRET_BYTES} are required; create one with: {_MAKE_SECRET}"
        )
    return value.encode()


def parse_ttl(text: str) -> float:
    """A duration such as ``30m``, ``8h``, ``2d``, ``90s`` or plain seconds, in seconds.

    >>> parse_ttl("8h"), parse_ttl("30m"), parse_ttl("3600")
    (28800.0, 1800.0, 3600.0)
    >>> parse_ttl("soon")
    Traceback (most recent call last):
    ...
    ValueError: ttl must be a number of seconds or a number followed by s, m, h or d (30m, 8h, 2d), got 'soon'
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"ttl must be a number of seconds or a number followed by s, m, h or d (30m, 8h, 2d), got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _claims(payload: dict[str, Any]) -> Claims:
    def text(name: str) -> str:
        v = payload[name]
        if not isinstance(v, str) or not v or len(v) > MAX_TEXT or not v.isprintable():
            raise TokenError("malformed", f"claim {name!r} must be a non-empty printable string of at most {MAX_TEXT} characters")
        return v

    def number(name: str) -> float:
        v = payload[name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise TokenError("malformed", f"claim {name!r} must be a number of epoch seconds, found {v!r:.40}")
        return float(v)

    try:
        role = Role(payload["role"])
    except (ValueError, TypeError):
        raise TokenError("malformed", f"claim 'role' must be one of {', '.join(Role)}, found {payload['role']!r:.40}") from None
    zones = payload["zones"]
    if not isinstance(zones, list) or len(zones) > MAX_ZONES or not all(isinstance(z, str) and 0 < len(z) <= MAX_TEXT for z in zones):
        raise TokenError("malformed", f"claim 'zones' must be a list of at most {MAX_ZONES} zone ids")
    return Claims(
        subject=text("sub"),
        role=role,
        agency=text("agency"),
        zones=tuple(zones),
        expires_at=number("exp"),
        issued_at=number("iat"),
        token_id=text("jti"),
        agreement=text("agreement") if "agreement" in payload else None,
        not_before=number("nbf") if "nbf" in payload else None,
    )


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        got = f"{len(secret)} bytes" if isinstance(secret, bytes) else type(secret).__name__
        raise ValueError(f"the gateway secret must be at least {MIN_SECRET_BYTES} bytes, got {got}")


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or not value.isprintable():
        raise ValueError(f"{name} must be a non-empty printable string of at most {MAX_TEXT} characters, got {value!r:.120}")


# ---------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gateway.tokens", description=f"Issue and inspect gateway tokens (secret from ${SECRET_ENV})."
    )
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("issue", help="print a new signed token")
    i.add_argument("--role", required=True, choices=[r.value for r in Role], help="what the holder may see")
    i.add_argument("--agency", required=True, help="the holder's agency, e.g. SEPTA")
    i.add_argument("--subject", required=True, help="who or which desk holds the token, e.g. ops-desk-3 (audited)")
    i.add_argument("--zones", default="", help="comma-separated zone ids (commanders; partners may narrow their agreement's)")
    i.add_argument("--agreement", default=None, help="the data-sharing agreement of a transit or school token (infra/sharing)")
    i.add_argument(
        "--ttl", default="8h", help="lifetime: seconds or 30m, 8h, 2d (default 8h; at most WF_GATEWAY_MAX_TOKEN_TTL_S, 12h by default)"
    )
    s = sub.add_parser("inspect", help="verify a token and print its claims as JSON")
    s.add_argument("token", help="the token to verify")
    r = sub.add_parser(
        "revoke",
        help="refuse a token from now on, on every gateway of this Redis (WF_REDIS_URL, WF_REDIS_PREFIX)",
        description="Every gateway on this Redis refuses the token from now on (HTTP 401 'revoked') and closes "
        "sockets open with it (4401). The id is kept until the token would have expired.",
    )
    r.add_argument("token", metavar="TOKEN_OR_JTI", help="the token, or its jti (as `inspect` shows it)")
    return p


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit status (2: bad arguments or secret, 1: token refused or Redis unreachable)."""
    import os

    from gateway.settings import GatewaySettingsError, load_gateway_settings

    parser = _parser()
    args = parser.parse_args(argv)
    environ = os.environ if env is None else env
    try:
        secret = load_secret(environ)
        settings = load_gateway_settings(environ)
    except (ValueError, GatewaySettingsError) as exc:
        parser.error(str(exc))
    if args.command == "issue":
        try:
            zones = tuple(z.strip() for z in args.zones.split(",") if z.strip())
            ttl = parse_ttl(args.ttl)
            if settings.max_token_ttl_s < ttl <= MAX_TTL_S:
                raise ValueError(
                    f"ttl {args.ttl} is longer than the {settings.max_token_ttl_s:.0f} s gateways accept "
                    "(WF_GATEWAY_MAX_TOKEN_TTL_S); they would refuse the token"
                )
            token = issue(
                secret, subject=args.subject, role=args.role, agency=args.agency, zones=zones, ttl_s=ttl, agreement=args.agreement
            )
        except ValueError as exc:
            parser.error(str(exc))
        print(token)
        return 0
    if args.command == "revoke":
        try:
            entry = revocation(secret, args.token, now=time.time(), max_ttl_s=settings.max_token_ttl_s)
        except ValueError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        return _revoke(settings, entry)
    try:
        claims = verify(secret, args.token, max_ttl_s=settings.max_token_ttl_s)
    except TokenError as exc:
        print(f"refused: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(claims.to_json(), indent=2))
    return 0


def _revoke(settings: GatewaySettings, entry: Revocation) -> int:
    """Record ``entry`` in Redis (the command line's only I/O besides printing)."""
    import asyncio

    from gateway.store import Store, StoreError

    async def run() -> bool | None:
        store = Store.from_settings(settings)
        try:
            return await store.revoke(entry.token_id, entry.until, now=time.time())
        finally:
            await store.close()

    try:
        replicated = asyncio.run(run())
    except StoreError as exc:
        print(f"not revoked: {exc}", file=sys.stderr)
        return 1
    if replicated is False:
        print(
            "warning: revoked on the Redis primary, but no replica acknowledged it: a failover now would let the token "
            "in again. Run this command again once the replica is back (python -m infra.redisha status).",
            file=sys.stderr,
        )
    print(json.dumps({"revoked": entry.token_id, "until": entry.until, "subject": entry.subject, "replicated": replicated}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
