"""Worker and replay settings, read from the environment.

Every value has a default that runs the local stack (``infra/stack.py``). A
malformed value raises :class:`SettingsError` naming the variable, what it
found and what it expected. Settings are built by :func:`load_settings`, never
at import time, so tests can pass their own.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.detection.checkpoint import MIN_KEY_BYTES, check_key
from streams.detection.parts import PARTS, check_parts, detection_parts, part_set
from streams.ingest.schema import Jurisdiction
from streams.jurisdiction import Profile, ProfileError, default_profile, load_profile

log = logging.getLogger(__name__)

ROLES = ("count", "detect")

#: Faust's ``stream_buffer_maxsize`` (its default, which the worker keeps) minus the size at
#: which it pauses a partition (``maxsize / 1.25``): what one fetch may deliver without blocking.
MAX_POLL_RECORDS_LIMIT = 4096 - int(4096 / 1.25)

#: Most committers a worker runs (each is a process: a few per core is plenty).
MAX_COMMITTERS = 8

#: Where the detectors' checkpoint key is kept when ``WF_CHECKPOINT_KEY`` is not set (made on first use).
DEFAULT_CHECKPOINT_KEY_FILE = "~/.config/watchfloor/checkpoint.key"


def _roles(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip())


def _flag(text: str) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case).

    >>> _flag("On"), _flag("0")
    (True, False)
    """
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/true/yes/on or 0/false/no/off")


class SettingsError(ValueError):
    """An environment variable holds a value the worker cannot use."""


