"""Show what the worker has counted: ``python -m streams.runtime.status``.

Prints whether the Kafka cluster is whole (brokers seen against the
``WF_KAFKA_BOOTSTRAP`` list, partitions under-replicated or without a leader:
:mod:`streams.runtime.kafkahealth`), with ``WF_REDIS_SENTINELS`` the primary each
Sentinel names and the Sentinels that do not answer (:mod:`streams.runtime.sentinelhealth`),
the event-time watermark, how far the worker is behind the topics,
the busiest H3 cells over the rolling windows, open incidents, response times
per area and the worker's counters (dead letters by reason, dropped PII
fields, ...). Add ``--json`` for a machine-readable copy.

Under a jurisdiction profile (``WF_PROFILE``) each cell is shown with the name
of the area that holds it, and the watermark also on the jurisdiction's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from datetime import datetime

import h3
from kafka.errors import KafkaError
from redis.exceptions import RedisError

from streams.counting.keys import ALL
from streams.counting.rolling import RT_BINS_S, WINDOWS_MIN, minute_of, window_minutes
from streams.counting.state import RedisState
from streams.ingest.schema import format_time
from streams.jurisdiction import Profile
from streams.runtime import sentinelhealth
from streams.runtime.kafkahealth import BrokerSeen, KafkaHealth, PartitionState, assess, health_lines
from streams.runtime.settings import Settings, SettingsError, load_jurisdiction, load_settings
from streams.topics import topic_specs


def median_from_bins(stats: dict[str, int]) -> str:
    """The histogram bin holding the median, as ``"<= 300 s"`` (or ``"> 3600 s"``).

    >>> median_from_bins({"n": 4, "le60": 1, "le300": 2, "inf": 1})
    '<= 300 s'
    >>> median_from_bins({"n": 0})
    '-'
    """
    n = stats.get("n", 0)
    if not n:
        return "-"
    seen = 0
    for edge in RT_BINS_S:
        seen += stats.get(f"le{edge}", 0)
        if seen * 2 >= n:
            return f"<= {edge} s"
    return f"> {RT_BINS_S[-1]} s"


def local_time(profile: Profile, ts: float) -> str:
    """``ts`` on the jurisdiction's clock, with the zone's abbreviation.

    >>> from streams.jurisdiction import Profile
    >>> local_time(Profile(id="x", name="X", timezone="America/Los_Angeles"), 1453564931.0)
    '2016-01-23 08:02:11 PST'
    """
    return datetime.fromtimestamp(ts, profile.tz).strftime("%Y-%m-%d %H:%M:%S %Z")


async def gather_status(top: int) -> dict:
    settings = load_settings()
    profile = load_jurisdiction(settings)
    st = RedisState.from_settings(settings)
    area = profile.areas.name_of
    try:
        wm = await st.watermark()
        out: dict = {"watermark": format_time(wm) if wm is not None else None, "metrics": await st.metrics()}
        out["jurisdiction"] = {"id": profile.id, "name": profile.name, "timezone": profile.timezone}
        if wm is not None:
            out["watermark_local"] = local_time(profile, wm)
        out["applied_offsets"] = {f"{k}:{p}": o for (k, p), o in (await st.applied_offsets()).items()}
        if wm is None:
            return out
        end = minute_of(wm)
        finest = settings.resolutions[0]
        pipe = st.client.pipeline(transaction=False)
        minutes = list(window_minutes(end, WINDOWS_MIN["24h"]))
        for m in minutes:
            pipe.hgetall(st.keys.bucket(m))
        buckets = dict(zip(minutes, await pipe.execute(), strict=True))
        hot: dict[str, list] = {}
        for window, length in WINDOWS_MIN.items():
            totals: Counter = Counter()
            cats: dict[str, Counter] = {}
            for m in window_minutes(end, length):
                for fld, v in buckets.get(m, {}).items():
                    cell, cat = fld.split("|")
                    if h3.get_resolution(cell) != finest:
                        continue
                    if cat == ALL:
                        totals[cell] += int(v)
                    else:
                        cats.setdefault(cell, Counter())[cat] += int(v)
            hot[window] = [
                {"cell": cell, "area": area(cell), "calls": n, "categories": dict(cats.get(cell, Counter()).most_common())}
                for cell, n in totals.most_common(top)
            ]
        out["hot_cells"] = hot
        opened = await st.open_incidents()
        out["open_incidents"] = [
            {"cell": c, "area": area(c), "open": n}
            for c, n in Counter({c: n for c, n in opened.items() if h3.get_resolution(c) == finest}).most_common(top)
        ]
        out["response_times_24h"] = {}
        for kind in ("dispatch", "travel"):
            areas = await st.response_times(kind, wm - 86400, wm)
            ranked = sorted(areas.items(), key=lambda kv: -kv[1].get("n", 0))[:top]
            out["response_times_24h"][kind] = [
                {
                    "area": a,
                    "name": area(a) if h3.is_valid_cell(a) else None,
                    "n": s["n"],
                    "mean_s": round(s["sum"] / s["n"], 1),
                    "median": median_from_bins(s),
                }
                for a, s in ranked
                if s.get("n")
            ]
        return out
    finally:
        await st.close()


def kafka_health(settings: Settings, timeout_ms: int = 5000, within_s: float = 15.0) -> KafkaHealth:
    """Ask the cluster at ``settings.kafka_bootstrap`` for its brokers and the project's partitions (:mod:`.kafkahealth`).

    Each broker of the list is asked first in turn until one answers, in rounds half a second apart for up to
    ``within_s``: the client sends its requests to a broker the metadata names, and a broker that has just died is
    named there until the controller fences it (``broker.session.timeout.ms``: 6 s on the local cluster, Kafka's 9 s
    by default). Raises the last ``KafkaError`` when none answers in that time.
    """
    addresses = settings.kafka_bootstrap.split(",")
    deadline = time.monotonic() + within_s
    while True:
        for turn in range(len(addresses)):
            try:
                return _ask_health(settings, ",".join(addresses[turn:] + addresses[:turn]), timeout_ms)
            except KafkaError:
                if turn == len(addresses) - 1 and time.monotonic() >= deadline:
                    raise
        time.sleep(0.5)


def sentinel_health(settings: Settings, timeout_s: float = 1.0) -> sentinelhealth.SentinelHealth:
    """Ask each Sentinel of ``settings.redis_sentinels`` which node is the primary (:mod:`.sentinelhealth`)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    answers: dict[str, tuple[str, int] | str] = {}
    for host, port in settings.redis_sentinels:
        # asked once: redis-py's default retries made a stopped Sentinel cost 3 s of the status
        client = redis.Redis(host=host, port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
        try:
            got = client.execute_command("SENTINEL", "get-master-addr-by-name", settings.redis_sentinel_service)
            if isinstance(got, list | tuple) and len(got) == 2:
                answers[f"{host}:{port}"] = (got[0].decode() if isinstance(got[0], bytes) else str(got[0]), int(got[1]))
            else:
                answers[f"{host}:{port}"] = f"knows no primary for {settings.redis_sentinel_service!r}"
        except (RedisError, OSError) as exc:
            answers[f"{host}:{port}"] = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
    return sentinelhealth.assess(settings.redis_sentinel_service, answers)


def _ask_health(settings: Settings, servers: str, timeout_ms: int) -> KafkaHealth:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=timeout_ms)
    try:
        cluster = admin.describe_cluster()
        seen = [BrokerSeen(b["broker_id"], f"{b['host']}:{b['port']}") for b in cluster["brokers"] if not b.get("is_fenced")]
        names = [spec.name for spec in topic_specs(settings.topic_prefix, settings.partitions)]
        existing = set(admin.list_topics())
        parts = [
            PartitionState(t["name"], p["partition_index"], p["leader_id"], tuple(p["replica_nodes"]), tuple(p["isr_nodes"]))
            for t in admin.describe_topics([n for n in names if n in existing])
            for p in t["partitions"]
        ]
    finally:
        admin.close()
    return assess(settings.kafka_bootstrap, settings.kafka_replication_factor, seen, parts)


