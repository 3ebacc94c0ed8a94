"""A Faust agent that does nothing but iterate: the framework's own ceiling for the worker benchmark.

Run by ``bench/throughput.py`` as a subprocess; reads its job from the environment:
``BARE_TOPICS`` (comma-separated), ``BARE_EXPECT`` (records to read), ``BARE_OUT``
(a JSON file to write ``{"records": n, "first": m, "seconds": s}`` to: ``s`` from
the first event or batch, which held ``m`` records, to the last),
``BARE_APP_ID``, ``BARE_BOOTSTRAP``, ``BARE_MODE`` (``events``: one event at a
time, as the worker reads; ``batch``: Faust's ``take_events``), ``BARE_FASTPATH``
(``1``: on the worker's transport and its raw-record schema, :mod:`streams.faustext.transport`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import faust

FASTPATH = os.environ.get("BARE_FASTPATH") == "1"
BOOTSTRAP = os.environ.get("BARE_BOOTSTRAP", "127.0.0.1:9092")
if FASTPATH:
    from streams import faustext
    from streams.faustext import fastpath as faust_fastpath
    from streams.faustext import transport as faust_transport
    from streams.runtime.settings import load_settings

    if not faustext.install(load_settings({})):
        raise SystemExit("bare_faust: the Faust integration refused this faust-streaming (see the warning above)")
    # the worker's transport (its fetch loop, fetch hold and producer buffer), Faust's own monitor
    BROKERS = dict.fromkeys(("broker_consumer", "broker_producer"), faust_transport.broker_url(BOOTSTRAP))
else:
    BROKERS = {}

TOPICS = os.environ["BARE_TOPICS"].split(",")
EXPECT = int(os.environ["BARE_EXPECT"])
MODE = os.environ.get("BARE_MODE", "events")

app = faust.App(
    os.environ["BARE_APP_ID"],
    broker=f"kafka://{BOOTSTRAP}",
    **BROKERS,
    store="memory://",
    web_enabled=False,
    datadir=os.path.join(tempfile.gettempdir(), f"watchfloor-faust-{os.environ['BARE_APP_ID']}"),
    consumer_auto_offset_reset="earliest",
)
if FASTPATH:
    source = app.topic(*TOPICS, schema=faust_fastpath.RawSchema())
else:
    source = app.topic(*TOPICS, key_serializer="raw", value_serializer="raw")
progress = {"n": 0, "first": 0, "t0": 0.0}


def _done(n: int) -> bool:
    if progress["n"] == 0:
        progress["t0"] = time.perf_counter()
        progress["first"] = n
    progress["n"] += n
    if progress["n"] >= EXPECT:
        with open(os.environ["BARE_OUT"], "w") as f:
            json.dump({"records": progress["n"], "first": progress["first"], "seconds": time.perf_counter() - progress["t0"]}, f)
        return True
    return False


@app.agent(source)
async def do_nothing(stream):
    if MODE == "batch":
        async for events in stream.take_events(1000, within=0.2):
            if _done(len(events)):
                os._exit(0)
    else:
        async for _event in stream.events():
            if _done(1):
                os._exit(0)


if __name__ == "__main__":
    app.main()
