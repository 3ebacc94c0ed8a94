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
again from Kafka ("Redis lost its data"), and its detection agent that its
``applied`` offset went back: it restores the checkpoint the new primary holds
and feeds the detectors again from Kafka, so that the alert records of those
1.5 s are in the stream again, once, in the order made. A client connected
throughout saw those records live before the kill, under ids the stream no
longer holds; the gateway sends it no copy of them (see docs/cluster.md).
"""

from __future__ import annotations

import json
import os
import re
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
#: the detection agent's warning when its writes went back (streams.detection.agent.DetectionAgent.refeed)
WENT_BACK = "Redis went back under the detection"
REFED = re.compile(r"re-fed (\d+) detector-input message\(s\) up to offset \d+ in ([\d.]+) s: (\d+) alert record\(s\) written again")
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
            alerts_key = Keys(settings.redis_prefix).alerts
            replicated = int(str(redisha.command(primary[1], "XLEN", alerts_key)))
            paused = cut_replication(base, primary[1], run_dir)
            # the worker goes on writing to the primary alone, for 1.5 s and until an alert record is among what is lost
            cut_at = time.monotonic()
            while time.monotonic() - cut_at < 1.5 or int(str(redisha.command(primary[1], "XLEN", alerts_key))) <= replicated:
                assert time.monotonic() - cut_at < 15, "no alert record written in 15 s with the replica cut off"
                time.sleep(0.05)
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
            # the detection's writes of those 1.5 s went too (it appends for every batch): the agent noticed and fed the
            # detectors again from Kafka
            worker.wait_for_log(WENT_BACK)
        figures.update(refed(worker.log_path.read_text(errors="replace")))
        if lose_writes:
            assert figures["refed_records"] > 0, "alert records were lost with the primary, and none was written again"

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
        in_topic = [json.dumps(a, sort_keys=True) for a in sent]
        figures["alerts"] = len(bodies)
        figures["alerts_lost"] = len(set(in_topic) - set(as_text))
        assert set(in_topic) == set(as_text), (
            f"the stream and the alerts topic differ: {figures['alerts_lost']} record(s) of the topic not in the stream, "
            f"{len(set(as_text) - set(in_topic))} of the stream not in the topic"
        )
        # each alert's records in the stream in the order the detectors made them (the topic's, first copies)
        assert_made_in_order(bodies, sent)

        # the client was shown every record of the stream once, in order: a record the failover lost it saw live under
        # its first id, and the gateway sent it no copy of it (the record made again, under a later id)
        ids = [sid for sid, _ in stream]
        kept = set(ids)

        def until_read() -> list[tuple[str, str]]:
            """The client's frames up to the stream as read above (the clock may make alerts after it: the feed is silent)."""
            return [(sid, body) for sid, body in client.alerts if as_id(sid) <= as_id(ids[-1])]

        deadline = time.monotonic() + 30
        while {record_of(body) for _, body in until_read()} != set(as_text) and time.monotonic() < deadline and client.error is None:
            time.sleep(0.2)
        time.sleep(1.0)  # a copy sent late would come now
        assert client.error is None, repr(client.error)
        seen = [sid for sid, _ in until_read()]
        shown = [record_of(body) for _, body in until_read()]
        assert len(set(seen)) == len(seen), "the client got an alert frame twice"
        assert len(set(shown)) == len(shown), f"the client was shown {len(shown) - len(set(shown))} alert record(s) twice"
        few, many = len(set(as_text) - set(shown)), len(set(shown) - set(as_text))
        assert set(shown) == set(as_text), f"the client was shown {few} record(s) of the stream too few, {many} too many"
        by_id = {sid: record for sid, record in zip(ids, as_text, strict=True)}
        in_order = [sid for sid in ids if sid in set(seen)]
        assert [sid for sid in seen if sid in kept] == in_order, "the client's frames out of the stream's order"
        gone = [sid for sid in seen if sid not in kept]
        not_sent = [sid for sid in ids if sid not in set(seen)]
        assert len(gone) == len(not_sent) and {by_id[sid] for sid in not_sent} == {
            r for sid, r in zip(seen, shown, strict=True) if sid not in kept
        }
        if not lose_writes:
            assert not gone, "the client got records the stream does not hold"
        figures["client_copies"] = len(gone)
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


def as_id(sid: str) -> tuple[int, int]:
    """A Redis stream id as a tuple that orders as the stream does."""
    ms, seq = sid.split("-")
    return int(ms), int(seq)


