"""SIGKILL of the Redis primary during a replay: Sentinel promotes the replica and nothing is lost, counted twice or shown twice.

The session's single-node Kafka (the ``stack`` fixture) and an HA Redis of this
module's own (:mod:`infra.redisha`: a primary, a replica, three Sentinels, on
the base port ``WF_REDIS_PORT + 10``) in a temporary run folder. A worker (both
roles) and a gateway are configured with ``WF_REDIS_SENTINELS``; a WebSocket
client of the gateway is connected from before the replay to the end,
reconnecting with the ``last_id`` of the last alert it read whenever its socket
closes. During a paced replay of real calls with their updates the primary is
SIGKILLed. At the end: every count equals the independent computation of
``tests/streams/test_pipeline.py``, every alert record the detectors sent to the
alerts topic is in the alerts stream exactly once, and the client saw exactly
the stream's entries, in order, none twice.

Replication is asynchronous, so the promoted replica may lack the primary's last
writes. On this machine it rarely does (the replica is a millisecond behind), so
the second test makes sure it does: the replica is paused (SIGSTOP) and cut off
from the primary (``CLIENT KILL TYPE replica``) for a second and a half before the
kill, and everything the worker wrote in that time is lost with the primary. The
worker must notice that the applied offsets went back and count those records
again from Kafka ("Redis lost its data").
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from infra import redisha
from infra import stack as infra_stack
from streams.counting.keys import Keys
from streams.runtime import progress
from streams.runtime.redisconn import sync_client_for
from streams.topics import ALERTS
from tests.gateway.live import GatewayProcess, token
from tests.stackutil import WorkerProcess, read_topic, wait_caught_up
from tests.streams import test_pipeline as pipeline
from tests.streams.test_pipeline import N_CALLS, assert_exact, finish, replay

pytestmark = pytest.mark.stack

# the fixtures of the pipeline tests: the real source file (or a simulated one) and settings where nothing expires
source = pipeline.source
long_retention = pipeline.long_retention
SERVICE = "watchfloor"
LOST = "Redis lost its data"
#: records a second the replay sends (some 20,000 records: about 13 s, so that the kill lands mid-stream)
RATE = 1500


@pytest.fixture(scope="module")
def ha_redis(tmp_path_factory):
    """The HA Redis of this module: (run folder, base port); stopped at the end."""
    run_dir = tmp_path_factory.mktemp("redis-ha")
    base = infra_stack.redis_port() + 10
    redisha.start(run_dir, base, SERVICE)
    try:
        yield run_dir, base
    finally:
        redisha.stop(run_dir)


@pytest.fixture
def ha(ha_redis, long_retention):
    """Settings on the HA Redis through its Sentinels, every node running (the one a test killed is back, a replica)."""
    run_dir, base = ha_redis
    redisha.start(run_dir, base, SERVICE)
    primary = redisha.primary(base, SERVICE)
    assert primary is not None
    # the URL's host:port is not used with Sentinels (only its db); it names the first primary, for messages
    settings = replace(long_retention, redis_url=f"redis://{primary[0]}:{primary[1]}/0", redis_sentinels=tuple(redisha.sentinels(base)))
    return run_dir, base, settings


# -- a WebSocket client that resumes by last_id ---------------------------------------------


@dataclass
class ResumingClient:
    """A supervisor's WebSocket feed read in a thread: every alert frame kept; a closed socket reopened with the last id read."""

    port: int
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (stream id, alert json) in the order received
    reconnects: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> ResumingClient:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        tok = token("supervisor")
        try:
            while not self.stopped.is_set():
                query = f"token={tok}" + (f"&last_id={self.alerts[-1][0]}" if self.alerts else "&last_id=0-0")
                try:
                    with connect(f"ws://127.0.0.1:{self.port}/ws?{query}", open_timeout=10) as ws:
                        while not self.stopped.is_set():
                            try:
                                frame = json.loads(ws.recv(timeout=0.5))
                            except TimeoutError:
                                continue
                            if frame.get("type") == "alert":
                                self.alerts.append((frame["id"], json.dumps(frame["alert"], sort_keys=True)))
                except (ConnectionClosed, OSError):
                    self.reconnects += 1
                    time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001 -- kept for the test to raise: a thread's exception is otherwise only printed
            self.error = exc

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


# -- what is measured around the kill ----------------------------------------------------------


