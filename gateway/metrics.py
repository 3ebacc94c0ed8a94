"""The gateway's ``/metrics`` page: Prometheus text of its clients by role, the hub's counters and its refusals (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from gateway.tokens import Role

if TYPE_CHECKING:
    from gateway.hub import Client

#: the hub's counters (:attr:`gateway.hub.Hub.stats` keys) shown as ``watchfloor_gateway_<name>_total``, with their help
HUB_COUNTERS = (
    ("entries", "entries", "Alerts-stream entries read."),
    ("delivered", "delivered", "Frames of alerts and actions queued to clients."),
    ("closed_slow", "closed_slow", "Clients closed because they could not keep up."),
    ("redis_errors", "redis_errors", "Failed reads of the alerts stream."),
)


def metrics_text(clients: Iterable[Client], hub_stats: Mapping[str, int], refused: Mapping[str, int]) -> str:
    """The page for ``clients`` (connected now), the hub's ``hub_stats`` and ``refused`` (refusals by code).

    >>> print(metrics_text([], {"entries": 3, "delivered": 2, "closed_slow": 0, "redis_errors": 0}, {"forged": 1}))  # doctest: +ELLIPSIS
    # HELP watchfloor_gateway_clients Connected WebSocket clients by role.
    # TYPE watchfloor_gateway_clients gauge
    watchfloor_gateway_clients{role="supervisor"} 0
    ...
    watchfloor_gateway_entries_total 3
    ...
    watchfloor_gateway_refused_total{code="forged"} 1
    <BLANKLINE>
    """
    by_role: dict[str, int] = {}
    for c in clients:
        by_role[c.claims.role.value] = by_role.get(c.claims.role.value, 0) + 1
    lines = [
        "# HELP watchfloor_gateway_clients Connected WebSocket clients by role.",
        "# TYPE watchfloor_gateway_clients gauge",
    ]
    lines += [f'watchfloor_gateway_clients{{role="{r.value}"}} {by_role.get(r.value, 0)}' for r in Role]
    for name, key, help_ in HUB_COUNTERS:
        lines += [f"# HELP watchfloor_gateway_{name}_total {help_}", f"# TYPE watchfloor_gateway_{name}_total counter"]
        lines.append(f"watchfloor_gateway_{name}_total {hub_stats[key]}")
    lines += [
        "# HELP watchfloor_gateway_refused_total Refused requests and messages by reason.",
        "# TYPE watchfloor_gateway_refused_total counter",
    ]
    lines += [f'watchfloor_gateway_refused_total{{code="{c}"}} {n}' for c, n in sorted(refused.items())]
    return "\n".join(lines) + "\n"