def record_of(frame_alert: str) -> str:
    """A supervisor's alert frame as the record in the stream (the frame adds its severity, the zones it touches and
    its status)."""
    alert = json.loads(frame_alert)
    for added in ("severity", "zones", "status"):
        alert.pop(added, None)
    return json.dumps(alert, sort_keys=True)


def refed(log: str) -> dict:
    """The re-feeds the worker's log tells of: how many, messages fed again, seconds, records written again (summed)."""
    found = [(int(m), float(sec), int(r)) for m, sec, r in REFED.findall(log)]
    return {
        "refeeds": len(found),
        "refed_messages": sum(m for m, _, _ in found),
        "refeed_s": max((sec for _, sec, _ in found), default=0.0),
        "refed_records": sum(r for _, _, r in found),
    }


def assert_made_in_order(bodies: list[dict], sent: list[dict]) -> None:
    """Each alert's records in the stream are its records on the alerts topic (first copies: the topic is at-least-once), in
    the topic's order, which is the order the detectors made them: opened first, closed last, nothing after its close."""
    made: dict[str, list[str]] = {}
    for a in sent:
        text = json.dumps(a, sort_keys=True)
        if text not in made.setdefault(a["id"], []):
            made[a["id"]].append(text)
    stored: dict[str, list[str]] = {}
    for b in bodies:
        stored.setdefault(b["id"], []).append(json.dumps(b, sort_keys=True))
    for alert_id, records in stored.items():
        assert records == made[alert_id], f"alert {alert_id}: its records in the stream are not in the order made"
        states = [json.loads(r)["state"] for r in records]
        assert states[0] == "open" and "open" not in states[1:] and "closed" not in states[:-1], (alert_id, states)


def report(what: str, f: dict) -> None:
    print(
        f"\n{what}: counts flow again {f['counts_s']:.1f} s after the SIGKILL, detection (alerts) {f['detection_s']:.1f} s; "
        f"calls counted / detector input applied before the kill {f['before']}, on the new primary just after {f['after']}; "
        f"loss noticed: {f['lost_noticed']}; {f['calls']} calls counted exactly, {f['alerts']} alert records once, "
        f"{f['alerts_lost']} lost; re-feeds {f['refeeds']}: {f['refed_messages']} detector-input messages in {f['refeed_s']:.2f} s, "
        f"{f['refed_records']} records written again; the client reconnected {f['reconnects']} time(s) and got "
        f"{f['client_copies']} record(s) live that the stream lost, and no copy of them"
    )


def test_the_redis_primary_sigkilled_mid_replay_is_replaced_and_nothing_is_lost_or_doubled(ha, source, tmp_path):
    report("SIGKILL of the Redis primary", run_failover(ha, source, tmp_path, lose_writes=False))


def test_writes_the_promoted_replica_never_got_are_counted_again_from_kafka(ha, source, tmp_path):
    """The replica cut off for 1.5 s before the kill: the new primary's applied offsets went back, and the worker notices
    and counts them again; the detection agent notices its applied offset went back, restores the checkpoint the new
    primary holds and feeds the detectors again from Kafka, so the alert records of that window are in the stream again:
    every record of the alerts topic once, each alert's records in the order made. The resumed client is shown every
    record of the stream once, in order: those the failover lost under the ids it saw them live with before the kill,
    and no copy of them."""
    report("SIGKILL of the Redis primary with 1.5 s of writes not replicated", run_failover(ha, source, tmp_path, lose_writes=True))


def replica_of(run_dir, base: int) -> tuple[int, int]:
    """The HA Redis's replica now: its port and its pid."""
    primary = redisha.primary(base, SERVICE)
    assert primary is not None
    (replica_port,) = [p for p in redisha.redis_ports(base) if p != primary[1]]
    replica = redisha.redis_pid(run_dir, replica_port)
    assert replica is not None
    return replica_port, replica


