"""The whole ingestion path on the real broker, worker process and Redis.

Replays at least 10,000 calls (real Montgomery County calls when
``../shared/data`` is present, the simulator otherwise) and checks every Redis
count against counts computed here, independently, from the source file:
equal, not approximately. Then the same under SIGKILL, and with two workers of
which one dies.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import h3
import pytest

from streams.counting.state import RedisState
from streams.runtime.progress import end_offsets
from streams.runtime.settings import MAX_POLL_RECORDS_LIMIT
from streams.topics import DEADLETTER, topic_name
from tests.conftest import data_file
from tests.stackutil import ROOT, WorkerProcess, plan_processes, read_topic, wait_caught_up, worker_env

pytestmark = pytest.mark.stack

N_CALLS = 10_000
MONTGOMERY = "montgomery-pa-911-2015-12-to-2016-08.csv"
NY = ZoneInfo("America/New_York")
DESC_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}) @ (\d{2}:\d{2}:\d{2})")


# -- the independent expectation ------------------------------------------------


def _ny(text: str) -> float | None:
    naive = datetime.fromisoformat(text)
    ts = naive.replace(tzinfo=NY).timestamp()
    # wall times skipped by the spring change do not exist
    return ts if datetime.fromtimestamp(ts, NY).replace(tzinfo=None) == naive else None


def _category(text: str) -> str:
    head = text.split(":", 1)[0].strip().upper()
    return head if head in {"EMS", "FIRE", "TRAFFIC", "POLICE"} else "OTHER"


def expected_from_source(path: Path, fmt: str, limit: int, resolutions: tuple[int, ...]):
    """Counts per (minute, cell, category) and dispatch-time sums per area, straight from the CSV."""
    rows = []  # (received, line, lat, lng, category, dispatched)
    with open(path, newline="", encoding="utf-8") as f:
        for line, rec in enumerate(csv.DictReader(f), start=2):
            if fmt == "montgomery-pa":
                m = DESC_TIME.search(rec["desc"])
                stamp = _ny(rec["timeStamp"])
                received = _ny(f"{m.group(1)} {m.group(2)}") if m else stamp
                if received is None or stamp is None:
                    continue
                dispatched = stamp if m and stamp >= received else None
                rows.append((received, line, rec["lat"], rec["lng"], _category(rec["title"]), dispatched))
            else:  # watchfloor (simulator)
                received = datetime.fromisoformat(rec["received_at"].replace("Z", "+00:00")).timestamp()
                d = rec["dispatched_at"]
                dispatched = datetime.fromisoformat(d.replace("Z", "+00:00")).timestamp() if d else None
                rows.append((received, line, rec["lat"], rec["lng"], rec["category"].upper(), dispatched))
    rows.sort(key=lambda r: (r[0], r[1]))
    counts: Counter = Counter()
    dispatch: dict[str, list[int]] = {}
    valid = invalid = 0
    for received, _, lat_s, lng_s, cat, dispatched in rows[:limit]:
        try:
            lat, lng = float(lat_s), float(lng_s)
        except ValueError:
            invalid += 1
            continue
        if not (-90 <= lat <= 90 and -180 <= lng <= 180) or (lat == 0 and lng == 0):
            invalid += 1
            continue
        valid += 1
        minute = int(received // 60)
        cell = h3.latlng_to_cell(lat, lng, resolutions[0])
        for res in resolutions:
            c = h3.cell_to_parent(cell, res)
            counts[(minute, c, cat)] += 1
            counts[(minute, c, "ALL")] += 1
        if dispatched is not None:
            area = h3.cell_to_parent(cell, resolutions[-1])
            slot = dispatch.setdefault(area, [0, 0])
            slot[0] += 1
            slot[1] += round(dispatched - received)
    return counts, dispatch, valid, invalid


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, str]:
    """The real Montgomery file when present, else a simulated 40-day file (>= 10,000 calls)."""
    real = data_file(MONTGOMERY)
    if real is not None:
        return real, "montgomery-pa"
    out = tmp_path_factory.mktemp("sim") / "sim.csv"
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(out), "--days", "40", "--seed", "11"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out, "watchfloor"


@pytest.fixture
def long_retention(settings):
    """Nothing expires during the check (expiry has its own tests in test_state.py)."""
    from dataclasses import replace

    return replace(settings, retention_s=400 * 86400, batch_size=500)


def replay(settings, path: Path, fmt: str, limit: int, rate: float | None = None) -> subprocess.Popen:
    """The replay CLI at full speed, or at ``rate`` records per second."""
    cmd = [
        sys.executable,
        "-m",
        "streams.ingest.replay",
        str(path),
        "--format",
        fmt,
        "--speed",
        "max",
        "--limit",
        str(limit),
        "--no-progress",
    ]
    if rate is not None:
        cmd += ["--rate", str(rate)]
    return subprocess.Popen(cmd, cwd=ROOT, env=worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(rp: subprocess.Popen, timeout_s: float = 300) -> str:
    """Wait for a replay; kill it if the test is leaving early. Returns its stdout."""
    try:
        out, err = rp.communicate(timeout=timeout_s)
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
    assert rp.returncode == 0, err
    return out


def calls_counted(settings) -> int:
    """A cheap read of the worker's call counter (for deciding when to kill)."""
    import redis

    from streams.counting.keys import Keys

    with redis.Redis.from_url(settings.redis_url) as client:
        return int(client.hget(Keys(settings.redis_prefix).metrics, "events_total|call") or 0)


