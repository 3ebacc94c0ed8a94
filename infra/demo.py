"""The main job on one machine: stack up, worker, a replay of real data, and where to look.

    python -m infra.demo [PATH] [--speed max|N] [--since ISO --until ISO]
    python -m infra.demo stop

With no PATH it replays the week before and the day of the 2016-01-23 blizzard
from ``../shared/data``'s Montgomery County file when it is there; on a fresh
clone without it, a two-week file from the seeded simulator (with one injected
incident) is generated into ``.run/`` and replayed instead. The worker keeps
running afterwards so the counts can be explored; ``make down`` stops it all.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra import stack

ROOT = stack.ROOT
RUN = stack.RUN
MONTGOMERY = ROOT.parent / "shared" / "data" / "montgomery-pa-911-2015-12-to-2016-08.csv"
WORKER_PID = RUN / "worker.pid"
WORKER_LOG = RUN / "worker.log"


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def worker_alive() -> bool:
    try:
        pid = int(WORKER_PID.read_text())
        os.kill(pid, 0)
        return b"streams.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def start_worker() -> None:
    if worker_alive():
        _say(f"worker already running (pid {WORKER_PID.read_text().strip()})")
        return
    with open(WORKER_LOG, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.worker", "-l", "info"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    WORKER_PID.write_text(str(proc.pid))
    _say(f"worker started (pid {proc.pid}, log {WORKER_LOG})")


def stop_worker() -> None:
    if not worker_alive():
        WORKER_PID.unlink(missing_ok=True)
        return
    pid = int(WORKER_PID.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(150):
        if not worker_alive():
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    WORKER_PID.unlink(missing_ok=True)
    _say(f"worker stopped (pid {pid})")


def simulated_file() -> Path:
    out = RUN / "sim-14d.csv"
    if not out.exists():
        _say("no ../shared/data here: generating two weeks of simulated 911 calls (seed 7, one injected incident)")
        subprocess.run(
            [sys.executable, "-m", "streams.simulator", "--out", str(out), "--days", "14", "--seed", "7",
             "--start", "2024-03-01T00:00", "--inject", "2024-03-14T17:00,60,25,40.1224,-75.3383,1"],
            cwd=ROOT, check=True,
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("path", nargs="?", help="a 911 CSV to replay, or 'stop' to stop the worker")
    p.add_argument("--speed", default="max", help="replay speed: times real time, or max (default)")
    p.add_argument("--since", help="replay calls from this time (ISO 8601)")
    p.add_argument("--until", help="replay calls before this time (ISO 8601)")
    args = p.parse_args(argv)
    if args.path == "stop":
        stop_worker()
        return 0
    try:
        stack.up()
    except stack.StackError as exc:
        _say(f"error: {exc}")
        return 1
    start_worker()
    since, until = args.since, args.until
    if args.path:
        path = Path(args.path)
    elif MONTGOMERY.exists():
        path = MONTGOMERY
        # the week before the January 2016 blizzard and the blizzard day (local midnight to midnight)
        since, until = since or "2016-01-16T00:00-05:00", until or "2016-01-24T00:00-05:00"
    else:
        path = simulated_file()
    cmd = [sys.executable, "-m", "streams.replay", str(path), "--speed", args.speed]
    cmd += ["--since", since] if since else []
    cmd += ["--until", until] if until else []
    _say("replaying: " + " ".join(cmd[2:]))
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        return 1
    _say("waiting for the worker to count everything ...")
    from streams.progress import NotCaughtUp, wait_caught_up
    from streams.settings import load_settings

    def check() -> None:
        if not worker_alive():
            raise NotCaughtUp(f"the worker exited; see {WORKER_LOG}")

    try:
        wait_caught_up(load_settings(), timeout_s=600, check=check)
    except NotCaughtUp as exc:
        _say(str(exc))
        return 1
    subprocess.run([sys.executable, "-m", "streams.status"], cwd=ROOT)
    web = os.environ.get("WF_WEB_PORT", "6066")
    print(
        f"""
Where to look:
  python -m streams.status            the counts above, again (--json for a machine copy)
  http://127.0.0.1:{web}/metrics       the worker's counters, Prometheus format
  {WORKER_LOG}   the worker's log (dead letters are logged with their reason)
  redis-cli --scan --pattern 'wf:*'   the raw keys (layout in streams/keys.py)
  python -m streams.replay --help     replay another file or another period
  make down                           stop the worker, Kafka and Redis
"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
