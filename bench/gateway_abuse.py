"""A dispatch supervisor's alert latency while a partner floods the gateway and outsiders knock.

    python bench/gateway_abuse.py [--seconds 30] [--rate 5] [--json out/bench/gateway_abuse.json]

Starts its own gateway (``python -m gateway``, with a fresh secret, a unique
Redis prefix and a free port, the rate limits at ``--api-rate`` and
``--anon-rate``), connects one supervisor over the WebSocket and runs three
phases of ``--seconds`` each, publishing ``--rate`` alerts a second to
``P:alerts`` in every phase (one cell of the SEPTA Lansdale zone, so the
partner's sockets get them too):

1. ``baseline``: nothing else;
2. ``partner flood``: ONE partner token (transit, agreement ``septa``, zone
   ``septa-lansdale``) asks for everything it may, as fast as it can, from
   ``--flood-procs`` processes of ``--flood-workers`` HTTP loops and
   ``--flood-sockets`` WebSocket loops each: ``GET /api/hotspots``,
   ``/api/released?hours=168``, ``/api/alerts?state=all&limit=1000``,
   ``/api/zones``, ``/api/me`` and ``/api/cells?ids=<its cells>`` in turn,
   and ``subscribe`` messages on a socket that it opens again whenever the
   gateway closes it;
3. ``outsider knock``: ``--knockers`` concurrent unauthenticated clients (one
   asyncio process) each send, one after another, a bad-token
   ``GET /api/alerts``, a WebSocket handshake with a bad token, or a long
   random path, from ``--knock-addresses`` loopback source addresses.

A latency is the supervisor's receipt of an alert frame minus the moment just
before its XADD (one clock: the publisher and the supervisor run in this
process; the load runs in child processes). The supervisor reconnects with
``last_id`` if it is closed, so alerts sent meanwhile arrive late, not never.
The load starts ``--ramp`` s before the first alert and stops once every alert
has arrived (or none has for ``--grace`` s). HTTP loads use raw sockets (one
request per connection: the gateway closes each) and count status codes;
socket loads count handshake statuses, frames and close codes.

Prints a table (target: p99 < 250 ms) and writes JSON to ``--json``; the
gateway's log goes next to it. Progress goes to stderr. Only loopback
traffic. The gateway is stopped and the prefix's Redis keys deleted at the
end, also after an error or Ctrl-C. Exit status 1 when an alert was lost or
the gateway died.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import math
import multiprocessing as mp
import os
import queue
import random
import resource
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import gateway_fanout  # bench/ is on sys.path when a bench script runs
import redis
import redis.asyncio as aioredis
from _common import ROOT, add_json, cpu_s, parser, rss_mib
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from gateway.settings import DEFAULT_ZONES
from gateway.tokens import issue
from gateway.zones import load_zone_files
from infra.stack import terminate

TARGET_P99_MS = 250.0
PARTNER_ZONE = "septa-lansdale"
PHASES = ("baseline", "partner flood", "outsider knock")
#: the gateway frames an alert as '{"type":"alert","id":"<stream id>",...' (gateway.protocol.frame)
ALERT_HEAD = '{"type":"alert","id":"'
DEFAULT_JSON = ROOT / "out" / "bench" / "gateway_abuse.json"
#: a phase is flagged as measured on a busy machine past these: this process's wake-up delay, others' CPU share of one core
NOISY_LAG_MS = 50.0
NOISY_OTHERS_PCT = 25.0
#: seconds one load request may take before it is counted as "timeout"
REQUEST_TIMEOUT_S = 10.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100): the smallest value with q % of them at or below it.

    >>> percentile(list(range(1, 101)), 99), percentile(list(range(1, 101)), 50), percentile([5.0], 99)
    (99, 50, 5.0)
    """
    if not ordered:
        return float("nan")
    rank = math.ceil(q * len(ordered) / 100 - 1e-9)  # the tolerance keeps an exact rank exact (99 * 100 / 100 is 99)
    return ordered[max(0, min(len(ordered) - 1, rank - 1))]


