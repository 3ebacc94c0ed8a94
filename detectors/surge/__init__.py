"""Surges: more calls in a place, in the last minutes, than its expected count makes plausible.

:class:`SurgeDetector` is a space-time scan of small regions with a Poisson
tail test, plus a negative-binomial test of the whole jurisdiction.

Regions and windows
-------------------
The regions containing a call in res-8 cell ``c`` are the cell alone and the
seven disks ``h3.grid_disk(n, 1)`` (a cell and its ring) centred on ``c`` or
on one of its neighbours, so a surge spread over adjacent cells is seen whole
by at least one disk. Each is tested over the last ``windows_min`` minutes
(15 and 60). The jurisdiction is a region too, tested on all calls and on
each category over ``jurisdiction_windows_min`` (15, 20, 30, 60 and 180: a
county-wide storm builds up over hours; on the Montgomery file the 20-minute
window flags the January 2016 blizzard two minutes sooner than the others, for
no extra false alert), at most once a minute.

Incidents, not records
----------------------
Real feeds record one incident several times: several callers, one record per
agency (``Traffic``, ``EMS`` and ``Fire`` records of one accident at the same
coordinates), sometimes the same record geocoded to two neighbouring
intersections at the same second. In the Montgomery County file 6.5 % of calls
follow another in the same res-8 cell within 2 minutes and 713 share their
second with a call in a neighbouring cell; counted as independent calls, a
quiet block's one accident looks like a surge (on that file, counting records
gives 2.5 false alerts a day at the default threshold, counting incidents 0.6). So the test counts
*incidents*: a call is a repeat when a new incident was counted in the same
cell at most ``repeat_s`` seconds before it, or when any call arrived in a
neighbouring cell at most ``same_instant_s`` seconds before it. A cell thus
counts at most one incident per ``repeat_s``: a burst of calls in one cell
still counts one incident every two minutes (the rule is
:func:`~detectors.surge.incidents.is_incident`, also run over a whole stream by
:func:`incidents`). The share of calls that are new incidents, ``rho`` (0.93
on the Montgomery file), is learnt online.

The test
--------
For a region and a window ending at ``now``, with ``O`` incidents observed and
``E`` calls expected by :class:`detectors.baseline.ExpectedCounts`::

    p     = P(X >= O),  X ~ Poisson(rho E)                        cells and disks
    p     = P(X >= O),  X ~ NegBin(mean rho E, shape k)            the jurisdiction
    score = -log10 p

The jurisdiction's counts vary more from hour to hour than a Poisson law
allows (weather, events): the negative binomial's variance is
``rho E + (rho E)**2 / k`` with ``k = jurisdiction_shape`` (20; measured on
the Montgomery file, hourly incident counts against this baseline have
``k`` about 16 for all calls and 5 for Traffic, which bad weather moves). A region exceeds
when ``score >= threshold`` (``jurisdiction_threshold`` for the jurisdiction,
which is one region, not thousands) and ``O >= min_incidents``. The floor on
``O`` is there because three separate incidents within minutes in a quiet
block (a multi-vehicle accident recorded as three) happen daily in real data
however small their Poisson probability (on the Montgomery file a floor of 3
gives 1.6 false alerts a day at the default threshold, 4 gives 0.6). The jurisdiction test leaves out
each window's busiest disk, so that one local surge, which the local test
judges, does not also raise a county-wide alert. While a county-wide alert is
open, local expectations are scaled up by the county's observed-to-expected
ratio outside the region: a storm is one alert, and only places hot beyond
the storm alert on their own.

Alerts: one surge, one alert
----------------------------
:meth:`SurgeDetector.advance` evaluates the regions of the cells that got
calls since the last evaluation and the regions of open alerts. An exceedance
whose region shares a cell with an open alert's footprint belongs to that
alert; otherwise it opens one (exceedances overlapping each other open one
alert). ``UPDATE`` is emitted when an alert grows: a fifth more calls
(``update_growth``) than it ever reported in its strongest region and window,
or calls in cells it never reported. (Reporting every call it gains made a
storm's alerts re-report several times a second each: nine records in ten a
dashboard had no use for, and a fifth of the detection worker's time.) An
alert closes (``CLOSED``) once none of its regions has scored
``close_threshold`` for ``close_after_min`` minutes. Its id,
``surge:<centre cell or 'jurisdiction'>:<started_at>``, holds for its whole life
and across replays of the same input.

Every alert explains itself: ``observed`` is the number of calls of ``cells``
in the window ``(at - window_min, at]`` of its strongest region,
``expected`` the calls expected there, ``categories`` those calls by category,
``score`` and ``p_value`` the test, ``model`` and ``model_version``, and a
one-sentence ``reason``.

Warm-up: nothing scores or alerts until the baseline is ready (see
:class:`~detectors.baseline.ExpectedCounts`); calls are learnt meanwhile.

Cost: the calls of the last ``max(windows)`` minutes, in one list per cell
with calls (and the times of its incidents), plus the baseline's decayed
counts per cell. A call touches at most 8 regions; a region's counts come from
bisecting its cells' lists, so the work per call grows with the logarithm of
the calls in a cell, not with their number (a storm stays cheap), and a
region's calls are listed only when they become an alert's explanation. The
regions of one evaluation overlap: each cell's counts and expected share, and
each window's jurisdiction totals, are read once per evaluation and shared
(``_Round``). An open alert no finding touches costs one set test per call.

Modules
-------
:mod:`~detectors.surge.regions` (cells, disks, the jurisdiction),
:mod:`~detectors.surge.incidents` (the repeat rule),
:mod:`~detectors.surge.scan` (counts and tests),
:mod:`~detectors.surge.lifecycle` (one surge, one alert),
:mod:`~detectors.surge.explanation` (the alert and its sentence),
:mod:`~detectors.surge.detector` (:class:`SurgeDetector`: configuration, windows, River verbs).

Examples
--------
Two weeks of calls over a small town (127 cells), then 12 traffic calls in
24 minutes in one block and its ring:

>>> import random
>>> import h3
>>> from detectors.baseline import ExpectedCounts
>>> from detectors.types import CallPoint
>>> rng = random.Random(3)
>>> town = sorted(h3.grid_disk("882aac941dfffff", 6))
>>> det = SurgeDetector(baseline=ExpectedCounts(warmup_calls=500, warmup_hours=48))
>>> t, alerts = 1_700_000_000.0, []
>>> for _ in range(5000):
...     t += rng.expovariate(15 / 3600)
...     category = rng.choice(["EMS", "EMS", "TRAFFIC", "FIRE"])
...     alerts += det.process(CallPoint(t=t, cell=rng.choice(town), category=category))
>>> alerts
[]
>>> block = h3.grid_disk("882aac941dfffff", 1)
>>> for i in range(12):
...     alerts += det.process(CallPoint(t=t + 120.0 * (i + 1), cell=rng.choice(block), category="TRAFFIC"))
>>> [(a.state.value, a.observed) for a in alerts]  # it reports 6, 8 and 11 calls, a fifth more each time
[('open', 5), ('update', 6), ('update', 8), ('update', 11)]
>>> a = alerts[-1]
>>> a.observed, a.window_min, round(a.expected, 2), a.categories
(11, 60, 0.68, {'TRAFFIC': 11})
>>> a.reason
'11 calls (10 incidents) in 60 min in 7 cells around 882aac941dfffff, 0.68 expected (p = 3e-09)'
>>> alerts += det.advance(t + 3 * 3600.0)
>>> alerts[-1].state.value, alerts[-1].id == alerts[0].id
('closed', True)
"""

from detectors.surge.detector import UPDATE_GROWTH, SurgeDetector
from detectors.surge.explanation import MODEL, MODEL_VERSION
from detectors.surge.incidents import incidents
from detectors.surge.regions import JURISDICTION

__all__ = ["JURISDICTION", "MODEL", "MODEL_VERSION", "UPDATE_GROWTH", "SurgeDetector", "incidents"]
