"""Whether the Kafka cluster is whole, from its metadata (plain data in, plain data out)."""

from __future__ import annotations

from streams.runtime.kafkahealth import BrokerSeen, PartitionState, assess, health_lines

BOOTSTRAP = "k:9092,k:9094,k:9096"
ALL = [BrokerSeen(1, "k:9092"), BrokerSeen(2, "k:9094"), BrokerSeen(3, "k:9096")]


def _p(partition: int, leader: int, isr: tuple[int, ...]) -> PartitionState:
    return PartitionState("wf.calls", partition, leader, (1, 2, 3), isr)


def test_a_whole_cluster_is_ok_and_says_every_partition_is_in_sync():
    h = assess(BOOTSTRAP, 3, ALL, [_p(0, 1, (1, 2, 3)), _p(1, 2, (2, 3, 1))])
    assert h.ok
    assert health_lines(h) == ["kafka: 3 of 3 brokers seen (1@k:9092, 2@k:9094, 3@k:9096); every partition fully in sync"]


def test_a_stopped_broker_is_named_missing_and_the_partitions_it_held_are_under_replicated():
    h = assess(BOOTSTRAP, 3, [ALL[0], ALL[2]], [_p(0, 1, (1, 3)), _p(1, 3, (3, 1)), _p(2, 3, (3, 1, 2))])
    assert not h.ok
    assert h.missing == ("k:9094",)
    assert [p.partition for p in h.under_replicated] == [0, 1]
    lines = health_lines(h)
    assert lines[0] == "kafka: 2 of 3 brokers seen (1@k:9092, 3@k:9096); MISSING: k:9094"
    assert lines[1] == "kafka: 2 partitions under-replicated (fewer in-sync replicas than replicas): wf.calls[0], wf.calls[1]"


def test_a_partition_without_a_live_leader_is_offline_not_merely_under_replicated():
    h = assess(BOOTSTRAP, 3, [ALL[0]], [_p(0, -1, (2,)), _p(1, 2, (2,)), _p(2, 1, (1,))])
    assert [p.partition for p in h.offline] == [0, 1]
    assert [p.partition for p in h.under_replicated] == [2]
    assert "kafka: 2 partitions OFFLINE (no leader: neither read nor written): wf.calls[0], wf.calls[1]" in health_lines(h)


def test_behind_one_bootstrap_name_the_replication_factor_says_how_many_brokers_are_expected():
    h = assess("kafka:9092", 3, ALL[:2], [])
    assert (h.expected, h.missing, h.ok) == (3, (), False)
    assert health_lines(h)[0] == "kafka: 2 of 3 brokers seen (1@k:9092, 2@k:9094); 1 MISSING"


def test_a_long_list_of_partitions_is_cut_short():
    h = assess("k:9092", 1, ALL[:1], [PartitionState("t", n, 1, (1, 2), (1,)) for n in range(12)])
    assert health_lines(h, limit=3)[1].endswith("t[0], t[1], t[2] and 9 more")
    assert h.to_dict()["under_replicated"] == [f"t[{n}]" for n in range(12)]
