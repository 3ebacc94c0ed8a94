"""Helpers for tests that run the real worker process against the real stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from infra.stack import terminate
from streams.runtime import progress
from streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a worker with exactly these settings (the parent's WF_* left out), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(
        WF_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        WF_REDIS_URL=settings.redis_url,
        WF_TOPIC_PREFIX=settings.topic_prefix,
        WF_REDIS_PREFIX=settings.redis_prefix,
        WF_APP_ID=settings.app_id,
        WF_PARTITIONS=str(settings.partitions),
        WF_BATCH_WITHIN_S=str(settings.batch_within_s),
        WF_BATCH_SIZE=str(settings.batch_size),
        WF_RETENTION_S=str(settings.retention_s),
        WF_ROLES=",".join(settings.roles),
        WF_H3_RESOLUTION=str(settings.h3_resolution),
        WF_H3_PARENT_LEVELS=str(settings.h3_parent_levels),
        WF_ALLOWED_LATENESS_S=str(settings.allowed_lateness_s),
        WF_OPEN_TIMEOUT_S=str(settings.open_timeout_s),
        WF_DETECTOR_CHECKPOINT_S=str(settings.detector_checkpoint_s),
        WF_FAUST_FASTPATH="1" if settings.faust_fastpath else "0",
        WF_MAX_POLL_RECORDS=str(settings.max_poll_records),
        WF_COMMITTERS=str(settings.committers),
        PYTHONPATH=str(ROOT),
    )
    if settings.jurisdiction is not None:
        j = settings.jurisdiction
        env["WF_JURISDICTION"] = f"{j.min_lat},{j.min_lng},{j.max_lat},{j.max_lng}"
    env.update(extra)
    return env


class WorkerProcess:
    """A ``python -m streams.runtime.worker`` subprocess with its own log file."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker", env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = env or {}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.web_port = free_port()

    def start(self) -> WorkerProcess:
        env = worker_env(self.settings, WF_WEB_PORT=str(self.web_port), **self.env)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.runtime.worker", "-l", "info"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_log(self, text: str, count: int = 1, timeout_s: float = 60) -> None:
        """Wait until the log holds ``text`` ``count`` times; fail at once if the worker exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log_path.read_text(errors="replace").count(text) >= count:
                return
            assert self.alive(), self.log_tail()
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not logged {count} time(s) by {self.log_path.name} in {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_caught_up(settings: Settings, workers: list[WorkerProcess], timeout_s: float = 240.0) -> None:
    """Wait until Redis has applied every record written to the ingest topics; fail early if a worker died."""

    def check() -> None:
        for w in workers:
            if not w.alive():
                raise AssertionError(f"worker exited early (code {w.proc.returncode}):\n{w.log_tail()}")

    try:
        progress.wait_caught_up(settings, timeout_s, check)
    except progress.NotCaughtUp as exc:
        logs = "\n".join(w.log_tail() for w in workers)
        raise AssertionError(f"{exc}\n{logs}") from None


def read_topic(settings: Settings, base: str, expect: int = 1, timeout_s: float = 60.0) -> list[dict]:
    """The JSON records of ``{prefix}.{base}`` from the beginning: at least ``expect`` of them, or what came in ``timeout_s``."""
    import json

    from kafka import KafkaConsumer

    from streams.topics import topic_name

    consumer = KafkaConsumer(
        topic_name(settings.topic_prefix, base), bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest", consumer_timeout_ms=2000,
    )  # fmt: skip
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expect and time.monotonic() < deadline:
            got += [json.loads(msg.value) for msg in consumer]
    finally:
        consumer.close()
    return got


def plan_processes(pid: int) -> list[int]:
    """The worker's plan process (``streams.counting.planproc``), if it runs one."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for child in children:
        try:
            if b"streams.counting.planproc" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
        except OSError:
            continue
    return out