def kafka_servers(text: str) -> str:
    """``WF_KAFKA_BOOTSTRAP``: one ``host:port`` or a comma-separated list of them (a cluster's brokers), spaces dropped.

    Every Kafka client of the project (Faust, aiokafka, kafka-python) takes the result as it is.

    >>> kafka_servers("10.0.0.5:9092, 10.0.0.6:9092,10.0.0.7:9092")
    '10.0.0.5:9092,10.0.0.6:9092,10.0.0.7:9092'
    >>> kafka_servers("10.0.0.5")
    Traceback (most recent call last):
    ...
    ValueError: '10.0.0.5' is not host:port (a broker's address, like 10.0.0.5:9092)
    """
    out = []
    for item in (t.strip() for t in text.split(",")):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port (a broker's address, like 10.0.0.5:9092)")
        out.append(item)
    return ",".join(out)


#: The Sentinel service name (``WF_REDIS_SENTINEL_SERVICE``) when unset: the primary the Sentinels monitor.
DEFAULT_SENTINEL_SERVICE = "watchfloor"


def sentinel_addresses(text: str) -> tuple[tuple[str, int], ...]:
    """``WF_REDIS_SENTINELS``: comma-separated ``host:port`` of the Redis Sentinels (empty: none, ``WF_REDIS_URL`` is used as is).

    >>> sentinel_addresses("10.0.0.5:26379, 10.0.0.6:26379,[::1]:26380")
    (('10.0.0.5', 26379), ('10.0.0.6', 26379), ('::1', 26380))
    >>> sentinel_addresses("")
    ()
    >>> sentinel_addresses("10.0.0.5")
    Traceback (most recent call last):
    ...
    ValueError: '10.0.0.5' is not host:port (a Sentinel's address, like 10.0.0.5:26379)
    """
    out: list[tuple[str, int]] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port (a Sentinel's address, like 10.0.0.5:26379)")
        out.append((host, int(port)))
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    #: One ``host:port`` or a comma-separated list (a cluster's brokers): :func:`kafka_servers`.
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Replicas of each topic the project creates, Faust's own included (``WF_KAFKA_REPLICATION_FACTOR``; 3 in a cluster).
    kafka_replication_factor: int = 1
    #: ``min.insync.replicas`` of those topics (``WF_KAFKA_MIN_INSYNC_REPLICAS``; 2 of 3 in a cluster).
    kafka_min_insync_replicas: int = 1
    #: Seconds a worker may go without a heartbeat before its consumer group gives its partitions to another
    #: (``WF_KAFKA_SESSION_TIMEOUT_S``): how long a killed worker's calls or detector input wait for the survivor.
    #: Faust's default, 60 s, is a minute without detection on a 911 floor; brokers accept 6 s to 30 min.
    kafka_session_timeout_s: float = 15.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Redis Sentinels (``WF_REDIS_SENTINELS``, ``host:port,...``): when set, the primary is the one they name for
    #: ``redis_sentinel_service`` and clients follow a failover; ``redis_url`` then gives only the db and password.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_service: str = DEFAULT_SENTINEL_SERVICE
    #: Topic names are ``{topic_prefix}.calls`` etc.; tests use unique prefixes.
    topic_prefix: str = "wf"
    #: Every Redis key starts with ``{redis_prefix}:``.
    redis_prefix: str = "wf"
    app_id: str = "watchfloor-worker"
    partitions: int = 4
    #: Finest H3 resolution counted; ``parent_levels`` coarser ones are counted too.
    h3_resolution: int = 8
    h3_parent_levels: int = 2
    #: Events older than their partition's event-time watermark minus this are late.
    allowed_lateness_s: int = 15 * 60
    #: Buckets and call state older than the watermark minus this are deleted.
    retention_s: int = 8 * 24 * 3600
    #: A call with no "closed" update stops counting as open after this long.
    open_timeout_s: int = 6 * 3600
    jurisdiction: Jurisdiction | None = None
    #: Path of the jurisdiction profile TOML (``WF_PROFILE``; see docs/jurisdiction.md), read by :func:`load_jurisdiction`.
    profile: str | None = None
    batch_size: int = 1000
    batch_within_s: float = 0.05
    web_port: int = 6066
    #: Which agents this worker runs: "count" (calls and updates into Redis; scale
    #: out by partitions) and/or "detect" (the detectors; one instance per deployment).
    roles: tuple[str, ...] = ("count", "detect")
    #: The parts of the detection stage this worker runs (``WF_DETECTION_PARTS``, comma-separated; see
    #: :mod:`streams.detection.shards`): all four by default. A worker running a subset is a detect-only worker of its
    #: own consumer group (it reads every detector-input message) with its own checkpoint keys (:attr:`detection_set`).
    detection_parts: tuple[str, ...] = PARTS
    #: Seconds between two checkpoints of the detectors (alerts are written at once;
    #: a crash replays at most this much detector input).
    detector_checkpoint_s: float = 5.0
    #: Plan the counting agent's batches in a child process (see ``streams.counting.planproc``):
    #: Faust's per-record work and the planning then run on two cores.
    plan_process: bool = True
    #: Deliver Faust's records without four tasks per record (see ``streams.faustext.fastpath``).
    faust_fastpath: bool = True
    #: Records one Kafka fetch hands Faust at most (Faust's ``broker_max_poll_records``).
    #: Faust pauses a partition once its agent's buffer holds 4/5 of its 4,096 records,
    #: on that partition's next delivery, but still delivers what it fetched: what goes past
    #: the 820 left is delivered one blocked record at a time (a task and a wait each).
    #: Unbounded, one fetch is up to 1 MB per partition (some 3,000 records). No delivery
    #: blocks while this times the partitions a worker reads (2 topics x 4) stays within 820.
    max_poll_records: int = 100
    #: Committers of the counting agent (each with a plan process of its own, see
    #: ``streams.counting.planproc``): a worker's partitions are dealt among them, and each commits
    #: its batches while the others plan theirs.
    committers: int = 2
    #: Secret that signs the detectors' checkpoints (``WF_CHECKPOINT_KEY``, at least 32 bytes;
    #: see :mod:`streams.detection.checkpoint`). None: the key in ``checkpoint_key_file``.
    checkpoint_key: str | None = field(default=None, repr=False)
    #: File holding the checkpoint key when ``checkpoint_key`` is None; made with a random key on first use.
    checkpoint_key_file: str = DEFAULT_CHECKPOINT_KEY_FILE
    #: Stamp every call as it passes the stages from the counting agent to the alerts' stream, into the Redis list
    #: ``P:stage-timing`` (``WF_STAGE_TIMING``; see :mod:`streams.detection.stages`, read by ``bench/latency.py``).
    stage_timing: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.h3_resolution <= 15:
            raise SettingsError(f"h3_resolution must be 0..15, found {self.h3_resolution}")
        if not 0 <= self.h3_parent_levels <= self.h3_resolution:
            raise SettingsError(f"h3_parent_levels must be 0..h3_resolution ({self.h3_resolution}), found {self.h3_parent_levels}")
        if not 1 <= self.kafka_min_insync_replicas <= self.kafka_replication_factor:
            raise SettingsError(
                f"kafka_min_insync_replicas must be 1..kafka_replication_factor ({self.kafka_replication_factor}), found "
                f"{self.kafka_min_insync_replicas}: above it no write could be acknowledged (2 of 3 is usual)"
            )
        if not 6 <= self.kafka_session_timeout_s <= 1800:
            raise SettingsError(
                f"WF_KAFKA_SESSION_TIMEOUT_S must be 6..1800 seconds (the brokers' group.min/max.session.timeout.ms), "
                f"found {self.kafka_session_timeout_s}"
            )
        if self.partitions < 1:
            raise SettingsError(f"partitions must be >= 1, found {self.partitions}")
        if not 0 <= self.allowed_lateness_s < self.retention_s:
            raise SettingsError(
                f"allowed_lateness_s ({self.allowed_lateness_s}) must be >= 0 and below retention_s ({self.retention_s}): "
                "a late event must never land in a bucket that has already expired"
            )
        if self.retention_s < 24 * 3600:
            raise SettingsError(f"retention_s must cover the 24 h rolling window, found {self.retention_s}")
        unknown = set(self.roles) - set(ROLES)
        if unknown or not self.roles:
            raise SettingsError(f"roles must be a non-empty subset of {', '.join(ROLES)}, found {', '.join(self.roles) or 'none'}")
        try:
            parts = check_parts(self.detection_parts)
        except ValueError as exc:
            raise SettingsError(f"WF_DETECTION_PARTS: {exc}") from None
        object.__setattr__(self, "detection_parts", parts)  # in the stage's order: one name per set of parts
        if parts != PARTS and tuple(self.roles) != ("detect",):
            raise SettingsError(
                f"WF_DETECTION_PARTS ({','.join(parts)}) is a share of the detection stage, which only a detect-only worker "
                f"runs; found roles {','.join(self.roles)}: set WF_ROLES=detect (and run the counting on another worker), "
                "or leave WF_DETECTION_PARTS unset"
            )
        if self.batch_size < 1 or self.batch_within_s <= 0:
            raise SettingsError(f"batch_size must be >= 1 and batch_within_s > 0, found {self.batch_size}, {self.batch_within_s}")
        if not 1 <= self.max_poll_records <= MAX_POLL_RECORDS_LIMIT:
            raise SettingsError(
                f"max_poll_records must be 1..{MAX_POLL_RECORDS_LIMIT} (the room Faust keeps in an agent's buffer "
                f"above the mark where it pauses fetching), found {self.max_poll_records}"
            )
        if not 1 <= self.committers <= MAX_COMMITTERS:
            raise SettingsError(f"committers must be 1..{MAX_COMMITTERS}, found {self.committers}")
        if not 0 < self.detector_checkpoint_s <= 300:
            raise SettingsError(f"detector_checkpoint_s must be in (0, 300] seconds, found {self.detector_checkpoint_s}")
        if self.checkpoint_key is not None:
            try:
                check_key(self.checkpoint_key.encode(), "WF_CHECKPOINT_KEY")
            except ValueError as exc:
                raise SettingsError(f"{exc}; make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'") from None

    @property
    def detection_set(self) -> str:
        """The name of :attr:`detection_parts` in key and consumer-group names: '' for the whole stage, else the parts joined by '_'.

        >>> load_settings({"WF_ROLES": "detect", "WF_DETECTION_PARTS": "forecaster,surge"}).detection_set
        'surge_forecaster'
        >>> load_settings().detection_set
        ''
        """
        return part_set(self.detection_parts)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Counted H3 resolutions, finest first."""
        return tuple(range(self.h3_resolution, self.h3_resolution - self.h3_parent_levels - 1, -1))


_ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "WF_KAFKA_BOOTSTRAP": ("kafka_bootstrap", kafka_servers),
    "WF_KAFKA_REPLICATION_FACTOR": ("kafka_replication_factor", int),
    "WF_KAFKA_MIN_INSYNC_REPLICAS": ("kafka_min_insync_replicas", int),
    "WF_KAFKA_SESSION_TIMEOUT_S": ("kafka_session_timeout_s", float),
    "WF_REDIS_URL": ("redis_url", str),
    "WF_REDIS_SENTINELS": ("redis_sentinels", sentinel_addresses),
    "WF_REDIS_SENTINEL_SERVICE": ("redis_sentinel_service", str),
    "WF_TOPIC_PREFIX": ("topic_prefix", str),
    "WF_REDIS_PREFIX": ("redis_prefix", str),
    "WF_APP_ID": ("app_id", str),
    "WF_PARTITIONS": ("partitions", int),
    "WF_H3_RESOLUTION": ("h3_resolution", int),
    "WF_H3_PARENT_LEVELS": ("h3_parent_levels", int),
    "WF_ALLOWED_LATENESS_S": ("allowed_lateness_s", int),
    "WF_RETENTION_S": ("retention_s", int),
    "WF_OPEN_TIMEOUT_S": ("open_timeout_s", int),
    "WF_JURISDICTION": ("jurisdiction", Jurisdiction.parse),
    "WF_PROFILE": ("profile", str),
    "WF_BATCH_SIZE": ("batch_size", int),
    "WF_BATCH_WITHIN_S": ("batch_within_s", float),
    "WF_WEB_PORT": ("web_port", int),
    "WF_ROLES": ("roles", _roles),
    "WF_DETECTION_PARTS": ("detection_parts", detection_parts),
    "WF_DETECTOR_CHECKPOINT_S": ("detector_checkpoint_s", float),
    "WF_PLAN_PROCESS": ("plan_process", _flag),
    "WF_FAUST_FASTPATH": ("faust_fastpath", _flag),
    "WF_MAX_POLL_RECORDS": ("max_poll_records", int),
    "WF_COMMITTERS": ("committers", int),
    "WF_CHECKPOINT_KEY": ("checkpoint_key", str),
    "WF_CHECKPOINT_KEY_FILE": ("checkpoint_key_file", str),
    "WF_STAGE_TIMING": ("stage_timing", _flag),
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build :class:`Settings` from ``WF_*`` variables, then apply ``overrides``.

    >>> load_settings({"WF_H3_RESOLUTION": "9"}).resolutions
    (9, 8, 7)
    >>> load_settings({"WF_PARTITIONS": "four"})
    Traceback (most recent call last):
    ...
    streams.runtime.settings.SettingsError: WF_PARTITIONS: cannot read 'four' as int (invalid literal for int() with base 10: 'four')
    >>> load_settings({"WF_ROLES": "detect", "WF_DETECTION_PARTS": ""})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.runtime.settings.SettingsError: WF_DETECTION_PARTS: a detection worker needs at least one part of surge, ...
    """
    env = os.environ if environ is None else environ
    values = read_env(_ENV, env, SettingsError)
    if env.get("WF_CHECKPOINT_KEY") == "":
        values["checkpoint_key"] = ""  # set, but empty: refused like any short key, not taken for unset
    if env.get("WF_DETECTION_PARTS", "x").strip() == "":
        values["detection_parts"] = ()  # set, but empty: a worker with no part of the stage is refused, not run whole
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]  # read_env's values are typed object; each was cast for its field by _ENV


def load_jurisdiction(settings: Settings) -> Profile:
    """The jurisdiction profile of ``settings``: the file ``WF_PROFILE`` names, or :func:`default_profile` when unset.

    ``WF_JURISDICTION`` (a box) stays as a shorthand: without a profile it is the
    default profile's box; with a profile that has no ``[boundary]`` it becomes that
    profile's box. A profile that states a ``[boundary]`` and a ``WF_JURISDICTION``
    as well is a conflict and is refused (SettingsError), rather than one silently
    overriding the other: unset ``WF_JURISDICTION`` or drop the ``[boundary]``.
    A profile that cannot be read raises SettingsError naming ``WF_PROFILE``.

    >>> load_jurisdiction(load_settings({})).id
    'unnamed'
    >>> load_jurisdiction(load_settings({"WF_JURISDICTION": "39.9,-75.7,40.5,-75.0"})).contains(41.0, -75.3)
    False
    """
    if settings.profile is None:
        profile = default_profile()
    else:
        try:
            profile = load_profile(settings.profile)
        except ProfileError as exc:
            raise SettingsError(f"WF_PROFILE: {exc}") from None
    if settings.jurisdiction is None:
        return profile
    if profile.boundary is not None or profile.box is not None:
        raise SettingsError(
            f"WF_JURISDICTION ({settings.jurisdiction}) and the [boundary] of WF_PROFILE ({profile.path}) both set the jurisdiction's "
            "extent; unset WF_JURISDICTION (the profile's boundary is the precise one) or remove [boundary] from the profile"
        )
    return dataclasses.replace(profile, box=settings.jurisdiction)


def checkpoint_key(settings: Settings) -> bytes:
    """The key that signs the detectors' checkpoints; logs at INFO where it came from (never the key).

    ``settings.checkpoint_key`` (``WF_CHECKPOINT_KEY``) when set; otherwise the
    contents of ``settings.checkpoint_key_file`` (``WF_CHECKPOINT_KEY_FILE``),
    which is made first, with a random key and mode 0600, when it does not
    exist: one machine's workers, demo and tests then share a key with no
    setup. Raises :class:`SettingsError` naming the file when it holds fewer
    than 32 bytes.
    """
    if settings.checkpoint_key is not None:
        log.info("the detectors' checkpoints are signed with the key in WF_CHECKPOINT_KEY")
        return settings.checkpoint_key.encode()
    path = Path(settings.checkpoint_key_file).expanduser()
    made = _make_key_file(path)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"WF_CHECKPOINT_KEY_FILE: cannot read {path} ({exc}); set WF_CHECKPOINT_KEY instead") from exc
    try:
        check_key(key, f"WF_CHECKPOINT_KEY_FILE ({path})")
    except ValueError as exc:
        raise SettingsError(f"{exc}; delete the file to have a new key made, or set WF_CHECKPOINT_KEY") from None
    made_now = "; the file was made now, with a random key" if made else ""
    log.info("the detectors' checkpoints are signed with the key in %s (WF_CHECKPOINT_KEY is unset%s)", path, made_now)
    return key


