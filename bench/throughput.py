"""Events per second from Kafka into exact Redis counts, next to the framework's ceilings and a peer.

    python -m infra.stack up
    python bench/throughput.py [PATH] [--calls 50000] [--runs 3] [--readers worker,quix] [--json out.json]

Loads ``--calls`` calls (and their incident updates) from PATH (default: the
real Montgomery file when ``../shared/data`` is present, else a simulator file)
into fresh 4-partition topics, then reads the same records, in the same run,
with each reader in turn (``--readers`` picks some):

``aiokafka``      a bare aiokafka consumer (no processing: the machine's ceiling);
``faust-events``  a bare Faust agent iterating events one at a time, doing nothing;
``faust-batch``   the same bare agent iterating Faust's ``take_events`` batches;
``faust-fast``    the events agent on the worker's fetch loop (``streams.faustext.fastpath``:
                  no task per record), the framework as the worker runs it;
``worker``        the Watchfloor worker, counting role (validation, H3, planning,
                  detector input, the atomic Redis commit of counts and offsets);
``worker-x2``     two such workers in one consumer group, two partitions each;
``quix``          the same rolling-count job written with Quix Streams
                  (``bench/quix_peer.py``; needs ``pip install -e '.[bench]'``).

Timing. A rate is the records that arrived after a reader's first observation
divided by the time from that observation to its last: the bare readers time
themselves from the first record or batch read; the worker, the two workers and
the peer are timed from outside, by polling their progress in Redis every 20 ms
(applied Kafka offsets; the peer's ``records_total``) from the first batch seen
committed to the last. Start-up and group joins are outside the interval.

The two workers must not be timed across a rebalance, and a second member
joining a group that is already consuming causes one. So they start on fresh,
empty copies of the topics; the benchmark waits until the group is stable, every
partition assigned (two each) and both workers have logged Faust's "Worker
ready" since their last assignment, stops both processes (SIGSTOP), loads the
same records into the copies, and lets both go at once (SIGCONT); the interval
then starts at their first commit, as for one worker, and ends when both are
done. The stop lasts as long as the load (about a second per 10,000 records, far
under Faust's 60 s session timeout); a member change or a new assignment in the
workers' logs after the release is reported as a rebalance. When each worker
finished its share is reported too: the slower one sets the rate.

The Quix Streams peer does the worker's validation and H3 cells and counts into
Redis in batches of the worker's size, but less than the worker (no exactly-once
commit, no detector input, no call state): ``bench/quix_peer.py`` lists it.

Every counting reader's Redis counts are checked for exactness: the cells of
every counted resolution add up to the calls counted, and counted plus refused
records add up to every record loaded. Prints a table (median of ``--runs``,
each reader's ratio to the bare aiokafka consumer and to the bare Faust agent)
and whether issue 5's targets are met; ``--json PATH`` writes the same figures.
The topics, Redis keys and empty consumer groups this run created are deleted
at the end (``--keep`` keeps them, and the readers' logs); the bare Faust agents
exit without leaving their groups, which the broker forgets by itself.
Importable: ``run(Options(...))`` returns the JSON-able result and
``report(result)`` the text.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import throughput_readers as readers
from _common import add_json, add_runs, default_source, parser, write_json

from infra import stack
from streams.ingest.replay import Outgoing, Pace, plan_replay, produce
from streams.ingest.sources import detect_format
from streams.runtime.settings import Settings, load_settings
from streams.topics import CALLS, INCIDENT_UPDATES, topic_name

#: Reader id -> its name in the table, in the order they run.
READERS = {
    "aiokafka": "bare aiokafka consumer",
    "faust-events": "bare Faust agent (events)",
    "faust-batch": "bare Faust agent (take_events)",
    "faust-fast": "bare Faust agent (fast path)",
    "worker": "Watchfloor worker",
    "worker-x2": "Watchfloor worker x2",
    "quix": "Quix Streams peer",
}
CEILING = "aiokafka"
BASE = "faust-events"
#: Issue 5: the worker keeps at least this share of the bare Faust agent's rate.
TARGET_VS_FAUST = 0.80
#: Issue 5's targets: (key, reader, reference, threshold, strict, text); met when
#: reader / reference >= threshold, or > threshold when strict.
TARGETS = (
    (
        "worker_vs_faust",
        "worker",
        BASE,
        TARGET_VS_FAUST,
        False,
        f"Watchfloor worker >= {TARGET_VS_FAUST:.0%} of the bare Faust agent (events)",
    ),
    ("worker_vs_quix", "worker", "quix", 1.0, True, "Watchfloor worker ahead of the Quix Streams peer"),
    ("x2_vs_x1", "worker-x2", "worker", 1.0, True, "two workers on separate partitions process more than one"),
)
QUIX_INSTALL = "pip install -e '.[bench]'  (or: pip install 'quixstreams>=3,<4')"


@dataclass(frozen=True)
class Options:
    """What :func:`run` does; :func:`parse_args` builds it from the command line."""

    #: CSV to load; None: the Montgomery file, else a simulator file.
    path: Path | None = None
    #: Calls to load (each with its updates).
    calls: int = 50_000
    #: Runs of every reader; the tables show medians.
    runs: int = 3
    #: Reader ids (keys of READERS), run in READERS' order.
    readers: tuple[str, ...] = tuple(READERS)
    #: Also time the detection agent in-process on the same calls.
    detection: bool = True
    #: Keep the topics, groups, Redis keys and logs of the run.
    keep: bool = False
    #: Progress bars on stderr (only when it is a terminal).
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [r for r in self.readers if r not in READERS]
        if unknown or not self.readers:
            raise ValueError(f"readers must be a non-empty subset of {', '.join(READERS)}, found {', '.join(unknown) or 'none'}")
        if self.calls < 1 or self.runs < 1:
            raise ValueError(f"calls and runs must be >= 1, found {self.calls}, {self.runs}")


def _say(msg: str) -> None:
    print(f"[throughput] {msg}", file=sys.stderr, flush=True)


# -- source -------------------------------------------------------------------


# -- the detection agent, in-process ----------------------------------------------


def detection_cost(records: list[Outgoing], prefix: str) -> dict:
    """The detection agent's work per call, in-process: decode, order, detect, checkpoint (pickle)."""
    import pickle

    import h3

    from streams.detection.runner import DetectionRunner, encode_points

    calls = [json.loads(r.value) for r in records if r.topic == topic_name(prefix, CALLS)]
    points = []
    for i, c in enumerate(calls):
        if c.get("lat") is None or c.get("lng") is None or (c["lat"] == 0 and c["lng"] == 0):
            continue
        t = datetime.fromisoformat(c["received_at"].replace("Z", "+00:00")).timestamp()
        points.append((0, i, t, h3.latlng_to_cell(c["lat"], c["lng"], 8), c["category"], c.get("priority")))
    messages = [encode_points(points[i : i + 1000]) for i in range(0, len(points), 1000)]
    runner = DetectionRunner()
    alerts = 0
    t0 = time.perf_counter()
    for m in messages:
        alerts += len(runner.feed(m, wall=0.0))
    alerts += len(runner.flush())
    detect_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    blob = pickle.dumps(runner)
    pickle_s = time.perf_counter() - t0
    return {"points": len(points), "seconds": detect_s, "alerts": alerts, "checkpoint_bytes": len(blob), "checkpoint_s": pickle_s}


