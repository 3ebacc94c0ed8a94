"""Bring the local stack up and down: a real Apache Kafka broker (KRaft) and a real Redis.

    python -m infra.stack up        # resolve Kafka jars (cached), start both, wait, create topics
    python -m infra.stack status    # what is running, by pid file
    python -m infra.stack down      # stop exactly the processes this script started
    python -m infra.stack down --only kafka   # stop one of them (a broker outage); `up` starts it again

Kafka's jars (``org.apache.kafka:kafka_2.13`` and its runtime dependencies)
come from Maven Central through ``mvn`` into a cache folder reused across runs
and clones (``$WF_CACHE``, default ``~/.cache/watchfloor``). Alternatively point
``KAFKA_HOME`` at an unpacked official Kafka release; its ``libs/`` is used as is.
Redis is the operating system's ``redis-server``; when it is missing and this
runs as root on Debian/Ubuntu, it is installed with apt-get (and says so).

Runtime files (data, logs, pid files) live in ``.run/`` at the project root.
Only the standard library is used, so this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get("WF_RUN_DIR", ROOT / ".run"))
KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
LOG4J2 = Path(__file__).resolve().parent / "kafka" / "log4j2.yaml"
KAFKA_HOST = "127.0.0.1"


class StackError(RuntimeError):
    """The stack could not be brought up; the message says what to do."""


def _say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("WF_CACHE", Path.home() / ".cache" / "watchfloor"))


def kafka_port() -> int:
    return int(os.environ.get("WF_KAFKA_PORT", "9092"))


def redis_port() -> int:
    return int(os.environ.get("WF_REDIS_PORT", "6379"))


# -- Kafka jars ---------------------------------------------------------------


def kafka_classpath() -> str:
    """The broker's classpath, resolving the jars into the cache on first use."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise StackError(f"KAFKA_HOME={home} has no libs/kafka_2.13-*.jar: point it at an unpacked Apache Kafka 4.x release")
        return f"{libs}/*"
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    if not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                "mvn is not installed, and it is how the Kafka jars are fetched from Maven Central. "
                "Install it (Debian/Ubuntu: apt-get install -y maven openjdk-17-jre-headless), "
                "or unpack the official Apache Kafka 4.x release and set KAFKA_HOME to it."
            )
        _say(f"resolving org.apache.kafka:kafka_2.13:{KAFKA_VERSION} and its dependencies into {libs} (once)")
        tmp = libs.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={KAFKA_VERSION}",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"mvn could not resolve the Kafka jars (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
    return f"{libs}/*"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("java is not installed; Kafka 4 needs Java 17+ (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)")
    return java


def _kafka_config(data: Path) -> Path:
    port = kafka_port()
    cfg = RUN / "kafka" / "server.properties"
    cfg.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={KAFKA_HOST}:{port + 1}",
                f"listeners=PLAINTEXT://{KAFKA_HOST}:{port},CONTROLLER://{KAFKA_HOST}:{port + 1}",
                f"advertised.listeners=PLAINTEXT://{KAFKA_HOST}:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=4",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # Faust creates its own internal topics; ours are created explicitly.
                "auto.create.topics.enable=true",
                "",
            ]
        )
    )
    return cfg


