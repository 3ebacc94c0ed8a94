"""What a supervisor sees during each fault of the cluster: when counts and alerts flow again, the worst call-to-alert delay.

Usage::

    python bench/faults.py [--faults broker,redis,detector,gateway] [--rate 5] [--before 60]

Starts its own cluster (``python -m infra.stack up --cluster`` in a temporary run
folder, on ``--kafka-port`` and ``--redis-port``: three KRaft brokers, topics RF
3 with two in sync, Redis primary + replica + three Sentinels) and on it, all
following the Sentinels: one counting worker, two detection workers (one active,
one standby), two gateways listing each other as peers, and a supervisor
connected through :class:`gateway.client.FailoverClient` with both addresses.
The detectors learn three days of simulated history first (``bench/latency.py``'s
warm-up). Then, for each fault in turn, live calls at ``--rate`` calls/s spread
over the county, with a burst of 8 calls every 5 s in an event zone made for
that fault (each burst grows the zone's alert, so alerts flow; as
``bench/latency.py`` produces them), for ``--before`` seconds, then:

``broker``    SIGKILL of the broker leading most ``calls`` partitions; restarted after;
``redis``     SIGKILL of the Redis primary (Sentinel promotes the replica); restarted after, a replica;
``detector``  SIGKILL of the active detection worker; its standby takes over; a new standby started after;
``gateway``   SIGKILL of the gateway the supervisor is on; it moves to the other; restarted after.

For each it prints the seconds from the fault until counts flow again (every call
produced until 1 s after the fault counted in Redis: 1 s is this measure's
floor), until the supervisor is live again on a gateway, until alerts flow
again (the supervisor receives an alert made by a call produced after the
fault), the worst call-to-alert delay the supervisor saw during the fault (alert
frames for calls produced from 10 s before the fault until alerts flow again:
receipt time minus the call's production time), and p50/p99 of that delay before
the fault. Also the longest time without any alert frame at the supervisor
from the fault until alerts flow again, next to the longest before it: an
outage can swallow frames rather than delay them (detectors fed a backlog at
once make one update of the zone's alert for all the bursts it holds). Writes
JSON to ``out/bench/faults.json``; progress on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import latency
import redis
from _common import ROOT, add_json, aligned, parser, write_json

from gateway.client import FailoverClient
from gateway.tokens import issue
from infra import redisha
from infra.localcluster import Cluster
from infra.processes import WorkerProcess, active_detector, free_port, worker_env
from streams.counting.keys import Keys
from streams.runtime import progress
from streams.runtime.redisconn import sync_client_for
from streams.runtime.settings import Settings
from streams.runtime.status import kafka_health

FAULTS = ("broker", "redis", "detector", "gateway")
#: Alert frames for calls produced this long before a fault count as "during the fault".
BEFORE_FAULT_S = 10.0
#: Counts flow again when every call produced up to this long after the fault is counted: with calls spread
#: over the partitions by id, some of them went to those a fault stopped (so this is also the measure's floor).
PROBE_S = 1.0
#: Seconds the load goes on after counts and alerts flow again.
AFTER_S = 15.0
#: The longest a fault may take to be over (counts and alerts flowing again).
RECOVERY_BOUND_S = 120.0


def _say(msg: str) -> None:
    print(f"[faults] {msg}", file=sys.stderr, flush=True)


class CountWatch(threading.Thread):
    """Every 50 ms: the calls counted in Redis (through the Sentinels) and the live calls produced so far (``seq[0]``)."""

    def __init__(self, settings: Settings, seq: list[int]) -> None:
        super().__init__(daemon=True)
        self.settings, self.seq = settings, seq
        self.samples: list[tuple[float, int, int]] = []  # (wall time, produced, counted)
        self.stop_event = threading.Event()

    def run(self) -> None:
        key = Keys(self.settings.redis_prefix).metrics
        client = sync_client_for(self.settings, socket_timeout=1.0)
        try:
            while not self.stop_event.wait(0.05):
                produced = self.seq[0]
                try:
                    counted = int(client.hget(key, "events_total|call") or 0)
                except redis.RedisError:
                    continue  # the primary is gone: no sample until the Sentinels name the next
                self.samples.append((time.time(), produced, counted))
        finally:
            client.close()

    def flowing_after(self, t_fault: float, base: int) -> float | None:
        """Seconds from ``t_fault`` until every call produced up to :data:`PROBE_S` after it was counted (None: not yet).

        ``base``: calls counted before the first live call was produced.
        """
        probe = [p for t, p, _ in self.samples if t <= t_fault + PROBE_S]
        if not probe or self.samples[-1][0] <= t_fault + PROBE_S:
            return None
        need = probe[-1]
        return next((t - t_fault for t, _, c in self.samples if t > t_fault + PROBE_S and c - base >= need), None)


class Supervisor:
    """A supervisor's :class:`FailoverClient` on both gateways: every alert frame with its receipt time."""

    def __init__(self, bases: list[str], token: str) -> None:
        self.client = FailoverClient(bases, token, ping_s=2.0)
        self.alerts: list[tuple[float, dict]] = []
        self.task: asyncio.Task | None = None

    async def _read(self) -> None:
        async for frame in self.client.frames():
            if frame.get("type") == "alert":
                self.alerts.append((time.time(), frame["alert"]))

    def start(self) -> None:
        self.task = asyncio.create_task(self._read())

    def stop(self) -> None:
        self.client.stop()
        if self.task is not None:
            self.task.cancel()

    def delays(self, produced_from: float, produced_to: float) -> list[float]:
        """Call-to-alert delays (ms) of the opened or updated alerts for calls produced in [from, to)."""
        return [
            1000 * (t - a["at"]) for t, a in self.alerts if a.get("state") in ("open", "update") and produced_from <= a["at"] < produced_to
        ]

    def longest_silence(self, start: float, end: float) -> float | None:
        """The longest time (s) between two alert frames received in [start, end], or from ``start`` to the first."""
        times = [start, *(t for t, _ in self.alerts if start < t <= end)]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=None)

    def live_after(self, t_fault_mono: float) -> float | None:
        """Seconds from ``t_fault_mono`` (``time.monotonic()``) until the client was live again on a gateway (None: not yet)."""
        return next((e.at - t_fault_mono for e in self.client.events if e.kind == "caught_up" and e.at > t_fault_mono), None)

    def alerts_after(self, t_fault: float) -> float | None:
        """Seconds from ``t_fault`` until an alert made by a call produced after it arrived (None: none yet)."""
        return next((t - t_fault for t, a in self.alerts if a["at"] >= t_fault), None)


