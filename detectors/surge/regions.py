"""The regions the surge detector tests: a cell, the disks (a cell and its ring) around it, the jurisdiction (pure).

The regions containing a call in res-8 cell ``c`` are the cell alone and the
seven disks ``h3.grid_disk(n, 1)`` centred on ``c`` or on one of its
neighbours, so a surge spread over adjacent cells is seen whole by at least one
disk. A region's key names it: ``cell:<cell>``, ``disk:<centre>``, or
:data:`JURISDICTION`.

>>> keys = [key for key, _ in regions("882aac941dfffff")]
>>> keys[0], "disk:882aac941dfffff" in keys, len(keys)
('cell:882aac941dfffff', True, 8)
>>> region_cells("disk:882aac941dfffff") == disk("882aac941dfffff"), len(disk("882aac941dfffff"))
(True, 7)
"""

from __future__ import annotations

import functools

import h3

#: Region key of the whole jurisdiction.
JURISDICTION = "*"


@functools.lru_cache(maxsize=1 << 15)
def disk(cell: str) -> tuple[str, ...]:
    """The cell and its ring of six neighbours, sorted."""
    return tuple(sorted(h3.grid_disk(cell, 1)))


@functools.lru_cache(maxsize=1 << 15)
def regions(cell: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The regions containing ``cell``, as ``(key, cells)``: the cell alone, and the disks centred on it and on each neighbour."""
    return ((f"cell:{cell}", (cell,)), *((f"disk:{n}", disk(n)) for n in disk(cell)))


def region_cells(key: str) -> tuple[str, ...]:
    """The cells of the cell or disk region ``key``."""
    kind, cell = key.split(":", 1)
    return (cell,) if kind == "cell" else disk(cell)
