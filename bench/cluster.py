"""Single node next to the cluster, in one run on this machine: worker throughput, call-to-alert latency, the replica WAIT.

Usage::

    python bench/cluster.py [--rates 2,100,1000] [--seconds 60] [--calls 30000] [--modes single,cluster,cluster-nowait]

Starts and stops its own stacks (``python -m infra.stack up`` / ``up --cluster``
with ``WF_RUN_DIR`` a temporary folder and the ports of ``--single-kafka-port``
etc.), one mode after the other, so they never share the machine:

``single``          one broker, one Redis (topics RF 1), as ``python -m infra.stack up``;
``cluster``         three KRaft brokers (topics RF 3, ``min.insync.replicas`` 2, producers
                    ``acks=all``), Redis primary + replica + three Sentinels; the workers
                    and the gateway reach Redis through the Sentinels, so alert appends and
                    detector checkpoints wait for the replica (``REPLICA_WAIT_MS``,
                    :mod:`streams.counting.state`);
``cluster-nowait``  the same cluster with Redis given as the primary's URL (no
                    Sentinels): no WAIT, so the difference to ``cluster`` is its cost.

In each mode: the counting worker's throughput (records/s, the ``worker`` reader
of ``bench/throughput.py``: ``--calls`` calls with their updates loaded first, the
worker timed from its first commit to its last, counts checked exact), then
call-to-alert latency at each of ``--rates`` (``bench/latency.py``'s run: a
counting and a detection worker and a gateway, three days of history to warm
the detectors, live calls with bursts in an event zone, a supervisor's
WebSocket timing every alert frame), and, in ``cluster``, the time of one
alert append and one detector checkpoint in Redis, with and without the
Sentinels' WAIT, timed directly on :class:`streams.counting.state.RedisState`.
``cluster-nowait`` measures only the latency (the counting path does not WAIT).

Prints one table per measure and writes JSON to ``out/bench/cluster.json``.
Progress goes to stderr. The machine's load average is printed with the
figures: other processes on it change them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import latency
import throughput
from _common import ROOT, add_json, aligned, default_source, parser, write_json

from infra import redisha
from infra import stack as infra_stack
from streams.counting.state import REPLICA_WAIT_MS, RedisState
from streams.ingest.replay import Pace, plan_replay, produce
from streams.ingest.sources import detect_format
from streams.runtime.settings import Settings, load_settings
from streams.topics import CALLS, topic_name

MODES = ("single", "cluster", "cluster-nowait")
#: Tries of ``infra.stack up``, and the wait between two.
UP_ATTEMPTS, UP_RETRY_S = 4, 15.0
#: Appends and checkpoints timed per variant in :func:`wait_cost`.
WAIT_SAMPLES = 300


def _say(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


class Stack:
    """A stack of ``python -m infra.stack`` in its own run folder and ports, started and stopped by this bench."""

    def __init__(self, cluster: bool, kafka_port: int, redis_port: int, run_dir: Path) -> None:
        self.cluster, self.kafka_port, self.redis_port, self.run_dir = cluster, kafka_port, redis_port, run_dir

    def _cli(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
        env.update(WF_RUN_DIR=str(self.run_dir), WF_KAFKA_PORT=str(self.kafka_port), WF_REDIS_PORT=str(self.redis_port))
        proc = subprocess.run([sys.executable, "-m", "infra.stack", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"python -m infra.stack {' '.join(args)} failed (run folder {self.run_dir}):\n{proc.stderr[-3000:]}")

    def up(self) -> None:
        _say(f"starting the {'cluster' if self.cluster else 'single node'}: Kafka on {self.kafka_port}, Redis on {self.redis_port}")
        args = ("up", "--cluster") if self.cluster else ("up",)
        for attempt in range(UP_ATTEMPTS):
            try:
                self._cli(*args)
                return
            except RuntimeError as exc:
                # a port held a moment by another socket (seen twice when the Sentinels listened in the ephemeral range)
                if attempt == UP_ATTEMPTS - 1:
                    raise
                _say(f"{exc}\nstopping what started and trying again in {UP_RETRY_S:g} s")
                self.down()
                time.sleep(UP_RETRY_S)

    def down(self) -> None:
        self._cli("down")

    def env(self, sentinels: bool) -> dict[str, str]:
        """The WF_* variables that point this process and its children at the stack (Redis through the Sentinels or not)."""
        env = {
            "WF_RUN_DIR": str(self.run_dir),
            "WF_KAFKA_PORT": str(self.kafka_port),
            "WF_REDIS_PORT": str(self.redis_port),
            "WF_KAFKA_BOOTSTRAP": infra_stack.bootstrap(self.cluster, self.kafka_port),
            "WF_KAFKA_REPLICATION_FACTOR": "3" if self.cluster else "1",
            "WF_KAFKA_MIN_INSYNC_REPLICAS": "2" if self.cluster else "1",
        }
        port = (redisha.primary_port(self.redis_port) or self.redis_port) if self.cluster else self.redis_port
        env["WF_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if sentinels:
            env["WF_REDIS_SENTINELS"] = redisha.sentinels_setting(self.redis_port)
        return env


def _point_at(env: dict[str, str]) -> None:
    """Make ``env`` this process's WF_* (latency.run and the readers read the environment, and pass it to their children)."""
    for k in [k for k in os.environ if k.startswith("WF_")]:
        del os.environ[k]
    os.environ.update(env)


