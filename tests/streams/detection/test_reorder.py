"""The event-time merge of the source partitions, driven by the counting agent's reports (pure: plain data in and out)."""

from __future__ import annotations

import pickle

from streams.detection.reorder import WatermarkMerge
from streams.detection.runner import DetectionRunner, encode_points

CELL = "882aac941dfffff"


def _merge(partitions: int = 4) -> WatermarkMerge[str]:
    # the silence rule made as long as a test can tell: only reports may release anything early
    return WatermarkMerge(partitions=partitions, idle_s=3600.0, history_idle_s=7200.0)


def test_a_call_is_released_at_once_when_every_other_partition_is_reported_caught_up():
    """No silence is waited for: the other partitions caught up, a call goes to the detectors in the same message."""
    m = _merge()
    for p in (1, 2, 3):
        m.report(p, True, wall=0.0)
    assert not m.add(0, 100.0, "p0@100", wall=0.5)
    m.report(0, True, wall=0.5)
    assert m.release(wall=0.5) == ["p0@100"]


def test_a_partition_reported_behind_holds_the_others_back_until_its_records_come():
    """A partition with records not yet published holds later calls, however long it has been quiet, and they are released in order."""
    m = _merge(2)
    m.report(1, False, wall=0.0)
    m.add(0, 100.0, "p0@100", wall=0.0)
    m.report(0, True, wall=0.0)
    assert m.release(wall=0.0) == []
    assert m.release(wall=3000.0) == []  # behind is a fact, not a silence: it holds while under history_idle_s
    m.add(1, 95.0, "p1@95", wall=3000.0)
    m.report(1, True, wall=3000.0)
    assert m.release(wall=3000.0) == ["p1@95", "p0@100"]


def test_a_partition_never_reported_holds_the_others_back_as_before():
    """Partitions the counting agent says nothing of keep the silence rule (detector input from a worker that does not report)."""
    m = WatermarkMerge[str](partitions=2, idle_s=2.0)
    m.add(0, 100.0, "p0@100", wall=0.0)
    m.report(0, True, wall=0.0)
    # partition 1: expected, never heard from (no event time yet: it may be replaying history), silent for less than history_idle_s
    assert m.release(wall=299.0) == []
    assert m.release(wall=301.0) == ["p0@100"]


def test_a_later_call_of_a_partition_marked_caught_up_is_released_in_order_when_not_behind_what_was_released():
    """After its idle report, a partition's next call is merged in order if its time is at or after what was released."""
    m = _merge(2)
    m.report(1, True, wall=0.0)
    m.add(0, 100.0, "p0@100", wall=0.0)
    m.report(0, True, wall=0.0)
    assert m.release(wall=0.0) == ["p0@100"]
    # partition 1 gets a call, with a later call of partition 0 in the same message: both in time order
    m.add(0, 130.0, "p0@130", wall=1.0)
    assert not m.add(1, 120.0, "p1@120", wall=1.0)
    m.report(0, True, wall=1.0)
    m.report(1, True, wall=1.0)
    assert m.release(wall=1.0) == ["p1@120", "p0@130"]


def test_a_later_call_of_a_partition_marked_caught_up_behind_what_was_released_is_late():
    """A call older than what was released is late (counted in Redis, never fed out of order), as any late call."""
    m = _merge(2)
    m.report(1, True, wall=0.0)
    m.add(0, 100.0, "p0@100", wall=0.0)
    m.report(0, True, wall=0.0)
    assert m.release(wall=0.0) == ["p0@100"]
    assert m.add(1, 99.0, "p1@99", wall=0.1)  # late: returned to the caller, not held
    assert len(m) == 0
    assert m.push(1, 99.5, "p1@99.5", wall=0.2) == ([], ["p1@99.5"])
    m.add(1, 101.0, "p1@101", wall=0.3)
    assert m.release(wall=0.3) == ["p1@101"]


def test_the_merge_never_releases_out_of_event_time_order_across_partitions():
    """Whatever the interleaving of calls and reports, what is released is in event-time order and nothing is lost or doubled."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        m = _merge(3)
        out: list[float] = []
        late: list[float] = []
        clocks = [0.0, 0.0, 0.0]
        sent = []
        for step in range(60):
            p = rng.randrange(3)
            if rng.random() < 0.7:
                clocks[p] += rng.random() * 5
                t = clocks[p]
                sent.append(t)
                if m.add(p, t, t, wall=step):  # type: ignore[arg-type]  # items are their times here
                    late.append(t)
            # a report is true when made: a partition is caught up once its calls so far are in
            m.report(p, rng.random() < 0.5, wall=step)
            out += m.release(wall=step)  # type: ignore[arg-type]
        out += m.flush()  # type: ignore[arg-type]
        assert out == sorted(out)
        assert sorted(out + late) == sorted(sent)


def test_a_merge_checkpointed_before_the_reports_loads_and_keeps_working():
    """A checkpoint's merge pickled without the reports' field restores with none reported."""
    m = _merge(2)
    m.add(0, 100.0, "x", wall=0.0)
    state = m.__getstate__() if hasattr(m, "__getstate__") else m.__dict__
    old = {k: v for k, v in dict(state).items() if k != "_caught_up"}
    restored = WatermarkMerge.__new__(WatermarkMerge)
    restored.__setstate__(old)
    restored.report(1, True, wall=0.0)
    restored.report(0, True, wall=0.0)
    assert restored.release(wall=0.0) == ["x"]
    assert pickle.loads(pickle.dumps(restored)).released_until == 100.0


def test_the_runner_applies_a_messages_status_after_its_points_and_releases_at_once():
    """A detector-input message's points and status: released in time order in the same feed, none held for a silence."""
    runner = DetectionRunner(partitions=2, partition_idle_s=3600.0)
    runner.trace = []
    status = {0: True, 1: True}
    runner.feed(encode_points([(0, 5, 100.0, CELL, "EMS", None), (1, 3, 99.0, CELL, "FIRE", None)], status=status), wall=0.0)
    assert [p.t for p in runner.trace] == [99.0, 100.0]
    runner.feed(encode_points([(0, 6, 101.0, CELL, "EMS", None)], status={0: True, 1: False}), wall=0.1)
    assert [p.t for p in runner.trace] == [99.0, 100.0]  # partition 1 behind at 99: records fetched, not yet published
    runner.feed(encode_points([], status={1: True}), wall=0.2)  # a status alone (its records were refused: no points)
    assert [p.t for p in runner.trace] == [99.0, 100.0, 101.0]
    assert runner.counters["detector_input_late_total"] == 0


def test_the_runner_pickles_without_its_trace():
    """The stage timing's trace is not part of the detectors' checkpoint."""
    runner = DetectionRunner()
    runner.trace = []
    assert pickle.loads(pickle.dumps(runner)).trace is None