# ---------------------------------------------------------------------- the gateway under test


def local_redis_pid(redis_url: str) -> int | None:
    """The Redis server's pid when it runs on this machine (its ``INFO server`` names it), else None."""
    r = redis.Redis.from_url(redis_url)
    try:
        pid = int(r.info("server")["process_id"])
    finally:
        r.close()
    return pid if Path(f"/proc/{pid}/stat").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class GatewayServer:
    """``python -m gateway`` in its own process: started (bounded wait on /healthz), measured by pid, stopped."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> GatewayServer:
        env = {**self.env, "WF_GATEWAY_PORT": str(self.port)}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not answer /healthz on port {self.port} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.status == 200
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mib(self) -> float:
        """Resident memory of the gateway now, MiB."""
        assert self.proc is not None
        return rss_mib(self.proc.pid)

    def cpu_s(self) -> float:
        """User + system CPU seconds the gateway has used so far."""
        assert self.proc is not None
        return cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 20)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def log_problems(self) -> list[str]:
        """Lines of the gateway's log at WARNING or above, and tracebacks."""
        if not self.log_path.exists():
            return []
        keys = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if any(k in line for k in keys)]


# ---------------------------------------------------------------------- load: raw HTTP, one request per connection


async def http_status(port: int, target: str, headers: list[tuple[str, str]], source: str) -> str:
    """The status code of one GET (read to the end: the gateway closes after each response), or what went wrong."""
    writer = None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
            writer.write(head.encode())
            status_line = await reader.readline()
            while await reader.read(1 << 16):
                pass
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.split()
    return parts[1].decode() if len(parts) >= 2 else "no response"


@dataclass
class Tally:
    """What one load process sent and was answered: counts by (request, answer), and request times in seconds."""

    counts: Counter = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=dict)

    def add(self, what: str, answer: str, seconds: float | None = None) -> None:
        self.counts[(what, answer)] += 1
        if seconds is not None:
            kept = self.times.setdefault(what, [])
            if len(kept) < 200_000:  # a bound on memory; a phase's first 200,000 are plenty for a p99
                kept.append(seconds)

    async def get(self, what: str, port: int, target: str, headers: list[tuple[str, str]], source: str) -> None:
        """One GET, counted by its answer and timed from connect to the server's close."""
        t = time.perf_counter()
        status = await http_status(port, target, headers, source)
        self.add(what, status, time.perf_counter() - t)


@dataclass
class Budget:
    """Stop signal and request cap shared by one load process's loops."""

    left: int
    stopping: bool = False

    def take(self) -> bool:
        if self.stopping or self.left <= 0:
            return False
        self.left -= 1
        return True


def partner_targets(cells: list[str]) -> list[str]:
    """Every query the partner may send (``/api/cells`` with its own cells)."""
    return [
        "/api/hotspots",
        "/api/released?hours=168",
        "/api/alerts?state=all&limit=1000",
        "/api/zones",
        "/api/me",
        "/api/cells?ids=" + ",".join(cells),
    ]


async def api_loop(port: int, token: str, targets: list[str], start: int, budget: Budget, tally: Tally) -> None:
    """One partner HTTP loop: the queries in turn, back to back."""
    auth = [("Authorization", f"Bearer {token}")]
    for target in itertools.islice(itertools.cycle(targets), start, None):
        if not budget.take():
            return
        await tally.get(f"GET {target.split('?')[0]}", port, target, auth, "127.0.0.1")


async def subscribe_loop(port: int, token: str, budget: Budget, tally: Tally) -> None:
    """One partner socket loop: subscribe messages back to back; opened again whenever the gateway closes it."""
    uri = f"ws://127.0.0.1:{port}/ws?token={token}"
    message = json.dumps({"type": "subscribe", "zones": [PARTNER_ZONE]})
    while budget.take():
        t = time.perf_counter()
        try:
            ws = await connect(uri, open_timeout=REQUEST_TIMEOUT_S, ping_interval=None, compression=None, max_size=None)
        except InvalidStatus as exc:
            tally.add("WS handshake", str(exc.response.status_code), time.perf_counter() - t)
            continue
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            tally.add("WS handshake", type(exc).__name__, time.perf_counter() - t)
            continue
        tally.add("WS handshake", "101", time.perf_counter() - t)
        reader = asyncio.create_task(_read_frames(ws, tally))
        try:
            while budget.take():
                await ws.send(message)
                tally.add("WS subscribe", "sent")
                await asyncio.sleep(0)  # let the reader count the answers
        except ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    await ws.close()
            await reader
        code = ws.close_code if ws.close_code is not None else "none"
        tally.add("WS close", str(code))