def _make_key_file(path: Path) -> bool:
    """Write a random key to ``path`` (mode 0600) unless it exists; whether it was made here.

    The key is written to a temporary file beside it and linked into place,
    so a worker starting at the same time reads either no file or the whole key.
    """
    if path.exists():
        return False
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint-key-")  # mode 0600
    except OSError as exc:
        raise SettingsError(f"WF_CHECKPOINT_KEY_FILE: cannot make {path} ({exc}); set WF_CHECKPOINT_KEY instead") from exc
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(2 * MIN_KEY_BYTES) + "\n")
        os.link(tmp, path)
    except FileExistsError:
        return False  # made meanwhile by another process
    finally:
        os.unlink(tmp)
    return True


def read_env(
    table: Mapping[str, tuple[str, Callable[[str], object]]], env: Mapping[str, str], error: type[ValueError]
) -> dict[str, object]:
    """The set variables of ``table`` (``VAR -> (field, cast)``) cast, by field name; ``error`` naming the variable otherwise."""
    values: dict[str, object] = {}
    for var, (name, cast) in table.items():
        text = env.get(var)
        if text is None or text == "":
            continue
        try:
            values[name] = cast(text)
        except ValueError as exc:
            kind = getattr(cast, "__name__", "value")
            raise error(f"{var}: cannot read {text!r} as {kind} ({exc})") from None
    return values
