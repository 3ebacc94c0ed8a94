"""docker-compose.yml, checked by reading it (no Docker engine runs here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from gateway.settings import _ENV as _GATEWAY_ENV
from infra.stack import KAFKA_VERSION
from streams.intake.poll import build_parser as poll_parser
from streams.intake.settings import _ENV as _INTAKE_ENV
from streams.runtime.settings import _ENV

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
#: ``${VAR?message}`` (required), ``${VAR:-default}`` (optional): compose's interpolation forms used here.
_REQUIRED = re.compile(r"^\$\{(\w+)\?[^}]+\}$")
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _intake_secret_variables() -> set[str]:
    """The variables the shipped intake sources file names for its secrets (the intake reads them at start-up)."""
    sources = tomllib.loads((ROOT / "infra" / "intake" / "sources.toml").read_text())["source"]
    return {spec["secret_env"] for spec in sources.values() if "secret_env" in spec}


def _as_run(arg: str) -> str:
    """A command argument as compose runs it when the optional variables are unset (their defaults)."""
    return _DEFAULTED.sub(lambda m: m.group(2), arg)


def test_compose_runs_kafka_redis_topics_and_worker_from_official_images_and_our_dockerfile():
    """The stack has the broker and Redis from official images, and the topic job and worker built from the Dockerfile."""
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}", "same Kafka version as infra/stack.py"
    assert SERVICES["redis"]["image"].startswith("redis:7")
    for name in ("topics", "worker", "gateway", "replay", "intake", "poller"):
        assert SERVICES[name]["build"] == "."
    assert (ROOT / "Dockerfile").exists()


def test_kafka_runs_in_kraft_mode_with_listeners_for_containers_and_host():
    """The broker is a KRaft combined node advertising kafka:19092 inside and localhost:9092 to the host."""
    env = SERVICES["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert SERVICES["worker"]["environment"]["WF_KAFKA_BOOTSTRAP"] == "kafka:19092"


def test_every_long_running_service_has_a_health_check_and_dependencies_wait_for_health():
    """Kafka, Redis and the worker have health checks; every depends_on waits on a condition, never on start order."""
    for name in ("kafka", "redis", "worker", "gateway", "intake", "poller"):
        assert SERVICES[name]["healthcheck"]["test"], name
    for name, svc in SERVICES.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            assert cond["condition"] in {"service_healthy", "service_completed_successfully"}, (name, dep)
    assert SERVICES["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_environment_names_are_settings_the_code_reads():
    """Every WF_* variable set in compose is one the worker's, gateway's or intake's settings read, or an intake source's secret."""
    known = set(_ENV) | set(_GATEWAY_ENV) | {"WF_GATEWAY_SECRET"} | set(_INTAKE_ENV) | _intake_secret_variables()
    for name, svc in SERVICES.items():
        for var in svc.get("environment", {}):
            if var.startswith("WF_"):
                assert var in known, f"{name}: {var} is not a setting"


def test_commands_name_modules_that_exist():
    """Each `python -m module` in compose and the Dockerfile names a module in this repository."""
    commands = [svc["command"] for svc in SERVICES.values() if "command" in svc and svc["command"][0] == "python"]
    commands.append(re.search(r"CMD (\[.*\])", (ROOT / "Dockerfile").read_text()).group(1))
    modules = set()
    for cmd in commands:
        text = " ".join(cmd) if isinstance(cmd, list) else cmd
        modules.update(re.findall(r"-m\W+([\w.]+)", text))
    assert {"streams.runtime.worker", "streams.ingest.replay", "infra.stack", "gateway", "streams.intake", "streams.intake.poll"} <= modules
    for mod in modules:
        path = ROOT / mod.replace(".", "/")
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), mod


def test_dockerfile_copies_every_package_the_project_installs():
    """The image gets each package pyproject.toml installs (a missing one fails only at run time)."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages <= copied, f"not copied: {packages - copied}"


def test_host_ports_bind_to_loopback_only():
    """Published ports are bound to 127.0.0.1: a dev stack holding 911 data must not listen on every interface."""
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_gateway_secret_is_required_not_defaulted():
    """The gateway's signing secret must be given: compose fails loudly instead of running with a default."""
    secret = SERVICES["gateway"]["environment"]["WF_GATEWAY_SECRET"]
    assert secret.startswith("${WF_GATEWAY_SECRET?"), secret
    assert SERVICES["gateway"]["environment"]["WF_REDIS_URL"] == "redis://redis:6379/0"


