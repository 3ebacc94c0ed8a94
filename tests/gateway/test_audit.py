"""The audit log: bounded fields, the hash chain and its verification, retention, CSV export, the verify command.

The pure parts are tested with plain data; the tests marked ``stack`` append to
real Redis under a key prefix of their own, deleted at the end.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from gateway.audit import (
    DETAIL_TEXT_LIMIT,
    GENESIS,
    TEXT_LIMIT,
    AuditAction,
    AuditAppendError,
    AuditLog,
    AuditRecord,
    ChainVerifier,
    record_hash,
    to_csv,
    verify_chain,
)
from tests.gateway.live import REDIS_URL
from tests.stackutil import free_port

ROOT = Path(__file__).resolve().parents[2]
URL = REDIS_URL
# the longest the "… (N chars)" marker makes a clipped value
MARKER_ROOM = 25


def chain(n: int, prev: str = GENESIS, start_ms: int = 1) -> list[tuple[str, dict[str, str]]]:
    """``n`` entries chained onto ``prev``, with stream ids ``start_ms-0``, ``start_ms+1-0``, ..."""
    rows = []
    for i in range(n):
        fields = AuditRecord(AuditAction.ACK, actor=f"sup-{i}", target=f"surge:x:{i}", at=1000.0 + i).content_fields()
        fields["prev"], fields["hash"] = prev, record_hash(prev, fields)
        rows.append((f"{start_ms + i}-0", fields))
        prev = fields["hash"]
    return rows


# -- the chain, pure -------------------------------------------------------------


def test_an_untouched_chain_verifies_from_genesis():
    report = verify_chain(chain(5))
    assert report.ok, report.problem
    assert (report.checked, report.first_id, report.last_id, report.anchor) == (5, "1-0", "5-0", GENESIS)
    assert report.last_hash == chain(5)[-1][1]["hash"]


def test_an_edited_record_is_reported_at_that_record():
    rows = chain(5)
    rows[2][1]["detail"] = json.dumps({"note": "nothing happened"})
    report = verify_chain(rows)
    assert report.problem is not None and report.problem.id == "3-0"
    assert report.problem.found == rows[2][1]["hash"] and report.problem.expected == record_hash(rows[2][1]["prev"], rows[2][1])
    assert report.checked == 2


def test_a_record_deleted_from_the_middle_is_reported_at_the_record_after_it():
    rows = chain(5)
    del rows[2]
    report = verify_chain(rows)
    assert report.problem is not None and report.problem.id == "4-0"
    assert (report.problem.expected, report.problem.found) == (rows[1][1]["hash"], rows[2][1]["prev"])


def test_a_reordered_pair_of_records_is_reported():
    rows = chain(5)
    rows[1], rows[2] = rows[2], rows[1]
    report = verify_chain(rows)
    assert report.problem is not None and report.problem.id == "3-0"


def test_a_forged_record_inserted_with_a_correct_hash_of_its_own_is_reported_at_the_record_after_it():
    rows = chain(5)
    forged = AuditRecord(AuditAction.RESOLVE, actor="sup-0", target="surge:x:1", at=1001.5).content_fields()
    forged["prev"], forged["hash"] = rows[1][1]["hash"], record_hash(rows[1][1]["hash"], forged)
    rows.insert(2, ("2-1", forged))
    report = verify_chain(rows)
    assert report.problem is not None and report.problem.id == "3-0", report


def test_a_forged_record_with_a_made_up_hash_is_reported_at_that_record():
    rows = chain(3)
    forged = {**rows[-1][1], "actor": "intruder", "prev": rows[-1][1]["hash"], "hash": "ab" * 32}
    rows.append(("9-0", forged))
    report = verify_chain(rows)
    assert report.problem is not None and report.problem.id == "9-0" and "hash does not match" in report.problem.what


def test_a_field_added_to_a_record_is_reported_at_that_record():
    rows = chain(3)
    rows[1][1]["note"] = "added later"
    assert verify_chain(rows).problem.id == "2-0"


@pytest.mark.parametrize("bad", ["", "xyz", "AB" * 32, "a" * 63])
def test_a_malformed_hash_is_reported_as_malformed(bad):
    rows = chain(3)
    rows[1][1]["hash"] = bad
    problem = verify_chain(rows).problem
    assert problem is not None and problem.id == "2-0" and problem.what == "malformed hash field"


def test_records_from_before_the_chain_began_are_counted_but_one_without_chain_fields_later_is_reported():
    legacy = [(f"0-{i + 1}", AuditRecord(AuditAction.CONNECT, actor="old").content_fields()) for i in range(3)]
    rows = legacy + chain(3)
    report = verify_chain(rows)
    assert report.ok and (report.unchained, report.checked) == (3, 3)
    rows.append(("9-0", AuditRecord(AuditAction.CONNECT, actor="plain xadd").content_fields()))
    report = verify_chain(rows)
    assert report.problem is not None and report.problem.id == "9-0" and "no prev and hash" in report.problem.what


def test_a_trimmed_chain_verifies_anchored_at_the_prev_of_its_first_kept_record_and_an_anchor_given_is_checked():
    rows = chain(6)[2:]
    report = verify_chain(rows)
    assert report.ok and report.anchor == rows[0][1]["prev"] != GENESIS
    assert verify_chain(rows, anchor=rows[0][1]["prev"]).ok
    problem = verify_chain(rows, anchor=GENESIS).problem
    assert problem is not None and problem.id == "3-0" and (problem.expected, problem.found) == (GENESIS, rows[0][1]["prev"])


def test_records_removed_from_the_end_pass_the_chain_but_not_the_head_key():
    rows = chain(5)
    head = rows[-1][1]["hash"]
    truncated = rows[:3]
    assert verify_chain(truncated).ok  # a chain alone cannot see it
    v = ChainVerifier()
    for sid, fields in truncated:
        v.feed(sid, fields)
    assert not v.check_end(head, "3-0")
    assert v.report().problem.id == "3-0" and v.report().problem.expected == head
    whole = ChainVerifier()
    for sid, fields in rows:
        whole.feed(sid, fields)
    assert whole.check_end(head, "5-0") and whole.report().ok


def test_a_stream_that_ends_before_the_last_record_checked_is_reported_even_when_the_head_matches():
    rows = chain(5)
    v = ChainVerifier()
    for sid, fields in rows:
        v.feed(sid, fields)
    assert not v.check_end(rows[-1][1]["hash"], "3-0")  # records 4 and 5 went while the walk ran
    assert (v.report().problem.expected, v.report().problem.found) == ("5-0", "3-0")


def test_an_emptied_stream_with_a_head_key_and_a_missing_head_key_are_both_reported():
    empty = ChainVerifier()
    assert not empty.check_end("ab" * 32, None)
    assert ChainVerifier().check_end(None, None)  # a log never written
    v = ChainVerifier()
    for sid, fields in chain(2):
        v.feed(sid, fields)
    assert not v.check_end(None, "2-0") and v.report().problem.found == "no head key"


# -- bounded fields, pure --------------------------------------------------------


@pytest.mark.parametrize("name", ["actor", "role", "agency", "target", "remote"])
def test_every_text_field_is_stored_clipped_to_200_characters_with_its_length(name):
    stored = AuditRecord(AuditAction.REFUSED, **{name: "/" + "a" * 6122}).to_fields()[name]
    assert stored == "/" + "a" * (TEXT_LIMIT - 1) + "… (6123 chars)"
    assert AuditRecord(AuditAction.REFUSED, **{name: "b" * TEXT_LIMIT}).to_fields()[name] == "b" * TEXT_LIMIT


def test_every_string_inside_detail_is_stored_clipped_at_any_depth():
    long = "z" * 5000
    detail = {"message": long, "nested": {"list": [long, ("ok", long)], long: 1}, "n": 7}
    stored = json.loads(AuditRecord(AuditAction.REFUSED, detail=detail).to_fields()["detail"])
    clipped = "z" * DETAIL_TEXT_LIMIT + "… (5000 chars)"
    assert stored == {"message": clipped, "nested": {"list": [clipped, ["ok", clipped]], clipped: 1}, "n": 7}
    assert detail["message"] == long  # the caller's dict is left as it was


def test_strings_full_of_characters_json_escapes_are_clipped_too():
    for text in ('"' * 400, "\\" * 400, "\n" * 400, "é" * 400, '\\"' * 200):
        stored = json.loads(AuditRecord(AuditAction.REFUSED, detail={"m": [text]}).to_fields()["detail"])["m"][0]
        assert stored == text[:DETAIL_TEXT_LIMIT] + f"… ({len(text)} chars)", text[:4]


def test_clipped_values_are_not_clipped_again_when_a_record_is_read_back_and_written():
    first = AuditRecord(AuditAction.REFUSED, target="x" * 9000, detail={"message": "y" * 9000}).to_fields()
    again = AuditRecord.from_fields(first).to_fields()
    assert again == first and first["target"].endswith("(9000 chars)")
    assert len(first["target"]) <= TEXT_LIMIT + MARKER_ROOM


def test_a_delivery_listing_thousands_of_recipients_keeps_them_all():
    recipients = [(f"desk-{i}", "transit", "SEPTA") for i in range(5000)]
    stored = json.loads(AuditRecord(AuditAction.DELIVER, detail={"recipients": recipients}).to_fields()["detail"])
    assert stored["recipients"] == [list(x) for x in recipients]


def test_the_actions_the_gateway_rewrite_needs_exist():
    assert AuditAction("zone_update") is AuditAction.ZONE_UPDATE
    assert AuditAction("rate_limited") is AuditAction.RATE_LIMITED


def test_a_log_refuses_a_retention_or_attempts_that_cannot_work():
    with pytest.raises(ValueError, match="retention_s must be a positive number"):
        AuditLog(object(), "p", retention_s=0)  # type: ignore[arg-type]  # no client needed: refused before any use
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        AuditLog(object(), "p", max_attempts=0)  # type: ignore[arg-type]  # no client needed: refused before any use


# -- CSV export, pure --------------------------------------------------------------


def csv_row(record: AuditRecord) -> dict[str, str]:
    header, row = csv.reader(io.StringIO(to_csv([("1-0", record)]), newline=""))
    return dict(zip(header, row, strict=True))


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_starting_with_a_formula_character_get_a_leading_quote(lead):
    record = AuditRecord(AuditAction.CONNECT, actor=f"{lead}HYPERLINK(1)", agency=f"{lead}SEPTA", target=f"{lead}1+1", at=1.0)
    row = csv_row(record)
    assert (row["actor"], row["agency"], row["target"]) == (f"'{lead}HYPERLINK(1)", f"'{lead}SEPTA", f"'{lead}1+1")


def test_a_carriage_return_inside_a_csv_cell_cannot_start_a_forged_row():
    record = AuditRecord(AuditAction.CONNECT, actor="desk\r9-0,1.000,ack,sup-anna", at=1.0)
    assert csv_row(record)["actor"] == "desk\r9-0,1.000,ack,sup-anna"
    assert "\r9-0" not in to_csv([("1-0", record)]).replace('"desk\r9-0', "")


def test_csv_cells_with_a_formula_character_later_on_are_left_as_they_are():
    record = AuditRecord(AuditAction.CONNECT, actor="ops-desk=3", agency="SEPTA+", remote="10.0.0.9", at=1.0)
    row = csv_row(record)
    assert (row["actor"], row["agency"], row["remote"], row["at"]) == ("ops-desk=3", "SEPTA+", "10.0.0.9", "1.000")


def test_csv_and_record_fields_carry_the_chain_hash_of_a_stored_record():
    fields = chain(1)[0][1]
    record = AuditRecord.from_fields(fields)
    assert record.to_fields()["hash"] == fields["hash"]  # the JSON and JSON-lines exports are made of these
    row = csv_row(record)
    assert (row["prev"], row["hash"]) == (GENESIS, fields["hash"])


# -- against real Redis ------------------------------------------------------------


@pytest.fixture
def aprefix(stack) -> Iterator[str]:
    """A key prefix of this test's own; its audit keys are deleted at the end."""
    prefix = f"a{uuid.uuid4().hex[:10]}"
    yield prefix
    with redis.Redis.from_url(URL) as r:
        r.delete(f"{prefix}:audit", f"{prefix}:audit:head")