async def _read_frames(ws, tally: Tally) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for text in ws:
            frame = json.loads(text)
            kind = frame.get("type", "?")
            tally.add("WS frame", f"error {frame.get('code')}" if kind == "error" else kind)


def _bad_tokens(n: int) -> list[str]:
    """Tokens the gateway must refuse: junk, and well-formed ones signed with another secret."""
    forged = [issue(secrets.token_bytes(32), subject=f"x{i}", role="supervisor", agency="Nobody", ttl_s=3600) for i in range(8)]
    return [secrets.token_urlsafe(random.randint(8, 64)) if i % 2 else forged[i % len(forged)] for i in range(n)]


def _long_path() -> str:
    length = random.randint(500, 4000)  # under websockets' 8 KiB request-line limit: a 404, not a parse error
    segments = []
    while sum(len(s) + 1 for s in segments) < length:
        segments.append(secrets.token_urlsafe(random.randint(4, 40)))
    return ("/api/" if random.random() < 0.5 else "/") + "/".join(segments)


async def knock_loop(port: int, tokens: list[str], source: str, budget: Budget, tally: Tally) -> None:
    """One outsider: a bad-token API call, a bad-token WebSocket handshake or a long random path, one after another."""
    while budget.take():
        kind = random.randrange(3)
        if kind == 0:
            headers = [("Authorization", f"Bearer {random.choice(tokens)}")]
            await tally.get("GET /api/alerts, bad token", port, "/api/alerts", headers, source)
        elif kind == 1:
            key = base64.b64encode(secrets.token_bytes(16)).decode()
            headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
            target = f"/ws?token={quote(random.choice(tokens))}"
            await tally.get("WS handshake, bad token", port, target, headers, source)
        else:
            await tally.get("GET long random path", port, _long_path(), [], source)


def knock_sources(n: int) -> list[str]:
    """``n`` loopback addresses: 127.0.0.1, 127.0.0.2, ... (Linux routes all of 127/8 to lo)."""
    return [f"127.0.{k // 254}.{k % 254 + 1}" for k in range(n)]


async def _run_load(kind: str, params: dict, stop: Callable[[], bool], hard_stop_s: float) -> Tally:
    tally = Tally()
    budget = Budget(params["max_requests"])
    port = params["port"]
    if kind == "flood":
        targets = partner_targets(params["cells"])
        loops = [api_loop(port, params["token"], targets, i, budget, tally) for i in range(params["workers"])]
        loops += [subscribe_loop(port, params["token"], budget, tally) for _ in range(params["sockets"])]
    else:
        tokens = _bad_tokens(64)
        sources = knock_sources(params["addresses"])
        loops = [knock_loop(port, tokens, sources[i % len(sources)], budget, tally) for i in range(params["knockers"])]
    tasks = [asyncio.create_task(c) for c in loops]
    deadline = time.monotonic() + hard_stop_s
    while not stop() and time.monotonic() < deadline and budget.left > 0:
        await asyncio.sleep(0.1)
    budget.stopping = True
    # every request in flight ends within REQUEST_TIMEOUT_S; the loops then see the budget stopped
    _done, pending = await asyncio.wait(tasks, timeout=2 * REQUEST_TIMEOUT_S)
    for t in pending:
        t.cancel()
    if pending:
        tally.counts[("load", "loops cut off")] += len(pending)
    return tally


