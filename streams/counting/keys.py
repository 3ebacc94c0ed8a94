"""The Redis key layout, in one place (pure: builds names, touches nothing).

All keys start with the configured prefix ``P``:

=============================  ======  ====================================================
key                            type    holds
=============================  ======  ====================================================
``P:b:{minute}``               hash    ``{cell}|{category}`` -> calls received in that
                                       event-time minute (``ALL`` is every category);
                                       cells at every counted H3 resolution
``P:buckets``                  zset    minutes that have a bucket (for expiry)
``P:open``                     hash    ``{cell}`` -> open incidents, every resolution
``P:rt:{hour}``                hash    ``{kind}|{area}|n``, ``|sum`` (seconds) and ``|le{s}``
                                       histogram bins of response times ending that hour;
                                       kind is ``dispatch`` (received -> dispatched) or
                                       ``travel`` (dispatched -> on scene); area is the
                                       coarsest counted cell
``P:rthours``                  zset    hours that have a response-time hash
``P:off:{kind}:{partition}``   string  last Kafka offset applied (kind: call / update)
``P:wm:{kind}:{partition}``    string  event-time watermark (epoch s) of that partition
``P:horizon``                  string  epoch minute below which buckets have expired
``P:calls:{partition}``        hash    call id -> worker-internal state of the call
                                       (cells, times, status); never coordinates
``P:callq:{partition}``        zset    call ids by received time (retention)
``P:openq:{partition}``        zset    open call ids by received time (stale timeout)
``P:pend:{partition}``         hash    call id -> updates that arrived before the call
``P:pendq:{partition}``        zset    call ids with pending updates, by time
``P:metrics``                  hash    exact counters (events, dead letters by reason, ...)
``P:alerts``                   stream  alert lifecycle records (field ``alert``: JSON), for the
                                       gateway; the stream id is the alert record's id
``P:detector``                 hash    the detection agent's checkpoint: ``offset`` (last
                                       detector-input offset in it) and ``state`` (the
                                       pickled detectors, signed, base64: see
                                       ``streams.detection.checkpoint``), written every few
                                       seconds; ``applied``: last offset fed, with its alerts
``P:detector:written``         zset    digests of the alert records appended since the
                                       checkpoint, scored by their detector-input offset
                                       (a replay after a crash skips them)
``P:detector:journal``         zset    the detectors' messages and clock ticks since the
                                       checkpoint, each with its wall-clock time, scored by
                                       sequence number (``streams.detection.journal``): a
                                       worker taking over feeds them as they were fed
``P:detector:{set}``           hash    the same, of detection workers that run a share
``P:detector:{set}:written``   zset    of the stage (``WF_DETECTION_PARTS``, the parts
``P:detector:{set}:journal``   zset    joined by ``_``, e.g. ``surge_forecaster``); the
                                       whole stage keeps the three keys above
``P:zones``                    hash    zone id -> zone JSON, written by the gateway (``id``,
                                       ``name``, ``kind``, ``cells``, ``active_from``,
                                       ``active_until``, ``threshold``); the detectors watch
                                       the ``kind: "event"`` ones
``P:zones:version``            string  counter the gateway INCRs whenever it changes
                                       ``P:zones`` (the worker polls it)
``P:allocation``               string  the next shift's allocation a supervisor adopted last
                                       (JSON, written by the gateway: who, when, units, floor,
                                       cap, the forecast version, units and share per area)
=============================  ======  ====================================================

State of a call lives under its partition so that only the worker owning that
partition ever writes it (the commit checks the partition's offset first).
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = "ALL"


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix.

    >>> k = Keys("wf")
    >>> k.bucket(28_000_000), k.calls(3), k.offset("call", 3)
    ('wf:b:28000000', 'wf:calls:3', 'wf:off:call:3')
    >>> k.zones, k.zones_version
    ('wf:zones', 'wf:zones:version')
    >>> k.forecast, k.forecast_version
    ('wf:forecast', 'wf:forecast:version')
    >>> k.detector, Keys("wf", detection="feed_anomaly").detector_written
    ('wf:detector', 'wf:detector:feed_anomaly:written')
    """

    prefix: str
    #: the detection worker's set of parts (:attr:`streams.runtime.settings.Settings.detection_set`): '' for the whole
    #: stage; names its checkpoint keys (:attr:`detector`, :attr:`detector_written`)
    detection: str = ""

    def bucket(self, minute: int) -> str:
        return f"{self.prefix}:b:{minute}"

    @property
    def buckets(self) -> str:
        return f"{self.prefix}:buckets"

    @property
    def open(self) -> str:
        return f"{self.prefix}:open"

    def rt(self, hour: int) -> str:
        return f"{self.prefix}:rt:{hour}"

    @property
    def rt_hours(self) -> str:
        return f"{self.prefix}:rthours"

    def offset(self, kind: str, partition: int) -> str:
        return f"{self.prefix}:off:{kind}:{partition}"

    def watermark(self, kind: str, partition: int) -> str:
        return f"{self.prefix}:wm:{kind}:{partition}"

    @property
    def horizon(self) -> str:
        return f"{self.prefix}:horizon"

    def calls(self, partition: int) -> str:
        return f"{self.prefix}:calls:{partition}"

    def callq(self, partition: int) -> str:
        return f"{self.prefix}:callq:{partition}"

    def openq(self, partition: int) -> str:
        return f"{self.prefix}:openq:{partition}"

    def pending(self, partition: int) -> str:
        return f"{self.prefix}:pend:{partition}"

    def pendq(self, partition: int) -> str:
        return f"{self.prefix}:pendq:{partition}"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def allocation(self) -> str:
        return f"{self.prefix}:allocation"

    @property
    def detector(self) -> str:
        return f"{self.prefix}:detector:{self.detection}" if self.detection else f"{self.prefix}:detector"

    @property
    def detector_written(self) -> str:
        return f"{self.detector}:written"

    @property
    def detector_journal(self) -> str:
        return f"{self.detector}:journal"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    @property
    def zones(self) -> str:
        return f"{self.prefix}:zones"

    @property
    def zones_version(self) -> str:
        return f"{self.prefix}:zones:version"

    @property
    def forecast(self) -> str:
        return f"{self.prefix}:forecast"

    @property
    def forecast_version(self) -> str:
        return f"{self.prefix}:forecast:version"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key under the prefix."""
        return f"{self.prefix}:*"