def flow_marks(settings) -> tuple[int, int]:
    """(calls counted, detector input applied) as the primary the Sentinels name holds them."""
    keys = Keys(settings.redis_prefix)
    client = sync_client_for(settings, socket_timeout=1, socket_connect_timeout=1)
    try:
        counted = int(client.hget(keys.metrics, "events_total|call") or 0)
        applied = int(client.hget(keys.detector, "applied") or -1)
        return counted, applied
    finally:
        client.close()


def wait_flowing_again(settings, before: tuple[int, int], killed_at: float, timeout_s: float = 120) -> tuple[float, float]:
    """Seconds from the kill until the counted calls, and the detector input applied, are past their values before it."""
    counts_at = alerts_at = None
    deadline = time.monotonic() + timeout_s
    while (counts_at is None or alerts_at is None) and time.monotonic() < deadline:
        try:
            counted, applied = flow_marks(settings)
        except Exception:  # noqa: BLE001 -- any Redis error during the failover: not flowing yet
            time.sleep(0.05)
            continue
        now = time.monotonic()
        if counts_at is None and counted > before[0]:
            counts_at = now - killed_at
        if alerts_at is None and applied > before[1]:
            alerts_at = now - killed_at
        time.sleep(0.05)
    assert counts_at is not None and alerts_at is not None, (
        f"not flowing again {timeout_s:.0f} s after the kill: {flow_marks(settings)} vs {before}"
    )
    return counts_at, alerts_at


def cut_replication(base: int, primary_port: int, run_dir) -> int:
    """Pause the replica and close its link: the primary's writes from now on reach no replica. Returns the replica's pid."""
    (replica_port,) = [p for p in redisha.redis_ports(base) if p != primary_port]
    pid = redisha.redis_pid(run_dir, replica_port)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    assert redisha.command(primary_port, "CLIENT", "KILL", "TYPE", "replica") == 1
    return pid


# -- the test ------------------------------------------------------------------------------------


def run_failover(ha, source, tmp_path, *, lose_writes: bool) -> dict:
    run_dir, base, settings = ha
    worker = WorkerProcess(settings, tmp_path, env={"WF_DETECTOR_CHECKPOINT_S": "1"}).start()
    sentinels = ",".join(f"{h}:{p}" for h, p in settings.redis_sentinels)
    gw = GatewayProcess(
        settings.redis_prefix, env_extra={"WF_REDIS_URL": settings.redis_url, "WF_REDIS_SENTINELS": sentinels, "WF_PARTITIONS": "4"}
    ).start(tmp_path)
    client = ResumingClient(gw.port).start()
    rp = replay(settings, *source, N_CALLS, rate=RATE)
    figures: dict = {}
    try:
        pipeline_wait = time.monotonic() + 120
        while flow_marks(settings)[0] < 2_000:
            assert time.monotonic() < pipeline_wait, worker.log_tail()
            time.sleep(0.05)
        primary = redisha.primary(base, SERVICE)
        assert primary is not None
        paused = None
        if lose_writes:
            paused = cut_replication(base, primary[1], run_dir)
            time.sleep(1.5)  # the worker goes on writing to the primary alone
        before = flow_marks(settings)
        assert before[0] < N_CALLS - 2_000, "the kill must land mid-stream"
        os.kill(redisha.redis_pid(run_dir, primary[1]), signal.SIGKILL)
        killed_at = time.monotonic()
        if paused is not None:
            os.kill(paused, signal.SIGCONT)
        figures["counts_s"], figures["detection_s"] = wait_flowing_again(settings, before, killed_at)
        new = redisha.primary(base, SERVICE)
        assert new is not None and new != primary, f"Sentinel did not promote the replica: {new}"
        figures["after"] = flow_marks(settings)
        figures["before"] = before
        finish(rp)
        wait_caught_up(settings, [worker])
        progress.wait_detected(settings, 120)
        metrics = assert_exact(settings, source)
        assert worker.alive(), worker.log_tail()
        log = worker.log_path.read_text(errors="replace")
        figures["lost_noticed"] = LOST in log
        if lose_writes:
            assert figures["after"][0] < before[0] or LOST in log, "the promoted replica had every write: the test lost nothing"
            worker.wait_for_log(LOST)

        # every alert record sent to the alerts topic is in the stream exactly once
        redis_client = sync_client_for(settings, decode_responses=True)
        try:
            stream = redis_client.xrange(Keys(settings.redis_prefix).alerts)
        finally:
            redis_client.close()
        bodies = [json.loads(fields["alert"]) for _, fields in stream]
        as_text = [json.dumps(b, sort_keys=True) for b in bodies]
        assert len(set(as_text)) == len(as_text), "an alert record is twice in the stream"
        sent = read_topic(settings, ALERTS, expect=len(bodies), timeout_s=30)
        in_topic = {json.dumps(a, sort_keys=True) for a in sent}
        figures["alerts"] = len(bodies)
        if lose_writes:
            # Known gap (docs/cluster.md): alert records written in the lost window are gone from the stream and not
            # written again, and stream ids after the failover may be below ids a client already had. Only the counts
            # are rebuilt from Kafka; here the stream must still hold nothing twice and nothing the topic lacks.
            assert set(as_text) <= in_topic, "the stream holds an alert record the alerts topic does not"
            figures["alerts_lost"] = len(in_topic - set(as_text))
            figures["calls"] = metrics["events_total|call"]
            return figures
        assert in_topic == set(as_text), "the stream and the alerts topic differ"

        # the client saw exactly the stream, in order, none twice
        ids = [sid for sid, _ in stream]
        deadline = time.monotonic() + 30
        while [sid for sid, _ in client.alerts] != ids and time.monotonic() < deadline and client.error is None:
            time.sleep(0.2)
        assert client.error is None, repr(client.error)
        seen = [sid for sid, _ in client.alerts]
        assert len(set(seen)) == len(seen), "the client got an alert frame twice"
        assert seen == ids, f"the client saw {len(seen)} alert frames, the stream holds {len(ids)}"
        figures["reconnects"] = client.reconnects
        assert gw.proc is not None and gw.proc.poll() is None, gw.log()
        figures["calls"] = metrics["events_total|call"]
        return figures
    finally:
        client.stop()
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
        gw.stop()
        worker.stop()


