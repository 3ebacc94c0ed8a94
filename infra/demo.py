"""The main job on one machine: stack up, worker, a replay of real data, and where to look.

    python -m infra.demo [PATH] [--profile P.toml] [--mapping M.toml | --format F] [--timezone ZONE]
                         [--speed max|N] [--since ISO --until ISO] [--cluster]
    python -m infra.demo stop

With no PATH it replays the week before and the day of the 2016-01-23 blizzard
from ``../shared/data``'s Montgomery County file when it is there; on a fresh
clone without it, a two-week file from the seeded simulator (with one injected
incident) is generated into ``.run/`` and replayed instead. The worker keeps
running afterwards so the counts can be explored; ``make down`` stops it all.

``--cluster`` (``make demo-cluster``) runs the same job on the cluster of
docs/cluster.md, all on this machine: three Kafka brokers (replication factor 3,
``min.insync.replicas`` 2), Redis with a replica and three Sentinels, two counting
workers and the detection worker, and two gateways that know each other
(``WF_GATEWAY_PEERS``: a dashboard moves to the other when its own is lost).

Each run starts from an empty Kafka and Redis, so that running the demo again
replays the same calls to the same result (a second replay of calls already
counted would be refused as duplicates, and there would be nothing new for the
detectors); ``--keep`` keeps what earlier runs stored, to add another file or
period to it.

The worker, the gateway and the status report run under the jurisdiction
profile ``--profile`` (``WF_PROFILE``; see docs/jurisdiction.md): its time zone,
boundary and named areas. The Montgomery file and the simulator (calibrated on
it) default to the shipped Montgomery County profile; another city's file needs
its own (``--profile``), and a mapping (``--mapping``) when no built-in format
reads it (see docs/sources.md).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from infra import stack

ROOT = stack.ROOT
RUN = stack.RUN
MONTGOMERY = ROOT.parent / "shared" / "data" / "montgomery-pa-911-2015-12-to-2016-08.csv"
GATEWAY_SECRET = RUN / "gateway.secret"
#: The shipped example profile: Montgomery County, PA (time zone, boundary, townships).
MONTGOMERY_PROFILE = ROOT / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Daemon:
    """A long-running demo process (``python -m module``), its pid file and log under ``.run/``."""

    name: str
    module: str
    args: tuple[str, ...] = ()

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return RUN / f"{self.name}.log"

    def alive(self) -> bool:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
            return self.module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False

    def start(self, env: dict[str, str] | None = None) -> None:
        if self.alive():
            _say(f"{self.name} already running (pid {self.pid_file.read_text().strip()})")
            return
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args], cwd=ROOT, env={**os.environ, **(env or {})},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        _say(f"{self.name} started (pid {proc.pid}, log {self.log})")

    def stop(self) -> None:
        if not self.alive():
            self.pid_file.unlink(missing_ok=True)
            return
        pid = int(self.pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            if not self.alive():
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        _say(f"{self.name} stopped (pid {pid})")


WORKER = Daemon("worker", "streams.runtime.worker", ("-l", "info"))
GATEWAY = Daemon("gateway", "gateway")
#: --cluster: two counting workers and the detection worker (one: docs/cluster.md), and a second gateway
COUNTERS = (
    Daemon("worker-count-1", "streams.runtime.worker", ("-l", "info")),
    Daemon("worker-count-2", "streams.runtime.worker", ("-l", "info")),
)
DETECTOR = Daemon("worker-detect", "streams.runtime.worker", ("-l", "info"))
GATEWAY_2 = Daemon("gateway-2", "gateway")
EVERY_DAEMON = (GATEWAY, GATEWAY_2, WORKER, *COUNTERS, DETECTOR)


def gateway_secret() -> str:
    """The demo gateway's signing secret: made once, kept in .run/ (mode 600), never committed."""
    if not GATEWAY_SECRET.exists():
        GATEWAY_SECRET.touch(mode=0o600)
        GATEWAY_SECRET.write_text(secrets.token_urlsafe(48))
    return GATEWAY_SECRET.read_text().strip()