def wait_counted(settings, at_least: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = calls_counted(settings)
        if n >= at_least:
            return n
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} calls counted after {timeout_s:.0f} s")


def redis_view(settings):
    async def go():
        st = RedisState.from_settings(settings)
        try:
            counts = await st.bucket_counts()
            metrics = await st.metrics()
            keys = st.keys
            hours = [int(h) for h in await st.client.zrange(keys.rt_hours, 0, -1)]
            dispatch: dict[str, list[int]] = {}
            for hour in hours:
                for fld, v in (await st.client.hgetall(keys.rt(hour))).items():
                    kind, area, stat = fld.split("|")
                    if kind == "dispatch" and stat in ("n", "sum"):
                        dispatch.setdefault(area, [0, 0])[0 if stat == "n" else 1] += int(v)
            return counts, dispatch, metrics
        finally:
            await st.close()

    return asyncio.run(go())


def assert_exact(settings, source) -> dict:
    path, fmt = source
    counts, dispatch, metrics = redis_view(settings)
    exp_counts, exp_dispatch, valid, invalid = expected_from_source(path, fmt, N_CALLS, settings.resolutions)
    assert valid >= 9_900
    assert metrics.get("events_total|call") == valid
    assert sum(v for k, v in metrics.items() if k.startswith("deadletter_total")) == invalid
    missing = {k: v for k, v in exp_counts.items() if counts.get(k) != v}
    extra = {k: v for k, v in counts.items() if k not in exp_counts}
    assert not missing and not extra, f"{len(missing)} counts differ, {len(extra)} unexpected; e.g. {list(missing.items())[:3]}"
    assert counts == dict(exp_counts)
    if fmt == "montgomery-pa" or exp_dispatch:
        assert dispatch == exp_dispatch
    return metrics


# -- tests ---------------------------------------------------------------------------


def test_replayed_calls_are_counted_exactly_per_cell_category_and_minute(long_retention, source, tmp_path):
    settings = long_retention
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        out = finish(replay(settings, *source, N_CALLS))
        assert f"replayed {N_CALLS} calls" in out
        wait_caught_up(settings, [worker])
        assert_exact(settings, source)
    finally:
        worker.stop()


def _fetch_metrics(worker: WorkerProcess) -> dict[str, float]:
    page = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10).read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^watchfloor_(fetch_\w+) (\S+)$", page, re.M)}


def test_a_backlog_is_delivered_without_blocking_on_the_agent_full_buffer(long_retention, source, tmp_path):
    # A worker started on a backlog reads faster than it commits, so its agent's buffer fills.
    # With the default max_poll_records every fetch fits the room Faust keeps above the mark
    # where it pauses a partition; with the largest setting some fetches overflow it, and each
    # record past the room waits for one, which the worker's metrics page counts.
    from dataclasses import replace

    settings = long_retention
    finish(replay(settings, *source, N_CALLS))
    records = sum(end_offsets(settings).values())
    seen = {}
    for name, max_poll in (("default", settings.max_poll_records), ("largest", MAX_POLL_RECORDS_LIMIT)):
        own = replace(settings, redis_prefix=f"{settings.redis_prefix}{name}", app_id=f"{settings.app_id}-{name}")
        own = replace(own, max_poll_records=max_poll)
        (tmp_path / name).mkdir()
        worker = WorkerProcess(own, tmp_path / name).start()
        try:
            wait_caught_up(own, [worker])
            seen[name] = _fetch_metrics(worker)
        finally:
            worker.stop()
        assert seen[name]["fetch_records_delivered_total"] >= records, name
    assert seen["default"]["fetch_deliveries_blocked_total"] == 0, seen
    assert seen["largest"]["fetch_deliveries_blocked_total"] > 0, seen


def test_worker_killed_with_sigkill_mid_replay_ends_with_identical_counts(long_retention, source, tmp_path):
    settings = long_retention
    first = WorkerProcess(settings, tmp_path, "first").start()
    second = None
    # Paced so that the kill lands mid-stream: ~20,000 records at 1,500/s take ~13 s.
    rp = replay(settings, *source, N_CALLS, rate=1500)
    try:
        wait_counted(settings, 2_000)
        first.kill()
        counted_at_kill = calls_counted(settings)
        assert counted_at_kill < N_CALLS - 2_000, "the kill must land mid-stream"
        second = WorkerProcess(settings, tmp_path, "second").start()
        finish(rp)
        wait_caught_up(settings, [second])
        assert_exact(settings, source)
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
        first.stop()
        if second:
            second.stop()


