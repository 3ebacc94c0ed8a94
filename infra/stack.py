"""Bring the local stack up and down: a real Apache Kafka broker (KRaft) and a real Redis.

    python -m infra.stack up        # resolve Kafka jars (cached), start both, wait, create topics
    python -m infra.stack status    # what is running, by pid file
    python -m infra.stack down      # stop exactly the processes this script started
    python -m infra.stack down --only kafka   # stop one of them (a broker outage); `up` starts it again

    python -m infra.stack up --cluster          # three KRaft brokers (RF 3, min.insync 2) and Redis
    python -m infra.stack down --only kafka-2   # stop one broker of the cluster; `up --cluster` starts it again

Cluster mode runs three brokers on this machine, each ``process.roles=broker,controller``
(node ids 1..3, a static three-voter controller quorum), on ``WF_KAFKA_PORT``,
``+2`` and ``+4`` (each controller listener on the broker's port + 1: 9092..9097 by
default), with their own data folders and pid files (``kafka-1`` .. ``kafka-3``).
Topics get replication factor 3 and ``min.insync.replicas`` 2 unless
``WF_KAFKA_REPLICATION_FACTOR`` / ``WF_KAFKA_MIN_INSYNC_REPLICAS`` say otherwise;
clients take ``WF_KAFKA_BOOTSTRAP=127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


#: Brokers of the cluster mode (node ids 1..N).
CLUSTER_SIZE = 3
#: A cluster's controller fences a broker it has not heard from for this long (``broker.session.timeout.ms``;
#: Kafka's default 9 s), and only then moves the leadership of its partitions: a killed broker's partitions
#: take no writes meanwhile. Heartbeats every second (``broker.heartbeat.interval.ms``, default 2 s) keep
#: six of them in a session, so a live broker is fenced only when it (or its controller) is silent for 6 s.
#: Measured with ``bench/faults.py``: see docs/cluster.md, "Measured".
BROKER_SESSION_TIMEOUT_MS = 6000
BROKER_HEARTBEAT_INTERVAL_MS = 1000
#: Every name a broker of this script may run under (single node, then the cluster's).
KAFKA_NAMES = ("kafka", *(f"kafka-{n}" for n in range(1, CLUSTER_SIZE + 1)))


@dataclass(frozen=True)
class Broker:
    """One Kafka process of the local stack: its name (pid file, log, folder), node id and ports."""

    name: str
    node_id: int
    port: int

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def address(self) -> str:
        return f"{KAFKA_HOST}:{self.port}"


def brokers(cluster: bool, base: int | None = None) -> list[Broker]:
    """The brokers of the single-node stack or of the cluster, on ports from ``base`` (``WF_KAFKA_PORT``).

    >>> [(b.name, b.node_id, b.port, b.controller_port) for b in brokers(True, 9092)]
    [('kafka-1', 1, 9092, 9093), ('kafka-2', 2, 9094, 9095), ('kafka-3', 3, 9096, 9097)]
    >>> brokers(False, 9092)
    [Broker(name='kafka', node_id=1, port=9092)]
    """
    base = kafka_port() if base is None else base
    if not cluster:
        return [Broker("kafka", 1, base)]
    return [Broker(f"kafka-{n}", n, base + 2 * (n - 1)) for n in range(1, CLUSTER_SIZE + 1)]


def bootstrap(cluster: bool, base: int | None = None) -> str:
    """The ``WF_KAFKA_BOOTSTRAP`` value that reaches the stack's brokers.

    >>> bootstrap(True, 9092)
    '127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096'
    """
    return ",".join(b.address for b in brokers(cluster, base))


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


def kafka_properties(broker: Broker, data: Path, cluster: list[Broker] | None = None) -> list[str]:
    """The ``server.properties`` lines of ``broker`` (``cluster``: every broker of the cluster, None: a single node).

    A single node bootstraps its one-voter quorum (formatted ``--standalone``); a
    cluster names its three voters statically (``controller.quorum.voters``), so
    every broker is formatted alike and any two of them make a quorum. Internal
    and default topics are replicated on three brokers with two in sync, and no
    out-of-sync replica may become leader (that would drop acknowledged records).

    >>> lines = kafka_properties(brokers(True, 9092)[1], Path("/d"), brokers(True, 9092))
    >>> for line in lines:
    ...     if line.startswith(("node.id", "controller.quorum", "min.insync", "unclean", "broker.")):
    ...         print(line)
    node.id=2
    controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097
    min.insync.replicas=2
    unclean.leader.election.enable=false
    broker.session.timeout.ms=6000
    broker.heartbeat.interval.ms=1000
    """
    if cluster:
        voters = ",".join(f"{b.node_id}@{KAFKA_HOST}:{b.controller_port}" for b in cluster)
        quorum = f"controller.quorum.voters={voters}"
        rf, isr = min(3, len(cluster)), min(2, len(cluster))
    else:
        quorum = f"controller.quorum.bootstrap.servers={KAFKA_HOST}:{broker.controller_port}"
        rf, isr = 1, 1
    lines = [
        "process.roles=broker,controller",
        f"node.id={broker.node_id}",
        quorum,
        f"listeners=PLAINTEXT://{KAFKA_HOST}:{broker.port},CONTROLLER://{KAFKA_HOST}:{broker.controller_port}",
        f"advertised.listeners=PLAINTEXT://{KAFKA_HOST}:{broker.port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=4",
        f"offsets.topic.replication.factor={rf}",
        "offsets.topic.num.partitions=8",
        f"transaction.state.log.replication.factor={rf}",
        f"transaction.state.log.min.isr={isr}",
        f"share.coordinator.state.topic.replication.factor={rf}",
        f"share.coordinator.state.topic.min.isr={isr}",
        "group.initial.rebalance.delay.ms=0",
        # Faust creates its own internal topics; ours are created explicitly.
        "auto.create.topics.enable=true",
    ]
    if cluster:
        lines += [
            f"default.replication.factor={rf}",
            f"min.insync.replicas={isr}",
            "unclean.leader.election.enable=false",
            f"broker.session.timeout.ms={BROKER_SESSION_TIMEOUT_MS}",
            f"broker.heartbeat.interval.ms={BROKER_HEARTBEAT_INTERVAL_MS}",
        ]
    return [*lines, ""]


def _kafka_config(broker: Broker, data: Path, cluster: list[Broker] | None) -> Path:
    cfg = RUN / broker.name / "server.properties"
    cfg.write_text("\n".join(kafka_properties(broker, data, cluster)))
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


def start_kafka(cluster: bool = False) -> None:
    """Start the single broker, or every broker of the cluster that is not running (one stopped is started again)."""
    members = brokers(cluster)
    for broker in members:
        if _already_running(broker.name, broker.port, "WF_KAFKA_PORT (and WF_KAFKA_BOOTSTRAP)"):
            continue
        if _port_taken(broker.controller_port):
            raise StackError(
                f"port {broker.controller_port} (the controller of {broker.name}) is taken; choose other ports with WF_KAFKA_PORT"
            )
        _start_broker(broker, members if cluster else None, _cluster_id(cluster))


def _cluster_id(cluster: bool) -> str:
    """The cluster's id, made once and kept in the run folder (a single node formats its storage with a new one)."""
    if not cluster:
        return new_cluster_id()
    path = RUN / "kafka-cluster.id"
    if not path.exists():
        path.write_text(new_cluster_id())
    return path.read_text().strip()


