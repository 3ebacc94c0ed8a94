"""Is the Kafka cluster whole? Brokers expected against brokers seen, and partitions short of replicas.

A pure module: :func:`assess` takes what the cluster's metadata says (the
adapter that asks it is ``streams.runtime.status``) and returns a
:class:`KafkaHealth`; :func:`health_lines` is what an operator reads.

Expected brokers are the addresses of ``WF_KAFKA_BOOTSTRAP`` (a cluster lists
each of its brokers there), and at least the replication factor: a deployment
that reaches its brokers through one name still expects as many brokers as each
partition has replicas. A broker that has stopped (killed, or shut down after
its log directory failed) is no longer in the metadata; the partitions it held
stay under-replicated until it is back and has caught up. A partition with no
leader cannot be read or written at all (``offline``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BrokerSeen:
    """A broker the cluster's metadata lists: its node id and advertised ``host:port``."""

    node_id: int
    address: str


@dataclass(frozen=True)
class PartitionState:
    """One partition as the metadata describes it; ``leader`` -1 when it has none."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True)
class KafkaHealth:
    """What :func:`assess` found; ``ok`` when nothing is missing, under-replicated or offline."""

    expected: int
    seen: tuple[BrokerSeen, ...]
    #: Addresses of ``WF_KAFKA_BOOTSTRAP`` that no broker in the metadata advertises.
    missing: tuple[str, ...]
    under_replicated: tuple[PartitionState, ...]
    offline: tuple[PartitionState, ...]

    @property
    def ok(self) -> bool:
        return len(self.seen) >= self.expected and not self.missing and not self.under_replicated and not self.offline

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy (``python -m streams.runtime.status --json``)."""
        return {
            "ok": self.ok,
            "brokers_expected": self.expected,
            "brokers_seen": [f"{b.node_id}@{b.address}" for b in self.seen],
            "brokers_missing": list(self.missing),
            "under_replicated": [p.name for p in self.under_replicated],
            "offline": [p.name for p in self.offline],
        }


def assess(bootstrap: str, replication_factor: int, seen: Sequence[BrokerSeen], partitions: Sequence[PartitionState]) -> KafkaHealth:
    """Compare the metadata with what the settings expect.

    >>> seen = [BrokerSeen(1, "k1:9092"), BrokerSeen(3, "k3:9096")]
    >>> parts = [PartitionState("wf.calls", 0, 1, (1, 2, 3), (1, 3)), PartitionState("wf.calls", 1, 3, (3, 1, 2), (3, 1))]
    >>> h = assess("k1:9092,k2:9094,k3:9096", 3, seen, parts)
    >>> h.ok, h.missing, [p.name for p in h.under_replicated]
    (False, ('k2:9094',), ['wf.calls[0]', 'wf.calls[1]'])
    >>> assess("k1:9092", 1, seen[:1], [PartitionState("wf.calls", 0, 1, (1,), (1,))]).ok
    True
    """
    addresses = tuple(a.strip() for a in bootstrap.split(",") if a.strip())
    advertised = {b.address for b in seen}
    # Only when the bootstrap list names the brokers one by one can a missing one be named.
    missing = tuple(a for a in addresses if a not in advertised) if len(addresses) > 1 else ()
    live = {b.node_id for b in seen}
    offline = tuple(p for p in partitions if p.leader < 0 or p.leader not in live)
    under = tuple(p for p in partitions if p not in offline and len(p.isr) < len(p.replicas))
    return KafkaHealth(
        expected=max(len(addresses), replication_factor),
        seen=tuple(sorted(seen, key=lambda b: b.node_id)),
        missing=missing,
        under_replicated=under,
        offline=offline,
    )


def health_lines(health: KafkaHealth, limit: int = 8) -> list[str]:
    """What the operator reads: one line for the brokers, one per kind of trouble (at most ``limit`` partitions named).

    >>> h = assess("k1:9092,k2:9094", 2, [BrokerSeen(1, "k1:9092")], [PartitionState("wf.calls", 0, 1, (1, 2), (1,))])
    >>> print("\\n".join(health_lines(h)))
    kafka: 1 of 2 brokers seen (1@k1:9092); MISSING: k2:9094
    kafka: 1 partition under-replicated (fewer in-sync replicas than replicas): wf.calls[0]
    """
    seen = ", ".join(f"{b.node_id}@{b.address}" for b in health.seen)
    head = f"kafka: {len(health.seen)} of {health.expected} brokers seen ({seen})"
    if health.missing:
        head += "; MISSING: " + ", ".join(health.missing)
    elif len(health.seen) < health.expected:
        head += f"; {health.expected - len(health.seen)} MISSING"
    lines = [head]
    for label, parts in (
        ("under-replicated (fewer in-sync replicas than replicas)", health.under_replicated),
        ("OFFLINE (no leader: neither read nor written)", health.offline),
    ):
        if parts:
            names = ", ".join(p.name for p in parts[:limit]) + (f" and {len(parts) - limit} more" if len(parts) > limit else "")
            lines.append(f"kafka: {len(parts)} partition{'s' if len(parts) != 1 else ''} {label}: {names}")
    if health.ok:
        lines[0] += "; every partition fully in sync"
    return lines
