"""Run the HTTP intake: ``python -m streams.intake`` (settings from ``WF_INTAKE_*`` and ``WF_*``; see docs/intake.md)."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from streams.intake.publish import Publisher
from streams.intake.service import Intake, create_app
from streams.intake.settings import load_intake_settings
from streams.intake.sources import SourcesError, load_sources
from streams.runtime.redisconn import async_client_for
from streams.runtime.settings import SettingsError, load_jurisdiction

log = logging.getLogger("streams.intake")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_intake_settings()
        sources = load_sources(settings.sources)
        extent = load_jurisdiction(settings.base)
    except (SettingsError, SourcesError) as exc:
        log.error("%s", exc)
        return 2
    base = settings.base
    intake = Intake(
        settings=settings,
        sources=sources,
        publisher=Publisher(
            base.kafka_bootstrap, base.topic_prefix, timeout_s=settings.kafka_timeout_s, linger_ms=settings.kafka_linger_ms
        ),
        redis=async_client_for(base, decode_responses=True, socket_timeout=5, socket_connect_timeout=5),
        extent=extent,
    )
    log.info(
        "intake on http://%s:%d/v1/events for %d source(s) (%s); topics %s.*, Redis keys %s:intake:*",
        settings.host, settings.port, len(sources), ", ".join(sorted(sources)), base.topic_prefix, base.redis_prefix,
    )  # fmt: skip
    web.run_app(create_app(intake), host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