def _start_broker(broker: Broker, cluster: list[Broker] | None, cluster_id: str) -> None:
    cp = kafka_classpath()
    data = RUN / broker.name / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = _kafka_config(broker, data, cluster)
    java = _java()
    if not (data / "meta.properties").exists():
        # A single node bootstraps its own one-voter quorum; a cluster's voters are in its config.
        standalone = [] if cluster else ["--standalone"]
        proc = subprocess.run(
            [java, "-cp", cp, "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "-c", str(cfg), *standalone],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise StackError(f"formatting the storage of {broker.name} failed:\n{proc.stdout}{proc.stderr}")
    if cluster:  # three on one machine: a small heap each
        heap = [f"-Xms{os.environ.get('WF_KAFKA_HEAP_MIN', '256m')}", f"-Xmx{os.environ.get('WF_KAFKA_HEAP', '512m')}"]
    else:
        heap = [f"-Xms{os.environ.get('WF_KAFKA_HEAP', '1g')}", f"-Xmx{os.environ.get('WF_KAFKA_HEAP', '1g')}"]
    cmd = [java, *heap, f"-Dlog4j2.configurationFile={LOG4J2}", f"-Dkafka.logs.dir={RUN / broker.name}",
           "-cp", cp, "kafka.Kafka", str(cfg)]  # fmt: skip
    pid = _spawn(broker.name, cmd)
    log = RUN / f"{broker.name}.log"
    _say(f"{broker.name} ({KAFKA_VERSION}, node {broker.node_id}) starting on {broker.address} (pid {pid}, log {log})")


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


def wait_ready(timeout_s: float = 90.0, cluster: bool = False) -> None:
    """Wait until Redis answers PING and Kafka answers a metadata request (in a cluster: naming all its brokers)."""
    deadline = time.monotonic() + timeout_s
    members = brokers(cluster)
    waiting: dict[str, Callable[[], str | None]] = {
        "redis": _redis_ping,
        "kafka": lambda: _kafka_metadata(bootstrap(cluster), len(members)),
    }
    # In a cluster, infra.redisha has waited for its Redis nodes and Sentinels already.
    pidfiles = {"redis": [] if cluster else [RUN / "redis.pid"], "kafka": [RUN / f"{b.name}.pid" for b in members]}
    last_err: dict[str, str] = {}
    restarts = 0
    while waiting and time.monotonic() < deadline:
        for name, probe in list(waiting.items()):
            err = probe()
            if err is None:
                _say(f"{name} is ready" + (f" ({len(members)} brokers)" if name == "kafka" and cluster else ""))
                del waiting[name]
            else:
                last_err[name] = err
        for name, files in pidfiles.items():
            dead = [f for f in files if not _alive(f)]
            if name == "kafka" and dead and restarts < 3 and all(_lost_port(f.with_suffix(".log")) for f in dead):
                # A port in the ephemeral range can be some client's source port for a moment: start again.
                restarts += 1
                for member in members:
                    if RUN / f"{member.name}.pid" in dead:
                        _say(f"{member.name}: its port was taken by another connection; starting it again")
                        time.sleep(1.0)
                        _start_broker(member, members if cluster else None, _cluster_id(cluster))
                continue
            if name in waiting and dead:
                logs = ", ".join(str(f.with_suffix(".log")) for f in dead)
                raise StackError(f"{name} exited during start-up; see {logs}")
        if waiting:
            time.sleep(0.5)
    if waiting:
        detail = "; ".join(f"{n}: {last_err.get(n)}" for n in waiting)
        raise StackError(f"not ready after {timeout_s:.0f} s: {detail}")


def _lost_port(log: Path) -> bool:
    """Whether the last start-up logged in ``log`` failed because its listening port was in use."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 20_000))
            tail = f.read().decode(errors="replace")
    except OSError:
        return False
    return "fatal exception during startup" in tail and "Address already in use" in tail


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


def _kafka_metadata(servers: str | None = None, expect_nodes: int = 1) -> str | None:
    """None when Kafka answers a metadata request at each of ``servers`` (default: the single broker).

    With ``expect_nodes`` above 1 (a cluster), each address must answer itself
    and the cluster must list that many brokers (a broker restarted a moment
    ago is listed only once the controller has let it in).
    """
    servers = servers or f"{KAFKA_HOST}:{kafka_port()}"
    try:
        from kafka import KafkaAdminClient
    except ImportError:  # before the Python packages are installed: the ports are enough
        try:
            for server in servers.split(","):
                host, port = server.rsplit(":", 1)
                socket.create_connection((host, int(port)), timeout=1).close()
            return None
        except OSError as exc:
            return str(exc)
    for server in servers.split(",") if expect_nodes > 1 else [servers]:
        host, port = server.rsplit(":", 1)
        try:  # a closed port first: the client would take 30 s to give up on it
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError as exc:
            return f"{server}: {exc}"
        try:
            admin = KafkaAdminClient(bootstrap_servers=server, request_timeout_ms=3000)
            try:
                admin.list_topics()
                seen = _unfenced(admin.describe_cluster()) if expect_nodes > 1 else 1
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 -- any client error means "not ready yet"; it is reported on time-out
            return f"{server}: {type(exc).__name__}: {exc}"
        if seen < expect_nodes:
            return f"{server} lists {seen} of {expect_nodes} brokers"
    return None


def _unfenced(cluster: dict[str, Any]) -> int:
    """Brokers of a describe-cluster answer that take requests (a broker fenced by the controller does not)."""
    return sum(1 for b in cluster["brokers"] if not b.get("is_fenced"))


def replication_from_env(cluster: bool = False, environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for new topics: ``WF_KAFKA_REPLICATION_FACTOR`` and
    ``WF_KAFKA_MIN_INSYNC_REPLICAS`` when set, else 3 and 2 for the cluster and 1 and 1 for a single node.

    >>> replication_from_env(True, {}), replication_from_env(False, {"WF_KAFKA_REPLICATION_FACTOR": "2"})
    ((3, 2), (2, 1))
    >>> replication_from_env(False, {"WF_KAFKA_REPLICATION_FACTOR": "three"})
    Traceback (most recent call last):
    ...
    infra.stack.StackError: WF_KAFKA_REPLICATION_FACTOR: expected a whole number >= 1, found 'three'
    """
    env = os.environ if environ is None else environ
    out = []
    for var, default in (("WF_KAFKA_REPLICATION_FACTOR", 3 if cluster else 1), ("WF_KAFKA_MIN_INSYNC_REPLICAS", 2 if cluster else 1)):
        text = env.get(var, "").strip()
        if not text:
            out.append(default)
            continue
        if not text.isdigit() or int(text) < 1:
            raise StackError(f"{var}: expected a whole number >= 1, found {text!r}")
        out.append(int(text))
    return out[0], out[1]


def check_replication(replication_factor: int, min_insync: int, live_brokers: int, servers: str) -> None:
    """Refuse a replication the cluster at ``servers`` cannot hold (``StackError`` saying what to change).

    >>> check_replication(3, 2, 3, "h:1")
    >>> try:
    ...     check_replication(3, 2, 1, "h:1")
    ... except StackError as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    WF_KAFKA_REPLICATION_FACTOR=3 needs 3 brokers, but Kafka at h:1 has 1; start the cluster ... or set WF_KAFKA_REPLICATION_FACTOR=1
    """
    if min_insync > replication_factor:
        raise StackError(
            f"WF_KAFKA_MIN_INSYNC_REPLICAS={min_insync} is above WF_KAFKA_REPLICATION_FACTOR={replication_factor}: "
            "no write could ever be acknowledged; set it to at most the replication factor (2 of 3 is usual)"
        )
    if replication_factor > live_brokers:
        raise StackError(
            f"WF_KAFKA_REPLICATION_FACTOR={replication_factor} needs {replication_factor} brokers, but Kafka at {servers} has "
            f"{live_brokers}; start the cluster (python -m infra.stack up --cluster) or set WF_KAFKA_REPLICATION_FACTOR={live_brokers}"
        )


def create_topics(
    prefix: str = "wf",
    partitions: int = 4,
    bootstrap: str | None = None,
    replication_factor: int = 1,
    min_insync: int = 1,
) -> list[str]:
    """Create the project's topics with explicit partition counts and replication (idempotent).

    ``bootstrap`` (one ``host:port`` or a comma-separated list) defaults to the
    local single broker; ``python -m infra.stack topics`` passes
    ``WF_KAFKA_BOOTSTRAP`` (docker-compose uses it against its broker). Each
    topic gets ``replication_factor`` replicas and ``min.insync.replicas``
    ``min_insync``; :class:`StackError` when the cluster has fewer brokers than
    that. Existing topics are left as they are.
    """
    sys.path.insert(0, str(ROOT))
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from streams.topics import topic_specs

    servers = bootstrap or f"{KAFKA_HOST}:{kafka_port()}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    created = []
    try:
        if replication_factor > 1 or min_insync > 1:
            check_replication(replication_factor, min_insync, _unfenced(admin.describe_cluster()), servers)
        existing = set(admin.list_topics())
        for spec in topic_specs(prefix, partitions):
            if spec.name in existing:
                continue
            configs = {"retention.ms": str(spec.retention_ms), "min.insync.replicas": str(min_insync)}
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=configs)])
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
    """Stop the process this script started as ``name`` (SIGTERM, SIGKILL after ``timeout_s``)."""
    stop_all([name], timeout_s)