def test_worker_checkpoint_key_is_required_not_defaulted():
    """The key that signs the detectors' checkpoints must be given: compose fails loudly instead of running without one."""
    env = SERVICES["worker"]["environment"]
    assert env["WF_CHECKPOINT_KEY"].startswith("${WF_CHECKPOINT_KEY?"), env["WF_CHECKPOINT_KEY"]
    assert "WF_CHECKPOINT_KEY" in _ENV, "a setting the worker reads"
    assert env["WF_REDIS_URL"] == "redis://redis:6379/0", "the shared environment is kept"


def test_intake_listens_on_8091_reads_the_mounted_sources_and_requires_each_sources_secret():
    """The intake: port 8091 on loopback, the sources file mounted read-only at WF_INTAKE_SOURCES, every secret it names required."""
    intake = SERVICES["intake"]
    env = intake["environment"]
    assert intake["command"] == ["python", "-m", "streams.intake"]
    assert (env["WF_INTAKE_HOST"], env["WF_INTAKE_PORT"]) == ("0.0.0.0", "8091")
    assert intake["ports"] == ["127.0.0.1:8091:8091"]
    mounts = [v.rsplit(":", 2) for v in intake["volumes"]]
    assert [target for _, target, mode in mounts if mode == "ro"] == [env["WF_INTAKE_SOURCES"]]
    assert _as_run(mounts[0][0]) == "./infra/intake/sources.toml" and (ROOT / "infra" / "intake" / "sources.toml").exists()
    secrets = _intake_secret_variables()
    assert secrets, "the shipped sources file names at least one secret variable"
    for var in secrets:
        assert _REQUIRED.match(env.get(var, "")) and _REQUIRED.match(env[var]).group(1) == var, f"{var} must be ${{{var}?...}}"
    assert env["WF_REDIS_URL"] == "redis://redis:6379/0" and env["WF_KAFKA_BOOTSTRAP"] == "kafka:19092", "the worker's topics and keys"


def test_intake_and_poller_wait_for_the_topics_and_healthy_kafka_and_redis():
    """Both write the ingest topics: they start after the topic job (else Kafka auto-creates them unpartitioned), brokers healthy."""
    for name in ("intake", "poller"):
        deps = SERVICES[name]["depends_on"]
        assert deps["topics"]["condition"] == "service_completed_successfully", name
        assert deps["kafka"]["condition"] == deps["redis"]["condition"] == "service_healthy", name


