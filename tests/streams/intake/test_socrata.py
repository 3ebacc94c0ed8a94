"""The poller's pure core: SoQL queries and paging, waits, checkpoint, id memory, per-row decisions, status."""

from __future__ import annotations

import math

import pytest

from streams.ingest.mapping import parse_mapping
from streams.ingest.sources import parse_records
from streams.intake.feedstate import Checkpoint, FeedError, Memory, PollStatus, Sent, plan_page
from streams.intake.socrata import QueryError, backoff_s, continues, later, page_params, retry_after_s, shift_back

# A feed with a dispatch time column: a status time that appears after the call was sent becomes an update.
MAPPING = parse_mapping(
    """
    name = "units-feed"
    timezone = "America/Chicago"
    [fields]
    id = "incident_no"
    received_at = "call_time"
    call_type = "kind"
    agency = { value = "units-fd" }
    location = { column = "point", form = "point" }
    [[statuses]]
    status = "dispatched"
    column = "dispatch_time"
    """
)


def rec(n: int, minute: int = 0, dispatched: str | None = None, lng: float = -87.6, lat: float = 41.8) -> dict:
    row = {
        "incident_no": f"I{n}", "call_time": f"2024-03-01T10:{minute:02d}:00.000", "kind": "Medic Response",
        "point": {"type": "Point", "coordinates": [lng, lat]},
    }  # fmt: skip
    if dispatched:
        row["dispatch_time"] = dispatched
    return row


def plan(records, memory, **kw):
    return plan_page(parse_records(records, MAPPING), [r.get("call_time", "") for r in records], memory, now=2e9, **kw)


# --------------------------------------------------------------------------- queries and paging


def test_the_first_page_reads_from_the_since_floor_and_later_pages_from_the_checkpoint_inclusive():
    """No position: only the floor on the time column (rows without a call time let through, to be refused); a
    position: cursor >= it AND the floor, ordered by cursor then :id."""
    first = page_params(cursor=":updated_at", low=None, limit=500, offset=0, time_column="datetime", since="2024-01-01T00:00:00.000")
    assert first["$where"] == "(datetime >= '2024-01-01T00:00:00.000' OR datetime IS NULL)"
    by_time = page_params(cursor="datetime", low=None, limit=500, offset=0, time_column="datetime", since="2024-01-01T00:00:00.000")
    assert by_time["$where"] == "datetime >= '2024-01-01T00:00:00.000'", "a null cursor value cannot be paged through"
    assert first["$select"] == ":*, *" and first["$order"] == ":updated_at, :id" and first["$limit"] == "500"
    assert "$where" not in page_params(cursor="datetime", low=None, limit=2, offset=0)
    quoted = page_params(cursor="datetime", low="it's", limit=2, offset=0)["$where"]
    assert quoted == "datetime >= 'it''s'"


def test_a_column_that_is_not_a_field_name_or_a_page_of_one_row_is_refused():
    """A column with spaces or quotes cannot be injected into the query; a page of one row cannot overlap the next."""
    with pytest.raises(QueryError, match="not a SODA field name"):
        page_params(cursor="datetime; drop", low="x", limit=10, offset=0)
    with pytest.raises(QueryError, match="at least 2"):
        page_params(cursor="datetime", low="x", limit=1, offset=0)


def test_continuity_holds_when_the_previous_last_row_is_on_the_next_page_anywhere():
    """The overlap row at the start (or shifted later by an insert) continues; a page without it means rows moved."""
    assert continues(("t2", "r9"), [("t2", "r9"), ("t3", "r1")])
    assert continues(("t2", "r9"), [("t2", "r5"), ("t2", "r9")])
    assert not continues(("t2", "r9"), [("t3", "r1")])


def test_lookback_and_later_compare_soda_timestamps_as_times_not_as_text():
    """shift_back crosses midnight in the value's own form; later picks by time."""
    assert shift_back("2024-01-01T00:00:10.000", 20) == "2023-12-31T23:59:50.000"
    assert later("2024-01-01T00:00:10.5", "2024-01-01T00:00:10.123") == "2024-01-01T00:00:10.5"
    with pytest.raises(QueryError, match="not a SODA timestamp"):
        shift_back("noon", 1)


def test_retry_after_reads_seconds_and_http_dates_and_a_past_date_means_now():
    """Retry-After is delay-seconds or an HTTP date (RFC 9110 10.2.3); a date already past waits 0; garbage is None."""
    assert retry_after_s("120", 0.0) == 120.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 2e9) == 0.0
    assert retry_after_s(None, 0.0) is None and retry_after_s("-1", 0.0) is None


def test_backoff_doubles_up_to_its_cap_and_keeps_half_of_it_fixed():
    """Waits double with failures, never exceed the cap, and are at least half the ceiling whatever the jitter."""
    waits = [backoff_s(n, base=1.0, cap=60.0, jitter=0.0) for n in range(1, 10)]
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and max(waits) == 30.0
    assert backoff_s(10, base=1.0, cap=60.0, jitter=0.999999) <= 60.0
    with pytest.raises(ValueError):
        backoff_s(0)


# --------------------------------------------------------------------------- checkpoint and memory