def stored(prefix: str) -> list[tuple[str, dict[str, str]]]:
    with redis.Redis.from_url(URL, decode_responses=True) as r:
        return r.xrange(f"{prefix}:audit")


def seed(prefix: str, rows: list[tuple[str, dict[str, str]]]) -> None:
    """Write chained ``rows`` with their own ids, and the head, as the log would have."""
    with redis.Redis.from_url(URL, decode_responses=True) as r:
        for sid, fields in rows:
            r.xadd(f"{prefix}:audit", fields, id=sid)
        r.set(f"{prefix}:audit:head", rows[-1][1]["hash"])


@pytest.mark.stack
def test_two_logs_appending_concurrently_leave_one_chain_that_verifies(aprefix):
    """Two logs (two gateways) append 400 records and 80 batches at once; every record is stored once, in one chain."""

    async def go():
        clients = [aioredis.from_url(URL, decode_responses=True) for _ in range(2)]
        logs = [AuditLog(c, aprefix) for c in clients]
        try:
            singles = [logs[i % 2].record(AuditRecord(AuditAction.ACK, actor=f"one-{i}")) for i in range(400)]
            batches = [
                logs[i % 2].record_many([AuditRecord(AuditAction.DELIVER, actor=f"many-{i}", detail={"k": j}) for j in range(5)])
                for i in range(80)
            ]
            results = await asyncio.gather(*[x for pair in zip(singles[:80], batches, strict=True) for x in pair], *singles[80:])
            return results, await logs[0].verify(), await clients[0].get(logs[0].head_key)
        finally:
            for c in clients:
                await c.aclose()

    results, report, head = asyncio.run(go())
    entries = stored(aprefix)
    assert report.ok, report.summary()
    assert report.checked == len(entries) == 400 + 80 * 5 and report.anchor == GENESIS and report.last_hash == head
    assert sorted(e[1]["actor"] for e in entries) == sorted([f"one-{i}" for i in range(400)] + [f"many-{i}" for i in range(80)] * 5)
    position = {sid: n for n, (sid, _) in enumerate(entries)}
    for ids in (r for r in results if isinstance(r, list)):  # each batch's records are stored one after another
        assert [position[s] for s in ids] == list(range(position[ids[0]], position[ids[0]] + 5))
    assert {r for r in results if isinstance(r, str)} <= position.keys()