def stop_all(names: list[str], timeout_s: float = 30.0) -> None:
    """Stop these processes together: SIGTERM to each, then SIGKILL to those still running after ``timeout_s``.

    Together, because a cluster's brokers stopped one after the other lose
    their controller quorum on the way: the last one's controlled shutdown
    would wait for a quorum that is gone.
    """
    pids: dict[str, int] = {}
    for name in names:
        pidfile = RUN / f"{name}.pid"
        if not _alive(pidfile):
            pidfile.unlink(missing_ok=True)
            continue
        pids[name] = int(pidfile.read_text())
        os.kill(pids[name], signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(RUN / f"{n}.pid") for n in pids):
        time.sleep(0.2)
    for name, pid in pids.items():
        pidfile = RUN / f"{name}.pid"
        if _alive(pidfile):
            _say(f"{name} (pid {pid}) did not stop in {timeout_s:.0f} s: killing it")
            os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
        _say(f"{name} stopped (pid {pid})")


def _started_brokers() -> list[str]:
    """The broker names with a pid file in the run folder (whichever mode started them)."""
    return [name for name in KAFKA_NAMES if (RUN / f"{name}.pid").exists()]


def up(fresh: bool = False, cluster: bool = False) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    if fresh:
        down()
        for name in (*KAFKA_NAMES, "redis", "redis-ha"):
            shutil.rmtree(RUN / name, ignore_errors=True)
        (RUN / "kafka-cluster.id").unlink(missing_ok=True)
    other = [n for n in _started_brokers() if _alive(RUN / f"{n}.pid") and (n == "kafka") == cluster]
    if other:
        raise StackError(
            f"{', '.join(other)} of the {'single-node stack' if cluster else 'cluster'} is running in {RUN}; "
            "stop it first (python -m infra.stack down) or use another WF_RUN_DIR"
        )
    if cluster:
        redisha = _redisha()
        try:
            redisha.start(RUN, redis_port())
        except redisha.HaError as exc:
            raise StackError(f"Redis (primary, replica, Sentinels): {exc}") from exc
    else:
        start_redis()
    start_kafka(cluster)
    wait_ready(180.0 if cluster else 90.0, cluster=cluster)
    prefix = os.environ.get("WF_TOPIC_PREFIX", "wf")
    rf, isr = replication_from_env(cluster)
    created = create_topics(prefix, int(os.environ.get("WF_PARTITIONS", "4")), bootstrap(cluster), rf, isr)
    if created:
        _say(f"created topics: {', '.join(created)} (replication factor {rf}, min.insync.replicas {isr})")
    if cluster:
        sentinels = _redisha().sentinels_setting(redis_port())
        _say(f"cluster up: WF_KAFKA_BOOTSTRAP={bootstrap(True)} WF_REDIS_SENTINELS={sentinels}")