class Floor:
    """The processes of the bench on the cluster: workers, gateways, the supervisor."""

    def __init__(self, cluster: Cluster, settings: Settings, tmp: Path) -> None:
        self.cluster, self.settings, self.tmp = cluster, settings, tmp
        self.env = worker_env(settings)
        self.counter = WorkerProcess(replace(settings, roles=("count",)), tmp, "count").start()
        self.detectors = [WorkerProcess(replace(settings, roles=("detect",)), tmp, f"detect-{i}").start() for i in (1, 2)]
        self.spawned = 2
        self.secret = secrets.token_urlsafe(48)
        self.ports = [free_port(), free_port()]
        self.gateways: list[latency.Proc | None] = [None, None]
        for i in range(2):
            self.start_gateway(i)

    @property
    def bases(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def start_gateway(self, i: int) -> None:
        env = {**self.env, "WF_GATEWAY_SECRET": self.secret, "WF_GATEWAY_PEERS": ",".join(self.bases), "WF_GATEWAY_COUNTS_S": "3600"}
        self.gateways[i] = latency.Proc(
            [sys.executable, "-m", "gateway", "--port", str(self.ports[i]), "--log-level", "WARNING"],
            env,
            self.tmp / f"gateway-{i + 1}.log",
        )
        latency._wait_healthy(self.ports[i])

    def new_standby(self) -> None:
        self.spawned += 1
        self.detectors.append(WorkerProcess(replace(self.settings, roles=("detect",)), self.tmp, f"detect-{self.spawned}").start())

    def check(self) -> None:
        for w in [self.counter, *self.detectors]:
            if not w.alive():
                raise progress.NotCaughtUp(f"{w.log_path.name} exited:\n{w.log_tail()}")

    def stop(self) -> None:
        for g in self.gateways:
            if g is not None:
                g.stop()
        for w in [self.counter, *self.detectors]:
            w.stop()


def wait_whole(settings: Settings, timeout_s: float = 180) -> float:
    """Seconds until every broker is back and every partition in sync."""
    t0 = time.monotonic()
    while not kafka_health(settings).ok:
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"the cluster is not whole {timeout_s:.0f} s after the restart: {kafka_health(settings)}")
        time.sleep(0.5)
    return time.monotonic() - t0


