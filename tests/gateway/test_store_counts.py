"""The gateway's shared counts (``Store.cell_counts``) against real Redis: one read for many readers."""

from __future__ import annotations

import asyncio
import time

import h3
import pytest

from gateway import store as store_mod
from gateway.store import Store
from streams.counting.keys import Keys
from streams.counting.rolling import minute_of
from tests.gateway.live import REDIS_URL

pytestmark = pytest.mark.stack

URL = REDIS_URL


def _write(r, prefix: str, minute: int, cell: str, n: int) -> None:
    r.hincrby(Keys(prefix).bucket(minute), f"{cell}|ALL", n)
    r.hincrby(Keys(prefix).bucket(minute), f"{cell}|EMS", n)
    r.hincrby(Keys(prefix).bucket(minute), f"{h3.cell_to_parent(cell, 7)}|ALL", n)


class CountingPipelines:
    """Counts the pipelines a client runs (each cell_counts read is one)."""

    def __init__(self, client) -> None:
        self.client, self.n = client, 0
        self._pipeline = client.pipeline

    def __call__(self, *a, **k):
        self.n += 1
        return self._pipeline(*a, **k)


def test_concurrent_readers_share_one_read_and_a_later_one_sees_new_counts(prefix, r, monkeypatch):
    cell = h3.latlng_to_cell(40.12, -75.34, 8)
    now = time.time()
    _write(r, prefix, minute_of(now), cell, 3)
    _write(r, prefix, minute_of(now) - 20, cell, 100)  # outside a 15-minute window
    monkeypatch.setattr(store_mod, "COUNTS_TTL_S", 0.5)

    async def go():
        st = Store.from_url(URL, prefix, 4)
        reads = st.client.pipeline = CountingPipelines(st.client)
        try:
            first = await asyncio.gather(*(st.cell_counts(now, 15, 8) for _ in range(50)))
            n_first = reads.n
            cached = await st.cell_counts(now, 15, 8)
            other_window = await st.cell_counts(now, 30, 8)
            _write(r, prefix, minute_of(now), cell, 2)
            stale = await st.cell_counts(now, 15, 8)
            await asyncio.sleep(0.6)
            fresh = await st.cell_counts(now, 15, 8)
            return first, n_first, cached, other_window, stale, fresh, reads.n
        finally:
            await st.close()

    first, n_first, cached, other_window, stale, fresh, n_all = asyncio.run(go())
    assert n_first == 1, "50 concurrent readers of one window: one Redis read"
    assert all(dict(f) == {cell: 3} for f in first)
    assert dict(cached) == {cell: 3} and dict(stale) == {cell: 3}  # within the TTL
    assert dict(other_window) == {cell: 103}
    assert dict(fresh) == {cell: 5}
    assert n_all == 3
    with pytest.raises(TypeError):
        fresh[cell] = 0  # shared: read-only


def test_a_failed_read_reaches_every_waiter_and_the_next_call_reads_again(prefix, r):
    cell = h3.latlng_to_cell(40.12, -75.34, 8)
    now = time.time()
    _write(r, prefix, minute_of(now), cell, 1)

    async def go():
        st = Store.from_url(URL, prefix, 4)
        real = st._read_cell_counts
        calls = []

        async def failing(*a):
            calls.append(a)
            await asyncio.sleep(0.05)
            raise ConnectionError("redis went away")

        st._read_cell_counts = failing
        try:
            results = await asyncio.gather(*(st.cell_counts(now, 15, 8) for _ in range(5)), return_exceptions=True)
            st._read_cell_counts = real
            after = await st.cell_counts(now, 15, 8)
            return results, len(calls), after
        finally:
            await st.close()

    results, n_calls, after = asyncio.run(go())
    assert n_calls == 1
    assert all(isinstance(x, ConnectionError) for x in results)
    assert dict(after) == {cell: 1}


def test_more_concurrent_callers_than_connections_wait_for_one_instead_of_failing(prefix):
    # The soak's handshake rush: 4 of 1,000 clients refused with 503 when the pool ran out.
    async def go():
        st = Store.from_url(URL, prefix, 4)
        try:
            calls = (st.client.blpop([f"{prefix}:nothing"], timeout=0.2) for _ in range(3 * store_mod.REDIS_CONNECTIONS))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await st.close()

    results = asyncio.run(go())
    assert [r for r in results if isinstance(r, BaseException)] == []