def load_process(kind: str, params: dict, stop, results, hard_stop_s: float) -> None:
    """Child process entry: run the load until ``stop`` is set (or ``hard_stop_s``); put (counts, times, CPU s) on ``results``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 8192), hard))
    tally = asyncio.run(_run_load(kind, params, stop.is_set, hard_stop_s))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    results.put((dict(tally.counts), tally.times, ru.ru_utime + ru.ru_stime))


@dataclass
class Load:
    """Load processes of one phase."""

    procs: list = field(default_factory=list)
    stop: object = None
    results: object = None

    @classmethod
    def start(cls, kind: str, params: list[dict], hard_stop_s: float) -> Load:
        ctx = mp.get_context("spawn")
        load = cls(stop=ctx.Event(), results=ctx.Queue())
        for p in params:
            proc = ctx.Process(target=load_process, args=(kind, p, load.stop, load.results, hard_stop_s), daemon=True)
            proc.start()
            load.procs.append(proc)
        return load

    def finish(self) -> tuple[Counter, dict[str, dict], float]:
        """Stop the processes; their summed counts, request times ({request: {n, p50, p99, max}} in ms) and CPU seconds.

        Blocking: call it in a thread."""
        self.stop.set()  # type: ignore[attr-defined]  # Load.stop is declared object; start() sets a multiprocessing Event
        counts: Counter = Counter()
        times: dict[str, list[float]] = {}
        cpu = 0.0
        for _ in self.procs:
            try:
                got, got_times, used = self.results.get(timeout=4 * REQUEST_TIMEOUT_S)  # type: ignore[attr-defined]  # a multiprocessing Queue (see start)
            except queue.Empty:  # a child died or hung: named in the counts, and killed below
                counts[("load", "process gave no result")] += 1
                continue
            counts.update(got)
            for what, kept in got_times.items():
                times.setdefault(what, []).extend(kept)
            cpu += used
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        summary = {}
        for what, kept in sorted(times.items()):
            ordered = sorted(1000 * x for x in kept)
            summary[what] = {"n": len(ordered), "p50": percentile(ordered, 50), "p99": percentile(ordered, 99), "max": ordered[-1]}
        return counts, summary, cpu


# ---------------------------------------------------------------------- the supervisor and the publisher


@dataclass
class Supervisor:
    """One dispatch supervisor on the WebSocket: when each alert frame arrived, by stream id; reconnects with ``last_id``."""

    uri: str
    arrivals: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    closes: Counter = field(default_factory=Counter)
    connect_failures: Counter = field(default_factory=Counter)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    last_id: str | None = None
    stopping: bool = False

    async def run(self) -> None:
        perf = time.perf_counter
        while not self.stopping:
            uri = self.uri if self.last_id is None else f"{self.uri}&last_id={self.last_id}"
            try:
                ws = await connect(uri, open_timeout=REQUEST_TIMEOUT_S, compression=None, max_size=None)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.connect_failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                await asyncio.sleep(0.2)
                continue
            try:
                async for message in ws:
                    t = perf()
                    if message.startswith(ALERT_HEAD):
                        sid = message[len(ALERT_HEAD) : message.index('"', len(ALERT_HEAD))]
                        if sid in self.arrivals:
                            self.duplicates += 1
                        else:
                            self.arrivals[sid] = t
                        self.last_id = sid
                    elif message.startswith('{"type":"caught_up"'):
                        self.caught_up.set()
            except ConnectionClosed as exc:
                if not self.stopping:
                    self.closes[str(exc.rcvd.code if exc.rcvd else "no close frame")] += 1
                    await asyncio.sleep(0.2)
            finally:
                await ws.close()


def alert_json(i: int, tag: str, cell: str) -> str:
    """A benchmark surge alert on one cell, as bench/gateway_fanout.py makes them (its ``at`` is the publish time)."""
    return gateway_fanout.alert_json(i, tag, (cell,))


async def publish(r: aioredis.Redis, stream: str, sup: Supervisor, cell: str, tag: str, args: argparse.Namespace) -> dict:
    """``--rate`` alerts a second for ``--seconds``; wait for the supervisor to have them all (or ``--grace`` s of nothing)."""
    n = max(1, round(args.seconds * args.rate))
    published: dict[str, float] = {}
    xadd_ms = []
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
        t = time.perf_counter()
        published[await r.xadd(stream, {"alert": alert_json(i, tag, cell)})] = t
        xadd_ms.append((time.perf_counter() - t) * 1000)
    publish_s = time.perf_counter() - start
    seen, quiet_since = -1, time.perf_counter()
    while True:
        got = sum(1 for sid in published if sid in sup.arrivals)
        if got == n or time.perf_counter() - quiet_since > args.grace:
            break
        if got != seen:
            seen, quiet_since = got, time.perf_counter()
        await asyncio.sleep(0.05)
    in_order = [(sup.arrivals[sid] - t) * 1000 if sid in sup.arrivals else None for sid, t in published.items()]
    latencies = sorted(ms for ms in in_order if ms is not None)
    return {
        "published": n,
        "publish_s": publish_s,
        "delivered": len(latencies),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": latencies[-1] if latencies else float("nan"),
        },
        "xadd_ms": {"p99": percentile(sorted(xadd_ms), 99), "max": max(xadd_ms)},
        "target_met": bool(latencies) and len(latencies) == n and percentile(latencies, 99) < TARGET_P99_MS,
        # every alert's latency in publishing order (None: never delivered)
        "latencies_ms": [None if ms is None else round(ms, 2) for ms in in_order],
    }


# ---------------------------------------------------------------------- one run


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (``/proc/stat``: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def probe_lag(lags: list[float], period_s: float = 0.01) -> None:
    """Append how late this process's event loop wakes from a ``period_s`` sleep, ms: the bench's own timing error."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period_s)
        lags.append((time.perf_counter() - t - period_s) * 1000)


