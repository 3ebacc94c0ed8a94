"""Delivery latency of a broadcast alert to many WebSocket clients: the gateway next to a bare broadcast.

    python bench/gateway_fanout.py [--clients 1000,5000] [--alerts 50] [--intervals 0.5,0.1]

For each client count N, in the same run and against the same Redis, three servers:

1. the gateway (``python -m gateway``), every client a supervisor,
2. the gateway with a mix of roles: 20% supervisors, 80% partners (transit or
   school, by zone kind) spread over the configured zones (``infra/zones``),
   so every alert is viewed once per kind of client (:mod:`gateway.policy`),
3. a bare ``websockets`` broadcast of the same stream (``bench/bare_broadcast.py``):
   no tokens, views, queues or audit, the ceiling on this machine.

Each server runs in its own process; the N clients run in this one (asyncio and
the ``websockets`` asyncio client), so on a two-core machine the server has a
core and the clients the other. The clients connect ``--handshakes`` at a time
and wait for ``caught_up``; the server's RSS (``/proc/<pid>/status`` VmRSS) is
read before the first client and after the last: the difference over N is the
memory per client. Then ``--alerts`` alerts are appended to the server's
``P:alerts`` stream, one every ``--intervals`` s (one phase per interval, on the
same connections), each touching one cell of every configured zone so that
every client may see it. A frame's latency is the time
it reached a client minus the time just before its XADD (one clock: the
publisher runs in the clients' process). Every (client, alert) pair must
arrive once; missing and duplicated frames are reported.

Prints a table and writes JSON to ``--json`` (``out/bench/gateway_fanout.json``).
Progress goes to stderr. Processes are stopped and the Redis keys deleted at
the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.asyncio as aioredis
from _common import ROOT, add_json, cpu_s, parser, rss_mib
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from detectors.types import Alert, AlertKind, AlertState
from gateway.agreements import DEFAULT_AGREEMENTS, load_agreements
from gateway.settings import DEFAULT_ZONES
from gateway.tokens import issue
from gateway.zones import Zone, load_zone_files
from infra.stack import terminate

SECRET = secrets.token_urlsafe(48).encode()
#: --servers keys and the names the table shows
SERVERS = {"gateway": "gateway, supervisors", "gateway-mixed": "gateway, mixed roles", "bare": "bare websockets"}
#: the gateway frames an alert as '{"type":"alert","id":"<stream id>",...' (gateway.protocol.frame)
ALERT_HEAD = '{"type":"alert","id":"'
CAUGHT_UP_HEAD = '{"type":"caught_up"'
WELCOME_HEAD = '{"type":"welcome"'
#: share of supervisors in the mixed run; the rest are partners
MIXED_SUPERVISORS = 0.2
DEFAULT_JSON = ROOT / "out" / "bench" / "gateway_fanout.json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- server processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A server under test: started, measured (RSS, CPU time) and stopped by pid."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.port}.log"

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.argv, "--port", str(self.port)], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self  # both servers listen only once they are ready to serve
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not accept connections on port {self.port} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def rss_mib(self) -> float:
        """Resident memory of the server now, MiB."""
        assert self.proc is not None
        return rss_mib(self.proc.pid)

    def cpu_s(self) -> float:
        """User + system CPU seconds the server has used so far."""
        assert self.proc is not None
        return cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 20)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def gateway_server(prefix: str, redis_url: str, queue: int, workdir: Path) -> ServerProcess:
    env = {
        **os.environ,
        "WF_GATEWAY_SECRET": SECRET.decode(),
        "WF_REDIS_URL": redis_url,
        "WF_REDIS_PREFIX": prefix,
        # no activity-count frames during the measurement
        "WF_GATEWAY_COUNTS_S": "3600",
        "WF_GATEWAY_QUEUE": str(queue),
        "PYTHONUNBUFFERED": "1",
    }
    return ServerProcess("gateway", [sys.executable, "-m", "gateway"], env, workdir)


def bare_server(prefix: str, redis_url: str, workdir: Path) -> ServerProcess:
    argv = [sys.executable, str(ROOT / "bench" / "bare_broadcast.py"), "--redis-url", redis_url, "--stream", f"{prefix}:alerts"]
    return ServerProcess("bare broadcast", argv, {**os.environ, "PYTHONUNBUFFERED": "1"}, workdir)


# ---------------------------------------------------------------------- clients


def default_zones() -> list[Zone]:
    """The partners' zones the gateway loads by default (``infra/zones``), by id."""
    return sorted(load_zone_files(sorted(DEFAULT_ZONES.glob("*.geojson"))).values(), key=lambda z: z.id)