def active_controller(cluster: Cluster) -> str | None:
    """The broker whose controller leads the KRaft quorum now: the last to log its election ("Completed transition
    to Leader", Kafka's RaftManager). Killing it adds a quorum election (``controller.quorum.fetch.timeout.ms``,
    2 s) before the dead broker's session starts to run out."""
    last: tuple[str, str] | None = None
    for b in cluster.brokers:
        try:
            lines = (cluster.run_dir / f"{b.name}.log").read_text(errors="replace").splitlines()
        except OSError:
            continue
        stamps = [line[:25] for line in lines if "RaftManager" in line and "Completed transition to Leader" in line]
        if stamps and (last is None or stamps[-1] > last[0]):
            last = (stamps[-1], b.name)
    return None if last is None else last[1]


def inject(fault: str, floor: Floor, sup: Supervisor) -> str:
    """Do ``fault`` now; what was done."""
    c, s = floor.cluster, floor.settings
    if fault == "broker":
        victim = c.leader_of_most(s, "calls")
        led = sorted(p for p, n in c.leaders(s, "calls").items() if n == victim.node_id)
        controller = active_controller(c)
        c.kill(victim.name)
        also = ", also the active controller" if controller == victim.name else f" (the active controller: {controller})"
        return f"SIGKILL of {victim.name}, leader of calls partitions {led}{also}"
    if fault == "redis":
        port = redisha.primary_port(c.redis_port)
        pid = redisha.redis_pid(c.run_dir, port) if port is not None else None
        if pid is None:
            raise RuntimeError(f"no Redis primary found behind the Sentinels of base port {c.redis_port}")
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL of the Redis primary on port {port}"
    if fault == "detector":
        active = active_detector(floor.detectors)
        active.kill()
        floor.detectors.remove(active)
        return f"SIGKILL of the active detection worker ({active.log_path.stem})"
    if fault == "gateway":
        i = sup.client.current
        gw = floor.gateways[i]
        assert gw is not None
        gw.proc.kill()
        gw.proc.wait(10)
        floor.gateways[i] = None
        return f"SIGKILL of gateway {i + 1}, the supervisor's"
    raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")


def repair(fault: str, floor: Floor) -> float:
    """Bring back what ``fault`` took; seconds it took."""
    t0 = time.monotonic()
    if fault in ("broker", "redis"):
        floor.cluster.cli("up", "--cluster")  # the killed broker, or the killed Redis as a replica
        wait_whole(floor.settings)
    elif fault == "detector":
        floor.new_standby()
    elif fault == "gateway":
        floor.start_gateway(next(i for i, g in enumerate(floor.gateways) if g is None))
    return time.monotonic() - t0


async def fresh_zone(floor: Floor, token: str, rows: list[dict], nth: int) -> tuple[float, float]:
    """Make event zone ``nth`` (a quiet cell of its own, ``latency._quiet_zone``) through a live gateway; its point.

    A zone's alert is updated as it grows, until its window is full of the bursts: a fresh zone for each fault
    keeps alert frames coming every burst.
    """
    quiet, zone = latency._quiet_zone(rows, nth)
    port = next(p for p, g in zip(floor.ports, floor.gateways, strict=True) if g is not None)
    ready = asyncio.Event()
    maker = asyncio.create_task(latency.watch_alerts(f"ws://127.0.0.1:{port}/ws?token={token}", [], ready, zone))
    try:
        await asyncio.wait_for(ready.wait(), 30)
    finally:
        maker.cancel()
    await asyncio.sleep(6)  # the detection agent reads event zones every 5 s
    return quiet