async def sample_rss(server: GatewayServer, peaks: list[float]) -> None:
    """Keep ``peaks[0]`` at the highest RSS seen since it was last reset (every 0.25 s)."""
    while server.alive:
        with contextlib.suppress(OSError, RuntimeError):
            peaks[0] = max(peaks[0], server.rss_mib())
        await asyncio.sleep(0.25)


def load_params(phase: str, server: GatewayServer, partner: str, cells: list[str], args: argparse.Namespace) -> tuple[str, list[dict]]:
    if phase == "partner flood":
        common = {
            "port": server.port,
            "token": partner,
            "cells": cells,
            "workers": args.flood_workers,
            "sockets": args.flood_sockets,
            "max_requests": args.max_requests,
        }
        return "flood", [common] * args.flood_procs
    if phase == "outsider knock":
        return "knock", [
            {"port": server.port, "knockers": args.knockers, "addresses": args.knock_addresses, "max_requests": args.max_requests}
        ]
    return "", []


async def run(args: argparse.Namespace, prefix: str, server: GatewayServer) -> list[dict]:
    secret = server.env["WF_GATEWAY_SECRET"].encode()
    zone = load_zone_files(sorted(DEFAULT_ZONES.glob("*.geojson")))[PARTNER_ZONE]
    cells = sorted(zone.cells)[:500]  # /api/cells takes at most 500 ids
    supervisor = issue(secret, subject="bench-supervisor", role="supervisor", agency="Montgomery County 911", ttl_s=3600)
    partner = issue(secret, subject="bench-flooder", role="transit", agency="SEPTA", agreement="septa", zones=(PARTNER_ZONE,), ttl_s=3600)
    sup = Supervisor(f"ws://127.0.0.1:{server.port}/ws?token={supervisor}")
    sup_task = asyncio.create_task(sup.run())
    peaks = [0.0]
    lags: list[float] = []
    background = [asyncio.create_task(sample_rss(server, peaks)), asyncio.create_task(probe_lag(lags))]
    r = aioredis.Redis.from_url(args.redis_url, decode_responses=True)
    redis_pid = local_redis_pid(args.redis_url)
    rows = []
    try:
        async with asyncio.timeout(30):
            await sup.caught_up.wait()
        for phase in args.phases:
            kind, params = load_params(phase, server, partner, cells, args)
            log(f"{phase}: {len(params)} load process(es), {args.seconds:g} s of alerts at {args.rate:g}/s")
            rss_before = server.rss_mib()
            peaks[0] = rss_before
            closes_before, failures_before = Counter(sup.closes), Counter(sup.connect_failures)
            cpu0, machine0, own0, t0 = server.cpu_s(), machine_cpu_s(), own_cpu_s(), time.perf_counter()
            redis0 = cpu_s(redis_pid) if redis_pid else 0.0
            lags.clear()
            load = Load.start(kind, params, hard_stop_s=args.ramp + args.seconds + args.grace + 60) if params else None
            await asyncio.sleep(args.ramp if load else 0)
            try:
                row = await publish(r, f"{prefix}:alerts", sup, cells[0], f"{prefix}-{phase.split()[0]}", args)
            finally:
                load_s = time.perf_counter() - t0
                counts, load_times, load_cpu = await asyncio.to_thread(load.finish) if load else (Counter(), {}, 0.0)
            if not server.alive:
                raise RuntimeError(f"the gateway died during {phase} (exit {server.proc.returncode}):\n{server.log_tail()}")
            cpu1, wall = server.cpu_s(), time.perf_counter() - t0
            redis_cpu = cpu_s(redis_pid) - redis0 if redis_pid else float("nan")
            machine = machine_cpu_s() - machine0
            ours = (cpu1 - cpu0) + load_cpu + (own_cpu_s() - own0) + (redis_cpu if redis_pid else 0.0)
            ordered_lags = sorted(lags)
            row = {
                "phase": phase,
                **row,
                "gateway_cpu_pct": 100 * (cpu1 - cpu0) / wall,
                # shares of one core; the machine has os.cpu_count() of them. "others": whatever else runs
                "machine_cpu_pct": 100 * machine / wall,
                "redis_cpu_pct": 100 * redis_cpu / wall,
                "others_cpu_pct": 100 * max(0.0, machine - ours) / wall,
                "bench_loop_lag_ms": {"p99": percentile(ordered_lags, 99), "max": ordered_lags[-1] if ordered_lags else float("nan")},
                "rss_mib": {"before": rss_before, "peak": peaks[0], "after": server.rss_mib()},
                "load_s": load_s if load else 0.0,
                "load_cpu_s": load_cpu,
                "load": {f"{what} -> {status}": n for (what, status), n in sorted(counts.items())},
                "load_request_ms": load_times,
                "supervisor_closes": dict(sup.closes - closes_before),
                "supervisor_connect_failures": dict(sup.connect_failures - failures_before),
            }
            lat = row["latency_ms"]
            log(
                f"  {row['delivered']}/{row['published']} delivered, "
                f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms"
            )
            rows.append(row)
            await asyncio.sleep(args.settle)
        rows[-1]["healthz_after"] = server.healthy()
    finally:
        sup.stopping = True
        for task in (sup_task, *background):
            task.cancel()
        await asyncio.gather(sup_task, *background, return_exceptions=True)
        await r.aclose()
    if sup.duplicates:
        rows[-1]["supervisor_duplicates"] = sup.duplicates
    return rows