@pytest.mark.stack
def test_an_append_whose_head_keeps_moving_gives_up_after_its_attempts_with_a_clear_error_and_writes_nothing(aprefix):
    async def go():
        client = aioredis.from_url(URL, decode_responses=True)
        log = AuditLog(client, aprefix, max_attempts=3)
        script = log._append_script

        async def another_writer_first(**kw):
            await client.set(log.head_key, uuid.uuid4().hex * 2)  # someone else appended just before
            return await script(**kw)

        log._append_script = another_writer_first
        try:
            with pytest.raises(AuditAppendError, match="moved under each of 3 attempts") as exc:
                await log.record(AuditRecord(AuditAction.ACK, actor="late"))
            return exc.value
        finally:
            await client.aclose()

    error = asyncio.run(go())
    assert isinstance(error, redis.RedisError)  # the gateway's `suppress(RedisError)` covers it
    assert stored(aprefix) == []


@pytest.mark.stack
def test_when_a_batch_fails_every_caller_in_it_gets_a_redis_error_and_the_next_append_succeeds(aprefix):
    async def go():
        client = aioredis.from_url(URL, decode_responses=True)
        log = AuditLog(client, aprefix)
        script, calls = log._append_script, []

        async def failing_once(**kw):
            calls.append(len(kw["args"]))
            if len(calls) == 2:
                raise redis.ConnectionError("connection lost")
            return await script(**kw)

        log._append_script = failing_once
        try:
            first = asyncio.create_task(log.record(AuditRecord(AuditAction.ACK, actor="first")))
            await asyncio.sleep(0)  # first holds the log, writing: the next two wait and go in one batch
            waiting = [log.record(AuditRecord(AuditAction.ACK, actor=f"batched-{i}")) for i in range(2)]
            results = await asyncio.gather(first, *waiting, return_exceptions=True)
            await log.record(AuditRecord(AuditAction.ACK, actor="after"))
            return results, await log.verify()
        finally:
            await client.aclose()

    (first, *batched), report = asyncio.run(go())
    assert isinstance(first, str)
    assert {type(e) for e in batched} == {redis.ConnectionError, AuditAppendError}, batched
    assert all(isinstance(e, redis.RedisError) for e in batched)
    assert report.ok and [f["actor"] for _, f in stored(aprefix)] == ["first", "after"]


