"""Are the Redis Sentinels whole? Each Sentinel of ``WF_REDIS_SENTINELS`` asked which node is the primary.

A pure module, as :mod:`streams.runtime.kafkahealth`: :func:`assess` takes each
Sentinel's answer (the adapter that asks them is ``streams.runtime.status``) and
returns a :class:`SentinelHealth`; :func:`health_lines` is what an operator
reads. A Sentinel that does not answer is named missing: two of three still
make the quorum, so nothing fails, but one more lost and a failover of the
primary could no longer be agreed. Sentinels naming different primaries (during
a failover, or split from one another) are named with what each says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SentinelHealth:
    """What :func:`assess` found; ``ok`` when every Sentinel answers and all name the same primary."""

    service: str
    #: Sentinel ``host:port`` -> the primary's ``host:port`` it names
    answers: Mapping[str, str]
    #: Sentinel ``host:port`` -> why it gave no answer
    missing: Mapping[str, str]

    @property
    def primary(self) -> str | None:
        """The primary most Sentinels name (None when none answers)."""
        counts = Counter(self.answers.values())
        return min(counts, key=lambda a: (-counts[a], a)) if counts else None

    @property
    def ok(self) -> bool:
        return not self.missing and len(set(self.answers.values())) == 1

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy (``python -m streams.runtime.status --json``)."""
        return {
            "ok": self.ok, "service": self.service, "primary": self.primary,
            "answers": dict(self.answers), "missing": dict(self.missing),
        }  # fmt: skip


def assess(service: str, answers: Mapping[str, tuple[str, int] | str]) -> SentinelHealth:
    """Sort each Sentinel's answer: the primary's ``(host, port)``, or why it gave none (a string).

    >>> h = assess("watchfloor", {"s1:26379": "connection refused", "s2:26380": ("10.0.0.5", 6379), "s3:26381": ("10.0.0.5", 6379)})
    >>> h.ok, h.primary, dict(h.missing)
    (False, '10.0.0.5:6379', {'s1:26379': 'connection refused'})
    """
    named = {s: f"{a[0]}:{a[1]}" for s, a in answers.items() if not isinstance(a, str)}
    missing = {s: a for s, a in answers.items() if isinstance(a, str)}
    return SentinelHealth(service=service, answers=named, missing=missing)


def health_lines(health: SentinelHealth) -> list[str]:
    """What the operator reads: the primary and how many Sentinels name it; the missing ones; a disagreement.

    >>> print("\\n".join(health_lines(assess("wf", {"s1:1": "refused", "s2:2": ("r", 6379), "s3:3": ("r", 6379)}))))
    redis: primary r:6379 per 2 of 3 Sentinels (service 'wf'); MISSING: s1:1 (refused)
    >>> print("\\n".join(health_lines(assess("wf", {"s1:1": ("a", 1), "s2:2": ("b", 2)}))))
    redis: primary a:1 per 1 of 2 Sentinels (service 'wf')
    redis: the Sentinels name different primaries: s1:1 names a:1, s2:2 names b:2
    >>> health_lines(assess("wf", {"s1:1": "refused"}))
    ["redis: no Sentinel of 1 names a primary for service 'wf'; MISSING: s1:1 (refused)"]
    """
    total = len(health.answers) + len(health.missing)
    primary = health.primary
    if primary is None:
        head = f"redis: no Sentinel of {total} names a primary for service {health.service!r}"
    else:
        agree = sum(1 for a in health.answers.values() if a == primary)
        head = f"redis: primary {primary} per {agree} of {total} Sentinels (service {health.service!r})"
    if health.missing:
        head += "; MISSING: " + ", ".join(f"{s} ({why})" for s, why in sorted(health.missing.items()))
    lines = [head]
    if len(set(health.answers.values())) > 1:
        each = ", ".join(f"{s} names {a}" for s, a in sorted(health.answers.items()))
        lines.append(f"redis: the Sentinels name different primaries: {each}")
    return lines
