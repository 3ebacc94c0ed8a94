"""How long a fresh deployment takes to replay and learn from history: a simulated year and the largest real export.

    python -m infra.stack up
    python bench/backfill.py [PATH ...] [--days 365] [--seed 1] [--split-roles] [--json out/bench/backfill.json]

Without PATH it measures two sources: a year of the simulator's calls
(``python -m streams.ingest.simulator --days 365``, seeded, written to a temporary
directory) and the largest CSV in ``../shared/data`` that ``streams.ingest.sources``
can read (skipped, with a message, when that folder is absent). With PATHs it
measures those files instead.

For each source, on its own topics and Redis prefix, as a fresh deployment
would: a worker is started with the default settings (both roles in one
process, or ``--split-roles`` for a counting and a detecting worker) and, once
it has joined its consumer group, the file is replayed at full speed
(``streams.ingest.replay``, ``--speed max``: read, ordered by event time, produced with
acks from every replica) while the worker consumes. The clock starts with the
first record produced and reports:

- **produce**: until the producer has every acknowledgement;
- **counted**: until the counting agent has applied every record in Redis
  (sum of the applied offsets equals the records produced);
- **detected**: until the detection agent has fed every detector-input
  message to the detectors (its ``applied`` offset in ``P:detector``, what
  ``streams.runtime.progress.wait_detected`` waits for), i.e. every accepted call has
  been through the detectors, warm-up included (they learn from the first call
  and score once their baseline is ready);
- **total** = detected: wall time from the first record produced to the
  detectors done. Reading and ordering the file and the worker's start-up are
  reported apart.

Records/s are records (calls and incident updates) over each time, and calls/s
for the detectors. Afterwards the counts are checked exactly: calls counted
plus calls in the dead-letter topic equal the calls produced (the same for
updates), and the finest-resolution total of the buckets still in Redis
equals the accepted calls at or after the retention horizon (the worker keeps
``WF_RETENTION_S``, 8 days by default, of buckets). Also reported: alerts
raised (records on the alerts topic, opened alerts by kind), each worker's
resident memory at the end and its peak (``/proc/PID/status`` VmRSS, VmHWM),
the detectors' checkpoint size (once it covers every message), the keys and
bytes under the run's Redis prefix (``MEMORY USAGE``), and the worker's
incident-lifecycle counters (updates held for a call it had no state for,
those dropped unmatched, calls closed by the open timeout).

Prints a table and writes JSON (``--json``, default ``out/bench/backfill.json``).
Topics, consumer groups and Redis keys of the run (all named after its own
prefix) are deleted at the end unless ``--keep``. No figure is asserted: the
machine is shared, so timings are what they were on that run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import h3
import redis
from _common import ROOT, SHARED_DATA, add_json, aligned, parser, proc_memory, require_stack, write_json
from tqdm import tqdm

from infra import stack
from infra.processes import WorkerProcess
from streams.counting.keys import ALL, Keys
from streams.counting.planner import CALL, UPDATE
from streams.counting.rolling import minute_of
from streams.ingest.replay import Pace, plan_replay, produce
from streams.ingest.sources import UnknownFormat, detect_format
from streams.runtime.settings import Settings, load_settings
from streams.topics import ALERTS, CALLS, DEADLETTER, DETECTOR_INPUT, INCIDENT_UPDATES, topic_name

DEFAULT_JSON = ROOT / "out" / "bench" / "backfill.json"
POLL_S = 0.25


def say(msg: str) -> None:
    print(f"[backfill] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- helpers shared with bench/memory.py


def prefix_memory(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Keys under ``prefix:`` and the bytes Redis says they take (``MEMORY USAGE ... SAMPLES 0``, every field counted)."""
    keys = list(client.scan_iter(match=Keys(prefix).pattern, count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    sizes = pipe.execute() if keys else []
    return {"keys": len(keys), "bytes": sum(s or 0 for s in sizes)}


def wait_ready(worker: WorkerProcess, timeout_s: float = 120.0) -> float:
    """Seconds until the Faust worker logs that it started (it has joined its group and got its partitions)."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"the worker exited during start-up (code {worker.proc.returncode}):\n{worker.log_tail()}")
        text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
        if "Ready" in text or "OK ^" in text:  # Faust's start-up line, without and with its spinner
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not report Ready within {timeout_s:.0f} s:\n{worker.log_tail()}")


def delete_run(settings: Settings, client: redis.Redis) -> str:
    """Delete the Redis keys, topics and consumer groups of this run: only names carrying its own prefix."""
    from kafka import KafkaAdminClient

    prefix = settings.redis_prefix
    keys = list(client.scan_iter(match=Keys(prefix).pattern, count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        topics = [t for t in admin.list_topics() if t.startswith(f"{settings.topic_prefix}.") or t.startswith(settings.app_id)]
        if topics:
            admin.delete_topics(topics)
        groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(settings.app_id)]
        if groups:
            admin.delete_groups(groups)
    finally:
        admin.close()
    return f"deleted {len(keys)} Redis keys, {len(topics)} topics and {len(groups)} consumer groups of {prefix}"


def read_all(settings: Settings, base: str, partitions: int = 1) -> list[bytes]:
    """Every value on ``{prefix}.{base}`` from the beginning to its current end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic_name(settings.topic_prefix, base), p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[bytes] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
                out += [r.value for r in records]
        return out
    finally:
        consumer.close()


def progress_bar(total: int, desc: str, unit: str, position: int = 0) -> tqdm:
    """A progress bar on stderr; when stderr is not a terminal (a log file), one line every 10 s instead of a redraw."""
    tty = sys.stderr.isatty()
    return tqdm(
        total=total, desc=f"{desc:8}", unit=unit, position=position if tty else None, file=sys.stderr, mininterval=0.5 if tty else 10
    )


def detector_offsets(client: redis.Redis, prefix: str) -> dict[str, int]:
    """The detection agent's progress: ``applied`` (last detector-input offset fed to the detectors, what
    ``streams.runtime.progress.wait_detected`` waits for) and ``checkpoint`` (last offset in the saved state); -1 before any."""
    applied, checkpoint = client.hmget(Keys(prefix).detector, ["applied", "offset"])
    return {"applied": int(applied) if applied is not None else -1, "checkpoint": int(checkpoint) if checkpoint is not None else -1}


def checkpoint_bytes(client: redis.Redis, prefix: str, timeout_s: float = 60.0) -> int:
    """Size of the detectors' pickled state, once the checkpoint covers everything fed to them (it is saved every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at = detector_offsets(client, prefix)
        if at["checkpoint"] >= at["applied"]:
            break
        time.sleep(0.2)
    return client.hstrlen(Keys(prefix).detector, "state") * 3 // 4  # stored as base64


def detector_counters(worker: WorkerProcess) -> dict[str, float]:
    """The detection runner's counters from the worker's metrics page (they live in the worker, not in Redis)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("watchfloor_detector_"):
            out[name.removeprefix("watchfloor_")] = float(value)
    return out


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(), "load_avg": os.getloadavg()}


# ---------------------------------------------------------------------- sources


def simulate_year(workdir: Path, days: float, seed: int) -> Path:
    out = workdir / f"sim-{days:g}d-seed{seed}.csv"
    say(f"generating {days:g} days of simulated calls (seed {seed}) into {out}")
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(out), "--days", f"{days:g}", "--seed", str(seed), "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return out


def largest_shared(folder: Path = SHARED_DATA) -> Path | None:
    """The largest CSV in ``folder`` whose format ``streams.ingest.sources`` recognises, or None."""
    for path in sorted(folder.glob("*.csv"), key=lambda p: p.stat().st_size, reverse=True):
        try:
            detect_format(path)
        except (UnknownFormat, OSError, UnicodeDecodeError):
            continue
        return path
    return None


def default_sources(args: argparse.Namespace, workdir: Path) -> list[tuple[str, Path]]:
    sources = [(f"simulator, {args.days:g} days", simulate_year(workdir, args.days, args.seed))]
    if not SHARED_DATA.is_dir():
        say(f"{SHARED_DATA} is absent: the real-data source is skipped")
    elif (path := largest_shared()) is None:
        say(f"no CSV in {SHARED_DATA} has a format streams.ingest.sources can read: the real-data source is skipped")
    else:
        sources.append((path.name, path))
    return sources


# ---------------------------------------------------------------------- one source


class Producer(threading.Thread):
    """``streams.ingest.replay.produce`` at full speed in its own thread (its own event loop), so this one can watch."""

    def __init__(self, records, rejected, settings: Settings, name: str) -> None:
        super().__init__(daemon=True)
        self.args = (records, rejected, settings, name)
        self.summary = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None

    def run(self) -> None:
        records, rejected, settings, name = self.args
        try:
            self.summary = asyncio.run(
                produce(
                    records, rejected, bootstrap=settings.kafka_bootstrap, prefix=settings.topic_prefix,
                    pace=Pace(), progress=False, source_name=name,
                )
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 -- handed to the watching thread, which raises it
            self.error = exc
        finally:
            self.finished_at = time.perf_counter()


def follow(
    settings: Settings, workers: list[WorkerProcess], total: int, timeout_s: float, producer: Producer | None = None
) -> dict[str, float]:
    """Watch Kafka and Redis until ``total`` ingest records are counted and the detectors have every detector-input message.

    Returns the ``time.perf_counter()`` at which counting and detection were
    done (``counted``, ``detected``) and how many detector-input messages there
    were. The topics must be this run's own (offsets from 0). Progress bars on
    stderr; raises when a worker or the ``producer`` fails, or after ``timeout_s``.
    """
    from kafka import KafkaConsumer, TopicPartition

    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    ingest = [
        TopicPartition(topic_name(settings.topic_prefix, base), p) for base in (CALLS, INCIDENT_UPDATES) for p in range(settings.partitions)
    ]
    det_tp = TopicPartition(topic_name(settings.topic_prefix, DETECTOR_INPUT), 0)
    offsets = [keys.offset(kind, p) for kind in (CALL, UPDATE) for p in range(settings.partitions)]
    phases = [("counted", total, "rec"), ("detected", 0, "msg")]
    if producer is not None:
        phases.insert(0, ("produced", total, "rec"))
    bars = {name: progress_bar(n, name, unit, i) for i, (name, n, unit) in enumerate(phases)}
    marks: dict[str, float] = {}
    det_total: int | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while "detected" not in marks:
            now = time.perf_counter()
            if producer is not None and producer.error is not None:
                raise RuntimeError(f"the replay failed: {producer.error!r}") from producer.error
            ends = consumer.end_offsets([*ingest, det_tp])
            counted = sum(int(v) + 1 for v in client.mget(offsets) if v is not None)
            detected = detector_offsets(client, settings.redis_prefix)["applied"] + 1
            if "counted" not in marks and counted >= total:
                marks["counted"] = now
                det_total = ends[det_tp]  # final: the counting agent publishes detector input before it commits
            if det_total is not None and detected >= det_total:
                marks["detected"] = now
            if "produced" in bars:
                _show(bars["produced"], sum(ends[tp] for tp in ingest))
            _show(bars["counted"], counted)
            bars["detected"].total = det_total if det_total is not None else max(ends[det_tp], 1)
            _show(bars["detected"], detected)
            if "detected" in marks:
                break
            for w in workers:
                if not w.alive():
                    raise RuntimeError(f"a worker exited (code {w.proc.returncode}):\n{w.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not done after {timeout_s:.0f} s: {counted:,}/{total:,} records counted, detector input {detected:,}/"
                    f"{det_total if det_total is not None else ends[det_tp]:,}"
                )
            time.sleep(POLL_S)
    finally:
        for bar in bars.values():
            bar.close()
        consumer.close()
        client.close()
    marks["detector_input_messages"] = float(det_total or 0)
    return marks


def _show(bar: tqdm, value: int) -> None:
    bar.update(max(0, value - bar.n))


def check_counts(settings: Settings, client: redis.Redis, records, metrics: dict[str, int]) -> dict:
    """Exactness: produced = counted + dead-lettered, per kind; finest-cell total over kept buckets = accepted calls kept."""
    calls_topic, updates_topic = topic_name(settings.topic_prefix, CALLS), topic_name(settings.topic_prefix, INCIDENT_UPDATES)
    produced = Counter(r.topic for r in records)
    dead = [json.loads(v) for v in read_all(settings, DEADLETTER)]
    refused = Counter(d["topic"] for d in dead)
    reasons = Counter(d["reason"] for d in dead if d["topic"] in (calls_topic, updates_topic))
    # the dead letters hold the original bytes: find each refused call's event time among the records produced
    time_of = {r.value: r.event_time for r in records if r.topic == calls_topic}
    found = [time_of.get(base64.b64decode(d["original_b64"])) for d in dead if d["topic"] == calls_topic]
    refused_call_minutes = [minute_of(t) for t in found if t is not None]
    horizon_raw = client.get(Keys(settings.redis_prefix).horizon)
    horizon = int(horizon_raw) if horizon_raw is not None else None
    kept_expected = sum(1 for r in records if r.topic == calls_topic and (horizon is None or minute_of(r.event_time) >= horizon))
    kept_expected -= sum(1 for m in refused_call_minutes if horizon is None or m >= horizon)
    keys = Keys(settings.redis_prefix)
    minutes = client.zrange(keys.buckets, 0, -1)
    finest = 0
    for i in range(0, len(minutes), 500):
        pipe = client.pipeline(transaction=False)
        for m in minutes[i : i + 500]:
            pipe.hgetall(keys.bucket(int(m)))
        for h in pipe.execute():
            for fld, v in h.items():
                cell, _, cat = fld.decode().partition("|")
                if cat == ALL and h3.get_resolution(cell) == settings.h3_resolution:
                    finest += int(v)
    out = {
        "calls_produced": produced[calls_topic],
        "calls_counted": metrics.get(f"events_total|{CALL}", 0),
        "calls_dead_lettered": refused[calls_topic],
        "updates_produced": produced[updates_topic],
        "updates_counted": metrics.get(f"events_total|{UPDATE}", 0),
        "updates_dead_lettered": refused[updates_topic],
        "dead_letter_reasons": dict(reasons),
        "horizon_minute": horizon,
        "finest_cell_total_kept": finest,
        "accepted_calls_kept_expected": kept_expected,
        "redelivered_skipped": metrics.get("redelivered_skipped_total", 0),
        "dead_letters_not_produced_here": len(found) - len(refused_call_minutes),
    }
    out["exact"] = (
        out["dead_letters_not_produced_here"] == 0
        and out["calls_counted"] + out["calls_dead_lettered"] == out["calls_produced"]
        and out["updates_counted"] + out["updates_dead_lettered"] == out["updates_produced"]
        and finest == kept_expected
    )
    return out


def alerts_raised(settings: Settings) -> dict:
    bodies = [json.loads(v) for v in read_all(settings, ALERTS)]
    opened = Counter(b["kind"] for b in bodies if b.get("state") == "open")
    return {"records": len(bodies), "opened": sum(opened.values()), "opened_by_kind": dict(opened)}


def measure_source(label: str, path: Path, args: argparse.Namespace, logs: Path) -> dict:
    prefix = f"bf{uuid.uuid4().hex[:8]}"
    settings = load_settings({}, topic_prefix=prefix, redis_prefix=prefix, app_id=f"wf-bench-{prefix}")
    fmt = detect_format(path)
    say(f"{label}: reading and ordering {path} ({fmt})")
    t = time.perf_counter()
    records, rejected = plan_replay(path, fmt, prefix)
    read_s = time.perf_counter() - t
    calls = sum(1 for r in records if r.topic == topic_name(prefix, CALLS))
    say(f"{label}: {len(records):,} records ({calls:,} calls), {len(rejected):,} rows refused by the adapter; read in {read_s:.1f} s")
    stack.create_topics(prefix, settings.partitions)
    roles = [("count",), ("detect",)] if args.split_roles else [("count", "detect")]
    workers = [WorkerProcess(replace(settings, roles=r), logs, f"{prefix}-{'-'.join(r)}") for r in roles]
    client = redis.Redis.from_url(settings.redis_url)
    result: dict = {"source": label, "path": str(path), "format": fmt, "prefix": prefix, "roles": ["+".join(r) for r in roles]}
    try:
        for w in workers:
            w.start()
        startup_s = max(wait_ready(w) for w in workers)
        say(f"{label}: worker(s) ready after {startup_s:.1f} s; replaying at full speed on {prefix}.*")
        producer = Producer(records, rejected, settings, path.name)
        t0 = time.perf_counter()
        producer.start()
        marks = follow(settings, workers, len(records), args.timeout, producer)
        producer.join()
        marks["produced"] = producer.finished_at
        memory = {"+".join(r): proc_memory(w.proc.pid) for r, w in zip(roles, workers, strict=True)}
        checkpoint = checkpoint_bytes(client, prefix)  # waits for the checkpoint: the timer has released any held calls by then
        detectors = detector_counters(workers[-1])  # the last worker runs the detection role
        metrics = {k.decode(): int(v) for k, v in client.hgetall(Keys(prefix).metrics).items()}
        counts = check_counts(settings, client, records, metrics)
        accepted = counts["calls_counted"]
        result.update(
            records=len(records),
            calls=calls,
            updates=len(records) - calls,
            adapter_refused=len(rejected),
            event_time=[records[0].event_time, records[-1].event_time] if records else None,
            read_s=read_s,
            startup_s=startup_s,
            produce_s=marks["produced"] - t0,
            counted_s=marks["counted"] - t0,
            detected_s=marks["detected"] - t0,
            total_s=marks["detected"] - t0,
            produce_per_s=len(records) / (marks["produced"] - t0),
            counted_per_s=len(records) / (marks["counted"] - t0),
            detected_calls_per_s=accepted / (marks["detected"] - t0),
            detector_input_messages=int(marks["detector_input_messages"]),
            counts=counts,
            alerts=alerts_raised(settings),
            worker_memory=memory,
            checkpoint_bytes=checkpoint,
            redis=prefix_memory(client, prefix),
            worker_metrics=metrics,
            detector_counters=detectors,
        )
        say(
            f"{label}: produced in {result['produce_s']:.1f} s, counted in {result['counted_s']:.1f} s, "
            f"detected in {result['detected_s']:.1f} s; exact: {counts['exact']}"
        )
    finally:
        for w in workers:
            w.stop()
        if args.keep:
            say(f"kept topics {prefix}.* and Redis keys {prefix}:*; worker logs in {logs}")
        else:
            say(delete_run(settings, client))
        client.close()
    return result


# ---------------------------------------------------------------------- entry points


def build_parser() -> argparse.ArgumentParser:
    p = parser(__file__, __doc__)
    p.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH",
        help=(
            "CSV files to replay (any format streams.ingest.sources reads); "
            "default: a simulated year and the largest file in ../shared/data"
        ),
    )  # fmt: skip
    p.add_argument("--days", type=float, default=365.0, help="days of simulated calls for the default simulator source (default 365)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.add_argument("--split-roles", action="store_true", help="a counting worker and a detecting worker instead of one worker with both")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds a source may take from replay to detectors done (default 3600)")
    p.add_argument("--keep", action="store_true", help="keep the run's topics and Redis keys (default: deleted at the end)")
    add_json(p, DEFAULT_JSON)
    return p


def run(args: argparse.Namespace) -> dict:
    """Measure every source (``args`` as :func:`build_parser` makes them); the figures as a JSON-ready dict."""
    require_stack()
    for path in args.paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a file")
    started = time.perf_counter()
    logs = Path(tempfile.mkdtemp(prefix="wf-backfill-"))
    with tempfile.TemporaryDirectory(prefix="wf-backfill-sim-") as tmp:
        sources = [(p.name, p) for p in args.paths] if args.paths else default_sources(args, Path(tmp))
        results = [measure_source(label, path, args, logs) for label, path in sources]
    return {
        "benchmark": "backfill",
        "settings": {"days": args.days, "seed": args.seed, "split_roles": args.split_roles, "paths": [str(p) for p in args.paths]},
        "machine": machine(),
        "summary": [summary(s) for s in results],
        "sources": results,
        "logs": str(logs),
        "wall_s": time.perf_counter() - started,
    }


def summary(s: dict) -> str:
    """One headline line for a source (``bench/all.py`` prints these)."""
    rss = ", ".join(f"{m['rss_mib']:.0f}" for m in s["worker_memory"].values())
    return (
        f"{s['source']}: {s['calls']:,} calls ({s['records']:,} records) produced in {s['produce_s']:.0f} s, counted in "
        f"{s['counted_s']:.0f} s ({s['counted_per_s']:,.0f} records/s), detectors done in {s['total_s']:.0f} s "
        f"({s['detected_calls_per_s']:,.0f} calls/s); {s['alerts']['opened']} alerts opened; worker RSS {rss} MiB; "
        f"counts exact: {'yes' if s['counts']['exact'] else 'NO'}"
    )


def table(results: dict) -> str:
    rows: list[tuple[str, ...]] = [("", *(s["source"] for s in results["sources"]))]

    def add(name: str, fn) -> None:
        rows.append((name, *(fn(s) for s in results["sources"])))

    add("calls / records", lambda s: f"{s['calls']:,} / {s['records']:,}")
    add("event time", lambda s: f"{_day(s['event_time'][0])} .. {_day(s['event_time'][1])}" if s["event_time"] else "-")
    add("read + order file", lambda s: f"{s['read_s']:.1f} s")
    add("worker start-up", lambda s: f"{s['startup_s']:.1f} s")
    add("produce (records/s)", lambda s: f"{s['produce_s']:.1f} s ({s['produce_per_s']:,.0f})")
    add("counted (records/s)", lambda s: f"{s['counted_s']:.1f} s ({s['counted_per_s']:,.0f})")
    add("detected (calls/s)", lambda s: f"{s['detected_s']:.1f} s ({s['detected_calls_per_s']:,.0f})")
    add("total, replay to detected", lambda s: f"{s['total_s']:.1f} s")
    add("alerts opened (records)", lambda s: f"{s['alerts']['opened']:,} ({s['alerts']['records']:,})")
    for role in dict.fromkeys(r for s in results["sources"] for r in s["worker_memory"]):
        add(f"worker {role} RSS (peak)", lambda s, r=role: _mem(s["worker_memory"].get(r)))
    add("detector checkpoint", lambda s: f"{s['checkpoint_bytes'] / 2**20:.1f} MiB")
    add("Redis keys / MiB (prefix)", lambda s: f"{s['redis']['keys']:,} / {s['redis']['bytes'] / 2**20:.1f}")
    add("dead letters (calls, updates)", lambda s: f"{s['counts']['calls_dead_lettered']:,}, {s['counts']['updates_dead_lettered']:,}")
    add("counts exact", lambda s: "yes" if s["counts"]["exact"] else "NO")
    add("calls through the detectors / late", lambda s: f"{_det(s, 'points')} / {_det(s, 'input_late')}")
    add(
        "updates held for their call / expired",
        lambda s: f"{_metric(s, 'updates_pending_total')} / {_metric(s, 'orphan_updates_expired_total')}",
    )
    add("calls closed by the open timeout", lambda s: _metric(s, "stale_closed_total"))
    lines = aligned(rows)
    lines.append(
        "\ntimes from the first record produced; records = calls + incident updates; detected: every detector-input message\n"
        "fed to the detectors; late: calls too far out of event-time order for the detectors, skipped by them (still counted);\n"
        "counts exact: produced = counted + dead-lettered per kind, and the finest-cell total\n"
        "of the buckets kept equals the accepted calls kept; updates held: the worker had no state for their call (not read\n"
        "yet, or already evicted by the retention cut); expired: still unmatched at the retention cut, dropped. "
        f"Machine: {results['machine']['cpus']} cores, shared."
    )
    return "\n".join(lines)


def _det(s: dict, name: str) -> str:
    return f"{s['detector_counters'].get(f'detector_{name}_total', 0):,.0f}"


def _metric(s: dict, name: str) -> str:
    return f"{s['worker_metrics'].get(name, 0):,}"


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _mem(m: dict | None) -> str:
    return f"{m['rss_mib']:.0f} MiB ({m['peak_mib']:.0f})" if m else "-"


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.days <= 0 or args.timeout <= 0:
        p.error("--days and --timeout must be positive")
    try:
        results = run(args)
    except (RuntimeError, FileNotFoundError, TimeoutError) as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 1
    print(table(results))
    write_json(args.json, results)
    print(f"\nfigures written to {args.json}; worker logs in {results['logs']} (run took {results['wall_s']:.0f} s)")
    return 0 if all(s["counts"]["exact"] for s in results["sources"]) else 1


if __name__ == "__main__":
    sys.exit(main())