def _port_taken(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _spawn(name: str, cmd: list[str]) -> int:
    """Start a daemon in its own session, logging to ``.run/{name}.log``; record and return its pid."""
    with open(RUN / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def terminate(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """Stop a child: SIGTERM, then SIGKILL when it has not exited within ``grace_s``; no-op when it already has."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        _say(f"pid {proc.pid} did not stop within {grace_s:g} s of SIGTERM; killing it")
        proc.kill()
        proc.wait(10)


def _already_running(name: str, port: int, port_vars: str) -> bool:
    """True when this script's ``name`` runs; an error when someone else holds its port."""
    pidfile = RUN / f"{name}.pid"
    if _alive(pidfile):
        _say(f"{name} already running (pid {pidfile.read_text().strip()})")
        return True
    if _port_taken(port):
        raise StackError(
            f"port {port} is taken by a process this script did not start (another {name}?); "
            f"stop it, or choose other ports with {port_vars}"
        )
    return False


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, never starting with "-".

    Kafka's own ``Uuid.randomUuid`` draws again when the id would start with "-",
    because ``kafka-storage format --cluster-id -xyz`` reads "-xyz" as an option
    and fails. One id in 64 would, so this does the same.

    >>> draws = iter([bytes([0xF8] * 16), bytes([0x01] * 16)])  # the first encodes as "-Pj4..."
    >>> new_cluster_id(lambda: next(draws))
    'AQEBAQEBAQEBAQEBAQEBAQ'
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_kafka() -> None:
    if _already_running("kafka", kafka_port(), "WF_KAFKA_PORT (and WF_KAFKA_BOOTSTRAP)"):
        return
    cp = kafka_classpath()
    data = RUN / "kafka" / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = _kafka_config(data)
    java = _java()
    if not (data / "meta.properties").exists():
        proc = subprocess.run(
            [java, "-cp", cp, "kafka.tools.StorageTool", "format", "--cluster-id", new_cluster_id(), "-c", str(cfg), "--standalone"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")
    heap = os.environ.get("WF_KAFKA_HEAP", "1g")
    cmd = [java, f"-Xms{heap}", f"-Xmx{heap}", f"-Dlog4j2.configurationFile={LOG4J2}", f"-Dkafka.logs.dir={RUN / 'kafka'}",
           "-cp", cp, "kafka.Kafka", str(cfg)]  # fmt: skip
    pid = _spawn("kafka", cmd)
    _say(f"kafka {KAFKA_VERSION} starting on {KAFKA_HOST}:{kafka_port()} (pid {pid}, log {RUN / 'kafka.log'})")


# -- Redis --------------------------------------------------------------------


def _redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe:
        return exe
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say("redis-server is missing: installing the Debian package redis-server with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise StackError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        exe = shutil.which("redis-server")
        if exe:
            return exe
    raise StackError("redis-server is not installed (Debian/Ubuntu: sudo apt-get install -y redis-server)")


def start_redis() -> None:
    if _already_running("redis", redis_port(), "WF_REDIS_PORT (and WF_REDIS_URL)"):
        return
    exe = _redis_server()
    (RUN / "redis").mkdir(parents=True, exist_ok=True)
    # A cache, as in production here: counts can be rebuilt from Kafka's log.
    cmd = [exe, "--port", str(redis_port()), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(RUN / "redis"), "--daemonize", "no"]  # fmt: skip
    pid = _spawn("redis", cmd)
    _say(f"redis starting on 127.0.0.1:{redis_port()} (pid {pid}, log {RUN / 'redis.log'})")


# -- waiting, topics, stopping --------------------------------------------------


def wait_ready(timeout_s: float = 90.0) -> None:
    """Wait until Redis answers PING and Kafka answers a metadata request."""
    deadline = time.monotonic() + timeout_s
    waiting = {"redis": _redis_ping, "kafka": _kafka_metadata}
    last_err: dict[str, str] = {}
    while waiting and time.monotonic() < deadline:
        for name, probe in list(waiting.items()):
            err = probe()
            if err is None:
                _say(f"{name} is ready")
                del waiting[name]
            else:
                last_err[name] = err
        for name, pidfile in (("kafka", RUN / "kafka.pid"), ("redis", RUN / "redis.pid")):
            if name in waiting and not _alive(pidfile):
                raise StackError(f"{name} exited during start-up; see {RUN / (name + '.log')}")
        if waiting:
            time.sleep(0.5)
    if waiting:
        detail = "; ".join(f"{n}: {last_err.get(n)}" for n in waiting)
        raise StackError(f"not ready after {timeout_s:.0f} s: {detail}")


def running() -> bool:
    """True when Redis answers PING and Kafka answers a metadata request (the stack is up)."""
    return _redis_ping() is None and _kafka_metadata() is None


def _redis_ping() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", redis_port()), timeout=1) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
        return None if reply.startswith(b"+PONG") else f"unexpected reply {reply!r}"
    except OSError as exc:
        return str(exc)


def _kafka_metadata() -> str | None:
    try:
        from kafka import KafkaAdminClient
    except ImportError:  # before the Python packages are installed: the port is enough
        try:
            socket.create_connection((KAFKA_HOST, kafka_port()), timeout=1).close()
            return None
        except OSError as exc:
            return str(exc)
    try:
        admin = KafkaAdminClient(bootstrap_servers=f"{KAFKA_HOST}:{kafka_port()}", request_timeout_ms=3000)
        try:
            admin.list_topics()
        finally:
            admin.close()
        return None
    except Exception as exc:  # noqa: BLE001 -- any client error means "not ready yet"; it is reported on time-out
        return f"{type(exc).__name__}: {exc}"


def create_topics(prefix: str = "wf", partitions: int = 4, bootstrap: str | None = None) -> list[str]:
    """Create the project's topics with explicit partition counts (idempotent).

    ``bootstrap`` defaults to the local broker; ``python -m infra.stack topics``
    passes ``WF_KAFKA_BOOTSTRAP`` (docker-compose uses it against its broker).
    """
    sys.path.insert(0, str(ROOT))
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from streams.topics import topic_specs

    admin = KafkaAdminClient(bootstrap_servers=bootstrap or f"{KAFKA_HOST}:{kafka_port()}")
    created = []
    try:
        existing = set(admin.list_topics())
        for spec in topic_specs(prefix, partitions):
            if spec.name in existing:
                continue
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, 1, topic_configs={"retention.ms": str(spec.retention_ms)})])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    return created


def _alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    # A zombie or a recycled pid is not ours: check the command line.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline or b"redis-server" in cmdline


def stop(name: str, timeout_s: float = 30.0) -> None:
    pidfile = RUN / f"{name}.pid"
    if not _alive(pidfile):
        pidfile.unlink(missing_ok=True)
        return
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pidfile):
        time.sleep(0.2)
    if _alive(pidfile):
        _say(f"{name} (pid {pid}) did not stop in {timeout_s:.0f} s: killing it")
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    _say(f"{name} stopped (pid {pid})")


def up(fresh: bool = False) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    if fresh:
        down()
        shutil.rmtree(RUN / "kafka", ignore_errors=True)
        shutil.rmtree(RUN / "redis", ignore_errors=True)
    start_redis()
    start_kafka()
    wait_ready()
    prefix = os.environ.get("WF_TOPIC_PREFIX", "wf")
    created = create_topics(prefix, int(os.environ.get("WF_PARTITIONS", "4")))
    if created:
        _say(f"created topics: {', '.join(created)}")


def down(only: str | None = None) -> None:
    for name in ("kafka", "redis"):
        if only in (None, name):
            stop(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start Kafka and Redis, wait until both answer, create topics")
    p_up.add_argument("--fresh", action="store_true", help="wipe Kafka's and Redis's data first")
    p_down = sub.add_parser("down", help="stop the Kafka and Redis processes this script started")
    p_down.add_argument("--only", choices=("kafka", "redis"), help="stop only this one (its data is kept; `up` starts it again)")
    sub.add_parser("status", help="say what is running")
    sub.add_parser("jars", help="only resolve Kafka's jars into the cache")
    sub.add_parser("topics", help="create the topics on WF_KAFKA_BOOTSTRAP (default the local broker) and exit")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            up(fresh=args.fresh)
        elif args.cmd == "down":
            down(args.only)
        elif args.cmd == "jars":
            print(kafka_classpath())
        elif args.cmd == "topics":
            created = create_topics(
                os.environ.get("WF_TOPIC_PREFIX", "wf"),
                int(os.environ.get("WF_PARTITIONS", "4")),
                os.environ.get("WF_KAFKA_BOOTSTRAP"),
            )
            _say(f"created topics: {', '.join(created) or 'none (all exist)'}")
        else:
            for name in ("kafka", "redis"):
                pidfile = RUN / f"{name}.pid"
                state = f"running (pid {pidfile.read_text().strip()})" if _alive(pidfile) else "stopped"
                print(f"{name}: {state}")
    except StackError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