async def one_fault(fault: str, floor: Floor, sup: Supervisor, rows: list[dict], quiet, seq: list[int], rate: float, before: float) -> dict:
    s = floor.settings
    await asyncio.to_thread(progress.wait_caught_up, s, 300, floor.check)
    await asyncio.to_thread(progress.wait_detected, s, 300, floor.check)
    with sync_client_for(s) as client:
        base = int(client.hget(Keys(s.redis_prefix).metrics, "events_total|call") or 0) - seq[0]
    watch = CountWatch(s, seq)
    watch.start()
    over = threading.Event()
    started = time.time()
    _say(f"{fault}: {rate:g} calls/s with bursts for {before:g} s, then the fault")
    load = asyncio.create_task(latency.offered_load(s, rows, rate, before, quiet, seq, over.is_set))
    try:
        await asyncio.sleep(before)
        t_fault, t_fault_mono = time.time(), time.monotonic()
        what = await asyncio.to_thread(inject, fault, floor, sup)
        _say(f"{fault}: {what}")
        flowing = alerting = None
        while flowing is None or alerting is None:
            if time.time() - t_fault > RECOVERY_BOUND_S:
                _say(f"{fault}: not over after {RECOVERY_BOUND_S:.0f} s (counts {flowing}, alerts {alerting})")
                break
            await asyncio.sleep(0.2)
            flowing = watch.flowing_after(t_fault, base) if flowing is None else flowing
            alerting = sup.alerts_after(t_fault) if alerting is None else alerting
        await asyncio.sleep(AFTER_S)
        over.set()
        await load
    finally:
        over.set()
        watch.stop_event.set()
        watch.join(5)
    end = t_fault + (alerting if alerting is not None else RECOVERY_BOUND_S)
    during = sup.delays(t_fault - BEFORE_FAULT_S, end)
    steady = latency.percentiles(sup.delays(started, t_fault - BEFORE_FAULT_S))
    # an outage may also swallow alert frames (detectors fed a backlog at once merge its bursts into one update)
    silence = sup.longest_silence(t_fault, end + 1.0)
    usual = sup.longest_silence(started + 10, t_fault)
    repair_s = await asyncio.to_thread(repair, fault, floor)
    await asyncio.to_thread(progress.wait_caught_up, s, 300, floor.check)
    with sync_client_for(s) as client:
        exact = int(client.hget(Keys(s.redis_prefix).metrics, "events_total|call") or 0) - base == seq[0]
    row = {
        "fault": fault, "what": what, "counts_flowing_s": flowing, "alerts_flowing_s": alerting,
        "worst_delay_ms": max(during) if during else None, "alerts_during": len(during), "before": steady,
        "longest_silence_s": silence, "longest_silence_before_s": usual, "supervisor_live_s": sup.live_after(t_fault_mono),
        "repaired_s": repair_s, "every_call_counted_once": exact, "load_average": os.getloadavg(),
    }  # fmt: skip
    _say(f"{fault}: {row}")
    return row


