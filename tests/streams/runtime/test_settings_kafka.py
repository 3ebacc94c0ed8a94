"""Kafka settings: a cluster's bootstrap list, replication factor and min.insync.replicas."""

from __future__ import annotations

import pytest

from streams.runtime.settings import SettingsError, load_settings


def test_a_comma_separated_bootstrap_is_read_as_the_list_of_brokers_without_spaces():
    s = load_settings({"WF_KAFKA_BOOTSTRAP": "10.0.0.5:9092, 10.0.0.6:9094 ,10.0.0.7:9096"})
    assert s.kafka_bootstrap == "10.0.0.5:9092,10.0.0.6:9094,10.0.0.7:9096"
    assert s.kafka_bootstrap.split(",") == ["10.0.0.5:9092", "10.0.0.6:9094", "10.0.0.7:9096"]


def test_one_broker_stays_as_it_was():
    assert load_settings({"WF_KAFKA_BOOTSTRAP": "kafka:29092"}).kafka_bootstrap == "kafka:29092"
    assert load_settings({}).kafka_bootstrap == "127.0.0.1:9092"


@pytest.mark.parametrize("text", ["10.0.0.5", "10.0.0.5:9092,", "10.0.0.5:9092,10.0.0.6:port", ":9092", "h:70000"])
def test_a_bootstrap_entry_that_is_not_host_port_is_refused_naming_the_variable(text):
    with pytest.raises(SettingsError, match="WF_KAFKA_BOOTSTRAP: .*is not host:port"):
        load_settings({"WF_KAFKA_BOOTSTRAP": text})


def test_replication_defaults_to_one_copy_and_is_read_from_the_environment():
    assert (load_settings({}).kafka_replication_factor, load_settings({}).kafka_min_insync_replicas) == (1, 1)
    s = load_settings({"WF_KAFKA_REPLICATION_FACTOR": "3", "WF_KAFKA_MIN_INSYNC_REPLICAS": "2"})
    assert (s.kafka_replication_factor, s.kafka_min_insync_replicas) == (3, 2)


def test_min_insync_above_the_replication_factor_is_refused():
    with pytest.raises(SettingsError, match="kafka_min_insync_replicas must be 1..kafka_replication_factor \\(1\\), found 2"):
        load_settings({"WF_KAFKA_MIN_INSYNC_REPLICAS": "2"})


def test_a_replication_factor_that_is_not_a_number_is_refused_naming_the_variable():
    with pytest.raises(SettingsError, match="WF_KAFKA_REPLICATION_FACTOR: cannot read 'three' as int"):
        load_settings({"WF_KAFKA_REPLICATION_FACTOR": "three"})
