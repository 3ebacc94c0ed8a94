"""Call-to-alert latency: from the moment a call is produced to the moment its alert reaches a WebSocket client.

Usage::

    python bench/latency.py [--rates 0.5,2,5,100] [--seconds 60] [--min-alerts 100]

Needs the local stack (``python -m infra.stack up``). On its own topics and
Redis prefix it starts a worker and a gateway, warms the detectors up with three
days of simulated history ending now (replayed at full speed), then, for each
offered load, produces live calls (event time = the moment they are sent) at
that rate for ``--seconds``, spread over the county like the simulator's
calls, plus a burst of 8 calls every 5 seconds in one quiet cell that the
bench's supervisor made an event zone through the gateway (any such load is a
county-wide storm, whose alert is re-evaluated once a minute; the zone's alert
grows with each burst). A supervisor
connected to the gateway records every alert frame; an alert's ``at`` is the
event time of the call that made it fire, which is that call's production time,
so ``receipt - at`` is the call-to-alert latency through Kafka, the counting
agent, the detector input topic, the detectors, the Redis stream and the
gateway; each figure is also split at the alert's append to the Redis stream
(the stream id's milliseconds), to tell the pipeline from the gateway.
Prints p50, p95, p99 and max per load with the number of alert frames each
rests on (a load under :data:`EXTEND_BELOW` calls/s goes on past ``--seconds``,
up to three times as long, until ``--min-alerts`` frames came for its calls: at
0.5 calls/s most alerts are the bursts'; above, the alerts are plenty, and a
pipeline behind would only be loaded longer), how far behind the counting and detection agents were when the load
stopped, and saves JSON to ``out/bench/latency.json``.

Where the time goes: the workers run with ``WF_STAGE_TIMING=1`` (unless
``--no-stage-timing``), which stamps every call at each stage of the path
(:mod:`streams.detection.stages`: Kafka to the counting agent, the batch, the
plan, the detector-input topic, the detection agent's lock, the event-time
merge, the detectors and the alert's append) into a Redis list; per load the
bench prints each stage's p50, p99 and share of the mean, over the calls that
made an alert fire and over every call the detectors ran.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h3
import numpy as np
import redis
from _common import ROOT, add_json, parser, require_stack, write_json

from gateway.tokens import issue
from infra import stack
from infra.processes import free_port
from streams.counting.keys import Keys
from streams.detection import stages
from streams.ingest.schema import Call, Category
from streams.runtime.progress import NotCaughtUp, detector_input_end, end_offsets, lag, wait_caught_up, wait_detected
from streams.runtime.settings import Settings, load_settings
from streams.topics import CALLS, DETECTOR_INPUT, INCIDENT_UPDATES, topic_name

#: Loads below this many calls/s go on past --seconds until --min-alerts alert frames came.
EXTEND_BELOW = 50.0
BURST_EVERY_S = 5.0
BURST_SIZE = 8
#: seconds each stage may take to drain after a load (what arrives later is not counted)
DRAIN_S = 300
TICK_S = 0.01


def _say(msg: str) -> None:
    print(f"[latency] {msg}", file=sys.stderr, flush=True)


class Proc:
    """A child process with its log, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stack.terminate(self.proc, 30)


