"""One set of calls through every door: a file (the replay), pushes (the HTTP intake) and a Socrata poll give the same counts.

The calls come from the seeded simulator (a few hundred, over about four hours of one morning in
Phoenix, with their status times; those of the last 45 minutes never closed), plus two records every
door must refuse, each for a known reason (a received time at hour 25: ``impossible_timestamp``; a
priority of 9: ``bad_field``), and one call that comes twice (identical, at the end, as a source
re-sending a record). Each door writes its own input from those records, in its own layout, and
runs into its own topic and key prefix, counted by its own real worker:

- **file**: a watchfloor CSV, times with a ``-07:00`` offset, read by ``python -m streams.ingest.replay``;
- **push**: signed JSON batches to the intake as a CAD sends them, every five minutes of event time
  the events of those five minutes, times in UTC, one batch sent twice (a retry after a lost answer);
- **poll**: rows of a SODA-shaped dataset (``tests/streams/intake/fakesoda.py``) read through a
  mapping of this test (floating Phoenix times, a GeoJSON point, an integer priority), published as
  a portal publishes a live feed: a row when the call is received, edited as its statuses come, the
  poller reading it in pages of ten every five minutes of event time.

Then, with the ``source`` field set aside, the calls and incident updates on the three doors' topics
are the same records, and the worker's counts in Redis are identical across the doors and equal to
counts computed here from the records. The one difference is the file door's, documented in
docs/sources.md: a file's repeated call id is passed on (with its updates), and the worker refuses
the copy as ``duplicate_id``; a push is answered ``duplicate`` and a poll recognises the row, so
neither writes the copy. The test states that difference exactly, so it fails when any door drops,
adds or changes a record.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import h3
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from infra import stack as infra_stack
from streams.counting.state import RedisState
from streams.ingest.mapping import parse_mapping
from streams.ingest.schema import format_time
from streams.ingest.simulator import Simulator
from streams.intake.core import EventBucket
from streams.intake.poller import FeedConfig, Poller, RedisStore, SodaClient
from streams.intake.publish import Publisher
from streams.intake.service import Intake, create_app
from streams.intake.settings import IntakeSettings
from streams.intake.sources import Source
from streams.runtime.settings import Settings, load_settings
from streams.topics import CALLS, DEADLETTER, INCIDENT_UPDATES, topic_name
from tests.stackutil import ROOT, WorkerProcess, wait_caught_up, worker_env
from tests.streams.intake.fakesoda import FakeSoda

from .conftest import signed

pytestmark = pytest.mark.stack

#: No daylight saving: a floating (offset-less) time of this zone names one instant all year.
ZONE = ZoneInfo("America/Phoenix")
START = datetime(2025, 6, 3, 6, 0, tzinfo=ZONE)
#: Event-time seconds between a CAD's pushes and between polls (well inside the worker's 900 s of allowed lateness).
STEP_S = 300
AGENCY = "phx-fd"
SECRET = b"p" * 40
SOURCE = Source("phx-cad", AGENCY, SECRET)
STATUSES = ("dispatched", "en_route", "on_scene", "closed")
DOORS = ("file", "push", "poll")
#: Each door's ``source`` field: the replay's mapping name, the intake's authenticated source, the poller's mapping name.
SOURCE_NAMES = {"file": "watchfloor", "push": "phx-cad", "poll": "same-path-soda"}

#: The dataset as this test's portal publishes it, read by the poller. Column names are the portal's own.
SODA_MAPPING = """
name = "same-path-soda"
description = "a SODA dataset of one row per call, updated as its statuses come (tests/streams/intake/test_same_path.py)"
timezone = "America/Phoenix"
time_formats = ["iso"]

[fields]
id = "incident_number"
received_at = "call_received"
call_type = "nature"
location = { column = "geo", form = "point" }
agency = { value = "phx-fd" }
unit = "unit_id"

[fields.category]
column = "call_class"
default = "keywords"

[fields.priority]
column = "priority_code"
unmapped = "reject"

[[statuses]]
status = "dispatched"
column = "dispatch_time"

[[statuses]]
status = "en_route"
column = "enroute_time"

[[statuses]]
status = "on_scene"
column = "onscene_time"