def delete_keys(redis_url: str, prefix: str) -> int:
    r = redis.Redis.from_url(redis_url)
    try:
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            r.delete(*keys)
        return len(keys)
    finally:
        r.close()


# ---------------------------------------------------------------------- output


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"gateway alert delivery to one supervisor under abuse; {args.rate:g} alerts/s for {args.seconds:g} s a phase; "
        f"target p99 < {TARGET_P99_MS:g} ms"
    )
    print(
        f"API rate {args.api_rate:g}/s per token, anonymous refusals {args.anon_rate:g}/s per address; flood: {args.flood_procs} "
        f"process(es) x ({args.flood_workers} HTTP loops + {args.flood_sockets} socket); "
        f"knock: {args.knockers} clients from {args.knock_addresses} address(es)\n"
    )
    print(
        f"{'phase':15} {'delivered':>10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p99 target':>10} {'gw CPU':>6} "
        f"{'RSS MiB before/peak/after':>25} {'load req/s':>10}"
    )
    for row in rows:
        lat, rss = row["latency_ms"], row["rss_mib"]
        requests = sum(n for k, n in row["load"].items() if _is_request(k))
        rate = f"{requests / row['load_s']:,.0f}" if row["load_s"] else "-"
        rss_text = f"{rss['before']:.0f} / {rss['peak']:.0f} / {rss['after']:.0f}"
        print(
            f"{row['phase']:15} {row['delivered']:>4}/{row['published']:<5} {lat['p50']:7.1f} {lat['p99']:7.1f} {lat['max']:7.1f} "
            f"{'met' if row['target_met'] else 'MISSED':>10} {row['gateway_cpu_pct']:5.0f}% {rss_text:>25} {rate:>10}"
        )
    print(f"\nconditions (CPU as shares of one core; the machine has {os.cpu_count()})")
    print(
        f"{'phase':15} {'machine CPU':>11} {'load CPU':>8} {'Redis CPU':>9} {'others CPU':>10} {'XADD p99 ms':>11} "
        f"{'bench loop lag max ms':>21}"
    )
    for row in rows:
        load_pct = 100 * row["load_cpu_s"] / row["load_s"] if row["load_s"] else 0.0
        print(
            f"{row['phase']:15} {row['machine_cpu_pct']:10.0f}% {load_pct:7.0f}% "
            f"{row['redis_cpu_pct']:8.0f}% {row['others_cpu_pct']:9.0f}% "
            f"{row['xadd_ms']['p99']:11.1f} {row['bench_loop_lag_ms']['max']:21.1f}"
        )
    for row in rows:
        lag, others = row["bench_loop_lag_ms"]["max"], row["others_cpu_pct"]
        if lag > NOISY_LAG_MS or others > NOISY_OTHERS_PCT:
            print(
                f"{row['phase']}: other processes used {others:.0f}% of a core and this process woke up to {lag:.0f} ms late:"
                " its latencies include waiting for a CPU, not only for the gateway"
            )
    print("\nthe load's requests, what the gateway answered (counts over the phase) and how long a request took")
    print(f"{'phase':15} {'request':28} {'p50 ms':>7} {'p99 ms':>7}  answers")
    for row in rows:
        by_request: dict[str, list[str]] = {}
        for key, n in row["load"].items():
            what, _, status = key.partition(" -> ")
            by_request.setdefault(what, []).append(f"{status}: {n:,}")
        for what, answers in by_request.items():
            took = row["load_request_ms"].get(what)
            took_text = f"{took['p50']:7.1f} {took['p99']:7.1f}" if took else f"{'':7} {'':7}"
            print(f"{row['phase']:15} {what:28} {took_text}  {', '.join(answers)}")
        if row["supervisor_closes"] or row["supervisor_connect_failures"]:
            closed, failed = row["supervisor_closes"], row["supervisor_connect_failures"]
            print(f"{row['phase']:15} {'supervisor socket':28} closed {closed}, failed to connect {failed}")
    print(
        "\nlatency: XADD to the supervisor's receipt, every alert of the phase; load req/s: HTTP requests and WebSocket"
        " handshakes a second (subscribe messages not counted); others CPU: the machine's busy time less the gateway's,"
        " the load's, Redis's (when local) and this process's"
    )


