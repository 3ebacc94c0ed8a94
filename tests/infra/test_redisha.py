"""The HA Redis of infra/redisha.py: a primary, a replica and three Sentinels that agree, and clients that follow a failover.

A module of its own starts the HA Redis on the base port ``WF_REDIS_PORT + 20``
(clear of the session's single Redis and of the fault tests' HA Redis at
``+ 10``) in a temporary run folder, and stops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis

from infra import redisha
from infra import stack as infra_stack
from streams.runtime.redisconn import async_client, sync_client

pytestmark = pytest.mark.stack

SERVICE = "watchfloor"


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("redis-ha")
    base = infra_stack.redis_port() + 20
    redisha.start(run_dir, base, SERVICE)
    try:
        yield run_dir, base
    finally:
        redisha.stop(run_dir)


def test_after_start_the_three_sentinels_name_the_first_node_as_primary_and_the_replica_is_in_sync(ha):
    run_dir, base = ha
    answers = [redisha.command(port, "SENTINEL", "get-master-addr-by-name", SERVICE) for _, port in redisha.sentinels(base)]
    assert answers == [[redisha.HOST, str(base)]] * 3
    assert redisha.primary(base, SERVICE) == (redisha.HOST, base)
    assert redisha.info(base + 1)["master_link_status"] == "up"
    assert redisha.readiness(base, SERVICE) is None
    assert redisha.running(run_dir)


def test_start_again_while_everything_runs_starts_nothing(ha):
    run_dir, base = ha
    pids = [redisha.pid(run_dir, name) for name, _ in redisha._processes(base)]
    redisha.start(run_dir, base, SERVICE)
    assert [redisha.pid(run_dir, name) for name, _ in redisha._processes(base)] == pids


def test_a_port_held_by_someone_else_is_refused_naming_it(ha, tmp_path):
    _, base = ha
    first = redisha.sentinel_ports(base)[0]
    with pytest.raises(redisha.HaError, match=rf"port {first} \(sentinel-{first}\) is taken by a process this script did not start"):
        redisha.start(tmp_path, base, SERVICE)


def test_clients_from_the_factory_reach_the_promoted_replica_after_the_primary_is_killed(ha):
    """SIGKILL of the primary: Sentinel promotes the replica, the same clients write to it; `start` brings the old node back, a replica."""
    run_dir, base = ha
    sentinels = redisha.sentinels(base)
    sync = sync_client("redis://127.0.0.1:1/0", sentinels, SERVICE, socket_timeout=2)

    async def write(client, key: str, deadline: float) -> int:
        while True:
            try:
                await client.set(key, "1")
                return 0
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def go() -> tuple[float, str]:
        client = async_client("redis://127.0.0.1:1/0", sentinels, SERVICE, socket_timeout=2, blocking_pool=(4, 5.0))
        try:
            await client.set("redisha-test:before", "1")
            old = redisha.primary(base, SERVICE)
            assert old is not None
            os.kill(redisha.redis_pid(run_dir, old[1]), signal.SIGKILL)
            killed = time.monotonic()
            await write(client, "redisha-test:after", killed + 30)
            took = time.monotonic() - killed
            role = (await client.execute_command("ROLE"))[0]
            return took, role
        finally:
            await client.aclose()

    try:
        took, role = asyncio.run(go())
        print(f"\nthe asyncio client wrote to the new primary {took:.1f} s after the SIGKILL")
        assert role in ("master", b"master")
        new = redisha.primary(base, SERVICE)
        assert new == (redisha.HOST, base + 1)
        assert sync.get("redisha-test:after") is not None  # the sync client finds the new primary too
        redisha.start(run_dir, base, SERVICE)  # the killed node comes back as the new primary's replica
        assert redisha.info(base)["role"] == "slave"
        assert redisha.primary(base, SERVICE) == new
    finally:
        sync.close()


def test_down_stops_exactly_the_processes_it_started(ha):
    run_dir, base = ha
    pids = [redisha.pid(run_dir, name) for name, _ in redisha._processes(base)]
    assert all(pids)
    redisha.stop(run_dir)
    assert not redisha.running(run_dir)
    assert all(redisha._gone(p) for p in pids)