AGREEMENTS = load_agreements(DEFAULT_AGREEMENTS)


def client_tokens(n: int, mixed: bool, zones: list[Zone], ttl_s: int = 7200) -> list[str]:
    """N tokens: all supervisors, or MIXED_SUPERVISORS of them (the first ones) and partners round-robin over ``zones``."""
    tokens = []
    supervisors = n if not mixed else round(n * MIXED_SUPERVISORS)
    for i in range(n):
        if i < supervisors:
            tokens.append(issue(SECRET, subject=f"bench-sup-{i}", role="supervisor", agency="Montgomery County 911", ttl_s=ttl_s))
        else:
            z = zones[i % len(zones)]
            a = next(a for a in AGREEMENTS.values() if z.id in a.zones)  # partner tokens name their agreement
            tokens.append(
                issue(SECRET, subject=f"bench-{a.role}-{i}", role=a.role, agency=a.agency, zones=(z.id,), ttl_s=ttl_s, agreement=a.id)
            )
    return tokens


@dataclass
class Fleet:
    """N clients in this process and what they received; the reader loop stays tiny (it is part of what is measured)."""

    n: int
    connections: list[ClientConnection] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    #: (perf_counter at receipt, client index, the frame's first characters) per alert frame
    arrivals: list[tuple[float, int, str]] = field(default_factory=list)
    other_frames: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    closed: Counter = field(default_factory=Counter)
    settled: int = 0
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        """One client is either caught up or failed."""
        self.settled += 1
        if self.settled >= self.n:
            self.all_settled.set()

    @property
    def caught_up(self) -> int:
        return self.settled - sum(self.failures.values())


async def run_client(index: int, uri: str, fleet: Fleet, handshakes: asyncio.Semaphore, open_timeout: float) -> None:
    async with handshakes:
        try:
            ws = await connect(uri, open_timeout=open_timeout, ping_interval=None, compression=None, max_size=None)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            fleet.failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            fleet.settle()
            return
    fleet.connections.append(ws)
    arrivals, caught = fleet.arrivals, False
    perf = time.perf_counter
    try:
        async for message in ws:
            t = perf()
            if message.startswith(ALERT_HEAD):
                arrivals.append((t, index, message[22:64]))
            elif message.startswith(CAUGHT_UP_HEAD) and not caught:
                caught = True
                fleet.settle()
            elif not message.startswith(WELCOME_HEAD):
                fleet.other_frames[json.loads(message).get("type", "?")] += 1
    except ConnectionClosed as exc:
        fleet.closed[f"{exc.rcvd.code if exc.rcvd else 'no close frame'}"] += 1
    finally:
        if not caught:
            fleet.failures["closed before caught_up"] += 1
            fleet.settle()


async def close_all(fleet: Fleet) -> None:
    await asyncio.gather(*(ws.close() for ws in fleet.connections), return_exceptions=True)
    for t in fleet.tasks:
        t.cancel()
    await asyncio.gather(*fleet.tasks, return_exceptions=True)


# ---------------------------------------------------------------------- one measurement


