"""The Faust application: ``create_app(settings)`` wires the topics, the agents, their timers and the /metrics page.

What the agents do lives beside what they work on: the counting agent in
:mod:`streams.counting.agent`, the detection agent in :mod:`streams.detection.agent`.
This module only builds the Faust app (:class:`CrashExitApp`), declares the
topics, registers the agents of the worker's roles under their names
(``count_calls_and_updates``, ``detect_surges``) with their timers, serves
``/metrics`` and closes everything at shutdown.

There is no module-level ``app``: settings are read when the worker starts, not
at import. ``python -m streams.runtime.worker`` checks the stack, calls
:func:`create_app` and runs Faust's ``worker`` command on the app it returns.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import faust

from streams import faustext
from streams.counting.agent import LOSS_CHECK_S, CommitterStates, CountingAgent
from streams.detection.agent import DetectionAgent
from streams.runtime.metrics import render_prometheus
from streams.runtime.settings import Settings, load_settings
from streams.topics import ALERTS, CALLS, DEADLETTER, DETECTOR_INPUT, FORECASTS, INCIDENT_UPDATES, topic_name

log = logging.getLogger(__name__)

#: Seconds a crashed worker may spend stopping before it exits anyway (code 70).
CRASH_EXIT_S = 30.0


class CrashExitApp(faust.App):
    """Faust's app, except that a crash ends the process within :data:`CRASH_EXIT_S`.

    Faust stops a crashed app gracefully, and that can hang for minutes (its
    consumer's final commit waits on a thread that is gone), leaving a worker
    that looks alive and does nothing. Exiting lets the process supervisor
    restart it; Kafka redelivers what it had not committed.
    """

    _crash_timer: threading.Timer | None = None

    async def crash(self, reason: BaseException) -> None:
        if self._crash_timer is None:
            self._crash_timer = threading.Timer(CRASH_EXIT_S, _exit_after_crash, (reason,))
            self._crash_timer.daemon = True
            self._crash_timer.start()
        await super().crash(reason)


def _exit_after_crash(reason: BaseException) -> None:
    log.critical("worker crashed (%r) and did not stop within %g s; exiting with code 70", reason, CRASH_EXIT_S)
    logging.shutdown()
    os._exit(70)


def create_app(settings: Settings | None = None) -> faust.App:
    """A Faust app running the agents of ``settings.roles`` (default: :func:`~streams.runtime.settings.load_settings`).

    Installs the Faust integration first (:func:`streams.faustext.install`);
    call the app's ``main()`` (or Faust's ``worker`` command) to run it.
    """
    s = settings or load_settings()
    app = _faust_app(s)
    topic_options = faustext.topic_options(s)
    states = CommitterStates(s)
    counting: CountingAgent | None = None
    detection: DetectionAgent | None = None
    if "count" in s.roles:
        ingest = app.topic(topic_name(s.topic_prefix, CALLS), topic_name(s.topic_prefix, INCIDENT_UPDATES), **topic_options)
        deadletter = app.topic(topic_name(s.topic_prefix, DEADLETTER), **topic_options)
        counting = CountingAgent(app, s, states, deadletter)
        app.agent(ingest, name="count_calls_and_updates")(counting.count_calls_and_updates)
        app.timer(interval=LOSS_CHECK_S)(counting.check_quiet_partitions)
    if "detect" in s.roles:
        detector_input = app.topic(topic_name(s.topic_prefix, DETECTOR_INPUT), **topic_options)
        alerts = app.topic(topic_name(s.topic_prefix, ALERTS), **topic_options)
        forecasts = app.topic(topic_name(s.topic_prefix, FORECASTS), **topic_options)
        input_name = detector_input.get_topic_name()

        def holds_input() -> bool:
            return any(tp.topic == input_name for tp in app.consumer.assignment())

        detection = agent = DetectionAgent(s, states.get, alerts, forecasts=forecasts, holds_input=holds_input)
        app.agent(detector_input, name="detect_surges")(agent.detect_surges)
        app.timer(interval=min(5.0, s.detector_checkpoint_s))(agent.keep_detector_clock)

        def _input_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            # mode's Signal calls receiver(sender, revoked, signal=...) and awaits it if it returns an awaitable
            if any(tp.topic == input_name for tp in revoked):
                agent.input_revoked()

        app.on_partitions_revoked.connect(_input_revoked)  # type: ignore[arg-type]  # mode's stub wants signal= by name

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:  # Faust's view signature
        counters = detection.metrics() if detection is not None else {}
        fetch = faustext.deliveries(s, app.consumer)
        body = render_prometheus({**await states.get().metrics(), **counters, **fetch})
        return web.text(body, content_type="text/plain; version=0.0.4")

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode's SignalHandlerT (NamedArg "BaseSignalT") fits no function
    async def close(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        if fetch := faustext.deliveries(s, app.consumer):
            log.info("fetch loop: %s", ", ".join(f"{name} {n}" for name, n in fetch.items()))
        if detection is not None:
            await detection.close()
        await states.close()

    return app


def group_id(s: Settings) -> str:
    """The worker's Faust app id, which is its consumer group: one group per set of roles and of detection parts.

    Faust assumes every member of a group runs the same agents, so a count-only
    and a detect-only worker must not share one. A detection worker running a
    share of the stage (``WF_DETECTION_PARTS``) must read every detector-input
    message, so each set of parts has a group of its own; two workers with the
    same parts share it (the second is a standby).

    >>> from streams.runtime.settings import load_settings
    >>> group_id(load_settings()), group_id(load_settings({"WF_ROLES": "detect"}))
    ('watchfloor-worker', 'watchfloor-worker-detect')
    >>> group_id(load_settings({"WF_ROLES": "detect", "WF_DETECTION_PARTS": "forecaster,surge"}))
    'watchfloor-worker-detect-surge_forecaster'
    """
    app_id = s.app_id if set(s.roles) == {"count", "detect"} else f"{s.app_id}-{'-'.join(s.roles)}"
    return f"{app_id}-{s.detection_set}" if s.detection_set else app_id


def _faust_app(s: Settings) -> CrashExitApp:
    """The Faust app of ``s``, with the integration installed (its options given to Faust)."""
    faustext.install(s)
    faust_dirs = Path(tempfile.gettempdir()) / "watchfloor-faust"
    faust_dirs.mkdir(parents=True, exist_ok=True)
    app_id = group_id(s)
    return CrashExitApp(
        app_id,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",
        topic_partitions=s.partitions,
        consumer_auto_offset_reset="earliest",
        # Every record on every in-sync replica (acks=all; min.insync.replicas makes that at least two in a cluster),
        # and the producer idempotent (streams.faustext.transport.Producer): a retry after a leader change adds no copy.
        producer_acks=-1,
        # Faust's own topics (its assignor's leader topic) replicated like ours.
        topic_replication_factor=s.kafka_replication_factor,
        # a killed worker's partitions go to the survivor after this long without its heartbeats (Faust's default: 60 s)
        broker_session_timeout=s.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, s.kafka_session_timeout_s / 5),
        # Do not wait at shutdown or rebalance for every message to be acknowledged: the
        # detection agent acknowledges with its checkpoints (a clean stop writes one
        # after the consumer stops), and the counting agent's commit is exact by offset.
        stream_wait_empty=False,
        web_port=s.web_port,
        web_host="127.0.0.1",
        # Faust keeps a small folder per app id; keep it out of the working tree.
        datadir=str(faust_dirs / app_id),
        # bounded so that a fetch fits the room left in the agent's buffer (Settings.max_poll_records)
        broker_max_poll_records=s.max_poll_records,
        **faustext.app_options(s),
    )
