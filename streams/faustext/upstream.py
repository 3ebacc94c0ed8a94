"""What the integration copies or builds on in faust-streaming and aiokafka, and whether the installed releases still match it.

Some of ``streams.faustext`` is copied from faust-streaming |PINNED_FAUST| and
changed (the fetch loop, ``fastpath``); the rest overrides or wraps upstream
methods whose behaviour it relies on (the liveness times the monitor keeps, the
aiokafka attribute the fetch hold sets, the metadata update it backs off). A
new release can change any of them silently. :data:`UPSTREAM` holds, for each,
the SHA-256 of its source (``inspect.getsource``) in the pinned release;
:func:`refusal` says why the installed Faust is not the one these were taken
from (another version, or any of those sources changed), and the integration
then installs nothing and Faust runs as released.

To move to a new release: compare each listed method with the new one, carry
the changes over to the copies, then update :data:`PINNED_FAUST`, the pin in
``pyproject.toml`` and the hashes (``python -m streams.faustext.upstream``
prints them).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
from typing import Any

#: The faust-streaming release the copies come from (``pyproject.toml`` pins it).
PINNED_FAUST = "0.15.3"

#: ``module:Qualified.name`` -> SHA-256 of its source in faust-streaming 0.15.3 (aiokafka 0.14.0).
UPSTREAM: dict[str, str] = {
    # copied with changes (streams.faustext.fastpath)
    "faust.transport.consumer:Consumer._drain_messages": "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417",
    "faust.transport.consumer:Consumer.getmany": "4b168d84882a70d6e3e2f9804430a63b92f8fd117d3187cbb4aeb54305bda34e",
    "faust.transport.consumer:Consumer._wait_next_records": "6218e1969a636b3ff504ad1b8e7ad58a113572e43d746cc96d684ed5153032c6",
    "faust.transport.producer:ProducerBuffer.wait_until_ebb": "758dd5744044071bbc79609fa8e5bfc339818f186bc19b723de2c4c877412e00",
    "faust.transport.producer:ProducerBuffer.size": "b543a978fdece62e7d7c434eea6e842995d67cc1d3288434f5f26ad72c10a779",
    # overridden or wrapped: the subclasses call them and rely on what they do
    "faust.transport.consumer:Consumer.on_buffer_drop": "4b57e8a418d5ad9c58632b13b58b377ae185855520fd1280870cf7141ac0d1d0",
    "faust.transport.consumer:Consumer.resume_partitions": "afe6b7c02a41d63cd46d47a03f09b547c85289c108de21d682970057d1015c3b",
    "faust.transport.drivers.aiokafka:Consumer._new_consumer_thread": "0870ec53dea75083995e3565c0f0a25a1c63ecceaeb238e92e2585e3623af5a9",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer": (
        "c2701bfc3e6f6cad95c2be36d6a255a86e2c57d18d36cc1082b5fb5c482d99d7"
    ),
    "faust.transport.producer:Producer.__init__": "5c53a4b47aa1372b61ca07edc6e413347436429210427634c9c2c22738e034d8",
    # our producer adds acks=all and idempotence to what this gives (only inside transactions, upstream)
    "faust.transport.drivers.aiokafka:Producer._settings_extra": "a4c7bc41b63822236e4c9be1c49437d091f58c1b3a983eecabb7362a819aa8bd",
    "faust.serializers.schemas:Schema.__init__": "400203377d305a690f7a982e81341b6c4c18728e47d7498dc88cdd247c6a8c8c",
    "faust.serializers.schemas:Schema.compile": "d46eec5ce3195b2c6752cb860a10946cee66ddf6a955f2ea44ac1568c0ecb9ad",
    "faust.sensors.monitor:Monitor.on_message_in": "b2a9a9045b2f456cc736fdbf99f47f4f45335896050c9e48703dfc8146ca51ea",
    "faust.sensors.monitor:Monitor.on_stream_event_in": "df6d2e5f6397ce441d1fdeb83cb7cb5893a33e507e5e0c8caad38e6a916d838d",
    "faust.sensors.monitor:Monitor.on_stream_event_out": "2d2277a6dbda754cd655207496c08adb6b9141e59556cd9373593c1ef28a18bd",
    "faust.sensors.monitor:Monitor.on_message_out": "7c4054247cde96c35740d0f5876b90d67549eed0af16f19cdcb3337e719a6c3b",
    "aiokafka.consumer.consumer:AIOKafkaConsumer.start": "2f1ba70443327538800d348e61042cdedd5a5e6306f40ebe1a06dddba7494c45",
    "aiokafka.client:AIOKafkaClient._metadata_update": "06dc51ed3e0d38b8d64100fd59012f399b2235c2f4804dfd142fcec397412fda",
}


def resolve(name: str) -> Any:  # any function, method or property
    """The object ``module:Qualified.name`` names (a property's getter for a property; upstream's own under our patch).

    >>> resolve("json:JSONDecoder.decode").__qualname__
    'JSONDecoder.decode'
    """
    module_name, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    # upstream's own, under a patch of ours in force (streams.faustext.kafka_backoff keeps it there)
    return getattr(obj, "watchfloor_original", obj)


def source_hash(name: str) -> str:
    """SHA-256 (hex) of the installed source of ``name``; raises ``OSError`` when the source cannot be read."""
    return hashlib.sha256(inspect.getsource(resolve(name)).encode()).hexdigest()


@functools.cache
def changed() -> tuple[str, ...]:
    """The names in :data:`UPSTREAM` whose installed source is not the pinned one (or cannot be read), once per process."""
    out = []
    for name, digest in UPSTREAM.items():
        try:
            ok = source_hash(name) == digest
        except (OSError, TypeError, ImportError, AttributeError):
            ok = False
        if not ok:
            out.append(name)
    return tuple(out)


def refusal() -> str | None:
    """Why the integration must not be installed on this Faust (None: it is the pinned release, every source as pinned)."""
    import faust

    if faust.__version__ != PINNED_FAUST:
        return f"faust-streaming {faust.__version__} is installed; the integration copies {PINNED_FAUST} only"
    differ = changed()
    if differ:
        return f"faust-streaming {faust.__version__}: the source of {', '.join(differ)} is not {PINNED_FAUST}'s"
    return None


if __name__ == "__main__":
    for name in UPSTREAM:
        print(f'    "{name}": "{source_hash(name)}",')
