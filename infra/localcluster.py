"""The cluster of ``python -m infra.stack up --cluster`` on this machine, as a fault test or a bench drives it (adapter).

Three KRaft brokers and HA Redis (a primary, a replica, three Sentinels, :mod:`infra.redisha`) in one run
folder on ports from two bases. :class:`Cluster` runs ``python -m infra.stack`` on it, names and kills its
brokers, and says which broker leads a topic's partitions. The fault tests (``tests/faults/conftest.py``) and
``bench/faults.py`` share it.

Typical use::

    c = Cluster(run_dir=Path("/tmp/wf-cluster"), kafka_port=19092, redis_port=16379)
    c.cli("up", "--cluster")
    settings = c.settings()                 # a prefix of its own, topics replicated 3 ways, 2 in sync
    c.kill(c.leader_of_most(settings, "calls").name)
    c.cli("up", "--cluster")                # the killed broker starts again
    c.cli("down")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from infra import redisha
from infra import stack as infra_stack
from streams.runtime.settings import Settings, load_settings
from streams.topics import topic_name

ROOT = Path(__file__).resolve().parent.parent
REPLICATION_FACTOR = 3
MIN_INSYNC = 2


@dataclass
class Cluster:
    """A cluster of this machine: its ports and run folder, and what a fault does to it."""

    run_dir: Path
    kafka_port: int
    redis_port: int

    @property
    def env(self) -> dict[str, str]:
        """The environment of ``python -m infra.stack`` for this cluster (the parent's WF_* left out)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
        env.update(WF_RUN_DIR=str(self.run_dir), WF_KAFKA_PORT=str(self.kafka_port), WF_REDIS_PORT=str(self.redis_port))
        return env

    @property
    def bootstrap(self) -> str:
        return infra_stack.bootstrap(True, self.kafka_port)

    @property
    def brokers(self) -> list[infra_stack.Broker]:
        return infra_stack.brokers(True, self.kafka_port)

    def cli(self, *args: str, timeout_s: float = 300) -> str:
        """Run ``python -m infra.stack ARGS`` on this cluster; what it printed on stdout (``status``'s lines).

        Raises ``AssertionError`` with its output when it fails.
        """
        proc = subprocess.run(
            [sys.executable, "-m", "infra.stack", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert proc.returncode == 0, f"infra.stack {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    def broker(self, node_id: int) -> infra_stack.Broker:
        return next(b for b in self.brokers if b.node_id == node_id)

    def data_dir(self, name: str) -> Path:
        return self.run_dir / name / "data"

    def pid(self, name: str) -> int | None:
        """The pid of broker ``name`` when it runs."""
        pidfile = self.run_dir / f"{name}.pid"
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid if b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes() else None

    def kill(self, name: str) -> None:
        """SIGKILL broker ``name`` (no shutdown at all) and wait until it is gone."""
        pid = self.pid(name)
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGKILL)
        self.wait_exited(name, 10)

    def wait_exited(self, name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.pid(name) is not None:
            assert time.monotonic() < deadline, f"{name} still runs after {timeout_s:.0f} s"
            time.sleep(0.1)

    def redis_url(self) -> str:
        """The Redis primary now (after a failover it is the former replica)."""
        port = redisha.primary_port(self.redis_port) or self.redis_port
        return f"redis://127.0.0.1:{port}/0"

    def settings(self, **overrides: object) -> Settings:
        """Settings on this cluster with a prefix of their own; the topics created, replicated 3 ways with 2 in sync."""
        prefix = f"t{uuid.uuid4().hex[:10]}"
        values: dict[str, object] = dict(
            kafka_bootstrap=self.bootstrap,
            redis_url=self.redis_url(),
            topic_prefix=prefix,
            redis_prefix=prefix,
            app_id=f"wf-test-{prefix}",
            partitions=4,
            batch_within_s=0.05,
            kafka_replication_factor=REPLICATION_FACTOR,
            kafka_min_insync_replicas=MIN_INSYNC,
        )
        values.update(overrides)
        s = load_settings({}, **values)
        infra_stack.create_topics(s.topic_prefix, s.partitions, self.bootstrap, REPLICATION_FACTOR, MIN_INSYNC)
        return s

    def leaders(self, settings: Settings, base: str) -> dict[int, int]:
        """Partition -> node id of its leader, for topic ``base`` of ``settings``."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        try:
            (topic,) = admin.describe_topics([topic_name(settings.topic_prefix, base)])
        finally:
            admin.close()
        return {p["partition_index"]: p["leader_id"] for p in topic["partitions"]}

    def leader_of_most(self, settings: Settings, base: str) -> infra_stack.Broker:
        """The broker that leads most partitions of topic ``base`` (the lowest node id on a tie)."""
        counts = Counter(self.leaders(settings, base).values())
        node = min(counts, key=lambda n: (-counts[n], n))
        return self.broker(node)
