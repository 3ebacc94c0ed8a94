"""One flag governs the integration, and uninstall() gives Faust and aiokafka back exactly what they had before any install.

The check runs in a fresh interpreter: it captures every attribute of the Faust
and aiokafka classes the integration touches (and Faust's transport registry)
before anything of ``streams`` is imported, then installs, uninstalls and
compares by identity.
"""

from __future__ import annotations

import json
import subprocess
import sys

from streams import faustext
from streams.faustext import kafka_backoff, transport
from streams.runtime.settings import load_settings
from tests.stackutil import ROOT

_CHECK = r"""
import json
import aiokafka.client, aiokafka.consumer.consumer
import faust
from faust.serializers import schemas
from faust.sensors import monitor
from faust.transport import consumer, drivers, producer
from faust.transport.drivers import aiokafka as driver

CLASSES = {
    "AIOKafkaClient": aiokafka.client.AIOKafkaClient,
    "AIOKafkaConsumer": aiokafka.consumer.consumer.AIOKafkaConsumer,
    "Consumer": consumer.Consumer,
    "aiokafka.Consumer": driver.Consumer,
    "AIOKafkaConsumerThread": driver.AIOKafkaConsumerThread,
    "Transport": driver.Transport,
    "Producer": driver.Producer,
    "ProducerBuffer": producer.ProducerBuffer,
    "Monitor": monitor.Monitor,
    "Schema": schemas.Schema,
}
before = {name: dict(vars(cls)) for name, cls in CLASSES.items()}
aliases = dict(drivers.TRANSPORTS.aliases)

def differ():
    out = []
    for name, cls in CLASSES.items():
        now = vars(cls)
        out += [f"{name}.{a}" for a in before[name].keys() | now.keys() if before[name].get(a, 0) is not now.get(a, 1)]
    if dict(drivers.TRANSPORTS.aliases) != aliases:
        out.append("TRANSPORTS")
    return sorted(out)

from streams import faustext
from streams.runtime.settings import load_settings

result = {"imported": differ()}
result["off"] = (faustext.install(load_settings({"WF_FAUST_FASTPATH": "0"})), differ())
result["on"] = (faustext.install(load_settings({})), differ())
faustext.uninstall()
result["uninstalled"] = differ()
faustext.uninstall()
result["twice"] = differ()
print(json.dumps(result))
"""


def test_install_changes_only_the_registry_and_aiokafka_metadata_update_and_uninstall_restores_every_attribute():
    out = subprocess.run([sys.executable, "-c", _CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["imported"] == []  # importing the integration changes nothing
    assert result["off"] == [False, []]  # the flag off installs nothing
    assert result["on"] == [True, ["AIOKafkaClient._metadata_update", "TRANSPORTS"]]  # what install changes, all of it
    assert result["uninstalled"] == [] and result["twice"] == []


def test_install_is_idempotent_and_in_force_until_uninstalled():
    settings = load_settings({})
    assert faustext.install(settings) is True
    from aiokafka.client import AIOKafkaClient

    patched = AIOKafkaClient._metadata_update
    assert faustext.install(settings) is True
    assert AIOKafkaClient._metadata_update is patched  # not wrapped twice
    assert faustext.installed()
    try:
        faustext.uninstall()
        assert not faustext.installed() and not transport.registered() and not kafka_backoff.installed()
        assert faustext.app_options(settings) == {}  # no app is built on a transport that is not registered
    finally:
        assert faustext.install(settings) is True
    assert set(faustext.app_options(settings)) == {"broker_consumer", "broker_producer", "Monitor"}
