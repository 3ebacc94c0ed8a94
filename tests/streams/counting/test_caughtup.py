"""The calls partitions' status the counting agent reports to the detectors: caught up by the broker's end offsets."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from kafka import KafkaProducer

from streams.counting.caughtup import Published
from streams.ingest.schema import Call, Category
from streams.topics import CALLS, DETECTOR_INPUT, topic_name
from tests.stackutil import WorkerProcess, read_topic, wait_caught_up

# -- pure ---------------------------------------------------------------------------


def test_a_partition_is_caught_up_once_everything_up_to_the_brokers_end_is_published():
    """Behind while records up to the end offset wait; caught up once they are published, or when the log is empty."""
    pub = Published()
    assert pub.status({0: 0, 1: 5, 2: None}) == {0: True, 1: False, 2: False}  # empty; 5 to read; end not fetched yet
    pub.advance({1: 3})
    assert pub.status({1: 5}) == {1: False}
    assert pub.status({1: 5}, {1: 5}) == {1: True}  # counting a message's own records, before it is sent
    pub.advance({1: 5})
    assert pub.status({1: 5}) == {1: True} and pub.status({1: 6}) == {1: False}


def test_what_redis_counted_before_a_restart_counts_as_published():
    """Seeded from the applied offsets: a partition with nothing new since the last run is caught up at once."""
    pub = Published()
    pub.seed({0: 120, 3: 7})
    assert pub.status({0: 120, 3: 9}) == {0: True, 3: False}
    pub.advance({0: 100})  # an older batch does not move it back
    assert pub.done[0] == 120


def test_a_status_alone_is_due_only_when_a_partition_became_caught_up_unreported():
    """A partition falling behind needs no message; one catching up without a message of its own does."""
    pub = Published()
    ends = {0: 4, 1: 0}
    assert pub.news(ends)  # 1 is empty: caught up, never said
    pub.sent(pub.status(ends))
    assert not pub.news(ends)
    assert not pub.news({0: 4, 1: 2})  # 1 fell behind: nothing to say
    pub.sent({1: False})
    pub.advance({1: 2})
    assert pub.news({0: 4, 1: 2})  # its records were refused (no points): a status alone says it


# -- the counting worker on the real stack -----------------------------------------------


def _calls(n: int, start: float) -> list[Call]:
    return [Call(f"CU-{i}", start + i * 0.01, Category.EMS, "BENCH", None, 40.12, -75.34, "test", "test") for i in range(n)]


@pytest.mark.stack
def test_the_counting_worker_reports_every_calls_partition_and_each_batch_its_own(settings, tmp_path):
    """At start the worker says every (empty) calls partition is caught up; the message carrying a partition's calls says
    it is caught up after them, and the partitions it has not published are never said caught up before their calls."""
    s = replace(settings, roles=("count",))
    worker = WorkerProcess(s, tmp_path).start()
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    try:
        first = read_topic(s, DETECTOR_INPUT, expect=1, timeout_s=90)
        assert first and first[0]["points"] == [], f"a status alone comes first, found {first[:1]}"
        assert {p: bool(c) for p, c in first[0]["status"]} == {0: True, 1: True, 2: True, 3: True}
        topic = topic_name(s.topic_prefix, CALLS)
        calls = _calls(6, time.time())
        for i, call in enumerate(calls):
            # three on partition 1, three on partition 2
            producer.send(topic, key=call.id.encode(), value=json.dumps(call.to_json()).encode(), partition=1 + i // 3)
        producer.flush()
        wait_caught_up(s, [worker])
        messages = read_topic(s, DETECTOR_INPUT, expect=2, timeout_s=30)
    finally:
        producer.close()
        worker.stop()
    with_points = [m for m in messages if m["points"]]
    assert sorted((p, o) for m in with_points for p, o, *_ in m["points"]) == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    for m in messages:
        status = {p: bool(c) for p, c in m["status"]}
        assert set(status) == {0, 1, 2, 3}, "every message reports every calls partition the worker reads"
    # a producer's batch is appended at once: from the message carrying a partition's first call to the one carrying
    # its last, the partition is behind (its end is past what was published), never said caught up
    for part in (1, 2):
        carrying = [i for i, m in enumerate(messages) if any(p == part for p, *_ in m["points"])]
        assert not any(dict(m["status"])[part] for m in messages[carrying[0] : carrying[-1]]), f"partition {part} said caught up early"
    assert {p: bool(c) for p, c in messages[-1]["status"]} == {0: True, 1: True, 2: True, 3: True}, "all caught up in the end"
