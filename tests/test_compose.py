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
