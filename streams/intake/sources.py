"""The CAD sources allowed to push, read from a TOML file (``WF_INTAKE_SOURCES``).

One table per source::

    [source.county-cad]
    agency = "montgomery-pa"            # the only agency this source may write calls for
    secret_env = "WF_INTAKE_SECRET_COUNTY_CAD"   # or: secret_file = "/run/secrets/county-cad"
    rate = 50                           # events a second, sustained (optional; default 100)
    burst = 500                         # events at once (optional; default max(10 x rate, 500))
    max_body_kb = 512                   # largest request body (optional; default 1024)
    heartbeat_s = 60                    # the CAD pushes at least this often, {"events": []} when it has
                                        # nothing to send; silent after 3 of them (optional; default 60)
    status_tolerance_s = 120            # a status up to this long before its call's received time is moved to
                                        # it (clock skew), a longer one refused (optional; as files: 120)

The secret itself is never in the file: it is read from the environment
variable or the file named, at start-up, and must be at least
:data:`MIN_SECRET_BYTES` bytes. Every error names the file, the source and the
key, and says what was expected (:class:`SourcesError`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.ingest.mapping import DEFAULT_TOLERANCE_S

#: The shortest secret accepted (HMAC-SHA256 keys: RFC 2104 section 3 advises at least the hash's length).
MIN_SECRET_BYTES = 32
DEFAULT_RATE = 100.0
DEFAULT_MAX_BODY_KB = 1024
#: How often a CAD source pushes at least (an empty batch when it has nothing): silent after three (streams.intake.doors).
DEFAULT_HEARTBEAT_S = 60.0
#: The most events one request may carry (a batch), and so the least burst a source has.
MAX_EVENTS = 500
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_KEYS = frozenset({"agency", "secret_env", "secret_file", "rate", "burst", "max_body_kb", "heartbeat_s", "status_tolerance_s"})


class SourcesError(ValueError):
    """The sources file cannot be used; the message names the file, source and key."""


@dataclass(frozen=True)
class Source:
    """One CAD source: who it is, the agency it writes for, its secret and its limits."""

    id: str
    agency: str
    secret: bytes = field(repr=False)
    rate: float = DEFAULT_RATE
    burst: float = MAX_EVENTS
    max_body_bytes: int = DEFAULT_MAX_BODY_KB * 1024
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    status_tolerance_s: float = DEFAULT_TOLERANCE_S


def load_sources(path: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, Source]:
    """The sources of the TOML file at ``path``, by id; secrets read from ``environ`` (default ``os.environ``) or files.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    ...     _ = f.write('[source.dev]\\nagency = "dev-agency"\\nsecret_env = "DEV_SECRET"\\nrate = 5\\n')
    >>> s = load_sources(f.name, {"DEV_SECRET": "x" * 32})["dev"]
    >>> s.agency, s.rate, s.burst, s.max_body_bytes
    ('dev-agency', 5.0, 500.0, 1048576)
    >>> load_sources(f.name, {})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.intake.sources.SourcesError: ...: source 'dev': secret_env names DEV_SECRET, which is not set; export it (32+ bytes), e.g. ...
    >>> os.unlink(f.name)
    """
    env = os.environ if environ is None else environ
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourcesError(f"{p}: cannot read the intake's sources file ({exc}); set WF_INTAKE_SOURCES to its path") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"{p}: not valid TOML ({exc})") from None
    table = data.get("source")
    if not isinstance(table, dict) or not table:
        raise SourcesError(f"{p}: expected at least one [source.<id>] table, found none")
    return {sid: _source(p, sid, spec, env) for sid, spec in table.items()}


def _source(path: Path, sid: str, spec: object, env: Mapping[str, str]) -> Source:
    where = f"{path}: source {sid!r}"
    if not _ID.fullmatch(sid):
        raise SourcesError(f"{where}: ids are 1-64 characters of a-z, 0-9, '_', '.', '-' starting with a letter or digit")
    if not isinstance(spec, dict):
        raise SourcesError(f"{where}: expected a table, found {type(spec).__name__}")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise SourcesError(f"{where}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(_KEYS))}")
    agency = spec.get("agency")
    if not isinstance(agency, str) or not agency.strip():
        raise SourcesError(f"{where}: 'agency' must be a non-empty string (the agency its calls are for)")
    rate = _positive(where, spec, "rate", DEFAULT_RATE)
    burst = _positive(where, spec, "burst", max(10 * rate, MAX_EVENTS))
    if burst < MAX_EVENTS:
        raise SourcesError(f"{where}: 'burst' must be at least {MAX_EVENTS} (one full batch), found {burst:g}")
    max_kb = _positive(where, spec, "max_body_kb", DEFAULT_MAX_BODY_KB)
    heartbeat = _positive(where, spec, "heartbeat_s", DEFAULT_HEARTBEAT_S)
    tolerance = spec.get("status_tolerance_s", DEFAULT_TOLERANCE_S)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < float("inf"):
        raise SourcesError(f"{where}: 'status_tolerance_s' must be a number of seconds >= 0, found {tolerance!r}")
    return Source(sid, agency, _secret(where, spec, env), rate, burst, int(max_kb * 1024), heartbeat, float(tolerance))


def _positive(where: str, spec: dict[str, object], key: str, default: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise SourcesError(f"{where}: {key!r} must be a positive number, found {value!r}")
    return float(value)


def _secret(where: str, spec: dict[str, object], env: Mapping[str, str]) -> bytes:
    var, file = spec.get("secret_env"), spec.get("secret_file")
    if (var is None) == (file is None):
        raise SourcesError(f"{where}: give exactly one of secret_env (an environment variable's name) or secret_file (a path)")
    if var is not None:
        if not isinstance(var, str) or not var:
            raise SourcesError(f"{where}: secret_env must be the name of an environment variable, found {var!r}")
        text = env.get(var)
        if not text:
            raise SourcesError(
                f"{where}: secret_env names {var}, which is not set; export it ({MIN_SECRET_BYTES}+ bytes), "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        secret, origin = text.strip().encode(), var
    else:
        if not isinstance(file, str) or not file:
            raise SourcesError(f"{where}: secret_file must be a path, found {file!r}")
        try:
            secret = Path(file).expanduser().read_bytes().strip()
        except OSError as exc:
            raise SourcesError(f"{where}: cannot read secret_file {file} ({exc})") from None
        origin = file
    if len(secret) < MIN_SECRET_BYTES:
        raise SourcesError(f"{where}: the secret in {origin} is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
    return secret
