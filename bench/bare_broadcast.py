"""The ceiling for :mod:`bench.gateway_fanout`: a bare ``websockets`` broadcast of the alerts stream.

    python bench/bare_broadcast.py --port 9000 --stream wf:alerts

Accepts any WebSocket on any path, sends it ``{"type": "caught_up", "id": ..}``
and then every entry appended to ``--stream`` after start-up, framed as the
gateway frames it (``{"type": "alert", "id": <stream id>, "alert": <the entry's
alert JSON>}``) and sent once to every connection with
:func:`websockets.asyncio.server.broadcast`. Nothing else: no tokens, no roles,
no views, no per-client queue, no audit. It reads Redis the way the gateway's
hub does (``XREAD BLOCK`` from the newest id), so both include the Redis hop,
and it serves with the gateway's connection settings (no compression, the same
keepalive), so the difference between the two is the gateway's own work.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import redis.asyncio as aioredis
from _common import parser
from websockets.asyncio.server import ServerConnection, broadcast, serve

#: the gateway's keepalive default (``WF_GATEWAY_PING_S``)
PING_S = 20.0


async def relay(client: aioredis.Redis, stream: str, connections: set[ServerConnection]) -> None:
    """Broadcast every entry appended to ``stream`` after now, forever."""
    last = await client.xrevrange(stream, count=1)
    position = last[0][0] if last else "0-0"
    while True:
        got = await client.xread({stream: position}, count=500, block=1000)
        for sid, fields in got[0][1] if got else []:
            position = sid
            alert = fields.get("alert")
            if alert is not None:
                # the entry's JSON is embedded as is: no parse, no view, no re-encoding
                broadcast(connections, f'{{"type":"alert","id":"{sid}","alert":{alert}}}')


async def run(port: int, redis_url: str, stream: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    connections: set[ServerConnection] = set()

    async def handle(connection: ServerConnection) -> None:
        connections.add(connection)
        try:
            await connection.send('{"type":"caught_up","id":"0-0"}')
            await connection.wait_closed()
        finally:
            connections.discard(connection)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.create_task(relay(client, stream, connections))
    async with serve(
        handle, "127.0.0.1", port, compression=None, max_queue=4, ping_interval=PING_S, ping_timeout=PING_S, close_timeout=5.0
    ):
        print(f"bare broadcast listening on ws://127.0.0.1:{port}/", file=sys.stderr, flush=True)
        await stop.wait()
    reader.cancel()
    await client.aclose()


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--port", type=int, required=True, help="listen port on 127.0.0.1")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis holding the stream (default %(default)s)")
    p.add_argument("--stream", required=True, help="the alerts stream key to relay, e.g. wf:alerts")
    args = p.parse_args(argv)
    asyncio.run(run(args.port, args.redis_url, args.stream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
