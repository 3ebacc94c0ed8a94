"""Worker processes started for tests and benchmarks: ``python -m streams.runtime.worker`` children with their own log.

An adapter (subprocesses, sockets, ``/proc``); the tests (``tests/stackutil.py``)
and the bench scripts use it. Every worker gets exactly the settings it is
given (the parent's ``WF_*`` variables are not inherited) and logs to its own
file, so a failure can show the worker's last lines.

Typical use::

    worker = WorkerProcess(settings, log_dir).start()
    try:
        worker.wait_for_log("Ready")
        ...  # produce records
        wait_caught_up(settings, [worker])
    finally:
        worker.stop()
"""

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

#: The project root: the workers run from it, with it on their PYTHONPATH.
ROOT = Path(__file__).resolve().parent.parent


class WorkerExited(RuntimeError):
    """A worker process exited while it was waited for; the message holds the end of its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS's choice; another process may take it before you bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a worker with exactly these settings (the parent's WF_* left out), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(
        WF_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        WF_KAFKA_REPLICATION_FACTOR=str(settings.kafka_replication_factor),
        WF_KAFKA_MIN_INSYNC_REPLICAS=str(settings.kafka_min_insync_replicas),
        WF_KAFKA_SESSION_TIMEOUT_S=str(settings.kafka_session_timeout_s),
        WF_REDIS_URL=settings.redis_url,
        WF_TOPIC_PREFIX=settings.topic_prefix,
        WF_REDIS_PREFIX=settings.redis_prefix,
        WF_APP_ID=settings.app_id,
        WF_PARTITIONS=str(settings.partitions),
        WF_BATCH_WITHIN_S=str(settings.batch_within_s),
        WF_BATCH_SIZE=str(settings.batch_size),
        WF_RETENTION_S=str(settings.retention_s),
        WF_ROLES=",".join(settings.roles),
        WF_DETECTION_PARTS=",".join(settings.detection_parts),
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
    if settings.redis_sentinels:
        env["WF_REDIS_SENTINELS"] = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        env["WF_REDIS_SENTINEL_SERVICE"] = settings.redis_sentinel_service
    if settings.jurisdiction is not None:
        j = settings.jurisdiction
        env["WF_JURISDICTION"] = f"{j.min_lat},{j.min_lng},{j.max_lat},{j.max_lng}"
    env.update(extra)
    return env


class WorkerProcess:
    """A ``python -m streams.runtime.worker`` subprocess with its own log file ``log_dir/name.log``.

    Nothing runs until :meth:`start`; call :meth:`stop` (or :meth:`kill`) when done. ``env`` adds variables
    to what :func:`worker_env` builds; the worker's web port is a free port chosen here (``web_port``).
    """

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker", env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = env or {}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.web_port = free_port()

    def start(self) -> WorkerProcess:
        """Start the worker (its output appended to ``log_path``); returns self."""
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
        """SIGKILL: no shutdown, no final commit. Call after :meth:`start`."""
        if self.proc is None:
            raise RuntimeError("the worker was never started: call start() first")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s (:func:`infra.stack.terminate`); nothing if it was never started."""
        if self.proc is not None:
            terminate(self.proc, 30)

    def alive(self) -> bool:
        """Whether the worker was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def wait_for_log(self, text: str, count: int = 1, timeout_s: float = 60) -> None:
        """Wait until the log holds ``text`` ``count`` times.

        Raises :class:`WorkerExited` at once if the worker exits, ``TimeoutError`` after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log_path.read_text(errors="replace").count(text) >= count:
                return
            if not self.alive():
                raise WorkerExited(self.log_tail())
            time.sleep(0.2)
        raise TimeoutError(f"{text!r} not logged {count} time(s) by {self.log_path.name} in {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the log ('' when there is none yet)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_caught_up(settings: Settings, workers: list[WorkerProcess], timeout_s: float = 240.0) -> None:
    """Wait until Redis has applied every record written to the ingest topics so far.

    Raises :class:`WorkerExited` as soon as one of ``workers`` has exited, and
    :class:`streams.runtime.progress.NotCaughtUp` (with the workers' last log lines) after ``timeout_s``.
    """

    def check() -> None:
        for w in workers:
            if not w.alive():
                code = None if w.proc is None else w.proc.returncode
                raise WorkerExited(f"worker exited early (code {code}):\n{w.log_tail()}")

    try:
        progress.wait_caught_up(settings, timeout_s, check)
    except progress.NotCaughtUp as exc:
        logs = "\n".join(w.log_tail() for w in workers)
        raise progress.NotCaughtUp(f"{exc}\n{logs}") from None


#: What a detection worker logs when it runs the detectors (made or restored); a standby logs neither.
DETECTORS_RUNNING = ("detectors start empty", "detectors restored")


def _last_running(w: WorkerProcess) -> str | None:
    """The time stamp (the log line's ``[YYYY-MM-DD HH:MM:SS,mmm]`` prefix) of ``w``'s last :data:`DETECTORS_RUNNING` line."""
    try:
        lines = w.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line[:25] for line in reversed(lines) if any(text in line for text in DETECTORS_RUNNING)), None)


def active_detector(workers: list[WorkerProcess], timeout_s: float = 60) -> WorkerProcess:
    """The detection worker of ``workers`` that runs the detectors now: of those that logged :data:`DETECTORS_RUNNING`
    (in their whole log: a long run scrolls it far back), the one that did last (after a takeover both have).

    Waits up to ``timeout_s`` for one to; ``AssertionError`` with the logs' ends when none does.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [(stamp, i) for i, w in enumerate(workers) if (stamp := _last_running(w)) is not None]
        if running:
            return workers[max(running)[1]]
        time.sleep(0.2)
    raise AssertionError("no detection worker started its detectors:\n" + "\n".join(w.log_tail() for w in workers))


def plan_processes(pid: int) -> list[int]:
    """The plan processes (``streams.counting.planproc``) among the children of process ``pid`` (Linux ``/proc``); [] if none."""
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