def alert_json(i: int, run: str, cells: tuple[str, ...]) -> str:
    now = time.time()
    alert = Alert(
        id=f"surge:{cells[0]}:{run}-{i}",
        kind=AlertKind.SURGE,
        state=AlertState.OPEN,
        started_at=now - 600,
        at=now,
        cells=cells,
        window_min=15,
        observed=24,
        expected=3.5,
        score=11.2,
        p_value=10**-11.2,
        categories={"TRAFFIC": 15, "EMS": 6, "FIRE": 3},
        model="surge-poisson-scan",
        model_version="1.0",
        reason=f"24 calls in 15 min in {len(cells)} cells around {cells[0]}, 3.5 expected (benchmark alert {i})",
    )
    return json.dumps(alert.to_json())


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def measure(
    server: ServerProcess, tokens: list[str] | None, stream: str, args: argparse.Namespace, cells: tuple[str, ...]
) -> list[dict]:
    """Connect N clients to the running ``server``, publish the alerts at each interval; one row per interval."""
    n = len(tokens) if tokens is not None else args.n
    base = f"ws://127.0.0.1:{server.port}/ws"
    rss_before = server.rss_mib()
    fleet = Fleet(n)
    handshakes = asyncio.Semaphore(args.handshakes)
    t0 = time.perf_counter()
    for i in range(n):
        uri = base if tokens is None else f"{base}?token={tokens[i]}"
        fleet.tasks.append(asyncio.create_task(run_client(i, uri, fleet, handshakes, args.open_timeout)))
    progress = asyncio.create_task(_report_connecting(fleet, t0))
    try:
        await asyncio.wait_for(fleet.all_settled.wait(), args.connect_timeout)
    except TimeoutError:
        log(f"  only {fleet.settled:,} of {n:,} clients settled within {args.connect_timeout:.0f} s")
    finally:
        progress.cancel()
    connect_s = time.perf_counter() - t0
    log(f"  {fleet.caught_up:,} of {n:,} caught up in {connect_s:.1f} s; failures: {dict(fleet.failures) or 'none'}")
    await asyncio.sleep(args.settle)  # let the handshake garbage and the audit flush settle before reading RSS
    rss_after = server.rss_mib()
    connected = fleet.caught_up
    common = {
        "clients": n,
        "connected": connected,
        "connect_failures": dict(fleet.failures),
        "connect_s": connect_s,
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
        "kib_per_client": (rss_after - rss_before) * 1024 / connected if connected else float("nan"),
    }
    rows = []
    r = aioredis.Redis.from_url(args.redis_url, decode_responses=True)
    try:
        for phase, interval in enumerate(args.intervals):
            rows.append({**common, **await publish_phase(r, server, fleet, stream, cells, interval, f"{phase}", args)})
            await asyncio.sleep(args.settle)
    finally:
        await r.aclose()
        log("  closing the clients")
        await close_all(fleet)
    return rows


async def publish_phase(
    r: aioredis.Redis, server: ServerProcess, fleet: Fleet, stream: str, cells: tuple[str, ...], interval: float, tag: str, args
) -> dict:
    """Publish ``args.alerts`` alerts ``interval`` s apart to the connected fleet; the figures of this phase."""
    connected = fleet.caught_up
    fleet.arrivals.clear()
    fleet.other_frames.clear()
    published: dict[str, float] = {}
    cpu0, ru0, w0 = server.cpu_s(), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    start = time.perf_counter()
    for i in range(args.alerts):
        await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        body = alert_json(i, f"{stream}-{tag}", cells)
        t = time.perf_counter()
        sid = await r.xadd(stream, {"alert": body})
        published[sid] = t
    publish_s = time.perf_counter() - start
    expected = connected * args.alerts
    # wait for every frame, or until nothing more arrives for --quiet seconds
    seen, quiet_since = -1, time.perf_counter()
    while len(fleet.arrivals) < expected:
        await asyncio.sleep(0.05)
        if len(fleet.arrivals) != seen:
            seen, quiet_since = len(fleet.arrivals), time.perf_counter()
        elif time.perf_counter() - quiet_since > args.quiet:
            break
    wall = time.perf_counter() - w0
    cpu1, ru1 = server.cpu_s(), resource.getrusage(resource.RUSAGE_SELF)
    log(f"  every {interval:g} s: {len(fleet.arrivals):,} of {expected:,} alert frames received")

    latencies: list[float] = []
    per_alert: dict[str, list[float]] = {sid: [] for sid in published}
    pairs: set[tuple[int, str]] = set()
    duplicates = unknown = 0
    for t, index, head in fleet.arrivals:
        sid = head.split('"', 1)[0]
        sent = published.get(sid)
        if sent is None:
            unknown += 1
            continue
        if (index, sid) in pairs:
            duplicates += 1
            continue
        pairs.add((index, sid))
        ms = (t - sent) * 1000
        latencies.append(ms)
        per_alert[sid].append(ms)
    latencies.sort()
    lasts = sorted(max(v) for v in per_alert.values() if v)
    first = min(published.values(), default=0.0)
    timeline = [
        {"sent_s": round(published[sid] - first, 3), "received": len(v), "p50_ms": percentile(sorted(v), 50), "max_ms": _last(sorted(v))}
        for sid, v in per_alert.items()
    ]
    delivered = len(latencies)
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {
        "interval_s": interval,
        "alerts": args.alerts,
        "publish_s": publish_s,
        "expected": expected,
        "delivered": delivered,
        "missing": expected - delivered,
        "duplicates": duplicates,
        "unknown_ids": unknown,
        "other_frames": dict(fleet.other_frames),
        "closed_by_server": dict(fleet.closed),
        "latency_ms": {q: percentile(latencies, float(q[1:])) for q in ("p50", "p95", "p99")} | {"max": _last(latencies)},
        "all_clients_ms": {"p50": percentile(lasts, 50), "max": _last(lasts)},
        "server_cpu_pct": 100 * (cpu1 - cpu0) / wall,
        "client_cpu_pct": 100 * client_cpu / wall,
        "server_us_per_frame": 1e6 * (cpu1 - cpu0) / delivered if delivered else float("nan"),
        "per_alert": timeline,
    }


