"""The session's cluster as ``python -m infra.stack up --cluster`` leaves it: three brokers, topics replicated 3 ways."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from infra import stack as infra_stack
from streams.runtime.status import kafka_health
from streams.topics import CALLS, topic_name, topic_specs

pytestmark = pytest.mark.stack


def test_the_cluster_runs_three_brokers_and_its_topics_have_three_replicas_with_two_in_sync(cluster):
    settings = cluster.settings()
    health = kafka_health(settings)
    assert health.ok, health
    assert [b.address for b in health.seen] == cluster.bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        names = [s.name for s in topic_specs(settings.topic_prefix, settings.partitions)]
        for topic in admin.describe_topics(names):
            for p in topic["partitions"]:
                assert sorted(p["replica_nodes"]) == [1, 2, 3], (topic["name"], p)
        calls = topic_name(settings.topic_prefix, CALLS)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, calls)])  # kafka-python 3: a dict
        assert described["topic"][calls]["min.insync.replicas"]["value"] == "2"
    finally:
        admin.close()
    status = cluster.cli("status").splitlines()
    assert [line.split(" (pid")[0] for line in status if line.startswith("kafka-")] == [
        "kafka-1: running",
        "kafka-2: running",
        "kafka-3: running",
    ]


def test_topics_asking_more_replicas_than_brokers_are_refused_saying_how_many_brokers_there_are(cluster):
    with pytest.raises(
        infra_stack.StackError, match=f"WF_KAFKA_REPLICATION_FACTOR=4 needs 4 brokers, but Kafka at {cluster.bootstrap} has 3"
    ):
        infra_stack.create_topics("refused", 4, cluster.bootstrap, 4, 2)