def test_plan_process_killed_mid_replay_is_replaced_and_counts_stay_exact(long_retention, source, tmp_path):
    """A plan process (streams.counting.planproc) SIGKILLed twice, one of each committer's.

    The worker starts a new one each time, and the counts stay exact.
    """
    settings = long_retention
    assert settings.committers == 2
    worker = WorkerProcess(settings, tmp_path).start()
    rp = replay(settings, *source, N_CALLS, rate=1500)
    try:
        started = settings.committers
        for n, which in ((2_000, 0), (5_000, 1)):
            wait_counted(settings, n)
            children = plan_processes(worker.proc.pid)
            assert len(children) == settings.committers, "one plan process per committer"
            os.kill(children[which], signal.SIGKILL)
            started += 1
            worker.wait_for_log("plan process started", count=started)
        assert calls_counted(settings) < N_CALLS - 2_000, "the kills must land mid-stream"
        finish(rp)
        wait_caught_up(settings, [worker])
        assert_exact(settings, source)
        assert worker.alive(), worker.log_tail()
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
        worker.stop()


def test_two_workers_share_partitions_and_one_dies_counts_stay_exact(long_retention, source, tmp_path):
    from dataclasses import replace

    settings = replace(long_retention, batch_size=200)
    a = WorkerProcess(settings, tmp_path, "a").start()
    b = WorkerProcess(settings, tmp_path, "b").start()
    rp = replay(settings, *source, N_CALLS, rate=1500)
    try:
        wait_counted(settings, 3_000)
        b.kill()
        assert calls_counted(settings) < N_CALLS - 2_000, "the kill must land mid-stream"
        finish(rp)
        wait_caught_up(settings, [a], timeout_s=300)
        assert_exact(settings, source)
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
        a.stop()
        b.stop()


def test_malformed_records_land_in_the_dead_letter_topic_with_reason_and_good_ones_count(settings, tmp_path):
    from aiokafka import AIOKafkaProducer

    from streams.ingest.schema import format_time
    from tests.streams.counting.test_planner import T0, call, update

    now = time.time()
    bad = {
        b"\xff\xfe not utf8": "not_json",
        b"{truncated": "not_json",
        b'"just a string"': "not_an_object",
        b'{"type":"alarm","v":1}': "unknown_type",
        b'{"type":"call","v":2}': "unsupported_version",
        b'{"type":"call","v":1,"id":"m1"}': "missing_field",
        call("b1", T0, lat=91.0): "coordinates_out_of_range",
        call("b2", T0, lat=0.0, lng=0.0): "coordinates_out_of_range",
        call("b3", T0, lat=47.6, lng=-122.3): "outside_jurisdiction",
        call("b4", now + 7 * 86400): "impossible_timestamp",
        json.dumps(
            {
                "type": "call",
                "v": 1,
                "id": "b5",
                "received_at": "1899-01-01T00:00:00Z",
                "category": "EMS",
                "call_type": "X",
                "lat": 40.1,
                "lng": -75.3,
                "agency": "a",
                "source": "s",
            }
        ).encode(): "impossible_timestamp",
        call("b6", T0, call_type="x" * 9000): "oversize",
        update("b7", "dispatched", T0): "wrong_topic",
        call("b8", T0, cat="ALIENS"): "bad_field",
    }
    good = [call(f"g{i}", T0 + i, caller_name="Jane Roe", phone="215-555-0100") for i in range(20)]
    env_extra = {"WF_JURISDICTION": "39.9,-75.7,40.5,-75.0"}

    async def produce():
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True)
        await p.start()
        try:
            for i, value in enumerate([*good[:10], *bad, *good[10:]]):
                await p.send_and_wait(topic_name(settings.topic_prefix, "calls"), key=f"k{i}".encode(), value=value)
        finally:
            await p.stop()

    asyncio.run(produce())
    worker = WorkerProcess(settings, tmp_path, env=env_extra).start()
    try:
        wait_caught_up(settings, [worker])
        letters = read_topic(settings, DEADLETTER, expect=len(bad))
        counts, _, metrics = redis_view(settings)
        exposition = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10).read().decode()
    finally:
        worker.stop()
    by_original = {base64.b64decode(d["original_b64"]): d for d in letters}
    assert len(by_original) == len(bad)
    for raw, reason in bad.items():
        assert by_original[raw]["reason"] == reason, raw[:60]
        assert by_original[raw]["detail"]
    assert metrics["events_total|call"] == 20
    assert sum(v for k, v in metrics.items() if k.startswith("deadletter_total|")) == len(bad)
    assert metrics["pii_fields_dropped_total"] == 40
    # the worker's metrics page says the same
    assert 'watchfloor_deadletter_total{reason="not_json"} 2' in exposition
    assert "watchfloor_pii_fields_dropped_total 40" in exposition
    assert sum(v for (m, c, k), v in counts.items() if k == "ALL" and h3.get_resolution(c) == settings.h3_resolution) == 20
    assert format_time(T0)  # the fixture's times are the ones counted