@pytest.mark.stack
def test_the_callers_of_one_batch_all_return_within_two_loop_turns_of_its_write(aprefix):
    """50 records queued behind a write go in one batch, and their callers wake together, not one loop turn after another."""

    async def go():
        client = aioredis.from_url(URL, decode_responses=True)
        log = AuditLog(client, aprefix)
        turns, returned_at = 0, []

        async def ticker():
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        async def one(i):
            await log.record(AuditRecord(AuditAction.ACK, actor=f"waiting-{i}"))
            returned_at.append(turns)

        tick = asyncio.create_task(ticker())
        try:
            first = asyncio.create_task(log.record(AuditRecord(AuditAction.ACK, actor="first")))
            await asyncio.sleep(0)  # first is writing: the next 50 queue behind it
            await asyncio.gather(first, *(one(i) for i in range(50)))
            return returned_at, await log.verify()
        finally:
            tick.cancel()
            await client.aclose()

    returned_at, report = asyncio.run(go())
    assert report.ok and len(stored(aprefix)) == 51
    assert max(returned_at) - min(returned_at) <= 2, returned_at


@pytest.mark.stack
def test_a_record_cancelled_while_waiting_for_the_batch_before_it_is_not_written_later(aprefix):
    async def go():
        client = aioredis.from_url(URL, decode_responses=True)
        log = AuditLog(client, aprefix)
        try:
            first = asyncio.create_task(log.record(AuditRecord(AuditAction.ACK, actor="first")))
            await asyncio.sleep(0)  # first holds the log, writing
            cancelled = asyncio.create_task(log.record(AuditRecord(AuditAction.ACK, actor="cancelled")))
            await asyncio.sleep(0)
            cancelled.cancel()
            await first
            await log.record(AuditRecord(AuditAction.ACK, actor="later"))
            return cancelled.cancelled()
        finally:
            await client.aclose()

    assert asyncio.run(go())
    assert [f["actor"] for _, f in stored(aprefix)] == ["first", "later"]