def test_with_sentinels_an_alert_write_and_a_checkpoint_wait_for_the_replica_and_warn_when_none_acknowledges(ha, caplog):
    """Redis WAIT after the alert records and after the detectors' checkpoint: returned, they are on the replica;
    with the replica paused each returns after 200 ms and warns, each in its own words."""
    import asyncio

    from streams.counting.state import RedisState
    from streams.runtime.redisconn import REPLICA_WAIT_MS

    run_dir, base, settings = ha
    replica_port, replica = replica_of(run_dir, base)
    keys = Keys(settings.redis_prefix)

    async def go() -> list[float]:
        st = RedisState.from_settings(settings)
        try:
            assert await st.append_alerts(1, ['{"id":"a1"}']) == 1
            assert redisha.command(replica_port, "XLEN", keys.alerts) == 1  # on the replica when the write returned
            await st.commit_detection(1, b"state one")
            assert redisha.command(replica_port, "HGET", keys.detector, "offset") == "1"
            os.kill(replica, signal.SIGSTOP)
            try:
                took = []
                started = time.monotonic()
                assert await st.append_alerts(2, ['{"id":"a2"}']) == 1
                took.append(time.monotonic() - started)
                started = time.monotonic()
                await st.commit_detection(2, b"state two", fence=1)
                took.append(time.monotonic() - started)
                return took
            finally:
                os.kill(replica, signal.SIGCONT)
        finally:
            await st.close()

    with caplog.at_level("WARNING", logger="streams.counting.state"):
        took = asyncio.run(go())
    assert min(took) >= REPLICA_WAIT_MS / 1000 * 0.9
    assert "alert records were not acknowledged by a Redis replica" in caplog.text
    assert "the detectors' checkpoint was not acknowledged by a Redis replica" in caplog.text


def test_with_sentinels_a_supervisors_action_and_an_audit_record_wait_for_the_replica_and_warn_when_none_acknowledges(ha, caplog):
    """The gateway's ack or resolve and an audit record, written through the Sentinels: returned, they are on the replica
    (the stream entry and the alert's status; the audit entry and the chain's head), so a failover right after keeps
    them; with the replica paused each returns after 200 ms, warning."""
    import asyncio

    from gateway.audit import AuditAction, AuditLog, AuditRecord
    from gateway.store import Store
    from streams.runtime.redisconn import REPLICA_WAIT_MS

    run_dir, base, settings = ha
    replica_port, replica = replica_of(run_dir, base)
    keys = Keys(settings.redis_prefix)

    def action(n: int) -> tuple[dict, dict]:
        return {"alert_id": f"surge:x:{n}", "action": "ack", "by": "sup-1", "at": 1.0}, {"action": "ack", "by": "sup-1", "at": 1.0}

    def audited(n: int) -> AuditRecord:
        return AuditRecord(AuditAction.ACK, "sup-1", "supervisor", "county", f"surge:x:{n}", "127.0.0.1", {"note": ""}, 1.0)

    async def go() -> tuple[float, float]:
        store = Store.from_url(settings.redis_url, settings.redis_prefix, 4, sentinels=settings.redis_sentinels, service=SERVICE)
        audit = AuditLog(store.client, settings.redis_prefix, replicated=store.replicated)
        try:
            assert store.replicated
            sid = await store.append_action(*action(1))
            entry = await audit.record(audited(1))
            # on the replica when the write returned
            assert redisha.command(replica_port, "XRANGE", keys.alerts, sid, sid)
            assert redisha.command(replica_port, "HEXISTS", f"{settings.redis_prefix}:alert_status", "surge:x:1") == 1
            assert redisha.command(replica_port, "XRANGE", audit.key, entry, entry)
            assert redisha.command(replica_port, "GET", audit.head_key)
            os.kill(replica, signal.SIGSTOP)
            try:
                started = time.monotonic()
                await store.append_action(*action(2))
                acted = time.monotonic() - started
                started = time.monotonic()
                await audit.record(audited(2))
                return acted, time.monotonic() - started
            finally:
                os.kill(replica, signal.SIGCONT)
        finally:
            await store.close()

    with caplog.at_level("WARNING"):
        took = asyncio.run(go())
    assert min(took) >= REPLICA_WAIT_MS / 1000 * 0.9, took
    assert "a supervisor's action was not acknowledged by a Redis replica" in caplog.text
    assert "audit records were not acknowledged by a Redis replica" in caplog.text


