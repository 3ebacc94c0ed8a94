"""The HTTP intake SIGKILLed during a stream of signed pushes and started again: every call on the calls topic once, counted once.

The session's single-node stack, a counting worker, and ``python -m streams.intake`` as its own process. A
sender pushes batches of new calls with the status updates of the batch before, one request at a time, as
docs/intake.md tells a CAD to: a request that is not answered (the connection refused or cut), or answered
``503`` or ``429``, is sent again with the same records (signed anew) after ``Retry-After`` seconds, until it is
answered ``200``. Mid-stream the intake is SIGKILLed and started again on the same port. At the end every
request was answered ``200``, each record of it ``accepted`` or ``duplicate``; the calls topic holds each call;
the worker counted each call once. The killed request's claims end within their lease
(``WF_INTAKE_CLAIM_LEASE_S``), no longer renewed by the dead intake: the sender is answered again within it, not
after a fixed minute. The time from the kill until the sender was answered again is printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import redis

from infra.stack import terminate
from streams.counting.keys import Keys
from streams.ingest.schema import format_time
from streams.intake.auth import sign
from streams.intake.core import IntakeKeys
from streams.topics import CALLS, INCIDENT_UPDATES
from tests.stackutil import ROOT, WorkerProcess, free_port, read_topic, wait_caught_up, worker_env

pytestmark = pytest.mark.stack

SOURCE, AGENCY, SECRET = "fault-cad", "fault-agency", "f" * 48
#: Requests the sender makes, and new calls in each (each request also carries the updates of the calls before).
REQUESTS, CALLS_PER_REQUEST = 60, 10
#: The request the intake is killed in.
KILL_AT = 20
#: The intake's claim lease (WF_INTAKE_CLAIM_LEASE_S, its default).
LEASE_S = 5.0


@dataclass
class IntakeProcess:
    """``python -m streams.intake`` on ``port``, logging to ``log_path``."""

    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> IntakeProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.intake"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"the intake exited with {self.proc.returncode}:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the intake did not answer /healthz within 30 s:\n{self.log()}"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@dataclass
class Sender:
    """A CAD pushing ``bodies`` in order, each sent again until answered 200 (see the module's text)."""

    port: int
    bodies: list[bytes]
    #: per request, the answers it got: (HTTP status or None when nothing came back, the JSON answer or {})
    answers: list[list[tuple[int | None, dict]]] = field(default_factory=list)
    #: the time each request was answered 200 (time.monotonic)
    done_at: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def start(self) -> Sender:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            for body in self.bodies:
                tries: list[tuple[int | None, dict]] = []
                self.answers.append(tries)
                deadline = time.monotonic() + 120
                while True:
                    assert time.monotonic() < deadline, f"request {len(self.answers) - 1} not answered 200 in 120 s: {tries}"
                    status, answer, wait = self._send(body)
                    tries.append((status, answer))
                    if status == 200:
                        self.done_at.append(time.monotonic())
                        break
                    time.sleep(wait)
        except BaseException as exc:  # noqa: BLE001 -- kept for the test to raise: a thread's exception is otherwise only printed
            self.error = exc

    def _send(self, body: bytes) -> tuple[int | None, dict, float]:
        stamp = str(int(time.time()))
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/events",
            data=body,
            headers={
                "X-Watchfloor-Source": SOURCE,
                "X-Watchfloor-Timestamp": stamp,
                "X-Watchfloor-Signature": sign(SECRET.encode(), stamp, body),
                "Content-Type": "application/json",
            },  # fmt: skip
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read()), 0.0
        except urllib.error.HTTPError as e:
            if e.code not in (429, 503):
                raise
            return e.code, json.loads(e.read() or b"{}"), float(e.headers.get("Retry-After") or 1)
        except OSError:  # refused while the intake is down, or cut by the kill
            return None, {}, 0.2


def _bodies(now: float) -> tuple[list[bytes], list[list[str]]]:
    bodies, ids = [], []
    for r in range(REQUESTS):
        cids = [f"K{r}-{i}" for i in range(CALLS_PER_REQUEST)]
        at = now - 3600 + r
        events: list[dict] = [
            {"type": "call", "v": 1, "id": c, "received_at": format_time(at), "category": "EMS", "call_type": "FALL",
             "priority": 2, "lat": 40.1 + i / 1000, "lng": -75.3, "agency": AGENCY}
            for i, c in enumerate(cids)
        ]  # fmt: skip
        for c in ids[-1] if ids else []:  # the calls of the request before, dispatched
            events.append({"type": "update", "v": 1, "call_id": c, "status": "dispatched", "at": format_time(at + 30), "unit": "M-1"})
        bodies.append(json.dumps({"events": events}).encode())
        ids.append(cids)
    return bodies, ids