def worker_throughput(settings: Settings, calls: int, workdir: Path) -> dict:
    """Records/s of one counting worker over ``calls`` calls and their updates (``bench/throughput.py``'s ``worker`` reader)."""
    prefix = settings.topic_prefix
    infra_stack.create_topics(
        prefix, settings.partitions, settings.kafka_bootstrap, settings.kafka_replication_factor, settings.kafka_min_insync_replicas
    )
    try:
        path = default_source(workdir, calls)
        records, _ = plan_replay(path, detect_format(path), prefix, calls)
        n_calls = sum(1 for r in records if r.topic == topic_name(prefix, CALLS))
        _say(f"throughput: loading {len(records):,} records ({n_calls:,} calls) from {path.name}")
        t0 = time.perf_counter()
        asyncio.run(produce(records, [], bootstrap=settings.kafka_bootstrap, prefix=prefix, pace=Pace(), progress=False))
        load_s = time.perf_counter() - t0
        m = throughput.measure("worker", "c", settings, records, workdir, False)
        _say(f"throughput: {m.rate:,.0f} records/s, exact: {m.check and m.check['exact']}")
        return {"records": len(records), "calls": n_calls, "records_per_s": m.rate, "load_s": load_s, "check": m.check}
    finally:
        throughput.cleanup(settings, prefix)


async def wait_cost(settings: Settings, samples: int = WAIT_SAMPLES) -> dict:
    """Milliseconds per alert append and per detector checkpoint on ``settings``' Redis, through the Sentinels
    (with WAIT for the replica) and on the primary's URL (without), each timed one call at a time."""
    prefix = f"wait{uuid.uuid4().hex[:6]}"
    out: dict = {}
    state_blob = os.urandom(64 * 1024)  # a detectors' checkpoint is larger; this times the WAIT, not the copy
    for label, s in (("with_wait", settings), ("without_wait", replace(settings, redis_sentinels=()))):
        st = RedisState.from_settings(replace(s, redis_prefix=f"{prefix}{label}"))
        try:
            appends, checkpoints = [], []
            for i in range(samples):
                t0 = time.perf_counter()
                await st.append_alerts(i, [f'{{"id": "bench:{i}", "state": "open", "n": {i}}}'])
                appends.append(1000 * (time.perf_counter() - t0))
                if i % 10 == 0:
                    t0 = time.perf_counter()
                    await st.commit_detection(i, state_blob)
                    checkpoints.append(1000 * (time.perf_counter() - t0))
            out[label] = {"append_ms": latency.percentiles(appends), "checkpoint_ms": latency.percentiles(checkpoints)}
            await st.clear()
        finally:
            await st.close()
    return out


def run_mode(mode: str, stack: Stack, rates: list[float], seconds: float, min_alerts: int, calls: int, workdir: Path) -> dict:
    """One mode's figures on its stack (already up)."""
    sentinels = mode == "cluster"
    _point_at(stack.env(sentinels))
    row: dict = {"mode": mode, "load_average_before": os.getloadavg()}
    if mode != "cluster-nowait" and calls > 0:
        prefix = f"thr{uuid.uuid4().hex[:8]}"
        s = replace(load_settings(), topic_prefix=prefix, redis_prefix=prefix, app_id=f"{prefix}-worker", retention_s=400 * 86400)
        row["throughput"] = worker_throughput(s, calls, workdir)
    if rates:
        _say(f"{mode}: call-to-alert latency at {', '.join(f'{r:g}' for r in rates)} calls/s")
        row["latency"] = asyncio.run(latency.run(rates, seconds, workdir / "latency.json", split=True, min_alerts=min_alerts))
    if mode == "cluster":  # the WAIT is Sentinels' (cluster-nowait: the same Redis, so the same figures)
        row["wait"] = asyncio.run(wait_cost(load_settings(environ={**os.environ, **stack.env(True)})))
        _say(f"{mode}: WAIT cost {row['wait']}")
    row["load_average_after"] = os.getloadavg()
    return row


def _ms(d: dict, k: str) -> str:
    return f"{d[k]:.0f}" if k in d else "-"


