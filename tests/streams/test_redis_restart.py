"""Redis loses its data (a cache restart): the counts are rebuilt from Kafka's retained log, exactly.

The shared redis-server is never restarted: a restart loses, from this
deployment's point of view, every key under its prefix, so most tests delete
those (and nothing else). The worker must notice and rebuild (while more
records arrive, and on partitions with none), and ``python -m streams.counting.rebuild``
must do the same with no worker running. Where a real restart matters (the
worker meeting refused connections, records arriving while Redis is down, the
gateway's connections) the test restarts a redis-server of its own. Counts are
checked against the independent computation of ``test_pipeline.py``: equal,
not approximately.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import redis

from streams.counting.keys import Keys
from streams.counting.planner import CALL, UPDATE, Incoming
from streams.counting.rebuild import RebuildSummary, Span, describe, find_gaps, first_offsets, rebuild_spans
from streams.counting.state import RedisState
from streams.ingest.replay import plan_replay
from streams.runtime import progress
from streams.topics import CALLS, DETECTOR_INPUT, topic_name
from tests.stackutil import ROOT, WorkerProcess, wait_caught_up, worker_env
from tests.streams import test_pipeline as pipeline
from tests.streams.test_pipeline import N_CALLS, assert_exact, finish

pytestmark = pytest.mark.stack

# the fixture of the pipeline tests: the real source file (or a simulated one)
source = pipeline.source


@pytest.fixture
def long_retention(settings, source):
    """Nothing expires during the check, and a replay split at half its calls has no update too late.

    The first half brings every update of its calls, some up to hours past the cut, so the second half's first
    updates come that far behind their partition's watermark: past the 15 minutes allowed, they would be refused
    (the lateness rule has its own tests). A file with no updates (Montgomery's) needs no more than the default.
    """
    from dataclasses import replace

    wide = replace(settings, retention_s=400 * 86400, batch_size=500)
    return replace(wide, allowed_lateness_s=max(wide.allowed_lateness_s, split_overlap_s(wide, source) + 60))


LOST = "Redis lost its data"


# -- pure logic ------------------------------------------------------------------------


def test_a_batch_that_follows_the_applied_offsets_has_no_gap():
    assert find_gaps({(CALL, 0): 10, (UPDATE, 0): 0}, {(CALL, 0): 9}, {}) == {}


def test_a_batch_ahead_of_the_applied_offset_has_the_records_in_between_missing():
    assert find_gaps({(CALL, 1): 250}, {(CALL, 1): 99}, {}) == {(CALL, 1): Span(100, 250)}


def test_a_partition_with_nothing_applied_misses_everything_from_the_log_start():
    assert find_gaps({(UPDATE, 3): 250}, {}, {(UPDATE, 3): 40}) == {(UPDATE, 3): Span(40, 250)}


def test_a_first_start_on_a_log_trimmed_by_retention_is_no_gap():
    assert find_gaps({(CALL, 0): 40}, {}, {(CALL, 0): 40}) == {}


def test_records_retention_deleted_before_they_were_applied_are_reported_as_lost():
    assert find_gaps({(CALL, 0): 50}, {(CALL, 0): 9}, {(CALL, 0): 50}) == {(CALL, 0): Span(50, 50, lost=40)}


def test_redelivered_records_at_or_below_the_applied_offset_are_no_gap():
    assert find_gaps({(CALL, 0): 5}, {(CALL, 0): 90}, {}) == {}


def test_first_offsets_takes_each_partitions_lowest():
    batch = [Incoming(CALL, 1, 8, b""), Incoming(CALL, 1, 7, b""), Incoming(UPDATE, 1, 2, b"")]
    assert first_offsets(batch) == {(CALL, 1): 7, (UPDATE, 1): 2}


def test_the_command_reads_from_after_the_applied_offset_or_the_log_start_up_to_the_stop():
    tps = [(CALL, 0), (CALL, 1), (UPDATE, 0)]
    spans = rebuild_spans(tps, {(CALL, 1): 19, (UPDATE, 0): 4}, {(CALL, 0): 3}, {(CALL, 0): 10, (CALL, 1): 20, (UPDATE, 0): 9})
    assert spans == {(CALL, 0): Span(3, 10), (UPDATE, 0): Span(5, 9)}
    assert describe(spans) == "call[0] 3..9, update[0] 5..8"


def test_since_only_ever_narrows_what_the_command_reads():
    spans = rebuild_spans([(CALL, 0)], {(CALL, 0): 50}, {}, {(CALL, 0): 100}, since={(CALL, 0): 20})
    assert spans == {(CALL, 0): Span(51, 100)}


def test_only_records_never_counted_are_published_again():
    from streams.counting.planner import DeadLetter, Plan
    from streams.counting.rebuild import unpublished
    from streams.ingest.schema import Reason

    dls = [DeadLetter(Incoming(UPDATE, 1, o, b"x"), Reason.NOT_JSON, "") for o in (6, 7)]
    plan = Plan(dead_letters=dls, points=[(1, 3, 0.0, "c", "EMS", None), (2, 9, 0.0, "c", "EMS", None)])
    fresh = unpublished(plan, {(UPDATE, 1): 7, (CALL, 1): 4})
    assert [d.source.offset for d in fresh.dead_letters] == [7]
    assert fresh.points == []  # call[1] 3 was published before; call[2] has no bound: nothing is published
    assert len(plan.points) == 2  # the plan itself is left alone


def test_the_summary_says_what_retention_lost():
    s = RebuildSummary({(CALL, 0): Span(50, 60, lost=40)}, read=10, applied=10, calls=10, seconds=1.0)
    assert s.lost == 40
    assert "40 records were deleted by Kafka's retention" in s.text()


# -- against the real stack --------------------------------------------------------------


def lose_redis_data(settings) -> int:
    """What a restart without persistence loses for this deployment: every key under its prefix."""
    with redis.Redis.from_url(settings.redis_url) as client:
        keys = list(client.scan_iter(match=Keys(settings.redis_prefix).pattern, count=1000))
        return client.delete(*keys) if keys else 0  # a running worker may write again at once, as after a restart


class OwnRedis:
    """A redis-server of this test's own, configured as a cache like infra/stack.py's (no persistence):
    :meth:`stop` kills it (its data is lost), :meth:`start` runs it again, empty, on the same port."""

    def __init__(self, folder) -> None:
        from tests.stackutil import free_port

        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        import shutil

        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port) as client:
                    client.ping()
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"redis-server on port {self.port} did not answer within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()


def first_half_then_redis_stopped(settings, source, tmp_path, server: OwnRedis) -> tuple[WorkerProcess, str, int]:
    """A worker that has counted the first half of the calls when its Redis is killed; the cut and the calls before it."""
    cut, before = split_at_half(settings, source)
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        finish(replay_part(settings, source, "--until", cut, "--limit", str(N_CALLS)))
        wait_caught_up(settings, [worker])
    except BaseException:
        worker.stop()
        raise
    server.stop()
    return worker, cut, before


def _halves(settings, source) -> tuple[list, list, float]:
    """The replay's records of the first N_CALLS calls, those on the calls topic, and the time splitting those in two."""
    path, fmt = source
    records, _ = plan_replay(path, fmt, settings.topic_prefix, N_CALLS)
    calls = [r for r in records if r.topic == topic_name(settings.topic_prefix, CALLS)]
    times = sorted(r.event_time for r in calls)
    return records, calls, float(int(times[len(times) // 2]))


def split_at_half(settings, source) -> tuple[str, int]:
    """A time (ISO 8601) splitting the first N_CALLS calls in two, and how many come before it."""
    _, calls, cut = _halves(settings, source)
    return datetime.fromtimestamp(cut, UTC).isoformat(), sum(1 for r in calls if r.event_time < cut)


def split_overlap_s(settings, source) -> int:
    """How far past :func:`split_at_half`'s cut the updates of the calls before it go (0 when none does)."""
    records, calls, cut = _halves(settings, source)
    first = {r.key for r in calls if r.event_time < cut}
    return max(0, math.ceil(max((r.event_time for r in records if r.key in first), default=cut) - cut))


def replay_part(settings, source, *extra: str) -> subprocess.Popen:
    path, fmt = source
    cmd = [sys.executable, "-m", "streams.ingest.replay", str(path), "--format", fmt, "--speed", "max", "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_rebuild(settings, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams.counting.rebuild", "--no-progress", *args],
        cwd=ROOT,
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def detector_input_points(settings) -> set[tuple[int, int]]:
    """The (partition, offset) of every call published to the detectors, duplicates merged."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.detection.runner import decode_points
    from streams.topics import DETECTOR_INPUT

    tp = TopicPartition(topic_name(settings.topic_prefix, DETECTOR_INPUT), 0)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        seen: set[tuple[int, int]] = set()
        deadline = time.monotonic() + 60
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=1000).values():
                seen |= {(p[0], p[1]) for m in msgs for p in decode_points(m.value)}
        return seen
    finally:
        consumer.close()


def test_worker_notices_redis_lost_its_data_and_counts_are_exact_again(long_retention, source, tmp_path):
    """Half the calls counted, every key lost, the other half replayed: the worker rebuilds the first half and counts the second."""
    settings = long_retention
    cut, before = split_at_half(settings, source)
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        finish(replay_part(settings, source, "--until", cut, "--limit", str(N_CALLS)))
        wait_caught_up(settings, [worker])
        assert lose_redis_data(settings) > 100
        rp = replay_part(settings, source, "--since", cut, "--limit", str(N_CALLS - before))
        worker.wait_for_log(LOST)
        finish(rp)
        wait_caught_up(settings, [worker])
        assert_exact(settings, source)

        # lost again with no new records coming: the periodic check notices on its own
        lose_redis_data(settings)
        worker.wait_for_log(LOST, count=2, timeout_s=60)
        wait_caught_up(settings, [worker])
        metrics = assert_exact(settings, source)
        assert worker.alive(), worker.log_tail()
        assert "Traceback" not in worker.log_path.read_text(errors="replace")
        assert len(detector_input_points(settings)) == metrics["events_total|call"]
    finally:
        worker.stop()


def test_rebuild_command_restores_exact_counts_with_no_worker_running(long_retention, source, tmp_path):
    settings = long_retention
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        finish(replay_part(settings, source, "--limit", str(N_CALLS)))
        wait_caught_up(settings, [worker])
    finally:
        worker.stop()
    assert lose_redis_data(settings) > 100

    done = run_rebuild(settings)
    assert done.returncode == 0, done.stderr
    assert "rebuilt 8 partition(s)" in done.stdout
    assert_exact(settings, source)

    # a second run reads nothing: everything is applied
    again = run_rebuild(settings, "--to", "end")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr
    assert_exact(settings, source)


def test_rebuild_command_says_what_is_wrong_when_kafka_or_redis_is_down(settings):
    from dataclasses import replace

    no_redis = run_rebuild(replace(settings, redis_url="redis://127.0.0.1:1/0"), timeout_s=60)
    assert no_redis.returncode == 2
    assert "Redis at redis://127.0.0.1:1/0 does not answer" in no_redis.stderr
    no_kafka = run_rebuild(replace(settings, kafka_bootstrap="127.0.0.1:1"), timeout_s=120)
    assert no_kafka.returncode == 2
    assert "Kafka at 127.0.0.1:1 does not answer" in no_kafka.stderr


def test_a_batch_applied_over_lost_offsets_is_refused_before_anything_is_written(settings):
    """The check runs on the snapshot the commit is made from: a loss between two batches cannot slip through."""
    from streams.counting.rebuild import RedisDataLost
    from tests.streams.counting.test_planner import T0, call, recs

    async def go():
        st = RedisState.from_settings(settings)
        try:
            await st.apply(recs(CALL, [call(f"c{i}", T0 + i) for i in range(10)]))
            lose_redis_data(settings)
            later = recs(CALL, [call(f"d{i}", T0 + 20 + i) for i in range(5)], start=10)

            async def check(snap):
                gaps = find_gaps(first_offsets(later), snap.offsets, {})
                if gaps:
                    raise RedisDataLost(gaps)

            with pytest.raises(RedisDataLost) as caught:
                await st.apply(later, check_snapshot=check)
            return caught.value.gaps, await st.applied_offsets()
        finally:
            await st.close()

    gaps, applied = asyncio.run(go())
    assert gaps == {(CALL, 0): Span(0, 10)}
    assert applied == {}


def test_worker_survives_a_real_restart_of_its_redis_and_counts_are_exact_again(long_retention, source, tmp_path, own_redis):
    """A redis-server of the test's own, killed and started again empty between the two halves of the replay."""
    from dataclasses import replace

    settings = replace(long_retention, redis_url=own_redis.url)
    worker, cut, before = first_half_then_redis_stopped(settings, source, tmp_path, own_redis)
    try:
        time.sleep(3)  # down for a while: the worker's timers meet a refused connection
        own_redis.start()
        rp = replay_part(settings, source, "--since", cut, "--limit", str(N_CALLS - before))
        worker.wait_for_log(LOST)
        finish(rp)
        wait_caught_up(settings, [worker])
        assert_exact(settings, source)
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()


def test_records_arriving_while_redis_is_down_are_counted_and_reach_the_detectors(long_retention, source, tmp_path, own_redis):
    """Batches fail while Redis is down and Faust restarts the agent without them: the worker finds them missing and counts them."""
    from dataclasses import replace

    settings = replace(long_retention, redis_url=own_redis.url)
    worker, cut, before = first_half_then_redis_stopped(settings, source, tmp_path, own_redis)
    try:
        rp = replay_part(settings, source, "--since", cut, "--limit", str(N_CALLS - before), "--rate", "1000")
        time.sleep(5)  # records keep coming while Redis is down
        own_redis.start()
        finish(rp)
        wait_caught_up(settings, [worker])
        metrics = assert_exact(settings, source)
        assert worker.alive(), worker.log_tail()
        assert len(detector_input_points(settings)) == metrics["events_total|call"]
        progress.wait_detected(settings, 60)
    finally:
        worker.stop()


# -- the gateway -------------------------------------------------------------------------


def test_gateway_keeps_serving_alerts_after_its_redis_restarts_empty(tmp_path, own_redis):
    """A real restart of a Redis of the test's own: the gateway reconnects and delivers, on the open socket, the alerts written after it."""
    import uuid

    from tests.gateway.live import FAR, GatewayProcess, make_alert, publish, recv_until, token

    prefix = f"g{uuid.uuid4().hex[:10]}"
    gw = None
    try:
        gw = GatewayProcess(prefix, env_extra={"WF_REDIS_URL": own_redis.url}).start(tmp_path)
        r = redis.Redis(port=own_redis.port, decode_responses=True)
        ws = gw.ws(token("supervisor"))
        publish(r, prefix, make_alert("before-restart", (FAR,)))
        # Stop Redis only once the socket is live: a restart during the catch-up read closes the
        # socket with 1011 (the client resumes on a new one), which is not what this test is about.
        seen: set[str] = set()

        def live_and_delivered(m: dict) -> bool:
            if m.get("type") == "caught_up" or (m.get("type") == "alert" and m["alert"]["id"] == "before-restart"):
                seen.add(m["type"])
            return seen == {"caught_up", "alert"}

        recv_until(ws, live_and_delivered)

        own_redis.stop()
        time.sleep(1.0)  # the gateway's reads fail meanwhile
        own_redis.start()
        publish(r, prefix, make_alert("after-restart", (FAR,)))
        # on the same connection: the gateway's Redis client reconnects by itself
        recv_until(ws, lambda m: m.get("type") == "alert" and m["alert"]["id"] == "after-restart", timeout_s=30)
        ws.close()
        assert gw.get("/healthz")[0] == 200
        assert gw.proc.poll() is None, gw.log()
        r.close()
    finally:
        if gw is not None:
            gw.stop()


def test_the_detection_agent_waits_out_its_redis_and_goes_on_without_a_restart(settings, tmp_path, own_redis):
    """A detect-only worker fed detector input while its redis-server is down: it keeps the input, retries, and catches up."""
    from dataclasses import replace

    from kafka import KafkaProducer

    from streams.detection.runner import encode_points

    settings = replace(settings, redis_url=own_redis.url)
    worker = WorkerProcess(settings, tmp_path, env={"WF_ROLES": "detect"}).start()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    topic = topic_name(settings.topic_prefix, DETECTOR_INPUT)
    t0 = time.time() - 3600

    def send(first: int, n: int) -> None:
        for i in range(first, first + n):
            producer.send(topic, encode_points([(0, i, t0 + i, "882aac95d1fffff", "EMS", None)]))
        producer.flush()

    try:
        send(0, 20)
        worker.wait_for_log("Worker ready")
        progress.wait_detected(settings, 60)
        own_redis.stop()
        send(20, 20)
        worker.wait_for_log("alert record(s) failed, trying again")
        own_redis.start()
        progress.wait_detected(settings, 60)
        assert worker.alive(), worker.log_tail()
        assert "Crashed reason=" not in worker.log_path.read_text(errors="replace"), worker.log_tail()
    finally:
        producer.close()
        worker.stop()
