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
held, is given them again (:meth:`Journal.after`); any other (written by
another worker, or older than what is held) is fed the messages with today's
wall time and no ticks, as before (:meth:`Journal.restart`).

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
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

#: entries held at most (13 MiB, measured with tracemalloc): a silent feed takes no checkpoint and ticks once a second, so over a day of
#: silence (86,400 ticks) the oldest go and a re-feed of a checkpoint older than what is held is fed at today's time
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
        """``runner`` (restored from a checkpoint this journal cannot follow) is the detectors now: start from it."""
        self.entries.clear()
        self._marks.clear()
        self.floor = self.seq
        self.stamp(runner)