def report(what: str, f: dict) -> None:
    print(
        f"\n{what}: counts flow again {f['counts_s']:.1f} s after the SIGKILL, detection (alerts) {f['detection_s']:.1f} s; "
        f"calls counted / detector input applied before the kill {f['before']}, on the new primary just after {f['after']}; "
        f"loss noticed: {f['lost_noticed']}; {f['calls']} calls counted exactly, {f['alerts']} alert records once"
        + (f", {f['alerts_lost']} lost with the writes" if "alerts_lost" in f else f", the client reconnected {f['reconnects']} time(s)")
    )


def test_the_redis_primary_sigkilled_mid_replay_is_replaced_and_nothing_is_lost_or_doubled(ha, source, tmp_path):
    report("SIGKILL of the Redis primary", run_failover(ha, source, tmp_path, lose_writes=False))


def test_writes_the_promoted_replica_never_got_are_counted_again_from_kafka(ha, source, tmp_path):
    """The replica cut off for 1.5 s before the kill: the new primary's applied offsets went back, and the worker notices
    and counts them again. Alert records of that window are not written again (a known gap): checked only for
    nothing twice and nothing the alerts topic lacks."""
    report("SIGKILL of the Redis primary with 1.5 s of writes not replicated", run_failover(ha, source, tmp_path, lose_writes=True))


def test_with_sentinels_an_alert_write_waits_for_the_replica_and_warns_when_none_acknowledges(ha, caplog):
    """Redis WAIT after the alert records: returned, they are on the replica; with the replica paused the write warns after 200 ms."""
    import asyncio

    from streams.counting.state import REPLICA_WAIT_MS, RedisState

    run_dir, base, settings = ha
    primary = redisha.primary(base, SERVICE)
    assert primary is not None
    (replica_port,) = [p for p in redisha.redis_ports(base) if p != primary[1]]
    replica = redisha.redis_pid(run_dir, replica_port)
    assert replica is not None
    key = Keys(settings.redis_prefix).alerts

    async def go() -> float:
        st = RedisState.from_settings(settings)
        try:
            assert await st.append_alerts(1, ['{"id":"a1"}']) == 1
            assert redisha.command(replica_port, "XLEN", key) == 1  # on the replica when the write returned
            os.kill(replica, signal.SIGSTOP)
            try:
                started = time.monotonic()
                assert await st.append_alerts(2, ['{"id":"a2"}']) == 1
                return time.monotonic() - started
            finally:
                os.kill(replica, signal.SIGCONT)
        finally:
            await st.close()

    with caplog.at_level("WARNING", logger="streams.counting.state"):
        took = asyncio.run(go())
    assert took >= REPLICA_WAIT_MS / 1000 * 0.9
    assert "not acknowledged by a Redis replica" in caplog.text
