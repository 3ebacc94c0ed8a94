"""Offline evaluation of the surge detectors on real 911 data with injected surges, against EARS baselines.

Usage::

    python bench/evaluate.py [PATH] [--profile P.toml] [--timezone ZONE] [--budget B] [--injections N] [--wide N] [--seed S] [--out DIR]

No Kafka, no Redis: PATH (default: the real Montgomery County file in
``../shared/data``, or, where that is absent, a seeded simulator file written
to ``--out`` first; both are read through :func:`streams.ingest.history.read_history`,
the replay's own adapters) is replayed in event time through the very
:class:`detectors.suite.DetectorSuite` the worker runs, with the event clock
ticking every minute between calls as the worker's does.

What it measures
----------------
* **Injected surges** into the real background, seeded: sizes 5, 10 and 20
  extra calls, durations 15, 30 and 60 minutes, in one res-8 cell or in a
  cell and its ring of six neighbours. The centre and start of each are those
  of a background call drawn at random from its day, so surges happen where
  and when calls do (busy places at busy hours, the hard case). The first
  ``--warmup-days`` days are warm-up only. The remaining ordinary days are
  split at random into *injection days* (up to ``--per-day`` surges each,
  hours apart: each anchored in its own part of the day's calls) and *clean
  days*.
* **Probability of detection (POD)** and the **delay** from the first injected
  call to the first alert (open or update) whose cells include an injected
  cell, within the injection and the 30 minutes after it; and the POD within
  15 minutes of the first injected call.
* **False alerts per day**: surge alerts opened on clean days, per 24 hours of
  live feed (so a file with three hours a day is judged per 24 live hours).
  Known real surge days are neither clean nor injected.
* **Baselines side by side**: CDC EARS C1, C2, C3 (:mod:`detectors.ears`) and
  a fixed threshold, computed here on the same data (background plus
  injections), the same regions (each res-8 cell and each disk of a cell and
  its ring) and the same 15- and 60-minute windows, evaluated at every call.
  Exceedances are grouped into alerts like ours (overlapping cells, less than
  90 minutes apart: our 60-minute window plus our 30 closing minutes). Each
  baseline's threshold is tuned so that its false alerts per day on the clean
  days are at most ours: the comparison is at equal false-alert rate (the
  lowest such threshold above the statistic's 95th percentile: a rule that is
  on at more than 5 % of its evaluations merges into a few endless alerts and
  is no alert at all). EARS C3 is also run on incident counts (repeat calls
  removed as our detector does) to separate the test from the declustering.
* **ROC**: our detector at several thresholds, each baseline tuned to each of
  our false-alert rates: ``roc.png``, POD against false alerts per day, one
  curve per method, for all injected surges and for the 5-call ones.
* **Real events**: when our detectors fired on the known real surges (the
  January 2016 blizzard in the main file, the 2018-11-15 snowstorm in the
  sample file), and which feed outages were reported as ``FEED_OUTAGE``.

* **Jurisdiction-wide surges** (``--wide``, default 27): +50 %, +100 % and
  +200 % of the usual calls over 1, 2 and 3 hours, spread over the
  jurisdiction as its calls usually are (:mod:`detectors.evaluation.wide`),
  one on each of their own days; their POD within the surge plus 30 minutes
  and within 30 minutes of its first call, beside an ideal test's.
* **The false-alert budget**: the surge thresholds are calibrated
  (:func:`detectors.calibration.calibrate`) to ``--budget`` alerts a day (the
  profile's ``false_alerts_per_day``, default 1.0) on the background of the
  clean days, unless ``--thresholds`` gives them; the achieved rate is reported.

Time zone
---------
Days (warm-up, clean and injection days) and the detectors' hours of the week
are local to the jurisdiction: ``--timezone`` if given, else the ``--profile``'s
zone, else UTC with a warning (no city lives in UTC). The known real events of
the shared Montgomery files keep their own zone.

Warm-up
-------
Warm-up is counted in live feed, not calendar time (see
:mod:`detectors.baseline`): the detectors stay silent until they have learnt
1,000 calls and 24 hours of live feed, and the first ``--warmup-days`` local
dates with calls are neither injected nor counted. On the continuous main file
that is two weeks. The sample file holds three hours (12:00-15:00) on one day
a month: a "day" there is one slice, the detectors are ready after about 15
monthly slices (its month-long gaps are reported as feed outages and never
learnt as quiet), they know the 12:00-15:00 rhythm only, and false alerts are
per 24 hours of live feed, i.e. per eight slices; its figures rest on a
handful of slices and are indicative only.

Writes ``results.json`` and ``roc.png`` to ``--out`` (default ``out/evaluation``).
The evaluation itself is :mod:`detectors.evaluation` (pure); this command reads
the file, runs the sweep in worker processes, shows progress, writes the
results and plots the ROC curves.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from _common import MONTGOMERY, ROOT, parser, write_json
from tqdm import tqdm

from detectors.evaluation import SWEEP, Calls, report
from detectors.evaluation import evaluate as run_evaluation
from detectors.evaluation.events import local_day
from streams.ingest.history import read_history
from streams.jurisdiction import default_profile, load_profile

DEFAULT_DATA = MONTGOMERY
#: Local dates needed after the warm-up: the partial last one and at least three to inject into and count on.
MIN_SCORED_DATES = 4


def simulate(out: Path, days: float, seed: int) -> Path:
    """A seeded simulator file (the fresh-clone fallback), written as the watchfloor CSV."""
    from streams.ingest.simulator import Simulator, write_csv

    path = out / f"simulated-{days:g}d-seed{seed}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        write_csv(Simulator(seed=seed, days=days).calls(), fh)
    return path


def _track(progress: bool):
    """A :data:`detectors.evaluation.replay.Track` showing tqdm bars on stderr (none when ``progress`` is false)."""

    def track(items: Iterable, desc: str, total: int | None = None) -> Iterable:
        return tqdm(items, desc=desc, total=total, file=sys.stderr, disable=not progress, mininterval=0.5)

    return track


def plot(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    """POD against false alerts per day, one curve per method: all injected surges, and the 5-call ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    panels = (("pod_all", "all injected surges (5, 10, 20 calls; 15-60 min; cell or ring)"), ("pod_size5", "surges of 5 extra calls"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, pts in curves.items():
            pts = sorted(pts, key=lambda p: p["fa_per_day"])
            xs = [max(p["fa_per_day"], 0.01) for p in pts]
            ax.plot(xs, [p[key] for p in pts], marker="o", label=name, linewidth=2.5 if "ours" in name else 1.2)
        ax.axvline(1.0, color="grey", linestyle=":", label="1 false alert a day")
        ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("false alerts per day (clean days, whole jurisdiction)")
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("probability of detection")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(
    path: Path,
    out: Path,
    injections: int,
    seed: int,
    warmup_days: int,
    per_day: int,
    sweep: tuple[float, ...] = SWEEP,
    workers: int = 2,
    progress: bool = True,
    make_plot: bool = True,
    timezone: str = "UTC",
    wide: int = 27,
    budget: float = 1.0,
    thresholds: tuple[float, float] | None = None,
    read_options: dict | None = None,
    options: dict | None = None,
) -> dict:
    """Read ``path`` (``read_options`` passed to :func:`read_history`), run :func:`detectors.evaluation.evaluate`
    (the sweep and the calibration in ``workers`` processes), write ``results.json`` and, with ``make_plot``,
    ``roc.png`` to ``out``; returns what ``results.json`` holds."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    history, skipped = read_history(path, progress, **(read_options or {}))
    track = _track(progress)
    kwargs: dict[str, Any] = dict(
        data=str(path), skipped=skipped, injections=injections, seed=seed, warmup_days=warmup_days, per_day=per_day,
        timezone=timezone, wide=wide, budget=budget, calibrated=thresholds is None, thresholds=thresholds,
        options=options or {},
    )  # fmt: skip
    background = Calls.from_history(history)
    tz = ZoneInfo(timezone)
    dates = {local_day(t, tz) for t in background.t}
    if len(dates) < warmup_days + MIN_SCORED_DATES:
        raise SystemExit(
            f"{path.name} holds calls on {len(dates)} local dates: the evaluation warms the detectors up on the first "
            f"{warmup_days} (--warmup-days) and needs at least {MIN_SCORED_DATES} more (the first and last are partial) to "
            "inject surges into and count false alerts on; give a month or more of calls, or lower --warmup-days"
        )
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = run_evaluation(background, sweep=sweep, mapper=pool.map, track=track, **kwargs)
    else:
        results = run_evaluation(background, sweep=sweep, track=track, **kwargs)
    results["runtime"]["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(out / "results.json", results)
    if make_plot:
        plot(results["roc"], out / "roc.png", f"{path.name}: detection against false alerts, each baseline tuned to each of our rates")
    results["runtime"]["total_seconds"] = round(time.perf_counter() - started, 1)
    return results


def build_parser() -> argparse.ArgumentParser:
    p = parser(__file__, __doc__)
    p.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=None,
        help=f"a 911 CSV any source adapter reads (default {DEFAULT_DATA.name}, or the simulator)",
    )
    p.add_argument("--injections", type=int, default=360, metavar="N", help="surges to inject (default 360)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the injections (and of the simulator fallback)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "evaluation", metavar="DIR", help="where results.json and roc.png go")
    p.add_argument("--warmup-days", type=int, default=14, metavar="D", help="first local dates used for warm-up only (default 14)")
    p.add_argument("--per-day", type=int, default=3, metavar="K", help="at most K surges per injection day, hours apart (default 3)")
    p.add_argument("--sim-days", type=float, default=120.0, metavar="N", help="days simulated when PATH is absent (default 120)")
    p.add_argument("--no-sweep", action="store_true", help="only the default threshold (no ROC curve for ours)")
    p.add_argument("--workers", type=int, default=2, help="processes for the calibration and the threshold sweep (default 2)")
    p.add_argument("--profile", type=Path, metavar="P.toml", help="the jurisdiction profile: its time zone and false-alert budget")
    p.add_argument("--timezone", metavar="ZONE", help="IANA zone of the jurisdiction (overrides the profile's; UTC when neither is given)")
    p.add_argument("--budget", type=float, metavar="B", help="false alerts a day to calibrate to (default: the profile's, 1.0)")
    p.add_argument("--thresholds", metavar="L,J", help="local and jurisdiction surge thresholds to use instead of calibrating them")
    p.add_argument(
        "--cusum", type=float, metavar="R", help="also test the jurisdiction with a Poisson CUSUM for a rise of R (1.0: doubling)"
    )
    p.add_argument("--wide", type=int, default=27, metavar="N", help="jurisdiction-wide surges to inject, one a day (default 27)")
    p.add_argument("--mapping", type=Path, metavar="M.toml", help="the file's source mapping (default: the built-in format detected)")
    p.add_argument("--format", dest="source_format", metavar="NAME", help="the file's built-in format (default: detected)")
    return p


def settings(args: argparse.Namespace) -> tuple[str, float, tuple[float, float] | None, dict]:
    """The zone (--timezone > profile > UTC with a warning), the budget (--budget > profile), the thresholds
    given, and the options of read_history: the format (--mapping's file or --format's name) and, with
    --timezone, the zone of times without an offset (else the format's own)."""
    profile = load_profile(args.profile) if args.profile else default_profile()
    timezone = args.timezone or (profile.timezone if args.profile else None)
    if timezone is None:
        print("warning: no --timezone and no --profile: days and hours of the week are counted in UTC", file=sys.stderr)
        timezone = "UTC"
    budget = args.budget if args.budget is not None else profile.false_alerts_per_day
    thresholds = None
    if args.thresholds:
        try:
            local, county = (float(x) for x in args.thresholds.split(","))
        except ValueError:
            raise SystemExit(
                f"--thresholds must be two numbers, local and jurisdiction, such as 6.0,4.5; got {args.thresholds!r}"
            ) from None
        thresholds = (local, county)
    options: dict = {}
    if args.mapping and args.source_format:
        raise SystemExit("give --mapping or --format, not both: a mapping file is the format")
    if args.mapping:
        from streams.ingest.mapping import MappingError, load_mapping

        try:
            options["fmt"] = load_mapping(args.mapping)
        except MappingError as exc:
            raise SystemExit(str(exc)) from None
    elif args.source_format:
        options["fmt"] = args.source_format
    if args.timezone:
        options["timezone"] = args.timezone  # times without an offset are wall times in it, as the replay reads them
    return timezone, budget, thresholds, options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.path
    args.out.mkdir(parents=True, exist_ok=True)
    if path is None:
        path = DEFAULT_DATA if DEFAULT_DATA.exists() else simulate(args.out, args.sim_days, args.seed)
    if not path.exists():
        build_parser().error(f"{path} does not exist")
    timezone, budget, thresholds, options = settings(args)
    results = evaluate(
        path, args.out, args.injections, args.seed, args.warmup_days, args.per_day,
        sweep=() if args.no_sweep else SWEEP, workers=args.workers, timezone=timezone, wide=args.wide, budget=budget,
        thresholds=thresholds, read_options=options,
        options={} if args.cusum is None else {"jurisdiction_cusum": args.cusum},
    )  # fmt: skip
    print(report(results))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'roc.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