# -- a broker outage ----------------------------------------------------------------


def _two_free_ports() -> int:
    """A port p with p and p + 1 free (Kafka's listener and its controller), below the
    ephemeral range: while the broker is down, a client reconnecting to a port in that
    range can be given it as its own source port (a TCP self-connect) and hold it."""
    import random
    import socket

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(low - 12_000, low - 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def own_stack(long_retention, tmp_path):
    """A Kafka broker and a Redis of this test's own (own ports and run folder), so that
    stopping the broker leaves the shared stack alone. Yields settings and the stack's CLI."""
    from dataclasses import replace

    kafka_port = _two_free_ports()
    redis_port = _two_free_ports()
    while redis_port in (kafka_port, kafka_port + 1):  # both were free, but Kafka takes p and p + 1
        redis_port = _two_free_ports()
    env = {
        **worker_env(long_retention),
        "WF_RUN_DIR": str(tmp_path / "run"),
        "WF_KAFKA_PORT": str(kafka_port),
        "WF_REDIS_PORT": str(redis_port),
        "WF_TOPIC_PREFIX": long_retention.topic_prefix,
        "WF_PARTITIONS": str(long_retention.partitions),
    }

    def stack_cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "infra.stack", *args], cwd=ROOT, env=env, check=True, timeout=180)

    try:
        stack_cli("up")  # a failed start stops what it started too
        yield replace(long_retention, kafka_bootstrap=f"127.0.0.1:{kafka_port}", redis_url=f"redis://127.0.0.1:{redis_port}/0"), stack_cli
    finally:
        stack_cli("down")


def test_broker_stopped_for_30_s_while_calls_are_produced_loses_nothing(own_stack, source, tmp_path):
    settings, stack_cli = own_stack
    worker = WorkerProcess(settings, tmp_path).start()
    # ~20,000 records at 400/s: about 50 s of production, the outage in the middle.
    rp = replay(settings, *source, N_CALLS, rate=400)
    try:
        wait_counted(settings, 2_000)
        stack_cli("down", "--only", "kafka")
        counted_at_stop = calls_counted(settings)
        time.sleep(30)
        assert rp.poll() is None, f"the replay gave up during the outage: {rp.communicate()[1][-2000:]}"
        assert worker.alive(), worker.log_tail()
        stack_cli("up")
        out = finish(rp)
        assert f"replayed {N_CALLS} calls" in out
        assert counted_at_stop < N_CALLS - 2_000, "the outage must land mid-stream"
        wait_caught_up(settings, [worker], timeout_s=300)
        assert_exact(settings, source)
        # aiokafka retried failed metadata updates in a busy loop: ~90,000 of these a
        # 30 s outage (a core and 3 GB of log an hour); with kafka_backoff, a few a second.
        flood = worker.log_path.read_text(errors="replace").count("Unable to update metadata from")
        assert flood < 500, f"{flood} failed metadata updates logged during a 30 s outage"
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
        worker.stop()


def test_a_second_worker_joining_then_leaving_mid_replay_keeps_counts_exact(long_retention, source, tmp_path):
    # Two rebalances in the middle of a replay: the partitions move to the
    # newcomer and back to the first worker when it stops (gracefully).
    settings = long_retention
    a = WorkerProcess(settings, tmp_path, "a").start()
    b = WorkerProcess(settings, tmp_path, "b")
    rp = replay(settings, *source, N_CALLS, rate=500)  # ~40 s of records
    try:
        wait_counted(settings, 1_000)
        b.start()
        b.wait_for_log("Worker ready", timeout_s=90)
        a.wait_for_log("(generation 2)", timeout_s=90)  # a has given part of its partitions to b
        assignment = b.log_path.read_text().split("Setting newly assigned partitions", 1)[1][:600]
        assert f"{settings.topic_prefix}.calls " in assignment, assignment
        time.sleep(3)  # b counts for a while
        b.stop()
        assert b.proc.returncode == 0, b.log_tail()
        assert calls_counted(settings) < N_CALLS - 2_000, "the second rebalance must land mid-stream"
        a.wait_for_log("(generation 3)", timeout_s=90)  # and took them back
        finish(rp)
        wait_caught_up(settings, [a], timeout_s=300)
        assert_exact(settings, source)
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
        a.stop()
        b.stop()