def history(out: Path, days: float, seed: int) -> list[dict]:
    """Simulated calls of the ``days`` before now, written to ``out``; their rows (for live coordinates)."""
    start = (datetime.now(UTC) - timedelta(days=days, minutes=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(out), "--days", str(days), "--seed", str(seed),
         "--start", start, "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def warm_up(settings, env: dict[str, str], tmp: Path, check, days: float = 3, seed: int = 11) -> list[dict]:
    """Replay ``days`` of simulated history ending now at full speed (``env``: the run's WF_* variables) and wait
    until it is counted and the detectors have learnt it; its rows. ``check`` raises when a worker has exited."""
    rows = history(tmp / "history.csv", days, seed=seed)
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.replay", str(tmp / "history.csv"), "--speed", "max", "--no-progress"],
        cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip
    wait_caught_up(settings, 300, check)
    wait_detected(settings, 300, check)
    return rows


def detection_offset(client: redis.Redis, prefix: str) -> int:
    raw = client.hget(Keys(prefix).detector, "applied")
    return int(raw) if raw is not None else -1


class ProgressSampler(threading.Thread):
    """Every ``every_s``: records the counting agent has not applied and detector-input messages the detectors have not.

    Tells which stage a late alert waited in. One Kafka client and one Redis
    client for the whole run (``streams.runtime.progress`` opens a client per call).
    """

    def __init__(self, settings: Settings, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.settings, self.every_s = settings, every_s
        #: (wall time, records not counted, detector-input messages not detected)
        self.samples: list[tuple[float, int, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        s = self.settings
        consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
        client = redis.Redis.from_url(s.redis_url, decode_responses=True)
        kinds = (("call", CALLS), ("update", INCIDENT_UPDATES))
        ingest = {TopicPartition(topic_name(s.topic_prefix, base), p): (kind, p) for kind, base in kinds for p in range(s.partitions)}
        det = TopicPartition(topic_name(s.topic_prefix, DETECTOR_INPUT), 0)
        try:
            while not self._stop_event.wait(self.every_s):
                ends = consumer.end_offsets([*ingest, det])
                behind = lag(s, client, {ingest[tp]: n for tp, n in ends.items() if tp in ingest})
                self.samples.append(
                    (time.time(), sum(max(0, n) for n in behind.values()), max(0, ends[det] - 1 - detection_offset(client, s.redis_prefix)))
                )
        finally:
            consumer.close()
            client.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def worst(self, start: float, end: float) -> dict:
        """The most records behind in each stage between ``start`` and ``end``, and when (seconds after ``start``)."""
        mine = [x for x in self.samples if start <= x[0] <= end]
        if not mine:
            return {}
        count, detect = max(mine, key=lambda x: x[1]), max(mine, key=lambda x: x[2])
        return {"counting": [count[1], round(count[0] - start, 1)], "detection": [detect[2], round(detect[0] - start, 1)]}


async def offered_load(
    settings, rows: list[dict], rate: float, seconds: float, quiet: tuple[float, float] | None, seq: list[int], enough=None
) -> int:
    """Produce live calls at ``rate`` per second for ``seconds``, and a burst in the ``quiet`` cell every 5 s (none
    when ``quiet`` is None); calls sent. ``seq[0]`` numbers the call ids and is advanced (pass one list per run).
    With ``enough`` (a callable), go on past ``seconds``, up to three times as long, until it returns True."""
    from aiokafka import AIOKafkaProducer

    # acks="all", as the intake and the replay produce (a consumer sees a record only once it is in sync, the high
    # watermark, whatever the producer waits for: the figures move little)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=2, max_batch_size=256 * 1024)
    await producer.start()
    topic = topic_name(settings.topic_prefix, CALLS)
    rng = random.Random(seq[0])
    sent = 0
    started = time.monotonic()
    next_burst = started + 1.0
    try:
        while (now := time.monotonic()) < started + seconds or (enough is not None and now < started + 3 * seconds and not enough()):
            due = int((now - started) * rate) - sent
            batch = []
            for _ in range(max(0, due)):
                row = rows[rng.randrange(len(rows))]
                batch.append((float(row["lat"]), float(row["lng"]), row["category"]))
            if quiet is not None and now >= next_burst:
                batch += [(*quiet, "FIRE")] * BURST_SIZE
                next_burst += BURST_EVERY_S
            for lat, lng, cat in batch:
                seq[0] += 1
                call = Call(f"LAT-{seq[0]}", time.time(), Category(cat), "BENCH", None, lat, lng, "bench", "bench-latency")
                await producer.send(topic, key=call.id.encode(), value=json.dumps(call.to_json()).encode())
                sent += 1
            await asyncio.sleep(TICK_S)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def watch_alerts(url: str, into: list[tuple[float, dict]], ready: asyncio.Event, zone: dict) -> None:
    """A supervisor's connection: creates the bench's event zone, then records every alert frame with its receipt time."""
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, open_timeout=30) as ws:
        async for message in ws:
            t = time.time()
            frame = json.loads(message)
            if frame["type"] == "caught_up":
                await ws.send(json.dumps({"type": "create_zone", **zone}))
            elif frame["type"] == "zone_created":
                ready.set()
            elif frame["type"] == "error":
                raise RuntimeError(f"the gateway refused the bench: {frame}")
            elif frame["type"] == "alert":
                # the stream id's milliseconds: when the detection worker appended the alert to Redis
                into.append((t, {**frame["alert"], "_appended": int(frame["id"].split("-")[0]) / 1000}))


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.array(values)
    p50, p95, p99 = (float(x) for x in np.percentile(a, [50, 95, 99]))
    return {"n": len(values), "p50": p50, "p95": p95, "p99": p99, "max": float(a.max())}


def _start(
    settings, env: dict[str, str], tmp: Path, split: bool, port: int, secret: str, detect_web: int
) -> tuple[Proc, Proc | None, Proc]:
    """The worker (or, with ``split``, a counting and a detecting worker, its web port ``detect_web``) and the gateway on ``port``."""
    if split:  # counting and detection in two processes (WF_ROLES), each on its own core when it can
        worker = Proc(
            [sys.executable, "-m", "streams.runtime.worker", "-l", "warn"], {**env, "WF_ROLES": "count"}, tmp / "worker-count.log"
        )
        detector = Proc(
            [sys.executable, "-m", "streams.runtime.worker", "-l", "warn"],
            {**env, "WF_ROLES": "detect", "WF_WEB_PORT": str(detect_web)},
            tmp / "worker-detect.log",
        )
    else:
        worker = Proc([sys.executable, "-m", "streams.runtime.worker", "-l", "warn"], env, tmp / "worker.log")
        detector = None
    gateway = Proc(
        [sys.executable, "-m", "gateway", "--port", str(port), "--log-level", "WARNING"],
        {**env, "WF_GATEWAY_SECRET": secret, "WF_GATEWAY_COUNTS_S": "3600"},
        tmp / "gateway.log",
    )
    return worker, detector, gateway


def _wait_healthy(port: int) -> None:
    """Up to 20 s for the gateway's ``/healthz`` (the run goes on regardless: the supervisor's connect then fails)."""
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            break
        except OSError:
            time.sleep(0.2)


def _quiet_zone(rows: list[dict], nth: int = 0) -> tuple[tuple[float, float], dict]:
    """The quietest place in the history (a res-8 cell without calls), as a point and as an event zone.

    At any load, each burst there grows the zone's alert (a county-wide storm alert updates at most once a minute),
    until the zone's window is full of bursts. ``nth`` > 0: another such cell, further away, and a zone of its own
    (``bench/faults.py`` takes a fresh one for each fault, so its alert grows again).
    """
    cells = {h3.latlng_to_cell(float(x["lat"]), float(x["lng"]), 8) for x in rows}
    quiet = h3.latlng_to_cell(40.36, -75.63, 8)
    for i in range(nth + 1):
        if i:
            quiet = h3.grid_ring(quiet, 3)[0]
        while quiet in cells:
            quiet = h3.grid_ring(quiet, 1)[0]
    ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(quiet)]
    zone = {
        "id": f"bench-zone-{nth}" if nth else "bench-zone", "name": "Bench gathering",
        "polygon": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
        "starts_at": time.time() - 60, "ends_at": time.time() + 6 * 3600,
    }  # fmt: skip
    return h3.cell_to_latlng(quiet), zone


def _load_row(
    rate: float,
    sent: int,
    took: float,
    started: float,
    mine: list[tuple[float, dict]],
    most_behind: dict,
    behind: tuple[int, int],
    timing: list[dict],
) -> dict:
    """The figures of one load from the alert frames received for its calls (``mine``: receipt time, alert),
    the most records each stage was behind during it, how far counting and detection were behind at its end,
    and the stage timing of its calls (``timing``: :mod:`streams.detection.stages` records)."""
    lat_ms = [1000 * (t - a["at"]) for t, a in mine]
    # the stage timing of the calls that made an alert fire (an alert's 'at' is its call's event time)
    by_t = {r["t"]: r for r in timing}
    fired = [by_t[a["at"]] for _, a in mine if a["at"] in by_t]
    bursts = [1000 * (t - a["at"]) for t, a in mine if a["kind"] == "zone_surge"]
    # the split: production to the alert's append in Redis (Kafka, counting, detector input,
    # detectors), and from there to the WebSocket (the gateway's read and fan-out)
    upstream = [1000 * (a["_appended"] - a["at"]) for _, a in mine]
    delivery = [1000 * (t - a["_appended"]) for t, a in mine]
    return {
        "offered_per_s": rate,
        "sent": sent,
        "achieved_per_s": round(sent / took, 1),
        "alerts": percentiles(lat_ms),
        "burst_alerts": percentiles(bursts),
        # the most records each stage was behind during the load, and when (s after it began)
        "most_behind": most_behind,
        "to_redis": percentiles(upstream),
        "redis_to_socket": percentiles(delivery),
        # where the time went (ms, and each stage's share of the mean): for the calls that made an alert
        # fire, and for every call of the load the detectors ran
        "stages_alerts": stages.summarize(fired),
        "stages_calls": stages.summarize(timing),
        "counting_behind_at_end": behind[0],
        "detector_input_behind_at_end": behind[1],
        # every alert frame: its call's production time (s after the load began), latency ms, kind, state
        # and of that, ms until its append in Redis
        "samples": [
            [round(a["at"] - started, 3), round(1000 * (t - a["at"]), 1), a["kind"], a["state"], round(up, 1)]
            for (t, a), up in zip(mine, upstream, strict=True)
        ],
    }


async def _behind(settings, r: redis.Redis, prefix: str) -> tuple[int, int]:
    """Records the counting and the detection are behind now.

    Blocking clients run in threads: the supervisor's socket is read in this event loop,
    and a blocked loop would stamp the frames that wait meanwhile late.
    """
    ends = await asyncio.to_thread(end_offsets, settings)
    counting_behind = sum(max(0, n) for n in (await asyncio.to_thread(lag, settings, r, ends)).values())
    consumer_end = await asyncio.to_thread(detector_input_end, settings)
    return counting_behind, max(0, consumer_end - 1 - detection_offset(r, prefix))


#: The detection worker's counters read before and after each load (``/metrics``).
DETECTOR_COUNTERS = ("watchfloor_detector_points_total", "watchfloor_detector_input_late_total")


def detector_counters(port: int) -> dict[str, float]:
    """The detection worker's :data:`DETECTOR_COUNTERS` from its ``/metrics`` (empty when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in DETECTOR_COUNTERS:
            out[name] = float(value)
    return out


def _mine(received: list[tuple[float, dict]], mark: int, started: float) -> list[tuple[float, dict]]:
    """The alert frames (opened or updated) received since ``mark`` for calls produced since ``started``."""
    return [(t, a) for t, a in received[mark:] if a["state"] in ("open", "update") and a["at"] >= started - 1]


def stage_records(r: redis.Redis, prefix: str, since: float) -> list[dict]:
    """The stage timing records (:mod:`streams.detection.stages`) of calls produced since ``since``; the list is emptied."""
    key = f"{prefix}:stage-timing"
    pipe = r.pipeline()
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    raw, _ = pipe.execute()
    return [rec for rec in (json.loads(x) for x in raw) if rec["t"] >= since - 1]


async def _one_load(
    settings, r: redis.Redis, rows: list[dict], rate: float, seconds: float, zone_at, seq, received, check, min_alerts: int, detect_web: int
) -> dict:
    """Offer ``rate`` calls/s for ``seconds`` (longer while fewer than ``min_alerts`` alert frames came), let the pipeline
    drain, and measure the alert frames for this load's calls."""
    mark = len(received)
    started = time.time()
    await asyncio.to_thread(stage_records, r, settings.redis_prefix, started)  # what came before is not this load's
    counters_before = await asyncio.to_thread(detector_counters, detect_web)
    extend = rate < EXTEND_BELOW and min_alerts > 0
    more = f" (or until {min_alerts} alert frames, {3 * seconds:g} s at most)" if extend else ""
    _say(f"offered load {rate:g} calls/s for {seconds:g} s{more}")
    sampler = ProgressSampler(settings)
    sampler.start()
    try:
        enough = (lambda: len(_mine(received, mark, started)) >= min_alerts) if extend else None
        sent = await offered_load(settings, rows, rate, seconds, zone_at, seq, enough)
    finally:
        sampler.stop()
    took = time.time() - started
    behind = await _behind(settings, r, settings.redis_prefix)
    # let the pipeline drain, then measure what arrived for this load's calls
    try:
        await asyncio.to_thread(wait_caught_up, settings, DRAIN_S, check)
        await asyncio.to_thread(wait_detected, settings, DRAIN_S, check)
    except NotCaughtUp as exc:
        _say(f"not drained: {exc}")
    await asyncio.sleep(2.0)
    mine = _mine(received, mark, started)
    timing = await asyncio.to_thread(stage_records, r, settings.redis_prefix, started)
    row = _load_row(rate, sent, took, started, mine, sampler.worst(started, started + took), behind, timing)
    counters_after = await asyncio.to_thread(detector_counters, detect_web)
    # calls the detectors ran and calls they never saw (late for the event-time merge; counted in Redis all the same)
    row["detector"] = {k.removeprefix("watchfloor_"): counters_after[k] - counters_before.get(k, 0) for k in counters_after}
    _say(f"  {sent:,} calls ({row['achieved_per_s']:g}/s) in {took:.0f} s; {len(mine)} alert frames; latency {row['alerts']}")
    _say(f"  most behind during the load [records, at s]: {row['most_behind']}; detectors: {row['detector']}")
    return row


async def run(rates: list[float], seconds: float, out: Path, split: bool = True, min_alerts: int = 100, stage_timing: bool = True) -> dict:
    prefix = f"lat{secrets.token_hex(4)}"
    # the environment's Kafka and Redis (WF_KAFKA_BOOTSTRAP, WF_REDIS_URL), the bench's own topics and keys
    settings = load_settings(None, topic_prefix=prefix, redis_prefix=prefix, app_id=f"wf-bench-{prefix}", partitions=4)
    # replicated as the environment says (WF_KAFKA_REPLICATION_FACTOR: bench/cluster.py runs this on the cluster)
    stack.create_topics(
        prefix, settings.partitions, settings.kafka_bootstrap, settings.kafka_replication_factor, settings.kafka_min_insync_replicas
    )
    tmp = Path(tempfile.mkdtemp(prefix="wf-latency-"))
    secret = secrets.token_urlsafe(48)
    web, port = free_port(), free_port()
    detect_web = free_port() if split else web
    env = {"WF_TOPIC_PREFIX": prefix, "WF_REDIS_PREFIX": prefix, "WF_APP_ID": settings.app_id, "WF_WEB_PORT": str(web)}
    env["WF_STAGE_TIMING"] = "1" if stage_timing else "0"
    worker, detector, gateway = _start(settings, env, tmp, split, port, secret, detect_web)
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    results: dict = {
        "prefix": prefix, "seconds": seconds, "min_alerts": min_alerts, "workers": "count + detect" if split else "one (both roles)",
        "stage_timing": stage_timing, "load_average_before": os.getloadavg(), "loads": [],
    }  # fmt: skip
    watcher = None
    try:
        _say(f"warming up: three days of simulated history on topics {prefix}.*, replayed at full speed")
        check = _alive(worker, detector)
        rows = warm_up(settings, env, tmp, check)
        _say(f"history counted and learnt ({len(rows):,} calls)")
        _wait_healthy(port)
        tok = issue(secret.encode(), subject="bench", role="supervisor", agency="bench", ttl_s=6 * 3600)
        zone_at, zone = _quiet_zone(rows)
        received: list[tuple[float, dict]] = []
        ready = asyncio.Event()
        watcher = asyncio.create_task(watch_alerts(f"ws://127.0.0.1:{port}/ws?token={tok}", received, ready, zone))
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(6)  # the detection agent reads event zones every 5 s
        seq = [0]
        for rate in rates:
            results["loads"].append(
                await _one_load(settings, r, rows, rate, seconds, zone_at, seq, received, check, min_alerts, detect_web)
            )
            await asyncio.sleep(5)
    finally:
        if watcher is not None:
            watcher.cancel()
        gateway.stop()
        worker.stop()
        if detector is not None:
            detector.stop()
        for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(key)
        r.close()
    results["logs"] = str(tmp)
    results["load_average_after"] = os.getloadavg()
    return results


def _alive(*procs: Proc | None):
    def check() -> None:
        for proc in procs:
            if proc is not None and proc.proc.poll() is not None:
                raise NotCaughtUp(f"a worker exited; see {proc.log}")

    return check


def _fmt(d: dict, k: str) -> str:
    """``d[k]`` rounded to a whole number, or '-' when ``d`` has no ``k``."""
    return f"{d[k]:.0f}" if k in d else "-"


def table(results: dict) -> str:
    lines = [
        f"load average (1, 5, 15 min) before {_avg(results.get('load_average_before'))}, after {_avg(results.get('load_average_after'))}",
        f"{'offered/s':>9} {'achieved/s':>10} {'calls':>8} {'alerts':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'zone p50':>9} {'to Redis p99':>12} {'to socket p99':>13} {'count lag':>9} {'detect lag':>10} {'late':>5}",
    ]
    for row in results["loads"]:
        a, b = row["alerts"], row["burst_alerts"]
        lines.append(
            f"{row['offered_per_s']:>9g} {row['achieved_per_s']:>10g} {row['sent']:>8,} {a['n']:>7} "
            f"{_fmt(a, 'p50'):>8} {_fmt(a, 'p95'):>8} {_fmt(a, 'p99'):>8} {_fmt(a, 'max'):>8} {_fmt(b, 'p50'):>9} "
            f"{_fmt(row['to_redis'], 'p99'):>12} {_fmt(row['redis_to_socket'], 'p99'):>13} "
            f"{row['counting_behind_at_end']:>9,} {row['detector_input_behind_at_end']:>10,} "
            f"{_fmt(row.get('detector', {}), 'detector_input_late_total'):>5}"
        )
    lines.append(
        "latency: an alert frame's receipt at a supervisor's WebSocket minus its 'at'\n"
        "  (the production time of the call that made it fire); split at the alert's append to the Redis stream\n"
        "  (its stream id): to Redis = Kafka, counting, detector input, detectors; to socket = the gateway;\n"
        "count lag / detect lag: records (calls) / detector-input messages not yet applied when the load stopped;\n"
        "late: calls the detectors never saw, too far out of event-time order (counted in Redis all the same).\n"
        "alerts: the alert frames each percentile rests on (a p99 of fewer than 100 is the largest or next to it)."
    )
    for row in results["loads"]:
        for title, key in (("calls that made an alert fire", "stages_alerts"), ("every call the detectors ran", "stages_calls")):
            lines.append(stage_table(f"{row['offered_per_s']:g} calls/s, {title}", row.get(key) or {}))
    return "\n".join(lines)


def _avg(values) -> str:
    return ", ".join(f"{x:.2f}" for x in values) if values else "-"


def stage_table(title: str, summary: dict) -> str:
    """One load's stage timing (:func:`streams.detection.stages.summarize`): per stage p50, p99, max (ms) and share."""
    if not summary:
        return f"\n{title}: no stage timing (run the workers with WF_STAGE_TIMING=1)"
    n = int(summary["total"]["n"])
    cols = f"{'stage':<15} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8} {'share':>6}"
    head = f"\n{title} ({n} calls; call to alert in Redis):\n{cols}"
    rows = [
        f"{stage:<15} {d['p50']:>8.1f} {d['p99']:>8.1f} {d['max']:>8.1f} {d['mean']:>8.1f} {100 * d['share']:>5.0f}%"
        for stage, d in summary.items()
    ]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--rates", default="0.5,2,5,100", help="offered loads, calls per second, comma-separated (default 0.5,2,5,100)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds each load is sustained at least (default 60)")
    p.add_argument(
        "--min-alerts",
        type=int,
        default=100,
        help=f"a load under {EXTEND_BELOW:g} calls/s goes on (up to 3 x --seconds) until this many alert frames came "
        "(default 100; 0: never)",
    )
    p.add_argument("--no-stage-timing", action="store_true", help="run the workers without WF_STAGE_TIMING (no stage figures)")
    add_json(p, ROOT / "out" / "bench" / "latency.json")
    p.add_argument(
        "--one-worker", action="store_true", help="run counting and detection in one worker (default: two, WF_ROLES=count and detect)"
    )
    args = p.parse_args(argv)
    try:
        rates = [float(x) for x in args.rates.split(",")]
    except ValueError:
        p.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if any(x <= 0 for x in rates) or args.seconds <= 0:
        p.error("rates and --seconds must be positive")
    require_stack(p)
    results = asyncio.run(
        run(rates, args.seconds, args.json, split=not args.one_worker, min_alerts=args.min_alerts, stage_timing=not args.no_stage_timing)
    )
    print(table(results))
    write_json(args.json, results)
    print(f"\nfigures written to {args.json}; worker and gateway logs in {results['logs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
