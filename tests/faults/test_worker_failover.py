"""A detection worker killed mid-replay with a standby beside it (issue 24: SIGKILL of one worker).

One counting worker and two detection workers (``WF_ROLES=detect``, one consumer group) on the single-node stack.
Only the worker assigned the detector input runs the detectors: the standby neither ticks the detectors' clock nor
checkpoints (:class:`streams.detection.agent.DetectionAgent`). The active one is SIGKILLed during a replay of
simulated calls with updates and an injected surge; after the group's session timeout (``WF_KAFKA_SESSION_TIMEOUT_S``,
6 s here) the standby is given the input, restores the detectors from the last checkpoint and goes on. The end is the
broker faults' end: every count equal to the independent computation, every alert record once in the stream, each
alert's states in order: the standby feeds what the killed one fed since its checkpoint as its journal in Redis says
(each message at the wall time it was fed at), so it makes the same records again and the stream keeps one copy. The
time from the kill until the detectors are fed again is printed.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest
import redis

from infra.processes import active_detector
from streams.counting.keys import Keys
from tests.faults.test_broker_faults import _assert_nothing_lost_counted_twice_or_shown_twice, source  # noqa: F401  # source: a fixture
from tests.stackutil import WorkerProcess
from tests.streams.test_pipeline import finish, replay

pytestmark = pytest.mark.stack

#: records a second: about 65 s of calls and updates (about 52,000 records), the kill in its first half
RATE = 800
SESSION_TIMEOUT_S = 6.0


def _applied(settings) -> int:
    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as client:
        raw = client.hget(Keys(settings.redis_prefix).detector, "applied")
    return int(raw) if raw is not None else -1


def test_the_detection_worker_killed_mid_replay_is_replaced_by_its_standby_and_every_alert_is_shown_once(settings, source, tmp_path):  # noqa: F811
    s = replace(settings, retention_s=400 * 86400, batch_size=500, kafka_session_timeout_s=SESSION_TIMEOUT_S)
    counter = WorkerProcess(replace(s, roles=("count",)), tmp_path, "count").start()
    detectors = [WorkerProcess(replace(s, roles=("detect",)), tmp_path, name).start() for name in ("detect-a", "detect-b")]
    rp = replay(s, source, "watchfloor", 10**9, rate=RATE)
    try:
        deadline = time.monotonic() + 120
        while _applied(s) < 300:
            assert time.monotonic() < deadline, "the detectors were not fed"
            time.sleep(0.1)
        active = active_detector(detectors)
        standby = next(w for w in detectors if w is not active)
        assert "detectors start empty" not in standby.log_tail(400) and "detectors restored" not in standby.log_tail(400)
        at_kill, t_kill = _applied(s), time.monotonic()
        active.kill()
        while _applied(s) <= at_kill + 50:
            assert time.monotonic() - t_kill < 120, "the standby never took the detector input over:\n" + standby.log_tail()
            time.sleep(0.05)
        resumed_s = time.monotonic() - t_kill
        assert rp.poll() is None, "the kill must land mid-replay"
        assert "detectors restored from their checkpoint" in standby.log_tail(400)
        journal = re.search(r"journal in Redis holds (\d+) message\(s\) and (\d+) tick", standby.log_tail(400))
        assert journal, "the standby read the killed worker's journal back:\n" + standby.log_tail()
        out = finish(rp)
        assert "replayed" in out
        print(
            f"\n[fault] SIGKILL of the active detection worker at detector-input offset {at_kill}: fed again after "
            f"{resumed_s:.1f} s; its journal since the checkpoint fed again: {journal[1]} message(s), {journal[2]} tick(s)"
        )
        _assert_nothing_lost_counted_twice_or_shown_twice(s, source, [counter, standby])
        # the killed worker's session timeout bounds the takeover; the replay of what its last checkpoint lacked follows
        assert resumed_s < SESSION_TIMEOUT_S + 30
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate()
        for w in (counter, *detectors):
            w.stop()
