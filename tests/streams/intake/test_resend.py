"""Why a re-sent incident update is safe: the worker's planner folds an identical update in once, whatever its copies.

The intake may put an update on Kafka twice (a send that timed out but was
written, or an intake that stopped between Kafka's ack and writing its key);
the worker does not dedupe updates, so the counts must not move on a copy.
"""

from __future__ import annotations

from streams.counting.planner import CALL, UPDATE, CallState, Snapshot, decode_ops, plan_batch
from tests.streams.counting.test_planner import CFG, NOW, T0, call, incr, recs, update


def counts(plan) -> dict:
    """The plan's count increments, without the worker's own counters (events_total counts the copy, as it should)."""
    return {k: n for k, n in incr(plan).items() if k[0] != CFG.keys.metrics and n}


def test_an_identical_update_applied_again_in_the_same_batch_changes_no_count():
    updates = [update("a", "dispatched", T0 + 60), update("a", "on_scene", T0 + 300), update("a", "closed", T0 + 500)]
    once = plan_batch(recs(CALL, [call("a", T0)]) + recs(UPDATE, updates), Snapshot(), CFG, now=NOW)
    twice = plan_batch(recs(CALL, [call("a", T0)]) + recs(UPDATE, updates + updates), Snapshot(), CFG, now=NOW)
    assert counts(twice) == counts(once) and counts(once)
    assert not twice.dead_letters


def test_an_identical_update_held_twice_before_its_call_changes_no_count():
    held = update("b", "dispatched", T0 + 60)
    once = plan_batch(recs(UPDATE, [held]) + recs(CALL, [call("b", T0)]), Snapshot(), CFG, now=NOW)
    twice = plan_batch(recs(UPDATE, [held, held]) + recs(CALL, [call("b", T0)]), Snapshot(), CFG, now=NOW)
    assert counts(twice) == counts(once)


def test_an_identical_update_re_applied_in_a_later_batch_changes_no_count():
    first = plan_batch(recs(CALL, [call("c", T0)]) + recs(UPDATE, [update("c", "dispatched", T0 + 60), update("c", "closed", T0 + 900)]),
                       Snapshot(), CFG, now=NOW)  # fmt: skip
    # the call's state as the first batch leaves it in Redis, read back the way the worker reads it
    (state_op,) = [op for op in decode_ops(first.ops) if op[0] == "H" and op[1] == CFG.keys.calls(0) and op[2] == "c"]
    snap = Snapshot(calls={(0, "c"): CallState.from_text(state_op[3])}, offsets={(UPDATE, 0): 1})
    again = plan_batch(recs(UPDATE, [update("c", "dispatched", T0 + 60), update("c", "closed", T0 + 900)], start=2), snap, CFG, now=NOW)
    assert again.applied == 2 and counts(again) == {}
    assert not [op for op in decode_ops(again.ops) if op[0] in ("H", "R")]  # the call's state and the open queue untouched
