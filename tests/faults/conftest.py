"""The fault tests' cluster: three KRaft brokers and HA Redis (``python -m infra.stack up --cluster``), one per session.

The ``cluster`` fixture starts it with its own run folder and ports, distinct
from the single-node stack's (the ``stack`` fixture of ``tests/conftest.py``),
so the ordinary suite and the fault tests run together in one pytest session;
it stops the cluster at the end. Ports, from their bases:

- ``WF_TEST_CLUSTER_KAFKA_PORT`` (default 19092): brokers on 19092, 19094,
  19096, their controllers on 19093, 19095, 19097;
- ``WF_TEST_CLUSTER_REDIS_PORT`` (default 16379): Redis primary 16379, replica
  16380, Sentinels from 36379 (``infra.redisha.sentinel_ports``).

Both bases lie below Linux's ephemeral port range (32768..), so a client's
source port never takes a stopped broker's port. ``WF_TEST_CLUSTER_RUN_DIR``
names the run folder (default: a temporary folder); with it set and
``WF_KEEP_STACK=1`` the cluster is left running for the next session.

Each test takes :meth:`Cluster.settings`: a topic and key prefix of its own,
topics created with replication factor 3 and ``min.insync.replicas`` 2.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra import redisha
from infra import stack as infra_stack
from streams.runtime.settings import Settings, load_settings
from streams.topics import topic_name

ROOT = Path(__file__).resolve().parent.parent.parent
REPLICATION_FACTOR = 3
MIN_INSYNC = 2


@dataclass
class Cluster:
    """The session's cluster: its ports and run folder, and what a fault test does to it."""

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
        """Run ``python -m infra.stack ARGS`` on this cluster; what it printed on stdout (``status``'s lines)."""
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
        """The Redis primary now (after a failover in an earlier test it is the former replica)."""
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
        infra_stack.create_topics(prefix, s.partitions, self.bootstrap, REPLICATION_FACTOR, MIN_INSYNC)
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


#: kafka-python versions whose refused connections leave their socket unclosed (see :func:`_close_refused_sockets`).
KAFKA_PYTHON_LEAKS = ("3.0.",)


@pytest.fixture(scope="session", autouse=True)
def _close_refused_sockets() -> Iterator[None]:
    """Close the socket of a refused kafka-python connection, which kafka-python 3.0 drops unclosed.

    ``kafka.net.inet.KafkaNetSocket.sock_connect`` raises on ECONNREFUSED without
    closing its socket; garbage-collected later (a broker of the cluster is down, so
    every client in this process meets one), it is an unraisable ResourceWarning,
    which fails the session at its end. This wraps the method for the session
    only, and stops the session when kafka-python's version changes, to look again.
    """
    import kafka
    from kafka.net import inet

    assert kafka.__version__.startswith(KAFKA_PYTHON_LEAKS), (
        f"kafka-python {kafka.__version__}: check whether KafkaNetSocket.sock_connect still leaves a refused socket "
        "unclosed, then update KAFKA_PYTHON_LEAKS or remove _close_refused_sockets"
    )
    upstream = inet.KafkaNetSocket.sock_connect

    async def sock_connect(self: Any, net: Any, sock: Any, sockaddr: Any, timeout_at: Any = None) -> Any:
        try:
            return await upstream(self, net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:
            sock.close()
            raise

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inet.KafkaNetSocket, "sock_connect", sock_connect)
        yield


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """Three brokers and HA Redis for the session (``python -m infra.stack up --cluster``), stopped at the end."""
    given = os.environ.get("WF_TEST_CLUSTER_RUN_DIR")
    run_dir = Path(given) if given else tmp_path_factory.mktemp("cluster")
    c = Cluster(
        run_dir=run_dir,
        kafka_port=int(os.environ.get("WF_TEST_CLUSTER_KAFKA_PORT", "19092")),
        redis_port=int(os.environ.get("WF_TEST_CLUSTER_REDIS_PORT", "16379")),
    )
    try:
        c.cli("up", "--cluster")
        yield c
    finally:
        for b in c.brokers:  # a test that failed half-way may have left a log folder unwritable
            restore_writable(c.data_dir(b.name))
        if not (given and os.environ.get("WF_KEEP_STACK")):
            c.cli("down")


def make_unwritable(path: Path) -> None:
    """Make the folder ``path`` refuse new files, even to root (``chattr +i``; ``chmod 000`` for other users)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0)


def restore_writable(path: Path) -> None:
    """Undo :func:`make_unwritable` (nothing to do when ``path`` was never made unwritable or does not exist)."""
    if not path.exists():
        return
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
    else:
        path.chmod(0o755)