def _redisha() -> Any:
    """:mod:`infra.redisha` (imported here: the single-node stack does without it)."""
    from infra import redisha

    return redisha


def _redisha_started() -> bool:
    return (RUN / "redis-ha").exists()


def down(only: str | None = None) -> None:
    """Stop every process this script started (single node or cluster), or only ``only``."""
    stop_all([name for name in (*KAFKA_NAMES, "redis") if only in (None, name)])
    if only is None and _redisha_started():
        _redisha().stop(RUN)


def status_lines() -> list[str]:
    """One line per process of either mode that has run here: the single node's two, and the cluster's brokers if any."""
    names = ["kafka", "redis"] + [n for n in KAFKA_NAMES[1:] if (RUN / f"{n}.pid").exists() or (RUN / n).exists()]
    lines = []
    for name in names:
        pidfile = RUN / f"{name}.pid"
        state = f"running (pid {pidfile.read_text().strip()})" if _alive(pidfile) else "stopped"
        lines.append(f"{name}: {state}")
    if _redisha_started():
        lines += [f"redis-ha {line}" for line in _redisha().status(RUN)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start Kafka and Redis, wait until both answer, create topics")
    p_up.add_argument("--fresh", action="store_true", help="wipe Kafka's and Redis's data first")
    p_up.add_argument(
        "--cluster", action="store_true", help="three KRaft brokers on WF_KAFKA_PORT, +2, +4 (topics with RF 3, min.insync 2)"
    )
    p_down = sub.add_parser("down", help="stop the Kafka and Redis processes this script started")
    p_down.add_argument("--only", choices=(*KAFKA_NAMES, "redis"), help="stop only this one (its data is kept; `up` starts it again)")
    sub.add_parser("status", help="say what is running")
    sub.add_parser("jars", help="only resolve Kafka's jars into the cache")
    sub.add_parser(
        "topics",
        help="create the topics on WF_KAFKA_BOOTSTRAP (default the local broker) with WF_KAFKA_REPLICATION_FACTOR "
        "and WF_KAFKA_MIN_INSYNC_REPLICAS (default 1) and exit",
    )
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            up(fresh=args.fresh, cluster=args.cluster)
        elif args.cmd == "down":
            down(args.only)
        elif args.cmd == "jars":
            print(kafka_classpath())
        elif args.cmd == "topics":
            rf, isr = replication_from_env()
            created = create_topics(
                os.environ.get("WF_TOPIC_PREFIX", "wf"),
                int(os.environ.get("WF_PARTITIONS", "4")),
                os.environ.get("WF_KAFKA_BOOTSTRAP"),
                rf,
                isr,
            )
            _say(f"created topics: {', '.join(created) or 'none (all exist)'} (replication factor {rf}, min.insync.replicas {isr})")
        else:
            for line in status_lines():
                print(line)
    except StackError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