def _last(ordered: list[float]) -> float:
    return ordered[-1] if ordered else float("nan")


async def _report_connecting(fleet: Fleet, t0: float) -> None:
    while True:
        await asyncio.sleep(2.0)
        log(f"  ... {fleet.caught_up:,} caught up, {sum(fleet.failures.values()):,} failed after {time.perf_counter() - t0:.0f} s")


# ---------------------------------------------------------------------- the whole run


def raise_fd_limit(needed: int) -> int:
    """Raise this process's (and so the servers') open-file limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        log(f"warning: the open-file limit is {soft}, below the {needed} this run needs; expect connection failures")
    return soft


def zone_cells(zones: list[Zone]) -> tuple[str, ...]:
    """One res-8 cell of every zone: an alert on them is in every partner's scope."""
    return tuple(sorted(z.cells)[0] for z in zones)


async def run_all(args: argparse.Namespace, base_prefix: str, workdir: Path, started: list[ServerProcess]) -> list[dict]:
    zones = default_zones()
    cells = zone_cells(zones)
    rows = []
    run = 0
    for n in args.clients:
        args.n = n
        for key in args.servers:
            name = SERVERS[key]
            run += 1
            prefix = f"{base_prefix}r{run}"
            stream = f"{prefix}:alerts"
            if key.startswith("gateway"):
                server = gateway_server(prefix, args.redis_url, max(256, 2 * args.alerts + 16), workdir)
                tokens = client_tokens(n, key == "gateway-mixed", zones)
            else:
                server = bare_server(prefix, args.redis_url, workdir)
                tokens = None
            log(f"{n:,} clients, {name}: starting the server on port {server.port}")
            started.append(server)
            server.start()
            await asyncio.sleep(args.settle)
            try:
                measured = [{"server": name, **row} for row in await measure(server, tokens, stream, args, cells)]
            finally:
                server.stop()
                _delete_keys(args.redis_url, f"{prefix}:*")
            if server.proc is not None and server.proc.returncode not in (0, -signal.SIGTERM):
                log(f"  {name} exited with {server.proc.returncode}:\n{server.log_tail()}")
            rows += measured
            for row in measured:
                lat = row["latency_ms"]
                log(
                    f"  every {row['interval_s']:g} s: delivered {row['delivered']:,}/{row['expected']:,}; "
                    f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms"
                )
    return rows


def _delete_keys(redis_url: str, pattern: str) -> int:
    r = redis.Redis.from_url(redis_url)
    try:
        keys = list(r.scan_iter(match=pattern, count=1000))
        if keys:
            r.delete(*keys)
        return len(keys)
    finally:
        r.close()