# -- summary (pure) ---------------------------------------------------------------


def summarize(rates: dict[str, list[float]]) -> dict[str, dict]:
    """Per reader: median rate, the runs, and the ratios to the bare aiokafka consumer and to the bare Faust agent.

    Ratios use the medians; ``per_run`` ones pair each run with the same run of
    the reference. A missing reference gives ``None``.

    >>> s = summarize({"aiokafka": [100.0, 100.0], "faust-events": [10.0, 10.0], "worker": [8.0, 9.0]})
    >>> s["worker"]["rate"], s["worker"]["vs_aiokafka"], s["worker"]["vs_faust_per_run"]
    (8.5, 0.085, [0.8, 0.9])
    """
    out: dict[str, dict] = {}
    for name, runs in rates.items():
        row: dict = {"name": READERS[name], "rate": statistics.median(runs), "runs": runs}
        for ref, label in ((CEILING, "aiokafka"), (BASE, "faust")):
            base = rates.get(ref)
            row[f"vs_{label}"] = statistics.median(runs) / statistics.median(base) if base else None
            row[f"vs_{label}_per_run"] = [r / b for r, b in zip(runs, base, strict=False)] if base else None
        out[name] = row
    return out


def targets(readers: dict[str, dict]) -> dict[str, dict]:
    """Issue 5's three targets: each ``{"target", "ratio", "value", "per_run", "met"}``; ``None``s when a reader it needs did not run.

    ``value`` is the ratio of the medians the target is judged on; ``per_run``
    pairs the runs.

    >>> t = targets({"faust-events": {"runs": [10.0]}, "worker": {"runs": [9.0]}, "quix": {"runs": [12.0]}})
    >>> t["worker_vs_faust"]["met"], t["worker_vs_quix"]["value"], t["x2_vs_x1"]["met"]
    (True, 0.75, None)
    """

    def ratio(a: str, b: str) -> tuple[float | None, list[float] | None]:
        if not (readers.get(a, {}).get("runs") and readers.get(b, {}).get("runs")):
            return None, None
        ra, rb = readers[a]["runs"], readers[b]["runs"]
        return statistics.median(ra) / statistics.median(rb), [x / y for x, y in zip(ra, rb, strict=False)]

    out = {}
    for key, a, b, threshold, strict, text in TARGETS:
        value, per_run = ratio(a, b)
        met = None if value is None else (value > threshold if strict else value >= threshold)
        out[key] = {"target": text, "ratio": f"{a} / {b}", "value": value, "per_run": per_run, "met": met}
    return out


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1%}" if x < 0.1 else f"{x:,.0%}"


