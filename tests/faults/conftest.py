"""The fault tests' cluster: three KRaft brokers and HA Redis (``python -m infra.stack up --cluster``), one per session.

The ``cluster`` fixture starts it with its own run folder and ports, distinct
from the single-node stack's (the ``stack`` fixture of ``tests/conftest.py``),
so the ordinary suite and the fault tests run together in one pytest session;
it stops the cluster at the end. Ports, from their bases:

- ``WF_TEST_CLUSTER_KAFKA_PORT`` (default 19092): brokers on 19092, 19094,
  19096, their controllers on 19093, 19095, 19097;
- ``WF_TEST_CLUSTER_REDIS_PORT`` (default 16379): Redis primary 16379, replica
  16380, Sentinels from 16382 (``infra.redisha.sentinel_ports``).

Both bases lie below Linux's ephemeral port range (32768..), so a client's
source port never takes a stopped broker's port. ``WF_TEST_CLUSTER_RUN_DIR``
names the run folder (default: a temporary folder); with it set and
``WF_KEEP_STACK=1`` the cluster is left running for the next session.

Each test takes :meth:`Cluster.settings`: a topic and key prefix of its own,
topics created with replication factor 3 and ``min.insync.replicas`` 2.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.localcluster import MIN_INSYNC, REPLICATION_FACTOR, Cluster

#: The cluster (moved to :mod:`infra.localcluster`, which bench/faults.py shares); imported here under the old names.
__all__ = ["MIN_INSYNC", "REPLICATION_FACTOR", "Cluster", "make_unwritable", "restore_writable"]


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
def cluster_session(tmp_path_factory) -> Iterator[Cluster]:
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


@pytest.fixture
def cluster(cluster_session: Cluster) -> Cluster:
    """The session's cluster, whole: a broker a test that failed half-way left stopped (or unwritable) is started
    again first, so one failure does not fail every test after it."""
    down = [b.name for b in cluster_session.brokers if cluster_session.pid(b.name) is None]
    if down:
        for b in cluster_session.brokers:
            restore_writable(cluster_session.data_dir(b.name))
        print(f"\n[cluster] {', '.join(down)} not running (an earlier test failed half-way): starting the cluster again")
        cluster_session.cli("up", "--cluster")
    return cluster_session


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
