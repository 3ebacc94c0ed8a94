"""Golden tests: the built-in mapping files give exactly the events the Python adapters they replaced gave.

The digests below were recorded on 2026-12-05 from the Python adapters of
``streams/ingest/sources.py`` at commit 579dcef (before the mapping engine),
by this module's :func:`digests` run over every row of each real file in
``../shared/data``. One change is intended and listed in
:data:`CATEGORY_CHANGES`: Cincinnati's "OUTDR - 67A2 ILLEGAL BURN" is a fire
call, which the keyword normalizer used to file as EMS (it contains BURN).
So the digest of everything but ``category`` must match the old one exactly,
and the categories must match once that listed change is undone.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from streams.ingest.sources import Rejected, Row, read_source
from tests.conftest import DATA, data_file

#: (call_type, old category) -> new category: the only category changes the mappings make, on purpose.
CATEGORY_CHANGES = {("OUTDR - 67A2 ILLEGAL BURN", "EMS"): "FIRE"}

# file: (rows, updates, rejected, sha256 of everything but category, sha256 of the (call_type, category) counts)
GOLDEN = {
    "montgomery-pa-911-2015-12-to-2016-08.csv": (
        99_492, 99_489, 0,
        "4beecf11c566c45eb7720bfb81c88137178d3ab90c8447141a9cf9c6433beae1",
        "cc628346c9ccc9cc3d78c731b586a0044bf70c743a51dca9afac8607b2ef72bc",
    ),
    "montgomery-pa-911-sample-2016-2018.csv": (
        3_051, 0, 0,
        "60527c3bedd851f363456140ebccab31455c066d6f399f24aa40c89529115909",
        "6afbc742d74831374082af5646827a65059a43811b421d4fe824152a4920360a",
    ),
    "cincinnati-fire-ems-60-days.csv": (
        10_749, 0, 0,
        "de3769f2dd4fd688eb6961a079aa6951ae56f26209191045153ca635069ec498",
        "7a4a570ed4ce27d7331f21cc3c8c6fe7351859710c78c551b680443f4ff7da69",
    ),
    "seattle-fire-911-mva-2010-2015.csv": (
        13_771, 0, 0,
        "2d4a53bf825caa192e36a8ca268b9663d77c45aad461d60711d605dcf8ac8a5e",
        "71cbf00eb105cb8e46dccc980af8c0b09465a684342c7dea93847a4e1e3d7f00",
    ),
}  # fmt: skip


def digests(items: Iterable[Row | Rejected], undo: dict[tuple[str, str], str] | None = None) -> tuple[int, int, int, str, str]:
    """Counts, the sha256 over every row's line, bytes, event time, call (but category) and updates, and over rejections'
    line, bytes and reason, in order; and the sha256 of the sorted (call_type, category) counts, ``undo`` mapping a new
    category back to the old one for the listed call types."""
    back = {(t, new): old for (t, old), new in (undo or {}).items()}
    h = hashlib.sha256()
    types: Counter[tuple[str | None, str]] = Counter()
    n_rows = n_updates = n_rejected = 0
    for it in items:
        if isinstance(it, Row):
            n_rows += 1
            n_updates += len(it.updates)
            assert it.refused == () and it.unmapped == ()
            call = {k: v for k, v in it.call.items() if k != "category"}
            h.update(json.dumps([it.line, it.raw.hex(), it.event_time, call, list(it.updates)], sort_keys=True).encode() + b"\n")
            key = (it.call["call_type"], it.call["category"])
            types[(key[0], back.get(key, key[1]))] += 1
        else:
            n_rejected += 1
            h.update(json.dumps([it.line, it.raw.hex(), it.reason]).encode() + b"\n")
    t = hashlib.sha256(json.dumps(sorted(([a, b], n) for (a, b), n in types.items()), default=str).encode()).hexdigest()
    return n_rows, n_updates, n_rejected, h.hexdigest(), t


def _file(name: str) -> Path:
    path = data_file(name)
    if path is None:
        pytest.skip(f"real data file {name} not present in {DATA}")
    return path


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_builtin_mapping_gives_exactly_the_events_of_the_old_adapter(name):
    """Every row of the real file gives the same call, updates, line and bytes as the Python adapter did (categories but
    the listed change included), detected from the header as before."""
    assert digests(read_source(_file(name)), CATEGORY_CHANGES) == GOLDEN[name]


def test_the_listed_category_change_is_the_only_one_and_it_happens():
    """Cincinnati's 16 'OUTDR - 67A2 ILLEGAL BURN' calls are FIRE now; without undoing that, the category digest differs."""
    rows = [r for r in read_source(_file("cincinnati-fire-ems-60-days.csv")) if isinstance(r, Row)]
    burns = [r.call["category"] for r in rows if r.call["call_type"] == "OUTDR - 67A2 ILLEGAL BURN"]
    assert burns == ["FIRE"] * 16
    assert digests(rows)[4] != GOLDEN["cincinnati-fire-ems-60-days.csv"][4]