[[statuses]]
status = "closed"
column = "cleared_time"
"""
SODA_STATUS_COLUMNS = dict(zip(STATUSES, ("dispatch_time", "enroute_time", "onscene_time", "cleared_time"), strict=True))


# -- the records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    """One call as its source holds it; each door writes it in its own layout. Times are epoch seconds."""

    id: str
    received: int
    category: str
    call_type: str
    priority: int | None
    lat: float
    lng: float
    statuses: tuple[tuple[str, int], ...]
    unit: str | None
    #: A record the doors must refuse: the reason each door gives.
    refused: str | None = None

    def when(self, status: str) -> int | None:
        return dict(self.statuses).get(status)


@dataclass(frozen=True)
class Inputs:
    valid: list[Rec]  # each once, in received order
    refused: list[Rec]  # impossible_timestamp, bad_field
    repeated: Rec  # one of ``valid``, sent a second time at the end

    def timeline(self) -> list[Rec]:
        """What the source holds, in received order (the refused ones among the rest; the repeat not yet)."""
        return sorted(self.valid + self.refused, key=lambda r: (r.received, r.id))


def make_inputs() -> Inputs:
    sim = Simulator(
        seed=23, start=START, days=4 / 24, calls_per_day=1900, centre_lat=33.45, centre_lng=-112.07, radius_km=25,
        timezone="America/Phoenix",
    )  # fmt: skip
    calls = list(sim.calls())
    end = max(c.call.received_at for c in calls)
    valid = []
    for s in calls:
        c = s.call
        times = dict(zip(STATUSES, (s.dispatched_at, s.en_route_at, s.on_scene_at, s.closed_at), strict=True))
        if c.received_at > end - 45 * 60:
            times["closed"] = None  # still open when the sources stop: the open counts are not all zero
        valid.append(
            Rec(
                id=c.id.replace("SIM-", "PHX-"), received=int(c.received_at), category=c.category.value, call_type=c.call_type,
                priority=c.priority, lat=round(c.lat, 6), lng=round(c.lng, 6),
                statuses=tuple((k, int(v)) for k, v in times.items() if v is not None), unit=s.unit,
            )
        )  # fmt: skip
    bad_time = replace(valid[40], id="PHX-BAD-TIME", statuses=(), refused="impossible_timestamp")
    bad_priority = replace(valid[80], id="PHX-BAD-PRIORITY", priority=9, statuses=(), refused="bad_field")
    return Inputs(valid, [bad_time, bad_priority], valid[0])


def local(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, ZONE)


def impossible(text: str) -> str:
    """The same time written at hour 25 (``...T06:12:00...`` -> ``...T25:12:00...``): no reader takes it."""
    head, _, tail = text.partition("T")
    return f"{head}T25{tail[2:]}"


def csv_time(ts: int) -> str:
    return local(ts).isoformat()


def soda_time(ts: int) -> str:
    return local(ts).strftime("%Y-%m-%dT%H:%M:%S.000")


def received_text(rec: Rec, form) -> str:
    text = form(rec.received)
    return impossible(text) if rec.refused == "impossible_timestamp" else text


def csv_file(inputs: Inputs, path: Path) -> Path:
    """The watchfloor CSV, an extra free-text column that must never be copied, the repeated call's line again at the end."""
    header = ["id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency", "address"]
    header += [f"{s}_at" for s in STATUSES] + ["unit"]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(header)
        for rec in [*inputs.timeline(), inputs.repeated]:
            stamps = [csv_time(t) if (t := rec.when(s)) is not None else "" for s in STATUSES]
            out.writerow(
                [rec.id, received_text(rec, csv_time), rec.category, rec.call_type, rec.priority or "", repr(rec.lat), repr(rec.lng),
                 AGENCY, "1 Main St", *stamps, rec.unit or ""]
            )  # fmt: skip
    return path


def json_call(rec: Rec) -> dict[str, Any]:
    return {
        "type": "call", "v": 1, "id": rec.id, "received_at": received_text(rec, lambda t: format_time(t)), "category": rec.category,
        "call_type": rec.call_type, "priority": rec.priority, "lat": rec.lat, "lng": rec.lng, "agency": AGENCY, "address": "1 Main St",
    }  # fmt: skip


def json_update(rec: Rec, status: str, at: int) -> dict[str, Any]:
    return {"type": "update", "v": 1, "call_id": rec.id, "status": status, "at": format_time(at), "unit": rec.unit}


