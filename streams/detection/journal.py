"""What the detectors were given since their last checkpoints, and at what wall-clock time (pure).

The detectors are deterministic in what they are given: the detector-input
messages, each with the wall-clock time it was fed at, and the clock's ticks
(:meth:`DetectionRunner.tick`, every second while the feed is silent: outages,
quiet areas closing). A re-feed after Redis went back (see
:meth:`streams.detection.agent.DetectionAgent.refeed`) restores a checkpoint
and gives the detectors again what came after it. The messages are read back
from Kafka; their wall times and the ticks are only here. Fed again in the
same order with the same times, the detectors make the same records, the
clock's too, so the lost ones are written again byte for byte.

A checkpoint is stamped with this journal's id and the sequence number of its
last entry (:meth:`Journal.stamp`, attributes of the pickled runner). A runner
restored from a checkpoint this journal stamped, whose entries since are all
held, is given them again (:meth:`Journal.after`); any other (older than what
is held) is fed the messages with today's wall time and no ticks
(:meth:`Journal.restart`).

The entries are also written to Redis (``P:detector:journal``), with the
alert records of the message or tick that comes after them
(:meth:`Journal.unwritten`, :func:`encode`), and forgotten there by the
checkpoint that covers them. A worker that takes the detector input over from
one that died restores the checkpoint, reads the entries after it back
(:func:`follow`) and goes on as that journal (:meth:`Journal.adopt`): it feeds
the messages since the checkpoint at the wall times the dead worker fed them
at, with its ticks between them, so it makes the records that worker wrote,
byte for byte, and the stream keeps one copy of each. Ticks that made no
record wait for the next write: a worker that dies first published nothing
that depends on them.

Entries are kept back to the second-to-last checkpoint written (the last may
be lost with the writes a failover drops), and never more than ``limit``.

>>> j = Journal(limit=100)
>>> class Runner: pass
>>> r = Runner()
>>> j.stamp(r)
0
>>> j.fed(5, 1000.0).seq, j.ticked(5, 1001.0).seq, j.fed(6, 1002.0).seq
(1, 2, 3)
>>> [(e.offset, e.wall, e.tick) for e in j.after(r)]
[(5, 1000.0, False), (5, 1001.0, True), (6, 1002.0, False)]
>>> j.checkpointed(j.stamp(r)); j.fed(7, 1003.0).seq
4
>>> [e.offset for e in j.after(r)]
[7]
>>> class Other: journal_id, journal_seq = "another worker's", 2
>>> j.after(Other()) is None
True

What Redis holds of it, read back by the worker that takes over:

>>> j.id = "j1"; [e.seq for e in j.unwritten()]
[1, 2, 3, 4]
>>> encode("j1", j.entries[-1])
'j1 4 7 1003.0 0'
>>> members = [encode("j1", e) for e in j.unwritten()]; j.wrote(4); j.unwritten()
[]
>>> class Restored: journal_id, journal_seq = "j1", 3
>>> [(e.seq, e.offset, e.wall) for e in follow(members, Restored())]
[(4, 7, 1003.0)]
>>> k = Journal(); k.adopt(Restored(), follow(members, Restored()))
>>> k.id, k.seq, k.unwritten(), k.fed(8, 1004.0).seq
('j1', 4, [], 5)
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: entries held at most (13 MiB, measured with tracemalloc); a silent feed's clock checkpoints every 120 ticks (see
#: ``streams.detection.agent.TICKS_BEFORE_CHECKPOINT``), so the entries since the checkpoint before last stay far below it
LIMIT = 100_000


@dataclass(slots=True)
class Entry:
    """One thing the detectors were given: the message at ``offset`` (``tick`` False) or a tick after it."""

    seq: int
    #: the detector-input offset fed (a message), or the last fed before the tick (-1: none)
    offset: int
    wall: float
    tick: bool
    #: a tick's records reached the alerts topic (a message's are known by its offset)
    sent: bool = False


class Journal:
    """The detectors' messages and ticks since the checkpoint before their last one, each with its wall time."""

    def __init__(self, limit: int = LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        #: this journal's own id: a checkpoint another worker (or an earlier run) stamped is not one of its own
        self.id = uuid.uuid4().hex
        self.limit = limit
        #: the sequence number of the last entry (0: none yet)
        self.seq = 0
        #: every entry up to this sequence number is gone (dropped, or never held)
        self.floor = 0
        self.entries: deque[Entry] = deque()
        #: the sequence numbers the last two checkpoints written were stamped with
        self._marks: deque[int] = deque(maxlen=2)
        #: every entry up to this sequence number is in Redis (or needs not be)
        self.written = 0

    def fed(self, offset: int, wall: float) -> Entry:
        """The message at ``offset`` was fed at ``wall``."""
        return self._add(offset, wall, tick=False)

    def ticked(self, offset: int, wall: float) -> Entry:
        """The clock ticked at ``wall``, after the message at ``offset`` (the last fed; -1: none)."""
        return self._add(offset, wall, tick=True)

    def _add(self, offset: int, wall: float, *, tick: bool) -> Entry:
        self.seq += 1
        entry = Entry(self.seq, offset, wall, tick)
        self.entries.append(entry)
        while len(self.entries) > self.limit:
            self.floor = self.entries.popleft().seq
        return entry

    def stamp(self, runner: Any) -> int:
        """Mark ``runner`` (about to be pickled for a checkpoint) as having seen every entry so far; that sequence number."""
        runner.journal_id, runner.journal_seq = self.id, self.seq
        return self.seq

    def checkpointed(self, seq: int) -> None:
        """The checkpoint stamped ``seq`` is written: forget what the one before it had seen."""
        self._marks.append(seq)
        if len(self._marks) == 2:
            older = self._marks[0]
            while self.entries and self.entries[0].seq <= older:
                self.floor = self.entries.popleft().seq

    def after(self, runner: Any) -> list[Entry] | None:
        """Everything given since ``runner``'s checkpoint, in order; None when it is not this journal's or not all held."""
        if getattr(runner, "journal_id", None) != self.id:
            return None
        seen = getattr(runner, "journal_seq", -1)
        if not self.floor <= seen <= self.seq:
            return None
        return [e for e in self.entries if e.seq > seen]

    def restart(self, runner: Any) -> None:
        """``runner`` (fresh, or restored from a checkpoint this journal cannot follow) is the detectors now: a new
        journal from it, with an id of its own and entries from 1 (by which a worker taking over from this one before
        its first checkpoint finds them: :func:`fresh_chain`)."""
        self.id = uuid.uuid4().hex
        self.entries.clear()
        self._marks.clear()
        self.seq = self.floor = self.written = 0
        self.stamp(runner)

    def adopt(self, runner: Any, entries: list[Entry]) -> None:
        """Go on as the journal that stamped ``runner``'s checkpoint, holding ``entries``, its entries since (see :func:`follow`).

        The entries are in Redis already. ``runner`` must carry a stamp (``journal_id`` not None).
        """
        seen = runner.journal_seq
        if entries and [e.seq for e in entries] != list(range(seen + 1, seen + 1 + len(entries))):
            raise ValueError(f"the entries adopted must follow the checkpoint's {seen} without a gap")
        self.id = runner.journal_id
        self.entries = deque(entries)
        self._marks.clear()
        self.floor = seen
        self.seq = self.written = entries[-1].seq if entries else seen

    def unwritten(self) -> list[Entry]:
        """The entries not in Redis yet, oldest first: written with the next alert append (see :meth:`wrote`)."""
        fresh = list(itertools.takewhile(lambda e: e.seq > self.written, reversed(self.entries)))
        fresh.reverse()
        return fresh

    def wrote(self, seq: int) -> None:
        """Every entry up to ``seq`` is in Redis now."""
        self.written = max(self.written, seq)

    def rewrite_after(self, seq: int) -> None:
        """Redis lost what it held after the entry ``seq`` (a failover): write the entries after it again."""
        self.written = min(self.written, seq)


def encode(journal_id: str, entry: Entry) -> str:
    """An entry as Redis keeps it (a member of ``P:detector:journal``, scored by its sequence number); see :func:`follow`.

    The wall time in Python's shortest round-trip form: read back, it is the same float.
    """
    return f"{journal_id} {entry.seq} {entry.offset} {entry.wall!r} {int(entry.tick)}"


def _parse(member: str) -> tuple[str, Entry] | None:
    try:
        jid, raw_seq, raw_offset, raw_wall, raw_tick = member.split(" ")
        return jid, Entry(int(raw_seq), int(raw_offset), float(raw_wall), raw_tick == "1")
    except ValueError:
        log.warning("detectors' journal entry %r in Redis skipped: not <journal> <seq> <offset> <wall> <tick>", member)
        return None


def fresh_chain(members: Iterable[str]) -> str | None:
    """The journal among ``members`` that started from detectors with no stamp (fresh, or a seeded checkpoint).

    Such detectors are stamped at 0 by the journal that starts from them
    (:meth:`Journal.restart`), and a checkpoint forgets every other journal's
    entries: one that holds entry 1 started from the detectors a worker
    restoring them now has too. None when no journal does (or, with a warning,
    when several do).

    >>> fresh_chain(["a 7 3 10.0 0", "b 1 0 5.0 0", "b 2 1 6.0 0"]), fresh_chain(["a 7 3 10.0 0"])
    ('b', None)
    """
    starts = sorted({parsed[0] for parsed in map(_parse, members) if parsed is not None and parsed[1].seq == 1})
    if len(starts) > 1:
        log.warning("the detectors' journal in Redis holds %d journals that started afresh (%s): none is followed", len(starts), starts)
    return starts[0] if len(starts) == 1 else None


def follow(members: Iterable[str], runner: Any) -> list[Entry]:
    """The entries among ``members`` (:func:`encode`'s, as Redis holds them) that follow ``runner``'s checkpoint, in order.

    Only those of the journal that stamped it, from the next sequence number on
    without a gap (a gap, which a failover that lost writes can leave, ends them
    with a warning); none when ``runner`` carries no stamp. Members that cannot
    be read are skipped with a warning.
    """
    journal_id, seen = getattr(runner, "journal_id", None), getattr(runner, "journal_seq", -1)
    if journal_id is None:
        return []
    found: dict[int, Entry] = {}
    for parsed in map(_parse, members):
        if parsed is None:
            continue
        jid, entry = parsed
        if jid == journal_id and entry.seq > seen:
            found[entry.seq] = entry
    entries = []
    for nxt in itertools.count(seen + 1):
        if nxt not in found:
            break
        entries.append(found.pop(nxt))
    if found:
        log.warning(
            "the detectors' journal in Redis lacks entry %d after the checkpoint's %d: %d later entries are not followed",
            seen + 1 + len(entries),
            seen,
            len(found),
        )
    return entries