def test_the_intake_sigkilled_mid_stream_and_restarted_takes_every_call_once_and_the_worker_counts_it_once(settings, tmp_path):
    s = replace(settings, roles=("count",), retention_s=400 * 86400)
    sources = tmp_path / "sources.toml"
    sources.write_text(f'[source.{SOURCE}]\nagency = "{AGENCY}"\nsecret_env = "WF_INTAKE_SECRET_FAULT"\nrate = 100000\nburst = 100000\n')
    port = free_port()
    env = worker_env(
        s, WF_INTAKE_PORT=str(port), WF_INTAKE_SOURCES=str(sources), WF_INTAKE_SECRET_FAULT=SECRET,
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    intake = IntakeProcess(env, port, tmp_path / "intake.log").start()
    worker = WorkerProcess(s, tmp_path).start()
    bodies, ids = _bodies(time.time())
    sender = Sender(port, bodies).start()
    try:
        # killed while request KILL_AT is in the intake: its records claimed, their answer not sent
        claim = IntakeKeys(s.redis_prefix).claim(SOURCE, "call", ids[KILL_AT][0])
        deadline = time.monotonic() + 60
        with redis.Redis.from_url(s.redis_url, decode_responses=True) as client:
            while client.get(claim) is None:
                assert time.monotonic() < deadline and sender.error is None, (sender.error, intake.log())
        t_kill = time.monotonic()
        intake.kill()
        # KILL_AT, unless this process was held up long enough for the intake to answer it first (a loaded machine)
        in_flight = len(sender.done_at)
        intake.start()
        restarted_s = time.monotonic() - t_kill
        sender.thread.join(180)
        assert sender.error is None, repr(sender.error)
        assert len(sender.done_at) == REQUESTS
        answered_s = sender.done_at[in_flight] - t_kill
        wait_caught_up(s, [worker], 120)

        # every record of every request answered accepted or duplicate in the end; none refused
        for r, tries in enumerate(sender.answers):
            final = tries[-1][1]
            assert final["refused"] == 0 and final["accepted"] + final["duplicate"] == len(final["records"]), (r, final)
        retried = {r: [st for st, _ in tries] for r, tries in enumerate(sender.answers) if len(tries) > 1}
        # the calls topic holds every call once, and the updates topic every update once: what the killed attempt
        # put on Kafka was found there by the retry, not written again
        on_topic = Counter(c["id"] for c in read_topic(s, CALLS, expect=REQUESTS * CALLS_PER_REQUEST, timeout_s=30))
        sent = [c for cids in ids for c in cids]
        twice = {c: n for c, n in on_topic.items() if n > 1}
        assert set(on_topic) == set(sent) and not twice, twice
        updates = Counter(u["call_id"] for u in read_topic(s, INCIDENT_UPDATES, expect=(REQUESTS - 1) * CALLS_PER_REQUEST, timeout_s=30))
        assert set(updates) == set(sent) - set(ids[-1]) and set(updates.values()) == {1}
        # the worker counted each call once
        with redis.Redis.from_url(s.redis_url, decode_responses=True) as client:
            metrics = {k: int(v) for k, v in client.hgetall(Keys(s.redis_prefix).metrics).items()}
        assert metrics["events_total|call"] == len(sent) and metrics["events_total|update"] == sum(updates.values())
        assert "deadletter_total|duplicate_id" not in metrics
        said = intake.log_path.read_text(errors="replace")
        resumed = said.count("record(s) of an unfinished attempt looked for on Kafka")
        # the killed request's claims ended within their lease (WF_INTAKE_CLAIM_LEASE_S, 5 s), not renewed by a dead intake
        assert answered_s < LEASE_S + 10, f"the sender was held up {answered_s:.1f} s after the kill"
        looked = said.split("looked for on Kafka")[-1].splitlines()[0] if resumed else "-"
        print(
            f"\n[intake] SIGKILL at request {in_flight} (mid-request: {in_flight == KILL_AT}): restarted in {restarted_s:.1f} s, "
            f"the sender answered again {answered_s:.1f} s after the kill; requests sent again: {retried}; "
            f"looked for on Kafka by {resumed} request(s):{looked}; {len(sent)} calls counted once"
        )
    finally:
        if sender.thread.is_alive():
            sender.bodies.clear()
        intake.stop()
        worker.stop()