def _place(cell: str, name: str | None) -> str:
    """A cell as a person reads it: the area's name first, when it has one.

    >>> _place("882aac95d1fffff", "Norristown"), _place("882aac95d1fffff", None)
    ('Norristown (882aac95d1fffff)', '882aac95d1fffff')
    """
    return f"{name} ({cell})" if name else cell


def render(status: dict) -> str:
    wm = status.get("watermark")
    where = status.get("jurisdiction", {})
    local = (
        f" ({status['watermark_local']}, {where.get('name', '')})" if status.get("watermark_local") and where.get("id") != "unnamed" else ""
    )
    lines = [f"event-time watermark: {wm + local if wm else 'nothing counted yet'}"]
    kafka = status.get("kafka")
    if isinstance(kafka, KafkaHealth):
        lines += health_lines(kafka)
    elif kafka is not None:
        lines.append(f"kafka: {kafka}")
    sentinels = status.get("sentinels")
    if isinstance(sentinels, sentinelhealth.SentinelHealth):
        lines += sentinelhealth.health_lines(sentinels)
    m = status.get("metrics", {})
    lines.append(
        f"counted: {m.get('events_total|call', 0):,} calls, {m.get('events_total|update', 0):,} updates; "
        f"dead letters: {sum(v for k, v in m.items() if k.startswith('deadletter_total|')):,}; "
        f"PII fields dropped: {m.get('pii_fields_dropped_total', 0):,}; redeliveries skipped: {m.get('redelivered_skipped_total', 0):,}"
    )
    reasons = {k.split("|", 1)[1]: v for k, v in m.items() if k.startswith("deadletter_total|")}
    if reasons:
        lines.append("  dead letters by reason: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
    for window, cells in status.get("hot_cells", {}).items():
        lines.append(f"\nbusiest cells, last {window}:")
        width = max((len(_place(c["cell"], c.get("area"))) for c in cells), default=0)
        for c in cells:
            mix = ", ".join(f"{k} {n}" for k, n in c["categories"].items())
            lines.append(f"  {_place(c['cell'], c.get('area')):<{width}}  {c['calls']:5d} calls  ({mix})")
    if status.get("open_incidents"):
        lines.append("\nopen incidents by cell:")
        width = max(len(_place(c["cell"], c.get("area"))) for c in status["open_incidents"])
        lines += [f"  {_place(c['cell'], c.get('area')):<{width}}  {c['open']:5d}" for c in status["open_incidents"]]
    for kind, rows in status.get("response_times_24h", {}).items():
        if rows:
            label = "received -> dispatched" if kind == "dispatch" else "dispatched -> on scene"
            lines.append(f"\nresponse times, last 24 h, {label}:")
            lines += [f"  {_place(r['area'], r.get('name'))}  n={r['n']:4d}  mean {r['mean_s']:7.1f} s  median {r['median']}" for r in rows]
    return "\n".join(lines)


def _kafka_or_why(settings: Settings) -> KafkaHealth | str:
    """:func:`kafka_health`, or why Kafka could not tell (the rest of the status is still shown)."""
    try:
        return kafka_health(settings)
    except KafkaError as exc:
        return f"cannot read the cluster's metadata at {settings.kafka_bootstrap} ({type(exc).__name__}: {exc})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streams.runtime.status", description="Show what the worker has counted in Redis.")
    p.add_argument("--top", type=int, default=5, help="rows per table (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(argv)
    try:
        status = asyncio.run(gather_status(args.top))
        settings = load_settings()
        status["kafka"] = _kafka_or_why(settings)
        if settings.redis_sentinels:
            status["sentinels"] = sentinel_health(settings)
    except (OSError, RedisError) as exc:
        print(f"status: cannot reach Redis ({exc}); start the stack with: python -m infra.stack up", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        kafka = status["kafka"]
        out = {**status, "kafka": kafka.to_dict() if isinstance(kafka, KafkaHealth) else {"error": kafka}}
        if "sentinels" in status:
            out["sentinels"] = status["sentinels"].to_dict()
        print(json.dumps(out, indent=2))
    else:
        print(render(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