def report(result: dict) -> str:
    """The table and the summary lines for a :func:`run` result."""
    lines = [
        f"{result['records']:,} records ({result['calls']:,} calls + {result['updates']:,} updates) from {result['source']}, "
        f"{result['partitions']} partitions, median of {result['runs']} run(s); the machine is shared, so read the runs too",
        "",
        f"{'reader':32} {'records/s':>10} {'vs aiokafka':>12} {'vs bare Faust':>14}   runs (records/s)",
    ]
    for row in result["readers"].values():
        if row.get("skipped"):
            lines.append(f"{row['name']:32} {'skipped':>10}   {row['skipped']}")
            continue
        each = ", ".join(f"{r:,.0f}" for r in row["runs"])
        lines.append(f"{row['name']:32} {row['rate']:10,.0f} {_pct(row['vs_aiokafka']):>12} {_pct(row['vs_faust']):>14}   {each}")
    details = []
    for row in result["readers"].values():
        check = row.get("check")
        if check:
            cells = ", ".join(f"res {r}: {n:,}" for r, n in check["cells_total_by_resolution"].items())
            details.append(
                f"{row['name']}: {check['calls_counted']:,} calls and {check['updates_counted']:,} updates counted, "
                f"{check['refused']:,} refused; cells {cells}; exact: {'yes' if check['exact'] else 'NO'}"
            )
        details += [f"{row['name']}: {note}" for note in row.get("notes", [])]
    lines += ["", *details, ""] if details else [""]
    for t in result["targets"].values():
        met = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        how = f" ({t['ratio']}: {_pct(t['value'])}; per run {', '.join(_pct(x) for x in t['per_run'])})" if t["value"] is not None else ""
        lines.append(f"target: {t['target']}: {met}{how}")
    det = result.get("detection")
    if det:
        per = det["seconds"] / max(det["points"], 1) * 1e6
        lines.append(
            f"\ndetection agent, in-process on the same calls: {det['points']:,} calls in {det['seconds']:.2f} s "
            f"({det['points'] / det['seconds']:,.0f} calls/s, {per:.0f} us per call), {det['alerts']} alert records; "
            f"checkpoint {det['checkpoint_bytes'] / 1024:,.0f} KiB pickled in {det['checkpoint_s'] * 1000:.1f} ms "
            "(every WF_DETECTOR_CHECKPOINT_S, in a forked child)"
        )
    return "\n".join(lines)


