"""The batch planner: validation, event-time buckets, lateness, redelivery, lifecycles (pure, no Redis)."""

from __future__ import annotations

import json
from collections import Counter

from streams.counting.keys import Keys
from streams.counting.planner import CALL, UPDATE, CallState, Incoming, PlanConfig, Snapshot, decode_ops, plan_batch
from streams.counting.rolling import cells_for, minute_of
from streams.ingest.schema import IncidentUpdate, Reason, Status, encode, format_time

T0 = 1_453_564_800.0  # 2016-01-23T16:00:00Z
CFG = PlanConfig(keys=Keys("t"), resolutions=(8, 7), allowed_lateness_s=600)
NOW = 2e9


def call(cid: str, t: float, lat: float = 40.12, lng: float = -75.34, cat: str = "EMS", **extra) -> bytes:
    obj = {
        "type": "call",
        "v": 1,
        "id": cid,
        "received_at": format_time(t),
        "category": cat,
        "call_type": "X",
        "priority": None,
        "lat": lat,
        "lng": lng,
        "agency": "a",
        "source": "s",
        **extra,
    }
    return json.dumps(obj).encode()


def update(cid: str, status: str, t: float) -> bytes:
    return json.dumps({"type": "update", "v": 1, "call_id": cid, "status": status, "at": format_time(t), "source": "s"}).encode()


def recs(kind: str, values: list[bytes], partition: int = 0, start: int = 0) -> list[Incoming]:
    return [Incoming(kind, partition, start + i, v) for i, v in enumerate(values)]


def incr(plan) -> Counter:
    """The plan's HINCRBY ops as {(key, field): n}."""
    out: Counter = Counter()
    for op in decode_ops(plan.ops):
        if op[0] == "I":
            out[(op[1], op[2])] += int(op[3])
    return out


def test_out_of_order_call_within_lateness_lands_in_its_own_minute():
    plan = plan_batch(recs(CALL, [call("a", T0 + 300), call("b", T0 + 10)]), Snapshot(), CFG, now=NOW)
    cell8, cell7 = cells_for(40.12, -75.34, (8, 7))
    got = incr(plan)
    assert got[(f"t:b:{minute_of(T0 + 10)}", f"{cell8}|EMS")] == 1
    assert got[(f"t:b:{minute_of(T0 + 300)}", f"{cell7}|ALL")] == 1
    assert got[("t:open", cell8)] == 2
    assert not plan.dead_letters


def test_call_later_than_allowed_lateness_goes_to_dead_letter_as_too_late():
    plan = plan_batch(recs(CALL, [call("a", T0 + 3600), call("b", T0)]), Snapshot(), CFG, now=NOW)
    assert [d.reason for d in plan.dead_letters] == [Reason.TOO_LATE]
    assert plan.metrics["deadletter_total|too_late"] == 1


def test_lateness_uses_the_stored_watermark_of_the_partition():
    snap = Snapshot(watermarks={(CALL, 0): T0 + 3600})
    plan = plan_batch(recs(CALL, [call("b", T0)]), snap, CFG, now=NOW)
    assert [d.reason for d in plan.dead_letters] == [Reason.TOO_LATE]
    other = plan_batch(recs(CALL, [call("b", T0)], partition=1), snap, CFG, now=NOW)
    assert not other.dead_letters


def test_records_at_or_below_the_applied_offset_are_skipped_not_counted_twice():
    batch = recs(CALL, [call("a", T0), call("b", T0), call("c", T0)])
    plan = plan_batch(batch, Snapshot(offsets={(CALL, 0): 1}), CFG, now=NOW)
    assert plan.skipped == 2 and plan.applied == 1
    assert plan.offsets == {(CALL, 0): 2}
    cell8 = cells_for(40.12, -75.34, (8, 7))[0]
    assert incr(plan)[(f"t:b:{minute_of(T0)}", f"{cell8}|ALL")] == 1


def test_update_before_its_call_is_held_then_applied_when_the_call_arrives():
    first = plan_batch(recs(UPDATE, [update("a", "dispatched", T0 + 120)]), Snapshot(), CFG, now=NOW)
    assert first.metrics["updates_pending_total"] == 1
    (held,) = [op[3] for op in decode_ops(first.ops) if op[:2] == ("H", "t:pend:0")]
    snap = Snapshot(pending={(0, "a"): held.split("\n")})
    second = plan_batch(recs(CALL, [call("a", T0)]), snap, CFG, now=NOW)
    area = cells_for(40.12, -75.34, (8, 7))[-1]
    got = incr(second)
    assert got[(f"t:rt:{int((T0 + 120) // 3600)}", f"dispatch|{area}|sum")] == 120