@pytest.mark.stack
def test_a_log_continues_the_chain_another_writer_moved_since_its_last_append(aprefix):
    async def go():
        clients = [aioredis.from_url(URL, decode_responses=True) for _ in range(2)]
        a, b = (AuditLog(c, aprefix) for c in clients)
        try:
            await a.record(AuditRecord(AuditAction.ACK, actor="a-1"))  # a now holds a head b is about to move
            await b.record(AuditRecord(AuditAction.ACK, actor="b-1"))
            await a.record(AuditRecord(AuditAction.ACK, actor="a-2"))
            return await a.verify()
        finally:
            for c in clients:
                await c.aclose()

    report = asyncio.run(go())
    assert report.ok and report.checked == 3, report.summary()
    assert [f["actor"] for _, f in stored(aprefix)] == ["a-1", "b-1", "a-2"]


@pytest.mark.stack
def test_records_appended_while_the_stream_is_verified_are_checked_too(aprefix):
    async def go():
        clients = [aioredis.from_url(URL, decode_responses=True) for _ in range(2)]
        reader, writer = (AuditLog(c, aprefix) for c in clients)
        try:
            await writer.record_many([AuditRecord(AuditAction.ACK, actor=f"sup-{i}") for i in range(7)])
            real_xrange, during = clients[0].xrange, []

            async def xrange_then_append(*args, **kwargs):
                rows = await real_xrange(*args, **kwargs)
                if not rows and not during:  # the walk has reached the end: another gateway appends now
                    during.append(await writer.record(AuditRecord(AuditAction.ACK, actor="during")))
                return rows

            clients[0].xrange = xrange_then_append
            return await reader.verify(page=3), during
        finally:
            for c in clients:
                await c.aclose()

    report, during = asyncio.run(go())
    assert report.ok, report.summary()
    assert report.checked == 8 and report.last_id == during[0]