def soda_row(rec: Rec, upto: float) -> dict[str, Any]:
    """The row as the portal has it at ``upto``: statuses not yet reached are absent (SODA leaves nulls out)."""
    row: dict[str, Any] = {
        "incident_number": rec.id, "call_received": received_text(rec, soda_time), "call_class": rec.category, "nature": rec.call_type,
        "geo": {"type": "Point", "coordinates": [rec.lng, rec.lat]}, "address": "1 Main St", "unit_id": rec.unit,
    }  # fmt: skip
    if rec.priority is not None:
        row["priority_code"] = rec.priority
    for status, at in rec.statuses:
        if at <= upto:
            row[SODA_STATUS_COLUMNS[status]] = soda_time(at)
    return row


def steps(inputs: Inputs) -> Iterator[tuple[float, float]]:
    """The event-time windows ``(low, high]`` of the CAD's pushes and the polls, until every status time is past."""
    last = max(max((t for _, t in r.statuses), default=r.received) for r in inputs.timeline())
    high = float(inputs.timeline()[0].received)
    while high - STEP_S < last:
        yield high - STEP_S, high
        high += STEP_S


# -- what the test expects, from the records alone ------------------------------------------------


def expected_events(recs: list[Rec]) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in recs:
        call = {"type": "call", "v": 1, "id": r.id, "received_at": r.received, "category": r.category, "call_type": r.call_type,
                "priority": r.priority, "lat": r.lat, "lng": r.lng, "agency": AGENCY}  # fmt: skip
        out[_text(call)] += 1
        for status, at in r.statuses:
            out[_text({"type": "update", "v": 1, "call_id": r.id, "status": status, "at": at, "unit": r.unit})] += 1
    return out


