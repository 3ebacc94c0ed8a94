"""Redis with automatic failover on this machine: a primary, one replica and three Sentinels.

    python -m infra.redisha up        # start what is not running, wait until the Sentinels agree and the replica is in sync
    python -m infra.redisha status    # each process (by pid file), its role, and the primary the Sentinels name
    python -m infra.redisha down      # stop exactly the processes this script started

Ports, from the base ``WF_REDIS_PORT`` (6379 by default): the two Redis nodes
on ``base`` (the first primary) and ``base + 1`` (its replica); the three
Sentinels on ``base + 20000``, ``base + 20001``, ``base + 20002`` (26379,
26380, 26381 by default) or, when those would reach Linux's ephemeral port
range (32768 and up, where the kernel picks the local ports of outgoing
connections, so a client's socket can hold one), on ``base + 3``,
``base + 4``, ``base + 5`` (:func:`sentinel_ports`). After a
failover the replica is the primary: ask :func:`primary` (the Sentinels'
answer), never assume the base port.

The Sentinels monitor the primary under the service name
``WF_REDIS_SENTINEL_SERVICE`` (``watchfloor`` by default) with a quorum of
:data:`QUORUM`, call it down after :data:`DOWN_AFTER_MS` without an answer and
give a failover :data:`FAILOVER_TIMEOUT_MS`. They are Debian's
``redis-sentinel`` when it is installed, else ``redis-server <conf> --sentinel``
(the same program; Debian's ``redis-server`` package has no ``redis-sentinel``
command). The Redis nodes keep no persistence, like ``infra/stack.py``'s one
Redis: the counts are a cache that the worker rebuilds from Kafka's log when
they are lost (a failover to a replica that lacked the last writes included).

A node that is started again while the others run (``up`` after one was
killed) starts as a replica of the primary the Sentinels name, so that two
primaries never run at once; with nothing running, ``up`` starts afresh (new
Sentinel configurations: the first primary on ``base`` again).

Runtime files (configurations, pid files, logs, the Sentinels' state) live in
``$WF_RUN_DIR/redis-ha/`` (``.run/redis-ha/`` by default). Only the standard
library is used, like ``infra/stack.py``, which calls :func:`start`,
:func:`stop`, :func:`running`, :func:`sentinels` and :func:`primary` for
``up --cluster``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: Sentinels that must agree the primary is down before a failover starts (of three).
QUORUM = 2
#: Milliseconds without a valid answer after which a Sentinel holds the primary down.
DOWN_AFTER_MS = 2000
#: Milliseconds a failover may take before another Sentinel tries again.
FAILOVER_TIMEOUT_MS = 10000
DEFAULT_SERVICE = "watchfloor"
#: Offset of the first Sentinel port from the base port, when the three stay below :data:`EPHEMERAL_FROM`
#: (else :data:`NEAR_OFFSET`).
SENTINEL_OFFSET = 20000
NEAR_OFFSET = 3
#: The first port of Linux's default ephemeral range (``net.ipv4.ip_local_port_range``): the kernel gives these to
#: outgoing connections, so a Sentinel listening there may find its port taken by any client on the machine.
EPHEMERAL_FROM = 32768
SUBDIR = "redis-ha"


class HaError(RuntimeError):
    """The HA Redis could not be brought up or asked; the message says what to do."""


class RespError(RuntimeError):
    """Redis answered a command with an error reply."""


def _say(msg: str) -> None:
    print(f"[redisha] {msg}", file=sys.stderr, flush=True)


# -- the layout ---------------------------------------------------------------------


def redis_ports(base_port: int) -> tuple[int, int]:
    """The two Redis nodes: the first primary and its replica.

    >>> redis_ports(6379)
    (6379, 6380)
    """
    return base_port, base_port + 1


def sentinel_ports(base_port: int) -> tuple[int, int, int]:
    """The three Sentinels: ``base + 20000..20002``, or ``base + 3..5`` when those would reach the ephemeral range.

    >>> sentinel_ports(6379)
    (26379, 26380, 26381)
    >>> sentinel_ports(12765)
    (32765, 32766, 32767)
    >>> sentinel_ports(16379)
    (16382, 16383, 16384)
    >>> sentinel_ports(46479)
    (46482, 46483, 46484)
    """
    first = base_port + SENTINEL_OFFSET
    if first + 2 >= EPHEMERAL_FROM:
        first = base_port + NEAR_OFFSET
    return first, first + 1, first + 2


def sentinels(base_port: int) -> list[tuple[str, int]]:
    """``(host, port)`` of the three Sentinels, as ``WF_REDIS_SENTINELS`` lists them.

    >>> sentinels(6379)
    [('127.0.0.1', 26379), ('127.0.0.1', 26380), ('127.0.0.1', 26381)]
    """
    return [(HOST, p) for p in sentinel_ports(base_port)]


def sentinels_setting(base_port: int) -> str:
    """The value of ``WF_REDIS_SENTINELS`` for this layout.

    >>> sentinels_setting(6379)
    '127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381'
    """
    return ",".join(f"{h}:{p}" for h, p in sentinels(base_port))


def service_name() -> str:
    return os.environ.get("WF_REDIS_SENTINEL_SERVICE") or DEFAULT_SERVICE


def _folder(run_dir: Path) -> Path:
    return Path(run_dir) / SUBDIR


def _name(kind: str, port: int) -> str:
    return f"{kind}-{port}"


def _processes(base_port: int) -> list[tuple[str, int]]:
    """``(name, port)`` of every process, Sentinels first (the order they are stopped in)."""
    return [(_name("sentinel", p), p) for p in sentinel_ports(base_port)] + [(_name("redis", p), p) for p in redis_ports(base_port)]


# -- a little RESP client (the standard library only) ---------------------------------


def command(port: int, *args: str | int, host: str = HOST, timeout_s: float = 2.0) -> object:
    """Send one command to the Redis or Sentinel on ``port`` and return its reply (``str``, ``int``, ``list``, None).

    Raises :class:`RespError` on an error reply and ``OSError`` when nothing answers.
    """
    parts = [str(a).encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(request)
        with sock.makefile("rb") as stream:
            return _reply(stream)


def _reply(stream: BinaryIO) -> object:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("the connection closed in the middle of a reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = stream.read(n + 2)
        return data[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_reply(stream) for _ in range(n)]
    raise OSError(f"not a RESP reply: {line[:40]!r}")


def info(port: int, section: str = "replication") -> dict[str, str]:
    """``INFO section`` of the node on ``port`` as a dict."""
    text = command(port, "INFO", section)
    assert isinstance(text, str)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def _pairs(reply: object) -> dict[str, str]:
    flat = reply if isinstance(reply, list) else []
    return {str(k): str(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


def primary(base_port: int, service: str | None = None) -> tuple[str, int] | None:
    """The primary as the Sentinels name it (the answer most of those answering give), None when none answers."""
    answers: dict[tuple[str, int], int] = {}
    for _, port in sentinels(base_port):
        try:
            got = command(port, "SENTINEL", "get-master-addr-by-name", service or service_name(), timeout_s=1.0)
        except (OSError, RespError):
            continue
        if isinstance(got, list) and len(got) == 2:
            addr = (str(got[0]), int(str(got[1])))
            answers[addr] = answers.get(addr, 0) + 1
    return max(answers, key=lambda a: answers[a]) if answers else None


def primary_port(base_port: int, service: str | None = None) -> int | None:
    """The port of :func:`primary`."""
    found = primary(base_port, service)
    return None if found is None else found[1]


# -- processes ----------------------------------------------------------------------


def _pidfile(run_dir: Path, name: str) -> Path:
    return _folder(run_dir) / f"{name}.pid"


def pid(run_dir: Path, name: str) -> int | None:
    """The pid of this script's process ``name`` (``redis-46479``, ``sentinel-46482``) when it runs, else None."""
    pidfile = _pidfile(run_dir, name)
    try:
        number = int(pidfile.read_text())
        os.kill(number, 0)
        cmdline = Path(f"/proc/{number}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # a zombie or a recycled pid is not ours: a redis process with our port in its command line or title
    port = name.rsplit("-", 1)[1].encode()
    return number if b"redis" in cmdline and port in cmdline else None


def redis_pid(run_dir: Path, port: int) -> int | None:
    """The pid of the Redis node on ``port`` when this script started it and it runs (for fault tests: SIGKILL the primary)."""
    return pid(run_dir, _name("redis", port))


def _redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise HaError(
            "redis-server is not installed (Debian/Ubuntu: sudo apt-get install -y redis-server; "
            "python -m infra.stack up installs it when run as root)"
        )
    return exe


def _sentinel_command(conf: Path, options: list[str]) -> list[str]:
    exe = shutil.which("redis-sentinel")
    if exe is not None:
        return [exe, str(conf), *options]
    return [_redis_server(), str(conf), "--sentinel", *options]


def _port_taken(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


def _daemon_options(run_dir: Path, name: str) -> list[str]:
    """Redis daemonizes itself and writes its pid file: no child of the caller (a test) is left to reap."""
    folder = _folder(run_dir)
    return ["--daemonize", "yes", "--pidfile", str(folder / f"{name}.pid"), "--logfile", str(folder / f"{name}.log")]


def _spawn(run_dir: Path, name: str, cmd: list[str], timeout_s: float = 10.0) -> int:
    """Run ``cmd`` (a Redis that daemonizes, see :func:`_daemon_options`); its pid once its pid file names it.

    A port in the kernel's ephemeral range (32768-60999 on Linux; the test ports are) may be held for a
    moment as the local end of some client's connection: a start that fails with "Failed listening" is
    tried again until ``timeout_s``.
    """
    pidfile = _pidfile(run_dir, name)
    log = pidfile.with_suffix(".log")
    deadline = time.monotonic() + timeout_s
    while True:
        pidfile.unlink(missing_ok=True)
        written = log.stat().st_size if log.exists() else 0
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout_s)
        if done.returncode != 0:
            raise HaError(f"{name} did not start (exit {done.returncode}): {(done.stdout + done.stderr)[-1000:]}; see {log}")
        while (number := pid(run_dir, name)) is None:
            said = ""
            if log.exists():
                with open(log, "rb") as f:
                    f.seek(written)
                    said = f.read().decode(errors="replace")
            if "Failed listening" in said and time.monotonic() < deadline:
                break  # the port is held for now: try again
            if time.monotonic() > deadline:
                last = said.strip().splitlines()[-1:]
                raise HaError(f"{name} did not start within {timeout_s:.0f} s: {' '.join(last) or 'nothing logged'} (see {log})")
            time.sleep(0.05)
        else:
            return number
        time.sleep(0.5)


def _start_redis(run_dir: Path, port: int, replica_of: tuple[str, int] | None) -> None:
    data = _folder(run_dir) / _name("redis", port)
    data.mkdir(parents=True, exist_ok=True)
    # A cache, as infra/stack.py's Redis: no persistence. Diskless replication with no delay: a replica
    # (re)joining is in sync in milliseconds, not after the 5 s Redis 7 waits for more replicas by default.
    cmd = [_redis_server(), "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
           "--dir", str(data), "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
           *_daemon_options(run_dir, _name("redis", port))]  # fmt: skip
    if replica_of is not None:
        cmd += ["--replicaof", replica_of[0], str(replica_of[1])]
    number = _spawn(run_dir, _name("redis", port), cmd)
    role = f"replica of {replica_of[0]}:{replica_of[1]}" if replica_of else "primary"
    _say(f"redis {role} starting on {HOST}:{port} (pid {number})")


def sentinel_config(port: int, primary_addr: tuple[str, int], service: str, folder: Path) -> str:
    """A Sentinel's configuration file (the Sentinel rewrites it with what it learns).

    >>> print(sentinel_config(26379, ("127.0.0.1", 6379), "watchfloor", Path("/run/x")))  # doctest: +NORMALIZE_WHITESPACE
    port 26379
    bind 127.0.0.1
    dir /run/x
    sentinel monitor watchfloor 127.0.0.1 6379 2
    sentinel down-after-milliseconds watchfloor 2000
    sentinel failover-timeout watchfloor 10000
    sentinel parallel-syncs watchfloor 1
    """
    return "\n".join(
        [
            f"port {port}",
            f"bind {HOST}",
            f"dir {folder}",
            f"sentinel monitor {service} {primary_addr[0]} {primary_addr[1]} {QUORUM}",
            f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {service} 1",
            "",
        ]
    )


def _start_sentinel(run_dir: Path, port: int, primary_addr: tuple[str, int], service: str, fresh: bool) -> None:
    folder = _folder(run_dir) / _name("sentinel", port)
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "sentinel.conf"
    if fresh or not conf.exists():
        conf.write_text(sentinel_config(port, primary_addr, service, folder))
    name = _name("sentinel", port)
    number = _spawn(run_dir, name, _sentinel_command(conf, _daemon_options(run_dir, name)))
    _say(f"sentinel starting on {HOST}:{port} (pid {number}), monitoring {service!r}")


def _layout_file(run_dir: Path) -> Path:
    return _folder(run_dir) / "layout.json"


def _layout(run_dir: Path) -> tuple[int, str] | None:
    try:
        saved = json.loads(_layout_file(run_dir).read_text())
        return int(saved["base_port"]), str(saved["service"])
    except (OSError, ValueError, KeyError):
        return None


def start(run_dir: Path, base_port: int, service: str | None = None, timeout_s: float = 60.0) -> None:
    """Start what of the primary, replica and three Sentinels is not running; return once all are ready.

    Ready: every Sentinel names the same primary, knows the other two and a
    replica, and the replica's link to the primary is up and in sync. Raises
    :class:`HaError` when a port is held by a process this script did not start,
    or on a time-out (naming what was not ready).
    """
    service = service or service_name()
    folder = _folder(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    saved = _layout(run_dir)
    live = {name for name, _ in _processes(base_port) if pid(run_dir, name) is not None}
    if saved is not None and saved != (base_port, service) and any(pid(run_dir, n) for n, _ in _processes(saved[0])):
        raise HaError(
            f"{folder} runs an HA Redis on base port {saved[0]} (service {saved[1]!r}); stop it first (python -m infra.redisha down)"
        )
    for name, port in _processes(base_port):
        if name not in live and _port_taken(port):
            raise HaError(
                f"port {port} ({name}) is taken by a process this script did not start; stop it, or choose another base with WF_REDIS_PORT"
            )
    _layout_file(run_dir).write_text(json.dumps({"base_port": base_port, "service": service}))
    try:
        _start_missing(run_dir, base_port, service, live, timeout_s)
    except BaseException:
        # leave nothing half-started behind: stop what this call started (what ran before keeps running)
        for name, _ in _processes(base_port):
            if name not in live:
                _stop_one(run_dir, name)
        raise


def _start_missing(run_dir: Path, base_port: int, service: str, live: set[str], timeout_s: float) -> None:
    first, second = redis_ports(base_port)
    if not live:
        _start_redis(run_dir, first, None)
        _start_redis(run_dir, second, (HOST, first))
        _wait(lambda: _replicas_in_sync(first, 1), timeout_s, f"the replica on {second} in sync with the primary on {first}")
        for port in sentinel_ports(base_port):
            _start_sentinel(run_dir, port, (HOST, first), service, fresh=True)
    else:
        current = primary(base_port, service)
        if current is None:
            raise HaError(
                f"some of the HA Redis runs ({', '.join(sorted(live))}) but no Sentinel names a primary for {service!r}; "
                "stop it (python -m infra.redisha down) and start again"
            )
        for port in redis_ports(base_port):
            if _name("redis", port) not in live:
                _start_redis(run_dir, port, None if current == (HOST, port) else current)
        for port in sentinel_ports(base_port):
            if _name("sentinel", port) not in live:
                _start_sentinel(run_dir, port, current, service, fresh=False)
    wait_ready(base_port, service, timeout_s)


def _replicas_in_sync(primary_port_: int, n: int) -> str | None:
    """None when the node on ``primary_port_`` is a primary with ``n`` replicas online; else what is not so."""
    try:
        rep = info(primary_port_)
    except (OSError, RespError) as exc:
        return f"{primary_port_}: {exc}"
    if rep.get("role") != "master":
        return f"{primary_port_} is a {rep.get('role')}"
    online = [k for k, v in rep.items() if k.startswith("slave") and "state=online" in v]
    if len(online) < n:
        return f"{primary_port_} has {len(online)} replica(s) online, not {n}"
    return None


def readiness(base_port: int, service: str | None = None) -> str | None:
    """None when the HA Redis is ready (see :func:`start`); otherwise the first thing that is not."""
    service = service or service_name()
    seen: set[tuple[str, int]] = set()
    for _, port in sentinels(base_port):
        try:
            state = _pairs(command(port, "SENTINEL", "MASTER", service, timeout_s=1.0))
        except (OSError, RespError) as exc:
            return f"sentinel {port}: {exc}"
        flags = state.get("flags", "")
        if "s_down" in flags or "o_down" in flags or "failover" in flags:
            return f"sentinel {port} sees the primary as {flags}"
        if int(state.get("num-other-sentinels", 0)) < 2:
            return f"sentinel {port} knows {state.get('num-other-sentinels')} other Sentinel(s), not 2"
        if int(state.get("num-slaves", 0)) < 1:
            return f"sentinel {port} knows no replica yet"
        seen.add((state["ip"], int(state["port"])))
    if len(seen) != 1:
        return f"the Sentinels name different primaries: {sorted(seen)}"
    ((_, port),) = seen
    return _replicas_in_sync(port, 1)


def wait_ready(base_port: int, service: str | None = None, timeout_s: float = 60.0) -> None:
    """Wait until :func:`readiness` is None; :class:`HaError` naming what was not ready after ``timeout_s``."""
    _wait(lambda: readiness(base_port, service), timeout_s, "the Sentinels to agree on the primary and the replica to be in sync")
    _say(f"HA Redis ready: primary {primary(base_port, service)}, Sentinels {sentinels_setting(base_port)}")


def _wait(probe: object, timeout_s: float, what: str) -> None:
    assert callable(probe)
    deadline = time.monotonic() + timeout_s
    state = probe()
    while state is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        state = probe()
    if state is not None:
        raise HaError(f"waited {timeout_s:.0f} s for {what}; still: {state}")


def running(run_dir: Path) -> bool:
    """True when every process of the HA Redis last started in ``run_dir`` runs (by its pid file)."""
    saved = _layout(run_dir)
    return saved is not None and all(pid(run_dir, name) is not None for name, _ in _processes(saved[0]))


def stop(run_dir: Path, timeout_s: float = 30.0) -> None:
    """Stop every process this script started in ``run_dir`` (Sentinels first, so that none fails over meanwhile)."""
    folder = _folder(run_dir)
    names = sorted((p.stem for p in folder.glob("*.pid")), key=lambda n: (not n.startswith("sentinel"), n))
    for name in names:
        _stop_one(run_dir, name, timeout_s)


def _stop_one(run_dir: Path, name: str, timeout_s: float = 30.0) -> None:
    """SIGTERM this script's process ``name``, SIGKILL after ``timeout_s``; remove its pid file."""
    number = pid(run_dir, name)
    if number is not None:
        os.kill(number, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        # Redis removes its pid file before it exits: wait for the process itself
        while time.monotonic() < deadline and not _gone(number):
            time.sleep(0.1)
        if not _gone(number):
            _say(f"{name} (pid {number}) did not stop in {timeout_s:.0f} s: killing it")
            os.kill(number, signal.SIGKILL)
        _say(f"{name} stopped (pid {number})")
    _pidfile(run_dir, name).unlink(missing_ok=True)


def _gone(number: int) -> bool:
    """The process has exited (no such process, or a zombie waiting to be reaped)."""
    try:
        fields = Path(f"/proc/{number}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] in ("Z", "X")


def status(run_dir: Path) -> list[str]:
    """One line per process: running or not, and a Redis node's role."""
    saved = _layout(run_dir)
    if saved is None:
        return [f"nothing started in {_folder(run_dir)}"]
    base_port, service = saved
    lines = []
    for name, port in _processes(base_port):
        number = pid(run_dir, name)
        state = f"running (pid {number})" if number else "stopped"
        if number and name.startswith("redis"):
            try:
                state += f", {info(port).get('role', '?')}"
            except (OSError, RespError) as exc:
                state += f", not answering ({exc})"
        lines.append(f"{name}: {state}")
    lines.append(f"primary of {service!r} per the Sentinels: {primary(base_port, service)}")
    return lines


def _run_dir() -> Path:
    return Path(os.environ.get("WF_RUN_DIR", ROOT / ".run"))


def main(argv: Sequence[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m infra.redisha", description=doc.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start the primary, replica and Sentinels (what is not running) and wait until ready")
    p_up.add_argument("--fresh", action="store_true", help="stop everything and start afresh first")
    sub.add_parser("down", help="stop the processes this script started")
    sub.add_parser("status", help="say what runs and which node is the primary")
    args = parser.parse_args(argv)
    run_dir = _run_dir()
    base_port = int(os.environ.get("WF_REDIS_PORT", "6379"))
    try:
        if args.cmd == "up":
            if args.fresh:
                stop(run_dir)
            start(run_dir, base_port)
            print(f"WF_REDIS_SENTINELS={sentinels_setting(base_port)} WF_REDIS_SENTINEL_SERVICE={service_name()}")
        elif args.cmd == "down":
            stop(run_dir)
        else:
            print("\n".join(status(run_dir)))
    except HaError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