def test_intake_health_check_asks_its_own_healthz():
    """The intake's health check asks /healthz on the port it listens on (503 there when Kafka or Redis does not answer)."""
    test = " ".join(SERVICES["intake"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{SERVICES['intake']['environment']['WF_INTAKE_PORT']}/healthz" in test


def test_poller_is_optional_and_its_command_is_one_the_poll_cli_accepts():
    """The poller runs only with --profile poller; its arguments, variables at their defaults, parse with the CLI's own parser."""
    poller = SERVICES["poller"]
    assert poller["profiles"] == ["poller"]
    cmd = [_as_run(str(a)) for a in poller["command"]]
    assert cmd[:3] == ["python", "-m", "streams.intake.poll"]
    args = poll_parser().parse_args(cmd[3:])
    assert args.url.startswith("https://") and args.mapping.grain == "call"
    port = args.metrics_port
    assert port is not None and f"http://127.0.0.1:{port}/metrics" in " ".join(poller["healthcheck"]["test"])
    assert "watchfloor_poll_stalled" in " ".join(poller["healthcheck"]["test"]), "a stalled poller is unhealthy"
    assert poller["environment"]["WF_KAFKA_BOOTSTRAP"] == "kafka:19092"


def test_no_service_in_a_profile_requires_a_variable():
    """Compose interpolates every service before it filters profiles: a required variable in an optional service would stop every `up`."""
    for name, svc in SERVICES.items():
        if svc.get("profiles"):
            assert not re.search(r"\$\{\w+:?\?", yaml.safe_dump(svc)), name


# -- docker-compose.cluster.yml: the cluster of issue 24 (docs/cluster.md) --------------------------------

CLUSTER = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
CLUSTER_SERVICES = CLUSTER["services"]
#: Sentinel's configuration as the cluster file mounts it (relative to the project) and as the test reads it.
SENTINEL_CONF_MOUNT = "./infra/compose/sentinel.conf"
SENTINEL_CONF = ROOT / SENTINEL_CONF_MOUNT
REDIS_CONF = ROOT / "infra" / "compose" / "redis.conf"
#: What `docker compose up` of docker-compose.yml ran before the cluster file existed: it must stay so.
SINGLE_NODE_SERVICES = {"kafka", "redis", "topics", "worker", "gateway", "replay", "intake", "poller"}


def _watchfloor(services: dict) -> dict:
    """The services built from our Dockerfile (the Watchfloor processes), by name."""
    return {name: svc for name, svc in services.items() if svc.get("build") == "."}


def _brokers(services: dict) -> dict:
    return {name: svc for name, svc in services.items() if str(svc.get("image", "")).startswith("apache/kafka:")}


def _listeners(text: str) -> dict[str, str]:
    """``NAME://host:port,...`` as {NAME: "host:port"}."""
    return dict(item.split("://", 1) for item in text.split(","))


def _properties(env: dict) -> dict[str, str]:
    """A broker's environment as the apache/kafka image writes server.properties: KAFKA_A_B -> a.b."""
    return {var[len("KAFKA_") :].lower().replace("_", "."): str(value).lower() for var, value in env.items() if var.startswith("KAFKA_")}


def _conf_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _command_text(svc: dict) -> str:
    cmd = svc.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _redis_nodes(services: dict) -> dict:
    """The Redis data nodes (redis image, not Sentinels), by name."""
    return {
        name: svc
        for name, svc in services.items()
        if str(svc.get("image", "")).startswith("redis:") and "--sentinel" not in _command_text(svc)
    }


def _sentinels(services: dict) -> dict:
    return {name: svc for name, svc in services.items() if "--sentinel" in _command_text(svc)}


def test_cluster_is_a_file_of_its_own_and_the_single_node_file_is_unchanged():
    """`docker compose up` runs the single-node services as before; the cluster is another project, started by naming its file."""
    assert set(SERVICES) == SINGLE_NODE_SERVICES, f"docker-compose.yml's services changed: {sorted(set(SERVICES) ^ SINGLE_NODE_SERVICES)}"
    assert COMPOSE["name"] == "watchfloor" and CLUSTER["name"] != COMPOSE["name"], "separate projects: separate volumes and networks"
    assert not any("cluster" in svc.get("profiles", []) for svc in SERVICES.values()), "the cluster is not a profile of the single node"
    assert not set(CLUSTER_SERVICES) & (SINGLE_NODE_SERVICES - {"topics", "intake", "replay"}), "no name shared with a single-node process"


def test_cluster_has_three_kraft_brokers_with_distinct_node_ids_and_one_voters_list_naming_each():
    """Three combined broker+controller nodes, ids 1..3, the same cluster id, and every broker lists the same three voters."""
    brokers = _brokers(CLUSTER_SERVICES)
    assert len(brokers) == 3, f"brokers: {sorted(brokers)}"
    ids = {name: int(svc["environment"]["KAFKA_NODE_ID"]) for name, svc in brokers.items()}
    assert sorted(ids.values()) == [1, 2, 3], ids
    voters = {svc["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for svc in brokers.values()}
    assert len(voters) == 1, f"brokers disagree on the voters: {voters}"
    named = {}
    for voter in voters.pop().split(","):
        node, address = voter.split("@")
        named[address] = int(node)
    for name, svc in brokers.items():
        env = svc["environment"]
        assert svc["image"] == f"apache/kafka:{KAFKA_VERSION}", "same Kafka version as infra/stack.py"
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        controller_port = _listeners(env["KAFKA_LISTENERS"])["CONTROLLER"].rsplit(":", 1)[1]
        assert named.get(f"{name}:{controller_port}") == ids[name], f"{name} is not voter {ids[name]} at its controller listener"
    assert len(named) == 3
    assert len({svc["environment"]["CLUSTER_ID"] for svc in brokers.values()}) == 1, "one cluster id, or three clusters"


def test_cluster_brokers_have_the_kraft_settings_of_the_local_cluster():
    """Each broker's settings equal what infra/stack.py writes for its cluster (replication, ISR, unclean election, partitions)."""
    from infra.stack import brokers as stack_brokers
    from infra.stack import kafka_properties

    local = stack_brokers(True, 9092)
    expected = dict(line.split("=", 1) for line in kafka_properties(local[0], Path("/d"), local) if line)
    # node id, voters, listeners and data folder differ by design (hosts and ports of containers, not of one machine)
    own = ("node.id", "controller.quorum", "listeners", "advertised.", "listener.security", "inter.broker.listener", "log.dirs")
    shared = {key: value for key, value in expected.items() if not key.startswith(own)}
    assert {"min.insync.replicas", "default.replication.factor", "unclean.leader.election.enable"} <= set(shared)
    for name, svc in _brokers(CLUSTER_SERVICES).items():
        props = _properties(svc["environment"])
        differ = {key: (props.get(key), value) for key, value in shared.items() if props.get(key) != value.lower()}
        assert not differ, f"{name}: (compose, infra/stack.py) differ: {differ}"


def test_cluster_replication_fits_the_brokers():
    """min.insync < replication factor <= brokers, for our topics, Faust's (the workers) and Kafka's own; no unclean leader election."""
    brokers = _brokers(CLUSTER_SERVICES)
    topics = CLUSTER_SERVICES["topics"]["environment"]
    rf, isr = int(topics["WF_KAFKA_REPLICATION_FACTOR"]), int(topics["WF_KAFKA_MIN_INSYNC_REPLICAS"])
    assert 1 <= isr < rf <= len(brokers), (isr, rf, len(brokers))
    for name, svc in brokers.items():
        p = _properties(svc["environment"])
        for rf_key, isr_key in (
            ("default.replication.factor", "min.insync.replicas"),
            ("offsets.topic.replication.factor", "min.insync.replicas"),
            ("transaction.state.log.replication.factor", "transaction.state.log.min.isr"),
            ("share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr"),
        ):
            assert 1 <= int(p[isr_key]) < int(p[rf_key]) <= len(brokers), (name, rf_key, isr_key)
        assert (int(p["default.replication.factor"]), int(p["min.insync.replicas"])) == (rf, isr), f"{name}: same as the topic job"
        assert p["unclean.leader.election.enable"] == "false", name
    for name, svc in _watchfloor(CLUSTER_SERVICES).items():
        if "streams.runtime.worker" in svc["command"]:  # Faust creates its own topics with them
            env = svc["environment"]
            assert (env.get("WF_KAFKA_REPLICATION_FACTOR"), env.get("WF_KAFKA_MIN_INSYNC_REPLICAS")) == (str(rf), str(isr)), name


def test_every_watchfloor_service_bootstraps_from_every_broker_and_only_those():
    """WF_KAFKA_BOOTSTRAP of each Watchfloor process is the brokers' internal listeners: all three, nothing else."""
    brokers = _brokers(CLUSTER_SERVICES)
    internal = {
        _listeners(svc["environment"]["KAFKA_ADVERTISED_LISTENERS"])[svc["environment"]["KAFKA_INTER_BROKER_LISTENER_NAME"]]
        for svc in brokers.values()
    }
    assert {address.split(":")[0] for address in internal} == set(brokers), "each advertises its own service name"
    services = _watchfloor(CLUSTER_SERVICES)
    assert {"topics", "worker-1", "worker-2", "detector", "gateway-1", "gateway-2", "intake", "replay"} <= set(services)
    for name, svc in services.items():
        listed = svc["environment"]["WF_KAFKA_BOOTSTRAP"].split(",")
        assert len(listed) == len(set(listed)) and set(listed) == internal, f"{name}: {listed} is not {sorted(internal)}"


def test_sentinels_monitor_the_primary_by_its_service_name_with_a_majority_quorum():
    """Three Sentinels watch the primary under WF_REDIS_SENTINEL_SERVICE; quorum is a majority; every process asks all three."""
    lines = _conf_lines(SENTINEL_CONF)
    [monitor] = [line for line in lines if line[:2] == ["sentinel", "monitor"]]
    service, host, port, quorum = monitor[2], monitor[3], monitor[4], int(monitor[5])
    sentinel_port = next(line[1] for line in lines if line[0] == "port")
    sentinels = _sentinels(CLUSTER_SERVICES)
    assert len(sentinels) == 3, f"Sentinels: {sorted(sentinels)}"
    assert len(sentinels) // 2 < quorum <= len(sentinels), f"quorum {quorum} of {len(sentinels)} Sentinels"
    nodes = _redis_nodes(CLUSTER_SERVICES)
    replicaof = {name: re.findall(r"replicaof (\S+) (\d+)", _command_text(svc)) for name, svc in nodes.items()}
    primaries = [name for name, found in replicaof.items() if not found]
    assert primaries == [host], f"Sentinel monitors {host}, the primary is {primaries}"
    redis_port = next(line[1] for line in _conf_lines(REDIS_CONF) if line[0] == "port")
    assert port == redis_port
    replicas = {name: found for name, found in replicaof.items() if found}
    assert replicas and all(found == [(host, redis_port)] for found in replicas.values()), replicas
    for name, svc in sentinels.items():
        assert f"sentinel announce-ip {name}" in _command_text(svc), f"{name} announces another name"
        assert any(v.startswith(f"{SENTINEL_CONF_MOUNT}:") for v in svc["volumes"]), f"{name} does not mount {SENTINEL_CONF_MOUNT}"
        assert f"ckquorum {service}" in " ".join(svc["healthcheck"]["test"]), name
    for name, svc in _watchfloor(CLUSTER_SERVICES).items():
        env = svc["environment"]
        assert env["WF_REDIS_SENTINEL_SERVICE"] == service, name
        listed = env["WF_REDIS_SENTINELS"].split(",")
        assert len(listed) == len(set(listed)) and set(listed) == {f"{s}:{sentinel_port}" for s in sentinels}, (name, listed)


def test_each_gateway_knows_every_gateways_public_address():
    """WF_GATEWAY_PEERS of each gateway is every gateway's URL as the host reaches it (its published port)."""
    gateways = {name: svc for name, svc in _watchfloor(CLUSTER_SERVICES).items() if svc["command"] == ["python", "-m", "gateway"]}
    assert len(gateways) >= 2
    public = set()
    for svc in gateways.values():
        inside = svc["environment"]["WF_GATEWAY_PORT"]
        [host_port] = [p.split(":")[1] for p in svc["ports"] if p.rsplit(":", 1)[1] == inside]
        public.add(f"http://localhost:{host_port}")
    for name, svc in gateways.items():
        peers = svc["environment"]["WF_GATEWAY_PEERS"].split(",")
        assert len(peers) == len(set(peers)) and set(peers) == public, f"{name}: {peers} is not {sorted(public)}"
    assert len({svc["environment"]["WF_GATEWAY_SECRET"] for svc in gateways.values()}) == 1, "one secret: a token works at every gateway"


def test_cluster_runs_two_counting_workers_and_two_detection_workers_one_standing_by():
    """Counting scales by partitions (two workers share them); two detection workers with the same parts share the
    detector input's group: one runs, the other stands by (docs/operations.md, "Scaling")."""
    roles = {
        name: svc["environment"].get("WF_ROLES", "count,detect").split(",")
        for name, svc in _watchfloor(CLUSTER_SERVICES).items()
        if "streams.runtime.worker" in svc["command"]
    }
    assert sum("count" in r for r in roles.values()) >= 2, roles
    detectors = [name for name, r in roles.items() if "detect" in r]
    assert detectors == ["detector", "detector-2"], roles
    assert all(roles[name] == ["detect"] for name in detectors), "a detection worker that also counted would count twice"
    for name in detectors:
        env = CLUSTER_SERVICES[name]["environment"]
        assert env["WF_CHECKPOINT_KEY"].startswith("${WF_CHECKPOINT_KEY?")
        # the same parts, so one group: a standby, not a second copy of the alerts
        assert env.get("WF_DETECTION_PARTS") == CLUSTER_SERVICES["detector"]["environment"].get("WF_DETECTION_PARTS")


def test_cluster_dependencies_exist_and_wait_for_health_and_long_running_services_restart():
    """Every depends_on names a service that has a health check (or is a one-shot job); every long-running service has both."""
    for name, svc in CLUSTER_SERVICES.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in CLUSTER_SERVICES, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert CLUSTER_SERVICES[dep].get("healthcheck", {}).get("test"), (
                    f"{name} waits for {dep}'s health, which it has no check of"
                )
            else:
                assert cond["condition"] == "service_completed_successfully" and "restart" not in CLUSTER_SERVICES[dep], (name, dep)
    one_shot = {"topics", "replay"}
    for name, svc in CLUSTER_SERVICES.items():
        if name not in one_shot:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
            assert svc.get("restart") in {"unless-stopped", "always", "on-failure"}, f"{name} is not restarted"
    for name in _watchfloor(CLUSTER_SERVICES):
        if name not in one_shot:
            deps = CLUSTER_SERVICES[name].get("depends_on", {})
            assert deps.get("topics", {}).get("condition") == "service_completed_successfully", f"{name} may start before the topics exist"


def test_cluster_binds_no_host_port_twice_and_only_on_loopback():
    """Each published port is bound once, on 127.0.0.1 (a second binding fails at `up`; 911 data stays off other interfaces)."""
    bound = []
    for name, svc in CLUSTER_SERVICES.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
            bound.append(port.rsplit(":", 1)[0])
    assert len(bound) == len(set(bound)), f"bound twice: {sorted(p for p in bound if bound.count(p) > 1)}"


def test_each_stateful_cluster_service_keeps_its_data_in_a_volume_of_its_own():
    """Brokers, Redis nodes and Sentinels each have a named volume where they write (a Sentinel rewrites its config there)."""
    declared = set(CLUSTER.get("volumes") or {})
    stateful = {**_brokers(CLUSTER_SERVICES), **_redis_nodes(CLUSTER_SERVICES), **_sentinels(CLUSTER_SERVICES)}
    used = []
    for name, svc in stateful.items():
        where = svc["environment"]["KAFKA_LOG_DIRS"] if name in _brokers(CLUSTER_SERVICES) else "/data"
        named = [v.split(":")[0] for v in svc.get("volumes", []) if v.split(":")[1] == where and not v.startswith((".", "/", "$"))]
        assert len(named) == 1 and named[0] in declared, f"{name}: no named volume at {where}"
        used.extend(named)
    assert len(used) == len(set(used)), "a volume shared by two services"
    for name, svc in {**_redis_nodes(CLUSTER_SERVICES), **_sentinels(CLUSTER_SERVICES)}.items():
        assert "[ -f /data/" in _command_text(svc), f"{name}: copies its config on every start, losing what Sentinel wrote"


def test_cluster_environment_names_are_settings_the_code_reads_and_their_values_load():
    """Every WF_* variable set is a setting of the worker, gateway or intake and each process's loader takes its values."""
    from gateway.settings import load_gateway_settings
    from infra.stack import replication_from_env
    from streams.intake.settings import load_intake_settings
    from streams.runtime.settings import load_settings

    known = set(_ENV) | set(_GATEWAY_ENV) | {"WF_GATEWAY_SECRET"} | set(_INTAKE_ENV) | _intake_secret_variables()
    for name, svc in _watchfloor(CLUSTER_SERVICES).items():
        for var in svc.get("environment", {}):
            if var.startswith("WF_"):
                assert var in known, f"{name}: {var} is not a setting"
        # as compose runs it: required secrets given (any 48 characters), optional variables at their defaults
        env = {var: "s" * 48 if _REQUIRED.match(str(v)) else _as_run(str(v)) for var, v in svc["environment"].items()}
        command = " ".join(svc["command"])
        if "-m gateway" in command:
            settings = load_gateway_settings(env)
            assert settings.peers and settings.redis_sentinels, name
        elif "-m streams.intake" in command:
            settings = load_intake_settings(env).base
        elif "-m infra.stack topics" in command:
            assert replication_from_env(True, env) == (3, 2), "the topic job's replication"
            settings = load_settings(env)
        else:
            settings = load_settings(env)
        assert len(settings.redis_sentinels) == 3 and settings.redis_sentinel_service == "watchfloor", name


def test_cluster_secrets_are_required_and_profile_services_require_none():
    """The gateways', detection worker's and intake's secrets are ${VAR?...}; the optional replay requires no variable."""
    for name, var in (("gateway-1", "WF_GATEWAY_SECRET"), ("gateway-2", "WF_GATEWAY_SECRET"), ("detector", "WF_CHECKPOINT_KEY")):
        assert _REQUIRED.match(CLUSTER_SERVICES[name]["environment"][var]), (name, var)
    for var in _intake_secret_variables():
        assert _REQUIRED.match(CLUSTER_SERVICES["intake"]["environment"].get(var, "")), var
    for name, svc in CLUSTER_SERVICES.items():
        if svc.get("profiles"):
            assert not re.search(r"\$\{\w+:?\?", yaml.safe_dump(svc)), name