def test_a_checkpoint_round_trips_and_an_unknown_one_is_refused_with_what_to_do():
    """The checkpoint is versioned JSON; another version or broken JSON raises FeedError pointing at --reset."""
    c = Checkpoint("datetime", "2024-01-01T00:05:00.000", None, floor=12.5)
    assert Checkpoint.from_json(c.to_json()) == c
    assert Checkpoint.from_json(Checkpoint("x", None, None).to_json()).floor == -math.inf
    with pytest.raises(FeedError, match="version 2.*--reset"):
        Checkpoint.from_json('{"v": 2}')
    with pytest.raises(FeedError, match="not JSON"):
        Checkpoint.from_json("{")
    with pytest.raises(FeedError, match="--reset"):
        Sent.from_json("I1", '{"r": 1}')


def test_memory_is_bounded_by_call_time_and_its_floor_rises_with_it():
    """After a day of calls a minute, a 2-hour window keeps about 120 ids; the floor is the oldest time still remembered."""
    memory = Memory(window_s=7200.0)
    memory.apply({f"I{i}": Sent(60.0 * i, {}) for i in range(1440)})
    gone = memory.prune()
    assert len(memory) == 121 and len(gone) == 1319
    assert memory.floor == 60.0 * 1439 - 7200.0


# --------------------------------------------------------------------------- decisions


def test_a_new_row_sends_its_call_and_updates_and_a_reread_row_sends_nothing():
    """First sight: the call and its dispatch update; the same row again (same page or later): already_sent."""
    memory = Memory()
    first = plan([rec(1, 0, "2024-03-01T10:02:00.000"), rec(1, 0, "2024-03-01T10:02:00.000")], memory)
    assert [e.type for e in first.events] == ["call", "update"]
    assert first.outcomes["sent_calls"] == 1 and first.outcomes["skipped|already_sent"] == 1
    memory.apply(first.writes)
    again = plan([rec(1, 0, "2024-03-01T10:02:00.000")], memory)
    assert again.events == [] and again.outcomes["skipped|already_sent"] == 1 and again.writes == {}


def test_a_status_time_published_after_the_call_was_sent_becomes_one_update():
    """A dispatch time filled in later is sent as an update alone, once; the call is not sent again."""
    memory = Memory()
    memory.apply(plan([rec(1)], memory).writes)
    later_plan = plan([rec(1, 0, "2024-03-01T10:03:00.000")], memory)
    assert [(e.type, getattr(e, "status", None)) for e in later_plan.events] == [("update", "dispatched")]
    memory.apply(later_plan.writes)
    assert plan([rec(1, 0, "2024-03-01T10:03:00.000")], memory).events == []


def test_an_edited_row_is_not_resent_and_the_edit_is_counted_once_with_what_changed():
    """Changed coordinates after sending: nothing sent, skipped|edited with the change in words, remembered so it counts once."""
    memory = Memory()
    memory.apply(plan([rec(1, 0, "2024-03-01T10:02:00.000")], memory).writes)
    edited = plan([rec(1, 0, "2024-03-01T10:04:00.000", lat=41.9)], memory)
    assert edited.events == [] and edited.outcomes["skipped|edited"] == 1
    assert "lat 41.8 -> 41.9" in edited.edits[0] and "dispatched time" in edited.edits[0]
    memory.apply(edited.writes)
    assert plan([rec(1, 0, "2024-03-01T10:04:00.000", lat=41.9)], memory).outcomes["skipped|already_sent"] == 1


def test_an_unknown_id_older_than_the_memory_floor_is_skipped_not_risked_twice():
    """A call received before the oldest time remembered may have been sent and forgotten: skipped as beyond_memory."""
    memory = Memory(floor=parse_records([rec(1, 30)], MAPPING).__next__().event_time)  # type: ignore[union-attr]
    result = plan([rec(2, 10), rec(3, 40)], memory)
    assert result.outcomes["skipped|beyond_memory"] == 1 and [e.id for e in result.events] == ["I3"]  # type: ignore[union-attr]


def test_refused_rows_become_one_refusal_each_across_rereads():
    """A row without coordinates is refused by the validator once; its re-read is skipped as already_refused."""
    memory = Memory()
    bad = {**rec(1), "point": None}
    first = plan([bad], memory, offset=40)
    assert [(r.reason, r.offset) for r in first.refusals] == [("missing_field", 40)]
    assert "'lat' is required" in first.refusals[0].detail
    memory.apply(first.writes)
    assert plan([bad], memory).outcomes["skipped|already_refused"] == 1


# --------------------------------------------------------------------------- status


def test_the_status_tells_a_stalled_poller_from_a_quiet_city():
    """Polls completing without new rows for 3 intervals is quiet; no completed poll for 3 intervals is stalled."""
    quiet = PollStatus("f", "u", 60.0, 5, started_at=0.0, last_success_at=1000.0, last_new_rows_at=100.0)
    stalled = PollStatus("f", "u", 60.0, 5, started_at=0.0, last_success_at=700.0, last_new_rows_at=700.0)
    failing = PollStatus("f", "u", 60.0, 5, started_at=0.0, last_success_at=990.0, consecutive_failures=5)
    assert (quiet.health(1010.0), stalled.health(1010.0), failing.health(1010.0)) == ("quiet", "stalled", "failing")
    fields = quiet.fields(1010.0)
    assert fields["last_success_at"] == "1000.000" and fields["last_new_rows_at"] == "100.000" and fields["stalled_after_s"] == "180"
    text = stalled.prometheus(1010.0)
    assert 'watchfloor_poll_stalled{feed="f"} 1' in text and 'watchfloor_poll_up{feed="f"} 0' in text
