"""``infra.stack`` cluster mode, the pure parts: the brokers' layout, their configuration, the topics' replication.

The cluster itself (three brokers started, topics replicated, a broker stopped and
started again) is exercised by ``tests/faults/test_broker_cluster.py`` on the
session's cluster (``tests/faults/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import stack


def _props(lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines if line)


def test_the_cluster_runs_three_brokers_two_ports_apart_each_with_its_controller_on_the_next_port():
    members = stack.brokers(True, 19092)
    assert [(b.name, b.node_id, b.port, b.controller_port) for b in members] == [
        ("kafka-1", 1, 19092, 19093),
        ("kafka-2", 2, 19094, 19095),
        ("kafka-3", 3, 19096, 19097),
    ]
    assert stack.bootstrap(True, 19092) == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"


def test_every_broker_of_the_cluster_names_the_same_three_voters_and_replicates_three_ways_with_two_in_sync():
    members = stack.brokers(True, 9092)
    configs = [_props(stack.kafka_properties(b, Path(f"/run/{b.name}/data"), members)) for b in members]
    assert {c["controller.quorum.voters"] for c in configs} == {"1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"}
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    assert [c["listeners"] for c in configs] == [f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{p + 1}" for p in (9092, 9094, 9096)]
    assert len({c["log.dirs"] for c in configs}) == 3
    for c in configs:
        assert c["process.roles"] == "broker,controller"
        assert "controller.quorum.bootstrap.servers" not in c
        assert (c["default.replication.factor"], c["min.insync.replicas"]) == ("3", "2")
        assert (c["offsets.topic.replication.factor"], c["transaction.state.log.replication.factor"]) == ("3", "3")
        assert c["transaction.state.log.min.isr"] == "2"
        assert c["unclean.leader.election.enable"] == "false"


def test_the_single_node_configuration_is_the_one_it_always_was():
    (single,) = stack.brokers(False, 9092)
    assert single.name == "kafka"
    c = _props(stack.kafka_properties(single, Path("/d"), None))
    assert c["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert c["offsets.topic.replication.factor"] == "1"
    assert c["transaction.state.log.min.isr"] == "1"
    assert "controller.quorum.voters" not in c and "min.insync.replicas" not in c and "default.replication.factor" not in c


def test_topics_are_replicated_three_ways_in_a_cluster_and_once_on_a_single_node_unless_the_environment_says():
    assert stack.replication_from_env(True, {}) == (3, 2)
    assert stack.replication_from_env(False, {}) == (1, 1)
    env = {"WF_KAFKA_REPLICATION_FACTOR": "2", "WF_KAFKA_MIN_INSYNC_REPLICAS": "1"}
    assert stack.replication_from_env(True, env) == (2, 1)


@pytest.mark.parametrize("value", ["0", "-1", "three", "2.5"])
def test_a_replication_setting_that_is_not_a_positive_whole_number_is_refused_naming_the_variable(value):
    with pytest.raises(stack.StackError, match=f"WF_KAFKA_MIN_INSYNC_REPLICAS: expected a whole number >= 1, found '{value}'"):
        stack.replication_from_env(True, {"WF_KAFKA_MIN_INSYNC_REPLICAS": value})


def test_a_replication_factor_above_the_brokers_is_refused_saying_how_many_there_are_and_what_to_do():
    with pytest.raises(stack.StackError, match=r"WF_KAFKA_REPLICATION_FACTOR=3 needs 3 brokers, but Kafka at h:1 has 1; start the cluster"):
        stack.check_replication(3, 2, 1, "h:1")
    with pytest.raises(stack.StackError, match="WF_KAFKA_MIN_INSYNC_REPLICAS=3 is above WF_KAFKA_REPLICATION_FACTOR=2"):
        stack.check_replication(2, 3, 3, "h:1")
    stack.check_replication(3, 2, 3, "h:1")  # fits


def test_a_broker_that_could_not_bind_its_port_is_told_apart_from_other_start_up_failures(tmp_path):
    lost = tmp_path / "a.log"
    lost.write_text("...\nERROR Exiting Kafka due to fatal exception during startup.\nBindException: Address already in use\n")
    other = tmp_path / "b.log"
    other.write_text("ERROR Exiting Kafka due to fatal exception during startup.\nInconsistentClusterIdException\n")
    assert stack._lost_port(lost)
    assert not stack._lost_port(other)
    assert not stack._lost_port(tmp_path / "none.log")