# -- running ----------------------------------------------------------------------


def cleanup(settings: Settings, prefix: str) -> None:
    """Delete the topics, empty consumer groups, Redis keys and Faust folders whose names start with this run's ``prefix``."""
    import redis
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(prefix) and g["group_state"] == "Empty"]
        if groups:
            admin.delete_groups(groups)
        topics = [t for t in admin.list_topics() if t.startswith(prefix)]
        if topics:
            admin.delete_topics(topics)
    finally:
        admin.close()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()
    tmp = Path(tempfile.gettempdir())
    for d in [*(tmp / "watchfloor-faust").glob(f"{prefix}*"), *tmp.glob(f"watchfloor-faust-{prefix}*")]:
        shutil.rmtree(d, ignore_errors=True)


def measure(reader: str, tag: str, settings: Settings, records: list[Outgoing], workdir: Path, bar: bool) -> readers.Measured:
    """One run of one reader over ``records`` (already loaded into the topics of ``settings``); ``tag`` names the run."""
    prefix = settings.topic_prefix
    topics = [topic_name(prefix, CALLS), topic_name(prefix, INCIDENT_UPDATES)]
    n = len(records)
    if reader == "aiokafka":
        return asyncio.run(readers.bare_aiokafka(settings, topics, n, f"{prefix}-bare-aiokafka-{tag}"))
    if reader in ("faust-events", "faust-batch"):
        mode = reader.split("-")[1]
        return readers.bare_faust(settings, topics, n, mode, f"{prefix}-bare-{mode}-{tag}", workdir)
    if reader == "faust-fast":
        return readers.bare_faust(settings, topics, n, "events", f"{prefix}-bare-fast-{tag}", workdir, fastpath=True)
    if reader == "worker":
        # the counting role only: the detectors run in their own worker (measured in-process at the end)
        s = replace(settings, redis_prefix=f"{prefix}w{tag}", app_id=f"{prefix}w{tag}", roles=("count",))
        return readers.watchfloor_worker(s, n, workdir, bar)
    if reader == "worker-x2":
        x2 = f"{prefix}x2{tag}"
        s = replace(settings, topic_prefix=x2, redis_prefix=x2, app_id=x2, roles=("count",))
        return readers.watchfloor_workers(s, records, prefix, workdir, bar, count=2)
    if reader == "quix":
        return readers.quix_peer(replace(settings, redis_prefix=f"{prefix}q{tag}"), n, f"{prefix}q{tag}", workdir, bar)
    raise ValueError(f"unknown reader {reader!r}; expected one of {', '.join(READERS)}")