def print_table(rows: list[dict]) -> None:
    print(
        f"{'clients':>7} {'every s':>7} {'server':22} {'connect s':>9} {'RSS MiB before/after':>21} {'KiB/client':>10} "
        f"{'delivered/expected':>19} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'all ms':>7} "
        f"{'srv CPU':>7} {'cli CPU':>7} {'srv us/frame':>12}"
    )
    # the servers side by side for each client count and publishing interval
    for row in sorted(rows, key=lambda r: (r["clients"], -r["interval_s"])):
        lat = row["latency_ms"]
        rss = f"{row['rss_before_mib']:.0f} / {row['rss_after_mib']:.0f}"
        got = f"{row['delivered']:,}/{row['expected']:,}"
        print(
            f"{row['clients']:>7,} {row['interval_s']:7g} {row['server']:22} {row['connect_s']:9.1f} {rss:>21} "
            f"{row['kib_per_client']:10.1f} "
            f"{got:>19} {lat['p50']:7.1f} {lat['p95']:7.1f} {lat['p99']:7.1f} {lat['max']:7.1f} {row['all_clients_ms']['p50']:7.1f} "
            f"{row['server_cpu_pct']:6.0f}% {row['client_cpu_pct']:6.0f}% {row['server_us_per_frame']:12.1f}"
        )
    print(
        "\nlatency: XADD to a client's receipt, over every (client, alert); all ms: median over alerts of the time until the"
        " last client had it;\nCPU: share of one core from the first XADD to the last frame; KiB/client: RSS growth over"
        " the connected clients."
    )
    for row in rows:
        problems = {
            k: row[k]
            for k in ("connect_failures", "missing", "duplicates", "unknown_ids", "other_frames", "closed_by_server")
            if row[k] and row[k] != {}
        }
        if row["connected"] < row["clients"] or problems:
            print(f"{row['clients']:,} clients every {row['interval_s']:g} s, {row['server']}: {row['connected']:,} connected; {problems}")


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--clients", default="1000,5000", help="comma-separated client counts (default 1000,5000)")
    p.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma-separated servers to measure, of {', '.join(SERVERS)} (default all)"
    )
    p.add_argument("--alerts", type=int, default=50, help="alerts published per run (default 50)")
    p.add_argument(
        "--intervals",
        default="0.5,0.1",
        help="comma-separated seconds between alerts, one publishing phase each on the same connections (default 0.5,0.1)",
    )
    p.add_argument("--handshakes", type=int, default=100, help="client handshakes in flight at once (default 100)")
    p.add_argument("--open-timeout", type=float, default=60.0, help="seconds one client waits for its handshake (default 60)")
    p.add_argument("--connect-timeout", type=float, default=300.0, help="seconds all clients may take to catch up (default 300)")
    p.add_argument("--quiet", type=float, default=10.0, help="stop waiting for frames after this many seconds without one (default 10)")
    p.add_argument("--settle", type=float, default=2.0, help="pause before each RSS reading, seconds (default 2)")
    p.add_argument("--redis-url", default=os.environ.get("WF_REDIS_URL", "redis://127.0.0.1:6379/0"), help="Redis (default WF_REDIS_URL)")
    add_json(p, DEFAULT_JSON)
    args = p.parse_args(argv)
    try:
        args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        p.error(f"--clients must be comma-separated integers, got {args.clients!r}")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.servers if s not in SERVERS]
    if bad:
        p.error(f"unknown server(s) {bad}; choose from {', '.join(SERVERS)}")
    try:
        args.intervals = [float(c) for c in args.intervals.split(",") if c.strip()]
    except ValueError:
        p.error(f"--intervals must be comma-separated numbers, got {args.intervals!r}")
    if not args.clients or min(args.clients) < 1 or args.alerts < 1 or not args.intervals or min(args.intervals) < 0:
        p.error("--clients and --alerts must be positive and --intervals not negative")

    fd_limit = raise_fd_limit(max(args.clients) + 256)
    base_prefix = f"benchfan{uuid.uuid4().hex[:8]}"
    started: list[ServerProcess] = []
    log(f"open-file limit {fd_limit}; Redis keys under {base_prefix}*")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = asyncio.run(run_all(args, base_prefix, Path(tmp), started))
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        for server in started:
            server.stop()
        deleted = _delete_keys(args.redis_url, f"{base_prefix}*")
        if deleted:
            log(f"deleted {deleted} leftover Redis keys under {base_prefix}")
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("clients", "servers", "alerts", "intervals", "handshakes", "open_timeout")}
    machine = {"cpus": os.cpu_count(), "fd_limit": fd_limit, "python": sys.version.split()[0]}
    args.json.write_text(json.dumps({"settings": settings, "machine": machine, "runs": rows}, indent=2))
    log(f"figures written to {args.json}")
    ok = all(r["missing"] == 0 and r["duplicates"] == 0 and r["connected"] == r["clients"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
