"""Latency of a partner's webhook: an alert appended to ``P:alerts`` to the receiver's handler.

    python bench/feed_latency.py [--alerts 50]

Needs the stack's Redis (``python -m infra.stack up``; ``WF_REDIS_PORT``). Starts a local receiver (an aiohttp
server on 127.0.0.1, answering 200) and one gateway (``python -m gateway``) whose SEPTA
agreement has ``webhook_url`` pointing at it, the tests' settings
(``tests/gateway/feeds/test_webhooks.py``). Publishes ``--alerts`` alerts touching the
Lansdale station zone one at a time, waiting for each delivery, and prints the median,
the 95th percentile and the maximum of publish-to-receipt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.gateway.feeds.receiver import Receiver, wait_for
from tests.gateway.feeds.test_webhooks import agreements_file, feed_env, inside
from tests.gateway.live import REDIS_URL, GatewayProcess, publish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--alerts", type=int, default=50, help="alerts published, one at a time (default 50)")
    args = p.parse_args(argv)
    rcv = Receiver().start()
    tmp = Path(tempfile.mkdtemp())
    g = GatewayProcess(f"bench{int(time.time())}", env_extra=feed_env(agreements_file(tmp, rcv.url))).start(tmp)
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    lat = []
    try:
        for n in range(args.alerts):
            t = time.time()
            publish(r, g.prefix, inside(f"lat-{n}"))
            wait_for(lambda n=n: len(rcv.delivered()) == n + 1, what=f"delivery {n + 1}")
            lat.append(rcv.delivered()[-1].at - t)
            time.sleep(0.02)
    finally:
        g.stop()
        rcv.stop()
        r.close()
    lat.sort()
    p95 = lat[max(0, int(0.95 * len(lat)) - 1)]
    print(f"{len(lat)} alerts: median {1000 * statistics.median(lat):.1f} ms, p95 {1000 * p95:.1f} ms, max {1000 * lat[-1]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
