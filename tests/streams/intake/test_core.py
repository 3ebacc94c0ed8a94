"""The intake's pure core: signatures, record outcomes, keys, the agency and owner checks, the rate bucket."""

from __future__ import annotations

import json

import pytest

from streams.ingest.schema import Call, IncidentUpdate, Jurisdiction
from streams.intake.auth import Unauthenticated, check_signature, sign
from streams.intake.core import (
    DONE,
    PENDING,
    BodyError,
    Candidate,
    EventBucket,
    IntakeKeys,
    Outcome,
    check_owners,
    examine,
    mark_repeats,
    owner_lookups,
    rekey_refused,
    settle,
    split_body,
    summary,
)
from streams.intake.sources import Source, SourcesError, load_sources

from .conftest import call, update

SRC = Source("dev-cad", "dev-agency", b"k" * 32)
KEYS = IntakeKeys("wf")
NOW = 1_767_300_000.0


def ex(i: int, obj: object, **kw) -> Candidate:
    return examine(i, obj, SRC, KEYS, now=NOW, **kw)


# -- signatures ------------------------------------------------------------------------


def test_a_signature_made_with_the_secret_over_timestamp_and_body_is_accepted():
    check_signature(SRC.secret, "1767300000", sign(SRC.secret, "1767300000", b"{}"), b"{}", now=NOW)


@pytest.mark.parametrize(
    ("ts", "sig", "body", "why"),
    [
        ("1767300000", sign(b"x" * 32, "1767300000", b"{}"), b"{}", "does not match"),  # another secret
        ("1767300000", sign(b"k" * 32, "1767300000", b"{}"), b"{ }", "does not match"),  # the body changed
        ("1767300001", sign(b"k" * 32, "1767300000", b"{}"), b"{}", "does not match"),  # the timestamp changed
        ("1767299000", sign(b"k" * 32, "1767299000", b"{}"), b"{}", "1000 s from the intake's clock"),  # replayed later
        ("1767301000", sign(b"k" * 32, "1767301000", b"{}"), b"{}", "1000 s from the intake's clock"),  # from the future
        ("17673e5", "sha256=" + "0" * 64, b"{}", "Unix seconds"),
        (None, "sha256=" + "0" * 64, b"{}", "Unix seconds"),
        ("1767300000", None, b"{}", "sha256=<64"),
        ("1767300000", "md5=abc", b"{}", "sha256=<64"),
    ],
)
def test_a_signature_is_refused_when_secret_body_or_timestamp_differ_or_the_timestamp_is_stale(ts, sig, body, why):
    with pytest.raises(Unauthenticated, match=why):
        check_signature(SRC.secret, ts, sig, body, now=NOW)


# -- the body ------------------------------------------------------------------------


def test_a_body_is_one_event_or_a_list_under_events_and_anything_else_is_a_400_that_says_what_was_expected():
    assert split_body(b'{"type":"call"}') == [{"type": "call"}]
    assert split_body(b'{"events":[]}') == []
    for body, status, text in [
        (b"\xff", 400, "not UTF-8"),
        (b'{"events":', 400, "not valid JSON"),
        (b"[]", 400, "expected a JSON object"),
        (b'{"events":{}}', 400, "must be a list"),
        (json.dumps({"events": [{}] * 3}).encode(), 413, "at most 2"),
    ]:
        with pytest.raises(BodyError, match=text) as info:
            split_body(body, max_events=2)
        assert info.value.status == status


# -- records and keys ------------------------------------------------------------------


def test_a_call_of_the_source_agency_is_valid_with_its_source_overwritten_and_keyed_by_source_and_id():
    c = ex(0, call("C1", source="spoofed"))
    assert isinstance(c.event, Call) and c.event.source == "dev-cad" and c.reason is None
    assert c.key == "wf:intake:seen:dev-cad:call:C1" and c.record_id == "C1"


def test_an_update_is_keyed_by_source_call_id_status_and_time_whatever_its_spelling():
    a = ex(0, update("C1", "on_scene", "2026-01-01T10:05:00Z"))
    b = ex(1, update("C1", "on_scene", "2026-01-01T05:05:00-05:00"))
    assert isinstance(a.event, IncidentUpdate)
    assert a.key == b.key == "wf:intake:seen:dev-cad:update:C1|on_scene|2026-01-01T10:05:00Z"
    assert ex(2, update("C1", "closed", "2026-01-01T10:05:00Z")).key != a.key


def test_a_call_for_another_agency_is_refused_as_wrong_agency_naming_both():
    c = ex(0, call("C1", agency="elsewhere"))
    assert c.event is None and c.reason == "wrong_agency"
    assert "'elsewhere'" in c.detail and "'dev-agency'" in c.detail


def test_a_refused_record_is_keyed_by_the_hash_of_its_content_independent_of_key_order_and_source():
    a = ex(0, {"type": "call", "v": 1, "id": "x"})
    b = ex(5, {"id": "x", "v": 1, "type": "call"})
    other = examine(0, {"type": "call", "v": 1, "id": "x"}, Source("o", "o", b"k" * 32), KEYS, now=NOW)
    assert a.reason == "missing_field" and a.key == b.key and ":refused:" in a.key
    assert other.key != a.key