def test_closing_a_call_decrements_open_incidents_and_records_response_times():
    batch = recs(CALL, [call("a", T0)]) + recs(
        UPDATE, [update("a", "dispatched", T0 + 60), update("a", "on_scene", T0 + 460), update("a", "closed", T0 + 2000)]
    )
    plan = plan_batch(batch, Snapshot(), CFG, now=NOW)
    got = incr(plan)
    cell8, area = cells_for(40.12, -75.34, (8, 7))
    assert got[("t:open", cell8)] == 0
    hour = int((T0 + 60) // 3600)
    assert got[(f"t:rt:{hour}", f"dispatch|{area}|n")] == 1
    assert got[(f"t:rt:{hour}", f"travel|{area}|sum")] == 400
    assert got[(f"t:rt:{hour}", f"travel|{area}|le480")] == 1


def test_update_for_a_closed_call_in_snapshot_does_not_decrement_again():
    cells = cells_for(40.12, -75.34, (8, 7))
    snap = Snapshot(calls={(0, "a"): CallState(cells=cells, category="EMS", received=T0, status="closed")})
    plan = plan_batch(recs(UPDATE, [update("a", "closed", T0 + 50)]), snap, CFG, now=NOW)
    assert incr(plan)[("t:open", cells[0])] == 0


def test_every_malformed_record_is_a_dead_letter_with_its_reason_and_good_ones_still_count():
    bad = {
        b"not json": Reason.NOT_JSON,
        b"[1,2]": Reason.NOT_AN_OBJECT,
        b'{"type":"call","v":1,"id":"x"}': Reason.MISSING_FIELD,
        call("x1", T0, lat=123.0): Reason.COORDINATES_OUT_OF_RANGE,
        call("x2", T0, lat=0.0, lng=0.0): Reason.COORDINATES_OUT_OF_RANGE,
        call("x3", NOW + 86400): Reason.IMPOSSIBLE_TIMESTAMP,
        call("x4", T0, cat="ALIENS"): Reason.BAD_FIELD,
        b'{"type":"call","v":1,' + b'"x":"' + b"y" * 9000 + b'"}': Reason.OVERSIZE,
        update("x5", "dispatched", T0): Reason.WRONG_TOPIC,
    }
    values = [call("good", T0), *bad, call("good2", T0)]
    plan = plan_batch(recs(CALL, values), Snapshot(), CFG, now=NOW)
    assert [d.reason for d in plan.dead_letters] == list(bad.values())
    assert [d.source.value for d in plan.dead_letters] == list(bad)
    assert plan.metrics["events_total|call"] == 2


def test_outside_jurisdiction_is_refused_when_a_jurisdiction_is_configured():
    from streams.ingest.schema import Jurisdiction

    cfg = PlanConfig(keys=Keys("t"), resolutions=(8,), allowed_lateness_s=600, jurisdiction=Jurisdiction(39.9, -75.7, 40.5, -75.0))
    plan = plan_batch(recs(CALL, [call("a", T0, lat=47.612345, lng=-122.345678), call("b", T0)]), Snapshot(), cfg, now=NOW)
    assert [d.reason for d in plan.dead_letters] == [Reason.OUTSIDE_JURISDICTION]
    # the detail (logged by the worker) places the caller to about a kilometre only
    detail = plan.dead_letters[0].detail
    assert "lat 47.61 / lng -122.35 (rounded)" in detail
    assert "47.612" not in detail and "122.345" not in detail


def test_pii_fields_are_dropped_and_counted_and_never_written():
    value = call("a", T0, caller_name="Jane Roe", phone="215-555-0100", address="12 Main St")
    plan = plan_batch(recs(CALL, [value]), Snapshot(), CFG, now=NOW)
    assert plan.metrics["pii_fields_dropped_total"] == 3
    written = " ".join(plan.ops)
    for secret in ("Jane", "555-0100", "Main St", "40.12", "-75.34"):
        assert secret not in written


def test_a_second_call_with_the_same_id_is_refused_as_duplicate():
    plan = plan_batch(recs(CALL, [call("a", T0), call("a", T0 + 5)]), Snapshot(), CFG, now=NOW)
    assert [d.reason for d in plan.dead_letters] == [Reason.DUPLICATE_ID]


def test_plan_is_deterministic():
    batch = recs(CALL, [call(f"c{i}", T0 + i * 7, lat=40.0 + i / 100) for i in range(50)])
    assert plan_batch(batch, Snapshot(), CFG, now=NOW).ops == plan_batch(batch, Snapshot(), CFG, now=NOW).ops


def test_an_update_held_as_json_by_an_earlier_version_is_still_applied():
    held = encode(IncidentUpdate("a", Status.DISPATCHED, T0 + 90, "M1", "cad")).decode()
    snap = Snapshot(pending={(0, "a"): [held, "on_scene|" + repr(T0 + 300.0)]})
    plan = plan_batch(recs(CALL, [call("a", T0)]), snap, CFG, now=NOW)
    area = cells_for(40.12, -75.34, (8, 7))[-1]
    got = incr(plan)
    assert got[(f"t:rt:{int((T0 + 90) // 3600)}", f"dispatch|{area}|sum")] == 90
    assert got[(f"t:rt:{int((T0 + 300) // 3600)}", f"travel|{area}|sum")] == 210