async def run(faults: list[str], kafka_port: int, redis_port: int, rate: float, before: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wf-bench-faults-"))
    cluster = Cluster(run_dir=tmp / "cluster", kafka_port=kafka_port, redis_port=redis_port)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rate": rate, "before_s": before, "faults": []}
    _say(f"starting the cluster in {cluster.run_dir} (Kafka {kafka_port}, +2, +4; Redis {redis_port}, Sentinels)")
    for attempt in range(4):
        try:
            cluster.cli("up", "--cluster")
            break
        except AssertionError as exc:
            # a port held a moment by another socket (seen twice when the Sentinels listened in the ephemeral range)
            if attempt == 3:
                raise
            _say(f"{exc}\nstopping what started and trying again in 15 s")
            cluster.cli("down")
            time.sleep(15)
    floor = sup = None
    try:
        s = cluster.settings(retention_s=400 * 86400, redis_sentinels=tuple(redisha.sentinels(redis_port)))
        results["broker_settings"] = broker_settings(cluster)
        floor = Floor(cluster, s, tmp)
        _say("warming up: three days of simulated history, replayed at full speed")
        rows = latency.warm_up(s, floor.env, tmp, floor.check)
        token = issue(floor.secret.encode(), subject="bench-supervisor", role="supervisor", agency="bench", ttl_s=6 * 3600)
        sup = Supervisor(floor.bases, token)
        sup.start()
        seq = [0]
        for nth, fault in enumerate(faults):
            # each fault's event zone made through a gateway (the supervisor's own client cannot send)
            quiet = await fresh_zone(floor, token, rows, nth)
            results["faults"].append(await one_fault(fault, floor, sup, rows, quiet, seq, rate, before))
    finally:
        if sup is not None:
            sup.stop()
        if floor is not None:
            floor.stop()
        cluster.cli("down")
    results["logs"] = str(tmp)
    return results


def broker_settings(cluster: Cluster) -> dict[str, str]:
    """The failure-detection settings the brokers run with (Kafka's default when not in their config)."""
    props = (cluster.run_dir / cluster.brokers[0].name / "server.properties").read_text().splitlines()
    mine = dict(line.split("=", 1) for line in props if "=" in line)
    defaults = {"broker.session.timeout.ms": "9000 (default)", "broker.heartbeat.interval.ms": "2000 (default)"}
    return {k: mine.get(k, v) for k, v in defaults.items()}


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def report(results: dict) -> str:
    rows = [
        ["fault", "counts again s", "alerts again s", "worst delay ms", "alerts", "silence s", "(before)", "before p50 ms", "p99", "n",
         "supervisor live again s", "all counted once"]
    ]  # fmt: skip
    for r in results["faults"]:
        b = r["before"]
        rows.append(
            [r["fault"], _s(r["counts_flowing_s"]), _s(r["alerts_flowing_s"]),
             "-" if r["worst_delay_ms"] is None else f"{r['worst_delay_ms']:.0f}", str(r["alerts_during"]),
             _s(r["longest_silence_s"]), _s(r["longest_silence_before_s"]),
             f"{b['p50']:.0f}" if b.get("n") else "-", f"{b['p99']:.0f}" if b.get("n") else "-", str(b.get("n", 0)),
             _s(r["supervisor_live_s"]),
             "yes" if r["every_call_counted_once"] else "NO"]
        )  # fmt: skip
    la = [", ".join(f"{x:.1f}" for x in r["load_average"]) for r in results["faults"]]
    return "\n".join(
        [
            f"date {results['date']}; {results['rate']:g} calls/s with bursts; brokers {results.get('broker_settings')}",
            *aligned(rows),
            *(
                f"{r['fault']}: {r['what']}; repaired in {r['repaired_s']:.1f} s; load average {x}"
                for r, x in zip(results["faults"], la, strict=True)
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, in order (default {','.join(FAULTS)})")
    p.add_argument("--rate", type=float, default=5.0, help="live calls per second (default 5), plus a burst of 8 every 5 s")
    p.add_argument("--before", type=float, default=60.0, help="seconds of load before each fault (default 60)")
    p.add_argument("--kafka-port", type=int, default=19392, help="the cluster's first broker; +2, +4 the others (default 19392)")
    p.add_argument("--redis-port", type=int, default=16679, help="the cluster's Redis primary, +1 its replica (default 16679)")
    add_json(p, ROOT / "out" / "bench" / "faults.json")
    args = p.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    if not faults or any(f not in FAULTS for f in faults):
        p.error(f"--faults must name some of {', '.join(FAULTS)}, got {args.faults!r}")
    if args.rate <= 0 or args.before <= 0:
        p.error("--rate and --before must be positive")
    # the bench's own producer and consumers report every refused connection to the killed broker: expected here
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    results = asyncio.run(run(faults, args.kafka_port, args.redis_port, args.rate, args.before))
    print(report(results))
    write_json(args.json, results)
    print(f"\nfigures written to {args.json}; logs in {results['logs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
