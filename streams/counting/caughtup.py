"""Which source partitions the detectors may stop waiting for: caught up by the broker's end offsets, not by a silence (pure).

The detection agent merges the calls of the source partitions into event-time
order (:class:`streams.detection.reorder.WatermarkMerge`): a call is released
once no partition can still bring an earlier one. Waiting for a partition to
stay silent for a while costs every call that wait. The counting agent knows
better: it reads each partition, sees the broker's end of its log (the high
watermark of the last fetch) and knows which records' detector input it has
published. A partition is *caught up* when every record up to that end has
its detector input published (or needs none: a refused record, an update);
it is *behind* otherwise (records fetched or still on the broker, not yet
published).

:class:`Published` keeps, per calls partition, one past the last record whose
detector input is out, and what was last reported to the detectors. The
counting agent puts :meth:`Published.status` in every detector-input message
it sends, and sends a message with the status alone when a partition became
caught up without one (:meth:`Published.news`). Every message is sent under
one lock, status computed just before the send, so the detectors never read
an older status after a newer one.

A partition that is caught up stays so at the detection agent until a
message says otherwise; the call that comes next on it was not on the broker
when its status was taken, so it is released in order unless a call of
another partition with a later time was released first (then it is late, as
any late call).

>>> pub = Published()
>>> pub.seed({0: 10, 1: 4})              # Redis holds the counts up to these offsets (their input went out before)
>>> pub.status({0: 10, 1: 7, 2: None})   # the broker's ends; 2's is not known yet
{0: True, 1: False, 2: False}
>>> pub.advance({1: 7})                  # a batch of partition 1, up to its end, was published
>>> pub.news({0: 10, 1: 7, 2: None})     # 0 and 1 were never reported caught up
True
>>> pub.sent(pub.status({0: 10, 1: 7, 2: None}))
>>> pub.news({0: 10, 1: 7, 2: None}), pub.news({0: 10, 1: 7, 2: 0})   # an empty partition is caught up
(False, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Published:
    """One past the last record of each calls partition whose detector input is out, and the status last reported."""

    #: partition -> one past the last record whose detector input was published (or that needed none)
    done: dict[int, int] = field(default_factory=dict)
    #: partition -> the status last sent to the detectors (True: caught up)
    reported: dict[int, bool] = field(default_factory=dict)

    def seed(self, offsets: Mapping[int, int]) -> None:
        """What was published before this process: one past the last record counted in Redis, per partition
        (a record's detector input is acknowledged by the broker before its batch commits)."""
        for p, after in offsets.items():
            self.done[p] = max(self.done.get(p, 0), after)

    def advance(self, offsets: Mapping[int, int]) -> None:
        """The detector input of records before ``offsets`` (one past the last, per partition) is out."""
        for p, after in offsets.items():
            if after > self.done.get(p, -1):
                self.done[p] = after

    def status(self, ends: Mapping[int, int | None], offsets: Mapping[int, int] | None = None) -> dict[int, bool]:
        """Each partition of ``ends`` (the broker's end of its log, None when not known yet) caught up or not, counting
        ``offsets`` as published too (a message's own records, when its status is put in it)."""
        extra = offsets or {}
        out = {}
        for p, end in ends.items():
            done = max(self.done.get(p, 0), extra.get(p, 0))  # nothing read yet: the log's start, 0 at most
            out[p] = end is not None and done >= end
        return out

    def news(self, ends: Mapping[int, int | None]) -> bool:
        """Whether a partition is caught up now that was not reported so: then a message with the status alone is due
        (a partition falling behind needs none: the next message that could be held for it carries its status)."""
        return any(caught_up and not self.reported.get(p, False) for p, caught_up in self.status(ends).items())

    def sent(self, status: Mapping[int, bool]) -> None:
        """``status`` went out in a detector-input message."""
        self.reported.update(status)
