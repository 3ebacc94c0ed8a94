"""``python -m gateway``: serve the WebSocket feeds, the API and the dashboard until SIGINT/SIGTERM.

Configuration is read from ``WF_GATEWAY_*`` variables (:mod:`gateway.settings`);
``WF_GATEWAY_SECRET`` is required. On SIGTERM every client is closed with
1001 (going away) so that it resumes by id on another gateway, and the audit
log is flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from gateway.agreements import AgreementError
from gateway.audit import AuditLog
from gateway.places import load_places
from gateway.server import Gateway
from gateway.settings import GatewaySettingsError, load_gateway_settings
from gateway.store import Store
from gateway.zones import ZoneError
from streams.runtime.redisconn import describe


async def run(port: int | None) -> int:
    try:
        settings = load_gateway_settings(None, **({"port": port} if port is not None else {}))
    except GatewaySettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    try:
        places = load_places(settings.profile)
    except (OSError, ValueError) as exc:
        print(f"gateway: WF_PROFILE: {exc}", file=sys.stderr)
        return 2
    store = Store.from_settings(settings)
    if not await store.ping():
        print(f"gateway: {describe(settings)} is not answering (start it with: python -m infra.stack up)", file=sys.stderr)
        return 1
    try:
        audit = AuditLog(store.client, settings.redis_prefix, retention_s=settings.audit_days * 86400.0, replicated=store.replicated)
        gateway = Gateway(settings, store, audit, places=places)
    except ZoneError as exc:
        print(f"gateway: zone files: {exc}", file=sys.stderr)
        return 2
    except AgreementError as exc:
        print(f"gateway: data-sharing agreements: {exc}", file=sys.stderr)
        return 2
    except GatewaySettingsError as exc:  # the profile's [basemap]
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    await gateway.start()
    # Thousands of connections make a large, long-lived heap: full collections over it
    # took 43 % of the CPU when 5,000 clients were fed (bench/gateway_fanout.py, py-spy).
    # Startup objects are frozen out of collection and young collections made rarer.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    print(f"gateway: dashboard and API on http://{settings.host}:{gateway.port}/ (WebSocket /ws)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()
    await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=None, help="listen port (default WF_GATEWAY_PORT or 8765; 0 picks a free one)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging level (default INFO)")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    return asyncio.run(run(args.port))


if __name__ == "__main__":
    sys.exit(main())