def report(results: dict) -> str:
    """The tables of a :func:`run` result."""
    lines = [f"date {results['date']}; REPLICA_WAIT_MS {results['replica_wait_ms']}"]
    rows = [["mode", "records/s", "exact", "load avg before", "after"]]
    for m in results["modes"]:
        t = m.get("throughput")
        if t:
            la = ", ".join(f"{x:.1f}" for x in m["load_average_before"])
            lb = ", ".join(f"{x:.1f}" for x in m["load_average_after"])
            rows.append([m["mode"], f"{t['records_per_s']:,.0f}", "yes" if (t["check"] or {}).get("exact") else "NO", la, lb])
    if len(rows) > 1:
        lines += ["", "worker throughput (counting role, one worker):", *aligned(rows)]
    rows = [["mode", "calls/s", "alerts", "p50 ms", "p99 ms", "max ms", "to Redis p99", "detect p50 (alerts)", "detect p99"]]
    for m in results["modes"]:
        for load in (m.get("latency") or {}).get("loads", []):
            a = load["alerts"]
            det = (load.get("stages_alerts") or {}).get("detect", {})
            rows.append(
                [m["mode"], f"{load['offered_per_s']:g}", str(a["n"]), _ms(a, "p50"), _ms(a, "p99"), _ms(a, "max"),
                 _ms(load["to_redis"], "p99"), f"{det['p50']:.1f}" if det else "-", f"{det['p99']:.1f}" if det else "-"]
            )  # fmt: skip
    if len(rows) > 1:
        lines += ["", "call-to-alert latency (supervisor's WebSocket; detect: the detectors and the alert's append):", *aligned(rows)]
    rows = [["mode", "variant", "append p50 ms", "p99", "max", "checkpoint p50 ms", "p99"]]
    for m in results["modes"]:
        for variant, w in (m.get("wait") or {}).items():
            a, c = w["append_ms"], w["checkpoint_ms"]
            rows.append([m["mode"], variant, f"{a['p50']:.2f}", f"{a['p99']:.2f}", f"{a['max']:.2f}", f"{c['p50']:.2f}", f"{c['p99']:.2f}"])
    if len(rows) > 1:
        lines += ["", f"one alert append / one 64 KiB checkpoint in Redis, {WAIT_SAMPLES} / {WAIT_SAMPLES // 10} each:", *aligned(rows)]
    return "\n".join(lines)


def run(
    modes: list[str],
    ports: dict[str, tuple[int, int]],
    rates: list[float],
    seconds: float,
    min_alerts: int,
    calls: int,
    partial: Path | None = None,
) -> dict:
    """Each mode in turn on its stack; the JSON-able figures (also written to ``partial`` after each mode)."""
    workdir = Path(tempfile.mkdtemp(prefix="wf-bench-cluster-"))
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "replica_wait_ms": REPLICA_WAIT_MS, "modes": []}
    saved = {k: v for k, v in os.environ.items() if k.startswith("WF_")}
    stacks: dict[bool, Stack] = {}
    try:
        for mode in modes:
            cluster = mode != "single"
            try:
                if cluster not in stacks:
                    for other in list(stacks.values()):  # one stack at a time on the machine
                        other.down()
                    stacks.clear()
                    kafka, redis_ = ports["cluster" if cluster else "single"]
                    stacks[cluster] = Stack(cluster, kafka, redis_, workdir / ("cluster" if cluster else "single"))
                    stacks[cluster].up()
                results["modes"].append(run_mode(mode, stacks[cluster], rates, seconds, min_alerts, calls, workdir))
            except (RuntimeError, OSError) as exc:  # the other modes' figures are still worth having
                _say(f"{mode} failed: {exc}")
                results["modes"].append({"mode": mode, "error": str(exc)})
            if partial is not None:
                write_json(partial, results)
    finally:
        for s in stacks.values():
            s.down()
        _point_at(saved)
        shutil.rmtree(workdir / "single", ignore_errors=True)
        shutil.rmtree(workdir / "cluster", ignore_errors=True)
    results["logs"] = str(workdir)
    return results


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)} (default: all, in that order)")
    p.add_argument("--rates", default="2,100,1000", help="offered loads for the latency, calls/s (default 2,100,1000; empty: none)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds each load is sustained at least (default 60)")
    p.add_argument("--min-alerts", type=int, default=100, help="as bench/latency.py's --min-alerts (default 100)")
    p.add_argument("--calls", type=int, default=30_000, help="calls (with their updates) for the throughput; 0: none (default 30000)")
    p.add_argument("--single-kafka-port", type=int, default=19192, help="the single node's broker (default 19192)")
    p.add_argument("--single-redis-port", type=int, default=16479, help="the single node's Redis (default 16479)")
    p.add_argument("--cluster-kafka-port", type=int, default=19292, help="the cluster's first broker; +2, +4 the others (default 19292)")
    p.add_argument("--cluster-redis-port", type=int, default=16579, help="the cluster's Redis primary; +1 its replica (default 16579)")
    add_json(p, ROOT / "out" / "bench" / "cluster.json")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        p.error(f"--modes must name some of {', '.join(MODES)}, got {args.modes!r}")
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        p.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if any(x <= 0 for x in rates) or args.seconds <= 0 or args.calls < 0:
        p.error("rates and --seconds must be positive, --calls at least 0")
    ports = {"single": (args.single_kafka_port, args.single_redis_port), "cluster": (args.cluster_kafka_port, args.cluster_redis_port)}
    results = run(modes, ports, rates, args.seconds, args.min_alerts, args.calls, partial=args.json)
    print(report(results))
    write_json(args.json, results)
    print(f"\nfigures written to {args.json}; logs in {results['logs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