def wait_for_gateway(port: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if not GATEWAY.alive():
            return False
        time.sleep(0.2)
    return False


def simulated_file() -> Path:
    out = RUN / "sim-14d.csv"
    if not out.exists():
        _say("no ../shared/data here: generating two weeks of simulated 911 calls (seed 7, one injected incident)")
        subprocess.run(
            [sys.executable, "-m", "streams.ingest.simulator", "--out", str(out), "--days", "14", "--seed", "7",
             "--start", "2024-03-01T00:00", "--inject", "2024-03-14T17:00,60,25,40.1224,-75.3383,1"],
            cwd=ROOT, check=True,
        )  # fmt: skip
    return out


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m infra.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("path", nargs="?", help="a 911 CSV to replay, or 'stop' to stop the worker")
    p.add_argument("--speed", default="max", help="replay speed: times real time, or max (default)")
    p.add_argument("--since", help="replay calls from this time (ISO 8601)")
    p.add_argument("--until", help="replay calls before this time (ISO 8601)")
    p.add_argument("--keep", action="store_true", help="keep the Kafka topics and Redis data of earlier runs (default: start empty)")
    p.add_argument(
        "--cluster", action="store_true",
        help="three Kafka brokers, Redis with a replica and Sentinels, two counting workers, two gateways (docs/cluster.md)",
    )  # fmt: skip
    p.add_argument(
        "--profile",
        help="the jurisdiction profile (TOML) the worker and the gateway run under (default: WF_PROFILE, else Montgomery "
        "County's for the Montgomery file and the simulator, else none: UTC and no place names)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--mapping", help="a source mapping (TOML) that reads PATH (see python -m streams.ingest.inspect PATH)")
    src.add_argument("--format", help="a built-in source format (default: detected from the header)")
    p.add_argument("--timezone", help="IANA zone of PATH's times that carry no UTC offset (default: the mapping's)")
    return p.parse_args(argv)


def _profile(args: argparse.Namespace) -> str | None:
    """The profile the demo runs under: ``--profile``, else ``WF_PROFILE``, else Montgomery's for its own data."""
    if args.profile:
        return str(Path(args.profile).resolve())
    if os.environ.get("WF_PROFILE"):
        return os.environ["WF_PROFILE"]
    return str(MONTGOMERY_PROFILE) if not args.path or Path(args.path).resolve() == MONTGOMERY.resolve() else None


def _profile_name(path: str) -> str:
    """The jurisdiction's name in the profile at ``path`` (checked when the worker started)."""
    from streams.jurisdiction import load_profile

    return load_profile(path).name


def _replay_command(args: argparse.Namespace) -> list[str]:
    """``python -m streams.ingest.replay`` of PATH, else the blizzard weeks of the Montgomery file, else a simulated file."""
    since, until = args.since, args.until
    if args.path:
        path = Path(args.path)
    elif MONTGOMERY.exists():
        path = MONTGOMERY
        # the week before the January 2016 blizzard and the blizzard day (local midnight to midnight)
        since, until = since or "2016-01-16T00:00-05:00", until or "2016-01-24T00:00-05:00"
    else:
        path = simulated_file()
    cmd = [sys.executable, "-m", "streams.ingest.replay", str(path), "--speed", args.speed]
    cmd += ["--since", since] if since else []
    cmd += ["--until", until] if until else []
    for option in ("mapping", "format", "timezone"):
        value = getattr(args, option)
        cmd += [f"--{option}", value] if value else []
    return cmd


def _wait_worker_done(workers: tuple[Daemon, ...] = (WORKER,)) -> bool:
    """Wait until the workers have counted everything replayed and the detectors have seen it; False (said why) if not."""
    from streams.runtime.progress import NotCaughtUp, wait_caught_up, wait_detected
    from streams.runtime.settings import load_settings

    def check() -> None:
        for worker in workers:
            if not worker.alive():
                raise NotCaughtUp(f"{worker.name} exited; see {worker.log}")

    settings = load_settings()
    try:
        wait_caught_up(settings, timeout_s=600, check=check)
        _say("counted; waiting for the detectors ...")
        wait_detected(settings, timeout_s=600, check=check)
    except NotCaughtUp as exc:
        _say(str(exc))
        return False
    return True


def _demo_tokens(secret: str, montgomery: bool = True, agency: str = "Montgomery County 911") -> tuple[str, str | None, str | None]:
    """Tokens (valid 12 h) of a dispatch supervisor of ``agency`` and, for Montgomery County (the partner zones and
    agreements the project ships are there), of a transit partner and a school partner; None for those elsewhere."""
    from gateway.tokens import issue

    sb = secret.encode()
    supervisor = issue(sb, subject="demo-supervisor", role="supervisor", agency=agency, ttl_s=12 * 3600)
    if not montgomery:
        return supervisor, None, None
    # partner tokens name their data-sharing agreement (infra/sharing/agreements.toml) and may narrow it to some zones
    stations = ("septa-norristown-tc", "septa-lansdale")
    transit = issue(sb, subject="demo-septa", role="transit", agency="SEPTA", zones=stations, ttl_s=12 * 3600, agreement="septa")
    school = issue(
        sb, subject="demo-school", role="school", agency="Montgomery County Intermediate Unit 1", zones=("school-north-penn-hs",),
        ttl_s=12 * 3600, agreement="mciu-1",
    )  # fmt: skip
    return supervisor, transit, school


def alert_lines(records: Iterable[Mapping[str, Any]], tz: ZoneInfo, *, limit: int = 10) -> list[str]:
    """The demo's list of the alerts a run raised: one line per alert that opened (its local time and its summary), at
    most ``limit`` of them and "and N more", then how many updates and closes followed.

    ``records`` are alert records as the worker wrote them (``Alert.to_json()``), in stream order; one older than the
    summary shows its reason.

    >>> opened = {"id": "a", "state": "open", "at": 1453510560.0, "summary": "Traffic calls across X: 9 in 15 minutes"}
    >>> for line in alert_lines([opened, {**opened, "state": "update"}, {**opened, "state": "closed"}], ZoneInfo("America/New_York")):
    ...     print(line)
    Alerts raised: 1 (1 update and 1 close followed)
      Fri 2016-01-22 19:56 EST  Traffic calls across X: 9 in 15 minutes
    >>> alert_lines([], ZoneInfo("UTC"))
    ['Alerts raised: none (the detectors saw nothing unusual in this replay)']
    """
    records = list(records)
    opened = [r for r in records if r.get("state") == "open"]
    updates = sum(1 for r in records if r.get("state") == "update")
    closes = sum(1 for r in records if r.get("state") == "closed")
    if not opened and not updates and not closes:
        return ["Alerts raised: none (the detectors saw nothing unusual in this replay)"]
    followed = f"{_count(updates, 'update')} and {_count(closes, 'close')} followed"
    lines = [f"Alerts raised: {len(opened)} ({followed})"]
    for r in opened[:limit]:
        at = r.get("at")
        when = datetime.fromtimestamp(at, tz).strftime("%a %Y-%m-%d %H:%M %Z") if isinstance(at, int | float) else "?"
        lines.append(f"  {when}  {r.get('summary') or r.get('reason') or r.get('id', '?')}")
    if len(opened) > limit:
        lines.append(f"  and {len(opened) - limit} more (all of them: on the supervisor's dashboard, or redis-cli XRANGE)")
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _print_alerts() -> None:
    """After the status report: the alerts the run raised, read from the Redis stream the gateway reads (``{prefix}:alerts``)."""
    import json

    import redis

    from streams.counting.keys import Keys
    from streams.runtime.redisconn import sync_client_for
    from streams.runtime.settings import load_jurisdiction, load_settings

    settings = load_settings()
    key = Keys(settings.redis_prefix).alerts
    records: list[dict[str, Any]] = []
    try:
        with sync_client_for(settings, decode_responses=True) as client:
            last = "-"
            while True:
                page = client.xrange(key, min=last, max="+", count=1000)
                records += [json.loads(fields["alert"]) for _, fields in page if "alert" in fields]
                if len(page) < 1000:
                    break
                last = f"({page[-1][0]}"
    except (redis.RedisError, ValueError) as exc:
        _say(f"the alerts could not be read from Redis {key} ({exc}); see the worker's log {WORKER.log}")
        return
    print("\n" + "\n".join(alert_lines(records, load_jurisdiction(settings).tz)))


def _where_to_look(port: str, web: str) -> str:
    """The demo's closing table: where to look, and what each place shows (aligned, whatever the paths' lengths)."""
    rows = [
        ("python -m streams.runtime.status", "the counts above, again (--json for a machine copy)"),
        ("redis-cli XRANGE wf:alerts - +", "every alert record, with its explanation"),
        (f"http://127.0.0.1:{web}/metrics", "the worker's counters, Prometheus format"),
        (f"http://127.0.0.1:{port}/metrics", "the gateway's clients, deliveries and refusals (Authorization: Bearer <supervisor token>)"),
        ("python -m gateway.agreements summary", "what each partner agency receives, in plain language"),
        (str(WORKER.log), "the worker's log (alerts and dead letters are logged with their reason)"),
        ("redis-cli --scan --pattern 'wf:*'", "the raw keys (layout in streams/counting/keys.py)"),
        ("python -m streams.ingest.replay --help", "replay another file or another period"),
        ("make down", "stop the gateway, the worker, Kafka and Redis"),
    ]
    width = max(len(where) for where, _ in rows)
    return "Where to look:\n" + "\n".join(f"  {where:<{width}}  {what}" for where, what in rows)


def _print_where_to_look(port: str, supervisor: str, transit: str | None, school: str | None, cluster: bool = False) -> None:
    web = os.environ.get("WF_WEB_PORT", "6066")
    if cluster:
        print(
            f"""
The cluster (docs/cluster.md): brokers {os.environ["WF_KAFKA_BOOTSTRAP"]}, Redis Sentinels {os.environ["WF_REDIS_SENTINELS"]};
counting workers (logs {COUNTERS[0].log}, {COUNTERS[1].log}), the detection worker ({DETECTOR.log}),
gateways on :{port} and :{int(port) + 1}. Stop any one of them (python -m infra.stack down --only kafka-2, or kill a
worker's or a gateway's pid from {RUN}/*.pid) and the dashboards and counts go on."""
        )
    if transit is not None and school is not None:
        partners = f"""  transit partner       http://127.0.0.1:{port}/#token={transit}
  school partner        http://127.0.0.1:{port}/#token={school}
"""
    else:
        partners = "  partners              the shipped partner zones are Montgomery County's: add yours (docs/gateway.md)\n"
    print(
        f"""
Dashboards (tokens valid 12 h; the token is in the URL fragment, never sent to a server log):
  dispatch supervisor   http://127.0.0.1:{port}/#token={supervisor}
{partners}  more tokens:          WF_GATEWAY_SECRET=$(cat {GATEWAY_SECRET}) python -m gateway.tokens issue --help

{_where_to_look(port, web)}
"""
    )


def cluster_env() -> dict[str, str]:
    """What every process of the cluster is given: the three brokers, the Sentinels, the topics' replication."""
    from infra import redisha

    return {
        "WF_KAFKA_BOOTSTRAP": stack.bootstrap(True),
        "WF_REDIS_SENTINELS": redisha.sentinels_setting(stack.redis_port()),
        "WF_KAFKA_REPLICATION_FACTOR": "3",
        "WF_KAFKA_MIN_INSYNC_REPLICAS": "2",
    }


def _start_cluster_daemons(secret: str, port: int) -> tuple[Daemon, ...]:
    """Two counting workers, the detection worker and two gateways that list each other; the workers started."""
    web = int(os.environ.get("WF_WEB_PORT", "6066"))
    for i, worker in enumerate(COUNTERS):
        worker.start({"WF_ROLES": "count", "WF_WEB_PORT": str(web + i)})
    DETECTOR.start({"WF_ROLES": "detect", "WF_WEB_PORT": str(web + 2)})
    peers = f"http://127.0.0.1:{port},http://127.0.0.1:{port + 1}"
    for gateway, p in ((GATEWAY, port), (GATEWAY_2, port + 1)):
        gateway.start({"WF_GATEWAY_SECRET": secret, "WF_GATEWAY_PORT": str(p), "WF_GATEWAY_PEERS": peers})
    return (*COUNTERS, DETECTOR)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.path == "stop":
        for daemon in EVERY_DAEMON:
            daemon.stop()
        return 0
    if not args.keep:
        _say("starting from an empty Kafka and Redis (--keep keeps what earlier runs stored)")
        for daemon in EVERY_DAEMON:
            daemon.stop()
    try:
        if args.cluster and not args.keep:
            stack.down()  # a single-node stack left running would hold the ports
        stack.up(fresh=not args.keep, cluster=args.cluster)
    except stack.StackError as exc:
        _say(f"error: {exc}")
        return 1
    if args.cluster:
        os.environ.update(cluster_env())
    profile = _profile(args)
    if profile is not None:
        if not Path(profile).is_file():
            _say(f"error: the jurisdiction profile {profile} does not exist; pass --profile with a profile TOML (docs/jurisdiction.md)")
            return 2
        os.environ["WF_PROFILE"] = profile  # the worker, the gateway and the status report read it
        _say(f"jurisdiction profile: {profile}")
    else:
        _say("no jurisdiction profile (--profile): times in UTC, places as H3 cells")
    secret = gateway_secret()
    port = os.environ.get("WF_GATEWAY_PORT", "8765")
    if args.cluster:
        workers = _start_cluster_daemons(secret, int(port))
    else:
        workers = (WORKER,)
        WORKER.start()
        GATEWAY.start({"WF_GATEWAY_SECRET": secret, "WF_GATEWAY_PORT": port})
    cmd = _replay_command(args)
    _say("replaying: " + " ".join(cmd[2:]))
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        return 1
    _say("waiting for the worker to count everything ...")
    if not _wait_worker_done(workers):
        return 1
    subprocess.run([sys.executable, "-m", "streams.runtime.status"], cwd=ROOT)
    _print_alerts()
    if not wait_for_gateway(port):
        _say(f"the gateway did not start; see {GATEWAY.log}")
        return 1
    montgomery = profile is not None and Path(profile).resolve() == MONTGOMERY_PROFILE.resolve()
    agency = "Montgomery County 911" if montgomery else f"{_profile_name(profile)} 911" if profile is not None else "Dispatch"
    _print_where_to_look(port, *_demo_tokens(secret, montgomery, agency), cluster=args.cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
