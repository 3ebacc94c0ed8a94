"""Partners' released tables, computed once per window and kept in Redis (adapter over :mod:`gateway.disclosure`).

:class:`ReleaseBook` gives the windows of an agreement's released table that a
partner may read at the worker's current event time. A window is computed
from the exact minute buckets the first time it is asked for after it has
settled, stored with ``HSETNX`` (so every gateway serves the same first
values, and late calls counted afterwards never change a released value),
checked against the rule before use, and cached in memory.

A released table belongs to one *layout* of its agreement (units, window,
groups, k, alignment: :func:`layout_digest`). When an agreement changes, its
new layout is released only from the first window that had not closed when
the change was first seen: giving both layouts for the same past windows
would let a partner difference them (say zone ``a`` alone, then ``a`` merged
with ``b``, gives ``b``'s calls).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from gateway.disclosure import (
    DisclosureError,
    Plan,
    ReleasedWindow,
    check_released,
    closed_windows,
    oldest_listed,
    release_window,
)
from gateway.store import Store

log = logging.getLogger(__name__)


def layout_digest(plan: Plan) -> str:
    """A short digest of everything that shapes an agreement's released values.

    >>> from gateway.disclosure import Plan
    >>> layout_digest(Plan("a", (), window_min=60)) != layout_digest(Plan("a", (), window_min=60, k=4))
    True
    """
    body = {
        "window": plan.window_min,
        "offset": plan.offset_min,
        "k": plan.k,
        "groups": {g: sorted(c) for g, c in plan.groups.items()},
        "units": {u.id: sorted(u.cells) for u in plan.units},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


class ReleaseBook:
    def __init__(self, store: Store, settle_s: float) -> None:
        self.store = store
        self.settle_s = settle_s
        self._cache: dict[tuple[str, float], ReleasedWindow] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._first: dict[str, float] = {}

    async def windows(self, plan: Plan, watermark: float | None, since: float | None = None) -> list[ReleasedWindow]:
        """The released windows of ``plan`` at event time ``watermark`` (oldest first), from ``since`` on."""
        if watermark is None:
            return []
        digest = layout_digest(plan)
        table = f"{plan.agreement}:{digest}"
        lock = self._locks.setdefault(table, asyncio.Lock())
        async with lock:  # one computation of a window, however many partners ask at once
            first = await self._first_window(plan, table, watermark)
            starts = closed_windows(plan, watermark, settle_s=self.settle_s, horizon=await self.store.horizon())
            starts = [s for s in starts if s >= first and (since is None or s >= since)]
            missing = [s for s in starts if (table, s) not in self._cache]
            stored = await self.store.released(table, plan.window_min, missing)
            # kept: every window still listed, and one more for a gateway whose watermark is a little behind (a
            # window deleted while listed would be computed again from the counts, unfrozen)
            keep_after = oldest_listed(plan, watermark, settle_s=self.settle_s) - plan.window_min * 60.0
            fresh: dict[float, dict] = {}
            for s in missing:
                if s not in stored:
                    counts = await self.store.window_counts(plan.cells, int(s // 60), plan.window_min)
                    fresh[s] = release_window(plan, s, counts).to_json()
            stored.update(await self.store.release(table, plan.window_min, fresh, keep_after))
            for s in missing:
                window = ReleasedWindow.from_json(stored[s])
                try:
                    check_released(plan, window)
                except DisclosureError as exc:
                    log.error("not serving a stored window: %s", exc)
                    continue
                self._cache[(table, s)] = window
            for key in [key for key in self._cache if key[0] == table and key[1] < keep_after]:
                del self._cache[key]
        return [self._cache[(table, s)] for s in starts if (table, s) in self._cache]

    async def latest(self, plan: Plan, watermark: float | None) -> ReleasedWindow | None:
        """The newest released window, or None."""
        if watermark is None:
            return None
        newest = closed_windows(plan, watermark, settle_s=self.settle_s)[-1:]
        got = await self.windows(plan, watermark, since=newest[0] if newest else None)
        return got[-1] if got else None

    async def _first_window(self, plan: Plan, table: str, watermark: float) -> float:
        """The first window this layout may release: any, for an agreement's first layout; else the first open one."""
        if table in self._first:
            return self._first[table]
        layouts = await self.store.first_layout_window(plan.agreement, table, plan.window_start(watermark))
        ours = layouts[table]
        oldest = min(layouts.values())
        first = -float("inf") if ours == oldest else ours
        self._first[table] = first
        return first
