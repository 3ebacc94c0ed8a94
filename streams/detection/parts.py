"""The parts of the detection stage a detection worker may run, by name (pure; no detector imported).

The detection stage can be split by detector over workers that each read every
call (see :mod:`streams.detection.shards`); ``WF_DETECTION_PARTS`` names the
parts a worker runs (:func:`streams.runtime.settings.load_settings`). This
module holds the names alone, so that the settings can check them without
importing the detectors.

Examples
--------
>>> check_parts(["forecaster", "surge"])
('surge', 'forecaster')
>>> part_set(("surge", "forecaster")), part_set(PARTS)
('surge_forecaster', '')
"""

from __future__ import annotations

from collections.abc import Iterable

#: The parts of the detection stage, in the order a single runner runs them.
PARTS = ("surge", "feed", "anomaly", "forecaster")


def check_parts(parts: Iterable[str]) -> tuple[str, ...]:
    """``parts`` as a tuple in :data:`PARTS` order; a ValueError names any unknown part or an empty set.

    >>> check_parts(["surges"])
    Traceback (most recent call last):
    ...
    ValueError: unknown detection part(s) ['surges']; the parts are surge, feed, anomaly, forecaster
    >>> check_parts([])
    Traceback (most recent call last):
    ...
    ValueError: a detection worker needs at least one part of surge, feed, anomaly, forecaster
    """
    wanted = set(parts)
    unknown = sorted(wanted - set(PARTS))
    if unknown:
        raise ValueError(f"unknown detection part(s) {unknown}; the parts are {', '.join(PARTS)}")
    if not wanted:
        raise ValueError(f"a detection worker needs at least one part of {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in wanted)


def detection_parts(text: str) -> tuple[str, ...]:
    """``WF_DETECTION_PARTS``: comma-separated parts (any order, spaces dropped), checked by :func:`check_parts`.

    >>> detection_parts(" anomaly, feed ")
    ('feed', 'anomaly')
    >>> detection_parts(",")
    Traceback (most recent call last):
    ...
    ValueError: a detection worker needs at least one part of surge, feed, anomaly, forecaster
    """
    return check_parts(p.strip() for p in text.split(",") if p.strip())


def part_set(parts: Iterable[str]) -> str:
    """The name of a set of parts in key and consumer-group names: '' for the whole stage, else the parts joined by '_'.

    (Not '+': Faust names topics after the consumer group, and Kafka allows no '+' in a topic's name.)

    >>> part_set(["anomaly", "feed"]), part_set(["forecaster", "anomaly", "feed", "surge"])
    ('feed_anomaly', '')
    """
    run = check_parts(parts)
    return "" if run == PARTS else "_".join(run)