def expected_counts(recs: list[Rec], resolutions: tuple[int, ...]) -> dict[str, Any]:
    """Counts per (minute, cell, category), open calls per cell, response-time samples per area: the worker's, computed here."""
    buckets: Counter = Counter()
    open_now: Counter = Counter()
    rt: dict[str, dict[str, list[int]]] = {"dispatch": {}, "travel": {}}
    for r in recs:
        finest = h3.latlng_to_cell(r.lat, r.lng, resolutions[0])
        cells = [h3.cell_to_parent(finest, res) for res in resolutions]
        for cell in cells:
            buckets[(r.received // 60, cell, r.category)] += 1
            buckets[(r.received // 60, cell, "ALL")] += 1
            if r.when("closed") is None:
                open_now[cell] += 1
        dispatched, on_scene = r.when("dispatched"), r.when("on_scene")
        for kind, start, end in (("dispatch", r.received, dispatched), ("travel", dispatched, on_scene)):
            if start is not None and end is not None:
                slot = rt[kind].setdefault(cells[-1], [0, 0])
                slot[0] += 1
                slot[1] += end - start
    return {"buckets": dict(buckets), "open": dict(open_now), "rt": rt}


def _text(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True)


# -- the doors -----------------------------------------------------------------------------------


def door_settings(door: str) -> Settings:
    """A topic and key prefix of this door's own, topics created; a counting worker's settings."""
    prefix = f"t{uuid.uuid4().hex[:8]}{door}"
    settings = load_settings(
        {},
        kafka_bootstrap=f"{infra_stack.KAFKA_HOST}:{infra_stack.kafka_port()}",
        redis_url=f"redis://{infra_stack.KAFKA_HOST}:{infra_stack.redis_port()}/0",
        topic_prefix=prefix, redis_prefix=prefix, app_id=f"wf-test-{prefix}", partitions=4, batch_within_s=0.05, roles=("count",),
    )  # fmt: skip
    infra_stack.create_topics(prefix, settings.partitions)
    return settings


def replay(settings: Settings, path: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "streams.ingest.replay", str(path), "--format", "watchfloor", "--speed", "max", "--no-progress"]
    return subprocess.Popen(cmd, cwd=ROOT, env=worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def push_all(settings: Settings, inputs: Inputs) -> list[dict[str, Any]]:
    """The CAD: every five minutes of event time, the events of those minutes in one signed batch; one batch sent twice."""
    intake = Intake(
        settings=IntakeSettings(base=settings),
        sources={SOURCE.id: SOURCE},
        publisher=Publisher(settings.kafka_bootstrap, settings.topic_prefix),
        redis=aioredis.from_url(settings.redis_url, decode_responses=True),
    )
    intake.buckets[SOURCE.id] = EventBucket(rate=100_000, burst=100_000)  # about counts, not rates
    timed: list[tuple[int, int, dict[str, Any]]] = []
    for rec in inputs.timeline():
        timed.append((rec.received, 0, json_call(rec)))
        timed += [(at, 1 + STATUSES.index(s), json_update(rec, s, at)) for s, at in rec.statuses]
    timed.sort(key=lambda t: (t[0], t[1]))
    retried = inputs.refused[1].received  # the batch holding the bad priority is sent again, as after a lost answer
    answers = []
    client = TestClient(TestServer(create_app(intake), host="127.0.0.1"))
    await client.start_server()
    try:
        batches = [[e for t, _, e in timed if low < t <= high] for low, high in steps(inputs)]
        retry_at = next(i for i, (low, high) in enumerate(steps(inputs)) if low < retried <= high)
        batches.insert(retry_at + 1, batches[retry_at])
        repeat = [json_call(inputs.repeated)] + [json_update(inputs.repeated, s, at) for s, at in inputs.repeated.statuses]
        for events in [*batches, repeat]:
            if not events:
                continue
            body = json.dumps({"events": events}).encode()
            resp = await client.post("/v1/events", data=body, headers=signed(body, source=SOURCE.id, secret=SECRET))
            answer = await resp.json()
            assert resp.status == 200, answer
            answers.append(answer)
    finally:
        await client.close()
    return answers


async def poll_all(settings: Settings, inputs: Inputs) -> tuple[list[Counter[str]], FakeSoda]:
    """The portal publishes and edits rows as the calls come and change; the poller reads them every five minutes of event time."""
    fake = FakeSoda(dataset="phx0-sp01")
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/resource/phx0-sp01.json"))
    config = FeedConfig(
        url=url, mapping=parse_mapping(SODA_MAPPING, "test_same_path.SODA_MAPPING"), name="phx-soda",
        since=soda_time(int(START.timestamp()) - 3600), lookback_s=0.02, page_size=10,
    )  # fmt: skip
    client = SodaClient(url)
    publisher = Publisher(settings.kafka_bootstrap, settings.topic_prefix)
    redis = aioredis.from_url(settings.redis_url)
    poller = Poller(config, client, publisher, RedisStore(redis, settings.redis_prefix, config.name))
    published: dict[str, dict[str, Any]] = {}
    totals = []
    try:
        await poller.start()
        for _, high in steps(inputs):
            for rec in inputs.timeline():
                if rec.received > high:
                    break
                row = soda_row(rec, high)
                if rec.id not in published:
                    fake.publish(row)
                elif row != published[rec.id]:
                    fake.edit(rec.id, **{k: v for k, v in row.items() if published[rec.id].get(k) != v})
                published[rec.id] = row
            totals.append(await poller.poll_once())
        fake.publish(soda_row(inputs.repeated, float("inf")))  # the portal publishes the call again, as a new row
        totals.append(await poller.poll_once())
    finally:
        await client.close()
        await publisher.stop()
        await redis.aclose()
        await server.close()
    return totals, fake


# -- reading what each door's worker made ------------------------------------------------------------


def read_all(settings: Settings, base: str) -> list[tuple[str, dict[str, Any]]]:
    """Every record of ``{prefix}.{base}`` from the beginning to the end it has now: (key, JSON value)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = topic_name(settings.topic_prefix, base)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"no topic {topic}"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic} not read to its end in 30 s"
            for msgs in consumer.poll(timeout_ms=500).values():
                out += [((m.key or b"").decode(), json.loads(m.value)) for m in msgs]
        return out
    finally:
        consumer.close()


def normal(event: dict[str, Any]) -> str:
    """An event without its ``source`` (each door names itself), times as epoch seconds."""
    out = {k: v for k, v in event.items() if k != "source"}
    for k in ("received_at", "at"):
        if k in out:
            out[k] = int(datetime.fromisoformat(out[k].replace("Z", "+00:00")).timestamp())
    return _text(out)


def redis_view(settings: Settings) -> dict[str, Any]:
    async def go():
        st = RedisState.from_settings(settings)
        try:
            rt: dict[str, dict[str, int]] = {}
            for hour in await st.client.zrange(st.keys.rt_hours, 0, -1):
                for fld, v in (await st.client.hgetall(st.keys.rt(int(hour)))).items():
                    rt[f"{hour}|{fld}"] = int(v)
            open_now = {cell: n for cell, n in (await st.open_incidents()).items() if n}
            return {"buckets": await st.bucket_counts(), "open": open_now, "rt": rt, "metrics": await st.metrics()}
        finally:
            await st.close()

    return asyncio.run(go())


@dataclass
class Door:
    settings: Settings
    calls: list[tuple[str, dict[str, Any]]]
    updates: list[tuple[str, dict[str, Any]]]
    letters: list[dict[str, Any]]
    redis: dict[str, Any]


@dataclass
class Run:
    inputs: Inputs
    doors: dict[str, Door]
    replay_out: str
    answers: list[dict[str, Any]]
    polls: list[Counter[str]]
    soda_requests: list[dict[str, str]]
    seconds: float


@pytest.fixture(scope="module")
def run(stack, tmp_path_factory) -> Run:
    """The three doors fed the same records at once, each counted by its own worker; what they wrote, read back."""
    began = time.monotonic()
    tmp = tmp_path_factory.mktemp("same-path")
    inputs = make_inputs()
    settings = {door: door_settings(door) for door in DOORS}
    workers = {door: WorkerProcess(settings[door], tmp, door).start() for door in DOORS}
    rp = None
    try:
        rp = replay(settings["file"], csv_file(inputs, tmp / "calls.csv"))

        async def live():
            return await asyncio.gather(push_all(settings["push"], inputs), poll_all(settings["poll"], inputs))

        answers, (polls, fake) = asyncio.run(live())
        out, err = rp.communicate(timeout=120)
        assert rp.returncode == 0, err
        for door in DOORS:
            wait_caught_up(settings[door], [workers[door]], 120)
    finally:
        if rp is not None and rp.poll() is None:
            rp.kill()
            rp.communicate()
        for w in workers.values():
            w.stop()
    doors = {
        door: Door(
            s,
            read_all(s, CALLS),
            read_all(s, INCIDENT_UPDATES),
            [v for _, v in read_all(s, DEADLETTER)],
            redis_view(s),
        )
        for door, s in settings.items()
    }
    return Run(inputs, doors, out, answers, polls, fake.requests, time.monotonic() - began)


# -- the tests -------------------------------------------------------------------------------------


def test_the_input_is_a_few_hundred_calls_of_every_simulated_category_with_status_times_and_open_ones(run):
    """The records are worth comparing: a few hundred calls, four categories, all four statuses, calls left open."""
    valid = run.inputs.valid
    assert 250 <= len(valid) <= 600, len(valid)
    assert {r.category for r in valid} >= {"EMS", "FIRE", "TRAFFIC"}
    assert {s for r in valid for s, _ in r.statuses} == set(STATUSES)
    assert 10 <= sum(1 for r in valid if r.when("closed") is None) < len(valid) // 2
    assert len({r.id for r in valid}) == len(valid)


def test_every_door_puts_the_same_calls_and_updates_on_its_topics_the_file_door_also_the_repeated_call(run):
    """Same call ids, times, categories, places, statuses and units on every door's topics (``source`` aside), keyed by call id.

    The file door alone passes the repeated call on, with its updates (its worker refuses the copy): that
    one copy is the only difference, and any record dropped, added or changed by any door fails here.
    """
    assert f"replayed {len(run.inputs.valid) + 1} calls" in run.replay_out  # the repeated line's call too
    once = expected_events(run.inputs.valid)
    twice = once + expected_events([run.inputs.repeated])
    differ = {}
    for door, d in run.doors.items():
        for key, event in d.calls + d.updates:
            assert key == event.get("id", event.get("call_id")), (door, key, event)
        for _, event in d.calls:
            assert set(event) == {"type", "v", "id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency", "source"}
        got = Counter(normal(e) for _, e in d.calls + d.updates)
        want = twice if door == "file" else once
        if got != want:
            differ[door] = {"extra": list((got - want).elements())[:3], "missing": list((want - got).elements())[:3]}
        assert {e["source"] for _, e in d.calls + d.updates} == {SOURCE_NAMES[door]}
    assert differ == {}


def test_each_refused_record_is_dead_lettered_once_with_the_same_reason_at_every_door(run):
    """impossible_timestamp and bad_field, once each, naming their record, from the door itself; the worker refuses only the file's copy."""
    origins = {"file": "replay:calls.csv", "push": "intake:phx-cad", "poll": "poll:phx-soda"}
    for door, d in run.doors.items():
        at_door = [letter for letter in d.letters if letter["topic"] == origins[door]]
        by_worker = [letter for letter in d.letters if letter["topic"] != origins[door]]
        assert sorted(letter["reason"] for letter in at_door) == ["bad_field", "impossible_timestamp"], (door, d.letters)
        for letter in at_door:
            rec = next(r for r in run.inputs.refused if r.refused == letter["reason"])
            assert rec.id.encode() in base64.b64decode(letter["original_b64"]), (door, letter)
        if door == "file":
            assert [(x["reason"], x["topic"]) for x in by_worker] == [("duplicate_id", topic_name(d.settings.topic_prefix, CALLS))]
            assert json.loads(base64.b64decode(by_worker[0]["original_b64"]))["id"] == run.inputs.repeated.id
        else:
            assert by_worker == [], (door, by_worker)


def test_the_workers_counts_are_identical_across_doors_and_equal_to_counts_computed_from_the_records(run):
    """Counts per minute, cell and category, open calls per cell, response times: the same behind every door, and as computed here."""
    want = expected_counts(run.inputs.valid, run.doors["file"].settings.resolutions)
    want_rt = {kind: {area: tuple(v) for area, v in areas.items()} for kind, areas in want["rt"].items()}
    differ = []
    for door, d in run.doors.items():
        view = d.redis
        differ += [(door, what) for what in ("buckets", "open") if view[what] != want[what]]
        if view["rt"] != run.doors["file"].redis["rt"]:
            differ.append((door, "rt"))  # the histogram bins too
        for kind in ("dispatch", "travel"):
            got: dict[str, tuple[int, int]] = {}
            for fld, n in view["rt"].items():
                _, k, area, stat = fld.split("|")
                if k == kind and stat in ("n", "sum"):
                    n_, sum_ = got.get(area, (0, 0))
                    got[area] = (n_ + n, sum_) if stat == "n" else (n_, sum_ + n)
            if got != want_rt[kind]:
                differ.append((door, kind))
        m = view["metrics"]
        copies = len(run.inputs.repeated.statuses) if door == "file" else 0
        events = (len(run.inputs.valid), sum(len(r.statuses) for r in run.inputs.valid) + copies)
        if (m.get("events_total|call"), m.get("events_total|update")) != events:
            differ.append((door, "events_total"))
        refused = {k: n for k, n in m.items() if k.startswith("deadletter_total")}
        if refused != ({"deadletter_total|duplicate_id": 1} if door == "file" else {}):
            differ.append((door, f"worker dead letters {refused}"))
    assert differ == []
    assert sum(want["buckets"].values()) == 2 * len(run.inputs.valid) * len(run.doors["file"].settings.resolutions)


def test_the_intake_answered_every_record_and_the_retried_batch_and_repeated_call_as_duplicates(run):
    """The answers: every valid record accepted once; the retried batch and the repeated call duplicate; the two bad ones refused."""
    accepted = sum(a["accepted"] for a in run.answers)
    events = sum(1 + len(r.statuses) for r in run.inputs.valid)
    assert accepted == events
    refused = [(r["id"], r["reason"]) for a in run.answers for r in a["records"] if r["outcome"] == "refused"]
    # the bad priority twice (its batch was sent again: refused again, dead-lettered once), the bad time once
    assert sorted(refused) == sorted([("PHX-BAD-TIME", "impossible_timestamp")] + [("PHX-BAD-PRIORITY", "bad_field")] * 2)
    retried = [a for a in run.answers[:-1] if a["duplicate"]]
    assert len(retried) == 1 and retried[0]["accepted"] == 0 and retried[0]["refused"] == 1
    assert run.answers[-1]["duplicate"] == 1 + len(run.inputs.repeated.statuses) and run.answers[-1]["accepted"] == 0


def test_the_poller_read_in_pages_sent_each_status_as_it_came_and_recognised_the_republished_row(run):
    """Rows were read in pages (offsets beyond 0), statuses edited in later were sent alone, the row published again was skipped."""
    totals = sum(run.polls, Counter())
    assert any(int(r["$offset"]) > 0 for r in run.soda_requests)
    assert totals["sent_calls"] == len(run.inputs.valid)
    assert totals["sent_updates"] == sum(len(r.statuses) for r in run.inputs.valid)
    assert totals["skipped|new_status"] > 0 and totals["skipped|edited"] == 0
    assert run.polls[-1]["sent_calls"] == run.polls[-1]["sent_updates"] == 0 and run.polls[-1]["skipped|already_sent"] >= 1
