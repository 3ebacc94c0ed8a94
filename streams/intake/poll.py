"""Follow an open-data portal's live 911 calls (a Socrata SODA dataset) into Kafka, exactly once.

    python -m streams.intake.poll https://data.seattle.gov/resource/kzjm-xkqj.json --mapping seattle-fire-soda
    python -m streams.intake.poll URL --mapping my-city.toml --cursor datetime --lookback 1800 --interval 120
    python -m streams.intake.poll URL --mapping seattle-fire-soda --once --dry-run

Wiring only (see :mod:`streams.intake.poller` for what a poll does and
docs/sources.md, "Following an open-data feed"). Kafka, Redis and the
prefixes come from the ``WF_*`` variables (:func:`streams.runtime.settings.load_settings`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from streams.ingest.mapping import Mapping, MappingError, builtin_mappings, load_mapping
from streams.ingest.schema import Event
from streams.intake.feedstate import FeedError
from streams.intake.poller import FeedConfig, MemoryStore, Poller, PollError, RedisStore, SodaClient, serve_metrics
from streams.intake.publish import DeadLetter, KafkaUnavailable, Publisher
from streams.intake.socrata import UPDATED_AT, QueryError, floating, resource_url
from streams.runtime.settings import SettingsError, load_settings

log = logging.getLogger(__name__)


def _mapping(text: str) -> Mapping:
    """A mapping file, or a built-in mapping's name; for argparse."""
    if not Path(text).exists() and text in builtin_mappings():
        return builtin_mappings()[text]
    try:
        return load_mapping(text)
    except MappingError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or name a built-in mapping: {', '.join(builtin_mappings())})") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    if text in ("0", "0.0"):
        return 0.0
    return _positive(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams.intake.poll",
        description="Follow a Socrata (SODA) dataset of 911 calls live: read new rows every --interval, map them with a source "
        "mapping, send each call once to Kafka ({prefix}.calls, .incident-updates; refused rows to .deadletter), keep the "
        "checkpoint in Redis ({prefix}:intake:poll:NAME:checkpoint).",
        epilog="Kafka, Redis and the prefixes come from WF_KAFKA_BOOTSTRAP, WF_REDIS_URL, WF_TOPIC_PREFIX, WF_REDIS_PREFIX "
        "(docs/operations.md). Status: the Redis hash {prefix}:intake:poll:NAME and --metrics-port. See docs/sources.md, "
        "'Following an open-data feed'.",
    )
    p.add_argument("url", help="the dataset's API URL (https://HOST/resource/xxxx-xxxx.json) or its portal page")
    p.add_argument("--mapping", type=_mapping, required=True, help="a source mapping (TOML file) or a built-in name (seattle-fire-soda)")
    p.add_argument("--name", default=None, help="the feed's name in keys, metrics and the dead-letter origin (default: the mapping's)")
    p.add_argument(
        "--cursor",
        default=UPDATED_AT,
        help="the field read incrementally: ':updated_at' (default: when a row was published or edited; catches late and edited rows) "
        "or the time column, for a dataset whose system fields are not reliable",
    )
    p.add_argument(
        "--time-column", default=None, help="the dataset's call time field, the --since floor (default: the mapping's received_at)"
    )
    p.add_argument(
        "--since",
        default=None,
        help="first start only: read calls from this time (ISO 8601; without an offset, the dataset's own wall time; "
        "default: one hour before the start). A checkpoint, once written, wins",
    )
    p.add_argument(
        "--lookback",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="re-read this much before the checkpoint each poll, for rows published late; re-read rows are recognised by id (default 600)",
    )
    p.add_argument("--interval", type=_positive, default=60.0, metavar="SECONDS", help="seconds from one poll to the next (default 60)")
    p.add_argument("--page-size", type=int, default=1000, help="rows per request ($limit; default 1000)")
    p.add_argument(
        "--memory-hours",
        type=_positive,
        default=48.0,
        help="hours of sent ids remembered, by call time, to recognise re-reads (default 48)",
    )
    p.add_argument("--unhealthy-after", type=int, default=5, help="failures in a row after which the status says failing (default 5)")
    p.add_argument("--app-token-env", default=None, metavar="VAR", help="environment variable holding a Socrata app token (X-App-Token)")
    p.add_argument("--timezone", default=None, help="IANA zone of the dataset's floating times, over the mapping's")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus text on http://127.0.0.1:PORT/metrics")
    p.add_argument("--once", action="store_true", help="poll once, then exit")
    p.add_argument("--dry-run", action="store_true", help="poll once, send nothing, keep no checkpoint; print what would be sent")
    p.add_argument("--reset", action="store_true", help="forget the checkpoint and the ids sent, and start again from --since")
    return p


def since_text(text: str | None, zone: str | None, now: float) -> str:
    """``--since`` as the dataset's floating wall time (an offset converted to ``zone``); default one hour before ``now``.

    >>> since_text("2024-01-01T08:05:00Z", "America/Los_Angeles", 0.0), since_text("2024-01-01T00:05", None, 0.0)
    ('2024-01-01T00:05:00.000', '2024-01-01T00:05:00.000')
    """
    if text is None:
        return floating(now - 3600.0, zone)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"--since {text!r}: expected ISO 8601 such as 2024-01-01T00:00 or 2024-01-01T08:00Z") from None
    if dt.tzinfo is None:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"
    return floating(dt.astimezone(UTC).timestamp(), zone)


class _Printer:
    """The sink of a dry run: events and dead letters printed, nothing sent."""

    async def send_events(self, events: Sequence[Event]) -> None:
        for e in events:
            print(e.to_json())

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        for d in letters:
            print({"deadletter": d.reason, "detail": d.detail})


async def _main(args: argparse.Namespace) -> int:
    settings = load_settings()
    url = resource_url(args.url)
    mapping: Mapping = args.mapping
    zone = args.timezone or mapping.timezone
    token = None
    if args.app_token_env:
        token = os.environ.get(args.app_token_env)
        if not token:
            raise SettingsError(f"{args.app_token_env}: not set; --app-token-env names the variable holding the Socrata app token")
    config = FeedConfig(
        url=url,
        mapping=mapping,
        name=args.name or mapping.name,
        cursor=args.cursor,
        time_column=args.time_column,
        since=since_text(args.since, zone, time.time()),
        lookback_s=args.lookback,
        page_size=args.page_size,
        interval_s=args.interval,
        memory_s=args.memory_hours * 3600.0,
        unhealthy_after=args.unhealthy_after,
        timezone=args.timezone,
    )
    client = SodaClient(url, app_token=token)
    if args.dry_run:
        poller = Poller(config, client, _Printer(), MemoryStore())
        try:
            await poller.start()
            await poller.poll_once()
        finally:
            await client.close()
        return 0
    from streams.runtime.redisconn import async_client_for

    redis = async_client_for(settings)
    publisher = Publisher(settings.kafka_bootstrap, settings.topic_prefix)
    store = RedisStore(redis, settings.redis_prefix, config.name)
    poller = Poller(config, client, publisher, store)
    runner = None
    try:
        if args.reset:
            await store.reset()
            log.info("poll %s: checkpoint and ids sent forgotten (--reset)", config.name)
        await poller.start()
        if args.metrics_port is not None:
            runner = await serve_metrics(poller.status, args.metrics_port)
        if args.once:
            await poller.poll_once()
        else:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await poller.run(stop)
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.close()
        await publisher.stop()
        await redis.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_main(args))
    except (PollError, QueryError, FeedError, SettingsError, KafkaUnavailable, ValueError) as exc:
        print(f"poll: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
