"""The detection stage split over several workers, each running a share of the detectors (pure).

Where the time goes (``bench/detect_shards.py`` on the Montgomery file, see
docs/performance.md): most of a call's cost is in detectors that judge the
whole jurisdiction (the call-mix anomaly's Half-Space Trees, closing every
area's window each quarter hour; the forecaster and its quarter-hour
snapshots; the surge detector's county-wide test), not in the surge
detector's scan of a call's few regions. Those detectors cannot be split by
place without changing their alerts (one forest learns every area's windows;
the surge thresholds follow the whole jurisdiction's false-alert budget, its
local tests read the county's rate and open county-wide alert). So the stage
is split by detector: every worker reads every call, in the same order, and
runs its *part* of them:

``surge``       the surge detector (cells, disks and the jurisdiction), the
                event-zone watch that reads its baseline, and the drift
                monitor's hourly residuals of that baseline;
``feed``        the feed-outage monitor;
``anomaly``     the call-mix anomaly detector;
``forecaster``  the shift forecaster and its monitor (the forecast sets).

:func:`layout` places the parts on ``n`` workers, balanced by their measured
cost; :func:`worker_runner` makes worker ``i``'s
:class:`~streams.detection.runner.DetectionRunner`: the full suite, its other
parts held but not run (:class:`detectors.suite.DetectorSuite`'s ``skip``),
and no forecaster unless it has that part (:class:`NoForecasts`). Each
detector sees exactly the calls, in exactly the order, it sees in a single
runner, and no detector reads another's state (but the zone watch, which runs
with the surge detector): the alert records of all workers together are those
of one runner, each alert's records in the same order
(``tests/streams/detection/test_shards.py`` compares them).

Examples
--------
>>> layout(2)
(('surge',), ('feed', 'anomaly', 'forecaster'))
>>> runner = worker_runner(layout(2)[0])
>>> list(runner.suite.detectors), type(runner.forecasting).__name__
(['surge', 'zones'], 'NoForecasts')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from detectors.suite import DetectorSuite
from detectors.types import CallPoint
from streams.detection.parts import PARTS, check_parts
from streams.detection.runner import DetectionRunner, profile_forecaster, profile_suite
from streams.forecasting.issuer import ForecastIssuer, Issue
from streams.jurisdiction import Profile
from streams.jurisdiction.profile import default_profile

#: The suite's detectors (:attr:`detectors.suite.DetectorSuite.detectors` names) of each part; the forecaster is the runner's.
_SUITE_NAMES = {"surge": ("surge", "zones"), "feed": ("feed",), "anomaly": ("extra0",), "forecaster": ()}

#: Parts per worker, by number of workers: balanced by their cost per call on the Montgomery file (docs/performance.md,
#: "Detection stage and its shards"): the surge detector alone costs about two thirds of the three others together
#: (2026-12-07): the other worker of two bounds the split.
_LAYOUTS: dict[int, tuple[tuple[str, ...], ...]] = {
    1: (PARTS,),
    2: (("surge",), ("feed", "anomaly", "forecaster")),
    3: (("surge",), ("feed", "anomaly"), ("forecaster",)),
    4: (("surge",), ("feed",), ("anomaly",), ("forecaster",)),
}


def layout(workers: int) -> tuple[tuple[str, ...], ...]:
    """The parts each of ``workers`` detection workers runs (1 to 4).

    >>> layout(1)
    (('surge', 'feed', 'anomaly', 'forecaster'),)
    >>> layout(5)
    Traceback (most recent call last):
    ...
    ValueError: detection workers must be 1 to 4 (the detection stage has 4 parts: surge, feed, anomaly, forecaster), found 5
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers not in _LAYOUTS:
        raise ValueError(
            f"detection workers must be 1 to {len(PARTS)} (the detection stage has {len(PARTS)} parts: "
            f"{', '.join(PARTS)}), found {workers!r}"
        )
    return _LAYOUTS[workers]


class NoForecasts(ForecastIssuer):
    """The forecaster of a worker that does not run it (another worker does): learns nothing, issues nothing.

    >>> issuer = NoForecasts()
    >>> issuer.learn_one(CallPoint(t=0.0, cell="882aac941dfffff", category="EMS")); issuer.advance(3600.0)
    >>> issuer.take() is None, issuer.metrics()
    (True, {})
    """

    def learn_one(self, x: CallPoint) -> None:
        return None

    def learn_history(self, points: Iterable[CallPoint]) -> None:
        return None

    def advance(self, t: float) -> None:
        return None

    def take(self) -> Issue | None:
        return None

    def metrics(self) -> dict[str, float]:
        return {}


def worker_runner(
    parts: Sequence[str],
    profile: Profile | None = None,
    *,
    thresholds: tuple[float, float] | None = None,
    **runner_options: Any,
) -> DetectionRunner:
    """The runner of a detection worker that runs ``parts`` (see :data:`PARTS`) of the stage.

    Built as the single worker's is (:func:`~streams.detection.runner.profile_suite`
    with ``thresholds`` and :func:`~streams.detection.runner.profile_forecaster` of
    ``profile``, :func:`~streams.jurisdiction.profile.default_profile` when None),
    the other parts held but not run. ``runner_options`` go to
    :class:`~streams.detection.runner.DetectionRunner` (``partitions``, ``reorder_s``, ``idle_s``, ...).
    """
    run = check_parts(parts)
    profile = profile if profile is not None else default_profile()
    suite = share_suite(profile_suite(profile, thresholds), run)
    forecasting = ForecastIssuer(profile_forecaster(profile)) if "forecaster" in run else NoForecasts()
    return DetectionRunner(suite=suite, forecasting=forecasting, **runner_options)


def share_suite(full: DetectorSuite, parts: Sequence[str]) -> DetectorSuite:
    """``full``'s detectors (the same objects), the suite's detectors of the parts not in ``parts`` held but not run.

    >>> from streams.detection.runner import default_suite
    >>> list(share_suite(default_suite(), ["feed", "anomaly"]).detectors)
    ['feed', 'extra0']
    """
    run = check_parts(parts)
    skip = [name for part in PARTS if part not in run for name in _SUITE_NAMES[part]]
    return DetectorSuite(surge=full.surge, feed=full.feed, extra=full.extra, score=full.score, zones=full.zones, skip=skip)


def runner_parts(runner: DetectionRunner) -> tuple[str, ...]:
    """The parts ``runner`` runs: those whose detectors its suite runs, and the forecaster unless it is :class:`NoForecasts`.

    >>> runner_parts(worker_runner(("surge", "forecaster"))), runner_parts(worker_runner(PARTS)) == PARTS
    (('surge', 'forecaster'), True)
    """
    running = runner.suite.detectors
    suite_parts = [part for part in PARTS if _SUITE_NAMES[part] and _SUITE_NAMES[part][0] in running]
    forecaster = [] if isinstance(runner.forecasting, NoForecasts) else ["forecaster"]
    return check_parts([*suite_parts, *forecaster])