@pytest.mark.stack
def test_a_very_long_path_is_stored_clipped(aprefix):
    """The incident: long request paths from an unauthenticated client no longer grow the stream by their length."""

    async def go():
        client = aioredis.from_url(URL, decode_responses=True)
        try:
            await AuditLog(client, aprefix).record(
                AuditRecord(
                    AuditAction.REFUSED, target="/" + "A" * 1_000_000, remote="10.0.0.9", detail={"code": "not_found", "p": "B" * 10**6}
                )
            )
        finally:
            await client.aclose()

    asyncio.run(go())
    [(_, fields)] = stored(aprefix)
    assert len(fields["target"]) <= TEXT_LIMIT + MARKER_ROOM and fields["target"].endswith("(1000001 chars)")
    assert sum(len(v) for v in fields.values()) < 1000


@pytest.mark.stack
def test_appends_trim_records_older_than_the_retention_and_the_rest_verifies_from_its_anchor(aprefix):
    """250 chained records with ids from 1970 (old, without waiting a year); one append with a one-hour retention trims them.

    Trimming is approximate (``MINID ~``): whole stream nodes go, so a few old
    records in the node the new one joins may stay.
    """
    seed(aprefix, chain(250, start_ms=1_000))

    async def go(retention_s):
        client = aioredis.from_url(URL, decode_responses=True)
        log = AuditLog(client, aprefix, retention_s=retention_s)
        try:
            await log.record(AuditRecord(AuditAction.ACK, actor="today"))
            return await log.verify()
        finally:
            await client.aclose()

    kept_all = asyncio.run(go(None))
    assert kept_all.ok and kept_all.checked == 251 and kept_all.anchor == GENESIS
    report = asyncio.run(go(3600))
    entries = stored(aprefix)
    old = [sid for sid, _ in entries if int(sid.split("-")[0]) < 10_000]
    assert len(old) < 100 and entries[-1][1]["actor"] == "today"
    assert report.ok, report.summary()
    assert report.checked == len(entries) and report.anchor == entries[0][1]["prev"] != GENESIS


def run_verify(prefix: str, url: str = URL, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WF_REDIS_URL": url, "WF_REDIS_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "gateway.audit", "verify", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def tamper_delete_middle(r: redis.Redis, key: str, ids: list[str]) -> str:
    r.xdel(key, ids[4])
    return ids[5]


def tamper_forge(r: redis.Redis, key: str, ids: list[str]) -> str:
    fields = r.xrange(key, ids[-1], ids[-1])[0][1]
    return r.xadd(key, {**fields, "actor": "intruder", "prev": fields["hash"], "hash": "ab" * 32})


def tamper_delete_last(r: redis.Redis, key: str, ids: list[str]) -> str:
    r.xdel(key, ids[-1])
    return ids[-2]


@pytest.mark.stack
@pytest.mark.parametrize("tamper", [tamper_delete_middle, tamper_forge, tamper_delete_last])
def test_the_verify_command_passes_a_good_stream_and_fails_a_tampered_one_naming_the_record(aprefix, tamper):
    async def go():
        client = aioredis.from_url(URL, decode_responses=True)
        log = AuditLog(client, aprefix)
        try:
            return await log.record_many([AuditRecord(AuditAction.ACK, actor=f"sup-{i}") for i in range(10)])
        finally:
            await client.aclose()

    ids = asyncio.run(go())
    good = run_verify(aprefix)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith(f"ok: 10 records from {ids[0]} to {ids[-1]}, anchored at {GENESIS}")
    with redis.Redis.from_url(URL, decode_responses=True) as r:
        at = tamper(r, f"{aprefix}:audit", ids)
    bad = run_verify(aprefix)
    assert bad.returncode == 1, (bad.stdout, bad.stderr)
    assert bad.stdout.startswith(f"BROKEN at {at}: ")


@pytest.mark.stack
def test_the_verify_command_takes_its_redis_from_flags_over_the_environment(aprefix):
    seed(aprefix, chain(3))
    result = run_verify("nothing-here", "redis://127.0.0.1:1/0", "--redis-url", URL, "--prefix", aprefix)
    assert result.returncode == 0 and result.stdout.startswith("ok: 3 records from 1-0 to 3-0"), result.stderr


def test_the_verify_command_exits_2_with_a_clear_message_when_redis_is_unreachable():
    result = run_verify("wf", f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 2 and result.stdout == ""
    assert "Redis is not answering at redis://127.0.0.1:" in result.stderr and "Traceback" not in result.stderr
