"""The detection stage split over two detection workers (``WF_DETECTION_PARTS``) on the real stack.

One counting worker and two detect-only workers, one running ``surge,forecaster`` and the other ``feed,anomaly``
(:func:`streams.detection.shards.layout` for two), each in its own consumer group so that each reads every
detector-input message; beside them, under another prefix, the same file through one counting worker and one
detection worker running the whole stage. The alert records in the two Redis streams are the same (as a multiset of
their JSON: no field of an alert record depends on the wall clock), and neither stream holds a record twice.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import replace

import pytest
import redis

from infra import stack as infra_stack
from streams.counting.keys import Keys
from streams.runtime import progress
from streams.runtime.settings import Settings
from tests.faults.test_broker_faults import source  # noqa: F401  # a fixture: 28 simulated days with an injected surge
from tests.stackutil import WorkerProcess
from tests.streams.test_pipeline import finish, replay

pytestmark = pytest.mark.stack


def _records(settings: Settings) -> Counter[str]:
    """The alert records of the Redis stream, each as its JSON with sorted keys, counted."""
    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as client:
        entries = client.xrange(Keys(settings.redis_prefix).alerts)
    return Counter(json.dumps(json.loads(fields["alert"]), sort_keys=True) for _, fields in entries)


def _other_prefix(settings: Settings) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    infra_stack.create_topics(prefix, settings.partitions)
    return replace(settings, topic_prefix=prefix, redis_prefix=prefix, app_id=f"wf-test-{prefix}")


def test_two_detection_workers_each_running_a_share_of_the_stage_publish_the_alert_records_of_one_worker(
    settings,
    source,  # noqa: F811
    tmp_path,
):
    split = replace(settings, retention_s=400 * 86400, batch_size=500)
    whole = _other_prefix(split)
    detect = replace(split, roles=("detect",))
    workers = [
        WorkerProcess(replace(split, roles=("count",)), tmp_path, "split-count"),
        WorkerProcess(replace(detect, detection_parts=("surge", "forecaster")), tmp_path, "detect-surge_forecaster"),
        WorkerProcess(replace(detect, detection_parts=("feed", "anomaly")), tmp_path, "detect-feed_anomaly"),
        WorkerProcess(replace(whole, roles=("count",)), tmp_path, "whole-count"),
        WorkerProcess(replace(whole, roles=("detect",)), tmp_path, "whole-detect"),
    ]
    replays = []
    try:
        for w in workers:
            w.start()
        replays = [replay(s, source, "watchfloor", 10**9) for s in (split, whole)]
        for rp in replays:
            assert "replayed" in finish(rp)
        for s in (split, whole):
            check = lambda: [w.alive() or pytest.fail(f"{w.log_path.name} exited:\n{w.log_tail()}") for w in workers]  # noqa: E731
            progress.wait_caught_up(s, 180, check)
            progress.wait_detected(s, 180, check)
        with redis.Redis.from_url(split.redis_url, decode_responses=True) as client:
            applied = progress.detection_applied(client, Keys(split.redis_prefix))
        # each share kept its own checkpoint keys, and wait_detected waited for both
        assert set(applied) == {f"{split.redis_prefix}:detector:surge_forecaster", f"{split.redis_prefix}:detector:feed_anomaly"}
        assert "the detection parts surge_forecaster" in workers[1].log_tail(400)
        assert "the detection parts feed_anomaly" in workers[2].log_tail(400)
        got, want = _records(split), _records(whole)
        assert sum(want.values()) > 0, "the replay raised no alert: the comparison would prove nothing"
        assert {r for r, n in got.items() if n > 1} == set() and {r for r, n in want.items() if n > 1} == set()
        kinds = Counter(json.loads(r)["kind"] for r in got)
        assert got == want, f"split alert records differ from the single worker's: kinds split {kinds}, single " + str(
            Counter(json.loads(r)["kind"] for r in want)
        )
        print(f"\n[split] {sum(got.values())} alert records, by kind {dict(kinds)}, the same from two shares as from one worker")
    finally:
        for rp in replays:
            if rp.poll() is None:
                rp.kill()
                rp.communicate()
        for w in workers:
            w.stop()