def test_the_schema_validation_at_the_door_is_parse_event_with_its_reasons_and_the_jurisdiction():
    assert ex(0, 3).reason == "not_an_object"
    assert ex(0, {"type": "call", "v": 2}).reason == "unsupported_version"
    assert ex(0, call("C1", at="2030-01-01T00:00:00Z")).reason == "impossible_timestamp"
    box = Jurisdiction(39.0, -76.0, 40.0, -75.0)
    assert ex(0, call("C1"), extent=box).reason == "outside_jurisdiction"


# -- owners ------------------------------------------------------------------------------


def test_an_update_passes_for_a_call_this_source_owns_or_sent_earlier_in_the_request_and_not_otherwise():
    batch = [ex(0, update("OLD", "closed")), ex(1, update("NEW", "dispatched")), ex(2, call("NEW")), ex(3, update("NEW", "closed"))]
    assert owner_lookups(batch) == ["OLD", "NEW"]
    check_owners(batch, {"OLD": "dev-cad", "NEW": None}, SRC)
    assert [c.reason for c in batch] == [None, "unknown_call", None, None]


def test_a_call_id_another_source_sent_is_refused_and_its_updates_with_it():
    batch = [ex(0, call("X")), ex(1, update("X", "closed"))]
    check_owners(batch, {"X": "other-cad"}, SRC)
    assert [c.reason for c in batch] == ["duplicate_id", "unknown_call"]
    rekey_refused(batch, SRC, KEYS)
    assert all(":refused:" in c.key for c in batch)


# -- claims --------------------------------------------------------------------------------


def test_a_record_repeated_in_a_request_is_claimed_once_and_its_copy_is_a_duplicate():
    batch = [ex(0, call("A")), ex(1, call("A")), ex(2, {"bad": 1}), ex(3, {"bad": 1})]
    to_claim = mark_repeats(batch)
    assert [c.index for c in to_claim] == [0, 2]
    assert [batch[1].outcome, batch[3].outcome] == [Outcome.DUPLICATE, Outcome.REFUSED]


def test_settling_claims_sends_what_was_won_answers_done_as_duplicate_and_returns_what_another_request_holds():
    batch = [ex(0, call("A")), ex(1, call("B")), ex(2, call("C")), ex(3, {"bad": 1}), ex(4, {"bad": 2})]
    blocked = settle(batch, [True, False, False, True, False], [None, DONE, PENDING, None, DONE])
    assert [c.index for c in blocked] == [2]
    assert [c.send for c in batch] == [True, False, False, True, False]
    assert [c.outcome for c in batch] == [Outcome.ACCEPTED, Outcome.DUPLICATE, None, Outcome.REFUSED, Outcome.REFUSED]
    assert summary([batch[0], batch[1], batch[3]]) == {"accepted": 1, "duplicate": 1, "refused": 1}


def test_the_answer_of_a_refused_record_carries_its_reason_and_detail_and_an_accepted_one_neither():
    ok, bad = ex(0, call("A")), ex(1, call("B", agency="zz"))
    settle([ok, bad], [True, True], [None, None])
    assert ok.answer() == {"index": 0, "id": "A", "outcome": "accepted"}
    assert bad.answer()["outcome"] == "refused" and bad.answer()["reason"] == "wrong_agency" and bad.answer()["id"] == "B"


# -- rate ----------------------------------------------------------------------------------


def test_the_bucket_allows_a_burst_then_the_rate_and_says_how_long_to_wait():
    b = EventBucket(rate=2.0, burst=500)
    assert b.take(500, now=0.0) == 0.0
    assert b.take(4, now=0.0) == 2.0  # refused: nothing taken
    assert b.take(4, now=2.0) == 0.0
    assert b.take(1, now=2.0) == 0.5


# -- the sources file ------------------------------------------------------------------------


def test_the_shipped_sources_file_loads_with_its_dev_secret_from_the_environment():
    sources = load_sources("infra/intake/sources.toml", {"WF_INTAKE_SECRET_DEV": "d" * 48})
    assert sources["dev-cad"].agency == "dev-agency" and sources["dev-cad"].secret == b"d" * 48


@pytest.mark.parametrize(
    ("text", "env", "why"),
    [
        ('[source.a]\nagency = "x"\nsecret_env = "S"\n', {"S": "short"}, "5 bytes; at least 32"),
        ('[source.a]\nagency = "x"\n', {}, "exactly one of secret_env"),
        ('[source."A!"]\nagency = "x"\nsecret_env = "S"\n', {"S": "s" * 32}, "ids are 1-64 characters"),
        ('[source.a]\nagency = "x"\nsecret_env = "S"\nrate = -1\n', {"S": "s" * 32}, "'rate' must be a positive number"),
        ('[source.a]\nagency = "x"\nsecret_env = "S"\nsecret = "oops"\n', {"S": "s" * 32}, "unknown key"),
        ('[source.a]\nsecret_env = "S"\n', {"S": "s" * 32}, "'agency' must be"),
        ("", {}, "at least one"),
    ],
)
def test_a_sources_file_error_names_the_source_and_what_was_expected(tmp_path, text, env, why):
    path = tmp_path / "sources.toml"
    path.write_text(text)
    with pytest.raises(SourcesError, match=why):
        load_sources(path, env)


def test_a_secret_can_come_from_a_file(tmp_path):
    (tmp_path / "secret").write_text("f" * 40 + "\n")
    (tmp_path / "s.toml").write_text(f'[source.a]\nagency = "x"\nsecret_file = "{tmp_path / "secret"}"\n')
    assert load_sources(tmp_path / "s.toml", {})["a"].secret == b"f" * 40