def test_with_sentinels_a_revocation_an_event_zone_and_a_released_window_wait_for_the_replica(ha, caplog):
    """A revocation (lost in a failover, the token would be let in again), an event zone (a commander's zone would
    vanish), a partner's released window and its layout record (computed again or released twice, a difference would
    tell withheld calls): returned, each is on the replica; with the replica paused each returns after 200 ms, warning,
    and the revocation says it was not acknowledged."""
    import asyncio

    from gateway.store import Store
    from streams.runtime.redisconn import REPLICA_WAIT_MS

    run_dir, base, settings = ha
    replica_port, replica = replica_of(run_dir, base)
    prefix = settings.redis_prefix

    async def go() -> list[tuple[str, float, object]]:
        store = Store.from_url(settings.redis_url, prefix, 4, sentinels=settings.redis_sentinels, service=SERVICE)
        try:
            assert await store.revoke("tok-1", time.time() + 3600, time.time()) is True
            await store.save_zone({"id": "zone-1", "name": "Parade"})
            await store.first_layout_window("septa", "septa:abc", 3600.0)
            await store.save_allocation({"units_by_area": {"a": 1}})
            assert redisha.command(replica_port, "GET", f"{prefix}:allocation") == '{"units_by_area":{"a":1}}'
            await store.release("septa:abc", 60, {3600.0: {"start": 3600.0}}, keep_after=0.0)
            assert redisha.command(replica_port, "ZSCORE", f"{prefix}:revoked", "tok-1") is not None
            assert redisha.command(replica_port, "HEXISTS", f"{prefix}:zones", "zone-1") == 1
            primary = redisha.primary(base, SERVICE)
            assert primary is not None
            version = redisha.command(primary[1], "GET", f"{prefix}:zones:version")
            assert version and redisha.command(replica_port, "GET", f"{prefix}:zones:version") == version
            assert redisha.command(replica_port, "HEXISTS", f"{prefix}:released:septa:layouts", "septa:abc") == 1
            assert redisha.command(replica_port, "HEXISTS", f"{prefix}:released:septa:abc:60", "3600") == 1
            os.kill(replica, signal.SIGSTOP)
            took = []
            try:
                for what, write in (
                    ("revocation", lambda: store.revoke("tok-2", time.time() + 3600, time.time())),
                    ("zone", lambda: store.save_zone({"id": "zone-2", "name": "Fair"})),
                    ("layout", lambda: store.first_layout_window("septa", "septa:def", 7200.0)),
                    ("allocation", lambda: store.save_allocation({"units_by_area": {"a": 2}})),
                    ("windows", lambda: store.release("septa:abc", 60, {7200.0: {}, 10800.0: {}}, keep_after=0.0)),  # one WAIT
                ):
                    started = time.monotonic()
                    got = await write()
                    took.append((what, time.monotonic() - started, got))
            finally:
                os.kill(replica, signal.SIGCONT)
            return took
        finally:
            await store.close()

    with caplog.at_level("WARNING"):
        took = asyncio.run(go())
    assert all(seconds >= REPLICA_WAIT_MS / 1000 * 0.9 for _, seconds, _ in took), took
    assert took[0][2] is False, "the revocation says no replica has it"
    for what in ("a revocation", "an event zone", "a partner's released window", "an adopted allocation"):
        assert f"{what} was not acknowledged by a Redis replica" in caplog.text, what


def test_with_sentinels_the_intakes_done_marks_wait_for_the_replica_and_warn_when_none_acknowledges(ha, caplog):
    """A CAD's push answered 200 through an intake configured with Sentinels: the records' done marks are on the replica
    when the answer comes (a failover right after it keeps them, so a retry is answered duplicate, not sent again);
    with the replica paused the push is still answered, with a warning that the marks were not acknowledged."""
    import asyncio

    from tests.streams.intake.conftest import body_of, call, make_intake, push, serving

    run_dir, base, settings = ha
    replica_port, replica = replica_of(run_dir, base)

    async def go() -> None:
        intake = make_intake(settings)
        async with serving(intake) as client:
            status, answer, _ = await push(client, body_of(call("HA-1")))
            assert (status, answer["accepted"]) == (200, 1), answer
            marks = redisha.command(replica_port, "KEYS", f"{settings.redis_prefix}:intake:seen:*")
            assert isinstance(marks, list) and len(marks) == 1, marks  # on the replica when the answer came
            assert redisha.command(replica_port, "GET", marks[0]) == "done"
            os.kill(replica, signal.SIGSTOP)
            try:
                status, answer, _ = await push(client, body_of(call("HA-2")))
                assert (status, answer["accepted"]) == (200, 1), answer
            finally:
                os.kill(replica, signal.SIGCONT)

    with caplog.at_level("WARNING"):
        asyncio.run(go())
    assert "done marks were not acknowledged by a Redis replica" in caplog.text