def run(opts: Options) -> dict:
    """Load the records, run the chosen readers ``opts.runs`` times, check the counts; the JSON-able result.

    Needs Kafka and Redis (``python -m infra.stack up``; started here when they are not running).
    Progress goes to stderr; nothing is printed to stdout.
    """
    readers = [r for r in READERS if r in opts.readers]
    skipped: dict[str, str] = {}
    if "quix" in readers and importlib.util.find_spec("quixstreams") is None:
        skipped["quix"] = f"quixstreams is not installed; {QUIX_INSTALL}"
        _say(f"Quix Streams peer skipped: {skipped['quix']}")
        readers.remove("quix")
    stack.up()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = replace(load_settings(), topic_prefix=prefix, redis_prefix=prefix, app_id=f"{prefix}-worker", retention_s=400 * 86400)
    bar = opts.progress and sys.stderr.isatty()
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    rates: dict[str, list[float]] = {r: [] for r in readers}
    checks: dict[str, list[dict]] = {r: [] for r in readers}
    notes: dict[str, list[str]] = {r: [] for r in readers}
    detection = None
    try:
        stack.create_topics(prefix, settings.partitions, settings.kafka_bootstrap)
        path = opts.path or default_source(workdir, opts.calls)
        records, _ = plan_replay(path, detect_format(path), prefix, opts.calls)
        n = len(records)
        n_calls = sum(1 for r in records if r.topic == topic_name(prefix, CALLS))
        _say(f"loading {n:,} records ({n_calls:,} calls) from {path.name} into {prefix}.* ...")
        asyncio.run(produce(records, [], bootstrap=settings.kafka_bootstrap, prefix=prefix, pace=Pace(), progress=bar))
        for i in range(opts.runs):
            for reader in readers:
                _say(f"run {i + 1}/{opts.runs}: {READERS[reader]} ...")
                m = measure(reader, f"r{i}", settings, records, workdir, bar)
                _say(f"run {i + 1}/{opts.runs}: {READERS[reader]}: {m.rate:,.0f} records/s")
                rates[reader].append(m.rate)
                if m.check is not None:
                    checks[reader].append(m.check)
                notes[reader] += [f"run {i + 1}: {x}" for x in m.notes]
        if opts.detection:
            _say("detection agent, in-process ...")
            detection = detection_cost(records, prefix)
    finally:
        if opts.keep:
            _say(f"kept the topics, groups and Redis keys starting with {prefix}, and the logs in {workdir}")
        else:
            cleanup(settings, prefix)
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(rates)
    for reader, row in summary.items():
        if checks[reader]:
            row["exact"] = all(c["exact"] for c in checks[reader])
            row["check"] = {**checks[reader][-1], "exact": row["exact"]}
        row["notes"] = notes[reader]
    for reader, why in skipped.items():
        summary[reader] = {"name": READERS[reader], "skipped": why, "rate": None, "runs": [], "vs_aiokafka": None, "vs_faust": None}
    ordered = {r: summary[r] for r in READERS if r in summary}
    return {
        "records": n,
        "calls": n_calls,
        "updates": n - n_calls,
        "source": path.name,
        "partitions": settings.partitions,
        "runs": opts.runs,
        "readers": ordered,
        "targets": targets({r: v for r, v in ordered.items() if not v.get("skipped")}),
        "exact": all(v.get("exact", True) for v in ordered.values()),
        "detection": detection,
    }


def parse_args(argv: list[str] | None = None) -> tuple[Options, Path | None]:
    p = parser(
        __file__,
        __doc__,
        epilog="readers, in the order they run:\n" + "\n".join(f"  {k:14} {v}" for k, v in READERS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", nargs="?", type=Path, help="CSV to load (default: the real Montgomery data, else the simulator)")
    p.add_argument("--calls", type=int, default=Options.calls, help="calls to load, with their updates (default %(default)s)")
    add_runs(p, Options.runs, "runs of each reader; the median is reported")
    p.add_argument("--readers", default=",".join(READERS), help="comma-separated subset of the readers below (default: all)")
    p.add_argument("--no-detection", action="store_true", help="skip the in-process measurement of the detection agent")
    p.add_argument("--keep", action="store_true", help="keep this run's topics, consumer groups, Redis keys and logs")
    add_json(p)
    args = p.parse_args(argv)
    try:
        opts = Options(
            path=args.path,
            calls=args.calls,
            runs=args.runs,
            readers=tuple(r.strip() for r in args.readers.split(",") if r.strip()),
            detection=not args.no_detection,
            keep=args.keep,
        )
    except ValueError as exc:
        p.error(str(exc))
    return opts, args.json


def main(argv: list[str] | None = None) -> int:
    opts, json_path = parse_args(argv)
    result = run(opts)
    print("\n" + report(result))
    if json_path:
        write_json(json_path, result)
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