def _is_request(key: str) -> bool:
    what = key.partition(" -> ")[0]
    return what.startswith(("GET", "WS handshake"))


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of alerts per phase (default 30)")
    p.add_argument("--rate", type=float, default=5.0, help="alerts published a second (default 5)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated phases to run, of: {', '.join(PHASES)} (default all)")
    p.add_argument("--api-rate", type=float, default=5.0, help="the gateway's WF_GATEWAY_API_RATE (default 5, its default)")
    p.add_argument("--anon-rate", type=float, default=5.0, help="the gateway's WF_GATEWAY_ANON_RATE (default 5, its default)")
    p.add_argument("--flood-procs", type=int, default=2, help="partner flood processes (default 2)")
    p.add_argument("--flood-workers", type=int, default=4, help="HTTP loops per flood process (default 4)")
    p.add_argument("--flood-sockets", type=int, default=1, help="subscribe socket loops per flood process (default 1; 0: none)")
    p.add_argument("--knockers", type=int, default=500, help="concurrent unauthenticated clients (default 500)")
    p.add_argument(
        "--knock-addresses", type=int, default=1, help="loopback source addresses the knockers spread over (default 1: 127.0.0.1)"
    )
    p.add_argument(
        "--max-requests", type=int, default=2_000_000, help="cap on the requests of one load process per phase (default 2,000,000)"
    )
    p.add_argument("--ramp", type=float, default=2.0, help="seconds of load before the first alert (default 2)")
    p.add_argument("--grace", type=float, default=10.0, help="stop waiting for alerts after this many seconds without one (default 10)")
    p.add_argument("--settle", type=float, default=3.0, help="pause between phases, seconds (default 3)")
    p.add_argument("--redis-url", default=os.environ.get("WF_REDIS_URL", "redis://127.0.0.1:6379/0"), help="Redis (default WF_REDIS_URL)")
    add_json(p, DEFAULT_JSON)
    args = p.parse_args(argv)
    args.phases = [s.strip() for s in args.phases.split(",") if s.strip()]
    bad = [s for s in args.phases if s not in PHASES]
    if bad or not args.phases:
        p.error(f"unknown phase(s) {bad}; choose from {', '.join(PHASES)}")
    if not (0 < args.seconds <= 3600 and 0 < args.rate <= 1000 and args.api_rate > 0 and args.anon_rate > 0):
        p.error("--seconds must be in (0, 3600], --rate in (0, 1000], the rates > 0")
    if not (1 <= args.flood_procs <= 8 and 0 <= args.flood_workers <= 64 and 0 <= args.flood_sockets <= 16 and 1 <= args.knockers <= 5000):
        p.error("--flood-procs must be 1..8, --flood-workers 0..64, --flood-sockets 0..16, --knockers 1..5000")
    if not (1 <= args.knock_addresses <= 254 * 254 and args.max_requests >= 1):
        p.error("--knock-addresses must be 1..64516 and --max-requests positive")

    prefix = f"benchabuse{uuid.uuid4().hex[:8]}"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WF_")},
        "WF_GATEWAY_SECRET": secrets.token_urlsafe(48),
        "WF_REDIS_URL": args.redis_url,
        "WF_REDIS_PREFIX": prefix,
        "WF_GATEWAY_API_RATE": f"{args.api_rate:g}",
        "WF_GATEWAY_ANON_RATE": f"{args.anon_rate:g}",
        "PYTHONUNBUFFERED": "1",
    }
    server = GatewayServer(env, args.json.with_suffix(".gateway.log"))
    server.log_path.unlink(missing_ok=True)
    log(f"Redis keys under {prefix}:*; gateway log {server.log_path}")
    rows: list[dict] = []
    try:
        server.start()
        log(f"gateway pid {server.proc.pid} on port {server.port}")
        rows = asyncio.run(run(args, prefix, server))
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        alive = server.alive
        server.stop()
        log(f"gateway stopped (it was {'running' if alive else 'already gone'}); deleted {delete_keys(args.redis_url, prefix)} Redis keys")
    problems = server.log_problems()
    print_table(rows, args)
    if problems:
        print(f"\nthe gateway logged {len(problems)} warning(s) or error(s); the first: {problems[:5]}")
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "date": datetime.now(UTC).isoformat(timespec="seconds")}
    args.json.write_text(
        json.dumps({"settings": settings, "machine": machine, "gateway_log_problems": problems[:50], "phases": rows}, indent=2)
    )
    log(f"figures written to {args.json}")
    return 0 if all(r["delivered"] == r["published"] for r in rows) and alive else 1


if __name__ == "__main__":
    sys.exit(main())
