"""Settings of the HTTP intake, read from ``WF_INTAKE_*`` and the shared ``WF_*`` variables.

The shared ones (``WF_KAFKA_BOOTSTRAP``, ``WF_REDIS_URL``, ``WF_TOPIC_PREFIX``,
``WF_REDIS_PREFIX``, ``WF_PROFILE``, ``WF_JURISDICTION``) are read by
:func:`streams.runtime.settings.load_settings`, as the worker reads them, so the
intake writes the topics and keys the worker reads. Errors name the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from streams.runtime.settings import Settings, SettingsError, _flag, load_settings, read_env
from streams.topics import INGEST_RETENTION_MS

#: How long idempotency keys and call owners are remembered: the ingest topics' retention (8 days).
DEFAULT_ID_TTL_S = INGEST_RETENTION_MS // 1000
#: The least: a CAD retrying for a day must still find its keys.
MIN_ID_TTL_S = 24 * 3600


@dataclass(frozen=True)
class IntakeSettings:
    host: str = "127.0.0.1"
    #: 8091: clear of the gateway (8765) and the worker's web port (6066).
    port: int = 8091
    sources: str = "infra/intake/sources.toml"
    #: Seconds idempotency keys and call owners are kept (``WF_INTAKE_ID_TTL_S``).
    id_ttl_s: int = DEFAULT_ID_TTL_S
    #: Seconds Kafka has to acknowledge a request's records before the answer is 503.
    kafka_timeout_s: float = 10.0
    #: Milliseconds the producer holds a new batch for more records (``WF_INTAKE_KAFKA_LINGER_MS``). Every request
    #: waits it out before its records leave; records of concurrent requests batch anyway while one produce
    #: request is in flight (aiokafka sends one at a time to a broker).
    kafka_linger_ms: int = 0
    #: Days the intake's audit stream keeps its records.
    audit_days: float = 30.0
    #: Answer every request with a ``Server-Timing`` header of its stages, and histogram them on /metrics
    #: (``WF_INTAKE_STAGE_TIMING``; for load tests: it tells clients how long the intake's stages took).
    stage_timing: bool = False
    #: Refused requests (401, or a body refused before its source is known) a second per client address, in bursts of
    #: four times as many (``WF_INTAKE_ANON_RATE``). Past it an address is answered 429 and its refusals are audited in
    #: one record a second, so a flood of bad signatures cannot fill the audit stream. Signed requests never count.
    anon_rate_per_s: float = 5.0
    #: Seconds a record's claim (``pending``) lasts unless the intake holding it renews it, which it does every
    #: fifth of this while the request is under way (``WF_INTAKE_CLAIM_LEASE_S``): how long a retry of a request
    #: in flight when its intake died waits before it goes through.
    claim_lease_s: float = 5.0
    base: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"WF_INTAKE_PORT must be 1..65535, found {self.port}")
        if self.id_ttl_s < MIN_ID_TTL_S:
            raise SettingsError(f"WF_INTAKE_ID_TTL_S must be at least {MIN_ID_TTL_S} (a day of retries), found {self.id_ttl_s}")
        if not 0 < self.kafka_timeout_s <= 60:
            raise SettingsError(f"WF_INTAKE_KAFKA_TIMEOUT_S must be in (0, 60] seconds, found {self.kafka_timeout_s}")
        if not 0 <= self.kafka_linger_ms <= 1000:
            raise SettingsError(f"WF_INTAKE_KAFKA_LINGER_MS must be 0..1000 ms, found {self.kafka_linger_ms}")
        if not self.audit_days > 0:
            raise SettingsError(f"WF_INTAKE_AUDIT_DAYS must be positive, found {self.audit_days}")
        if not 0 < self.anon_rate_per_s <= 10_000:
            raise SettingsError(f"WF_INTAKE_ANON_RATE must be in (0, 10000] refused requests a second, found {self.anon_rate_per_s}")
        if not 0.5 <= self.claim_lease_s <= 60:
            raise SettingsError(f"WF_INTAKE_CLAIM_LEASE_S must be in [0.5, 60] seconds, found {self.claim_lease_s}")

    @property
    def claim_renew_s(self) -> float:
        """Seconds between two renewals of the claims this intake holds: five per lease, so a renewal or two may fail.

        >>> IntakeSettings().claim_renew_s
        1.0
        """
        return self.claim_lease_s / 5


_ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "WF_INTAKE_HOST": ("host", str),
    "WF_INTAKE_PORT": ("port", int),
    "WF_INTAKE_SOURCES": ("sources", str),
    "WF_INTAKE_ID_TTL_S": ("id_ttl_s", int),
    "WF_INTAKE_KAFKA_TIMEOUT_S": ("kafka_timeout_s", float),
    "WF_INTAKE_KAFKA_LINGER_MS": ("kafka_linger_ms", int),
    "WF_INTAKE_AUDIT_DAYS": ("audit_days", float),
    "WF_INTAKE_STAGE_TIMING": ("stage_timing", _flag),
    "WF_INTAKE_ANON_RATE": ("anon_rate_per_s", float),
    "WF_INTAKE_CLAIM_LEASE_S": ("claim_lease_s", float),
}


def load_intake_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> IntakeSettings:
    """Build :class:`IntakeSettings` from the environment, then apply ``overrides``.

    >>> s = load_intake_settings({"WF_INTAKE_PORT": "9000", "WF_TOPIC_PREFIX": "city"})
    >>> s.port, s.base.topic_prefix
    (9000, 'city')
    >>> load_intake_settings({"WF_INTAKE_ID_TTL_S": "60"})
    Traceback (most recent call last):
    ...
    streams.runtime.settings.SettingsError: WF_INTAKE_ID_TTL_S must be at least 86400 (a day of retries), found 60
    """
    env = os.environ if environ is None else environ
    values = read_env(_ENV, env, SettingsError)
    values.setdefault("base", load_settings(env))
    values.update(overrides)
    return IntakeSettings(**values)  # type: ignore[arg-type]  # read_env's values are typed object; each was cast for its field by _ENV
