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
    ("copies", "copies", "Alert records not sent: copies of one read before, made again after Redis lost writes in a failover."),
)


#: a partner feed deliverer's counters (:attr:`gateway.feeds.deliverer.Deliverer.stats` keys) as ``watchfloor_gateway_feed_<name>_total``
FEED_COUNTERS = (
    ("delivered", "Webhook deliveries a partner's receiver acknowledged (2xx), by agreement, since this gateway started."),
    ("dead_letters", "Webhook deliveries given up and dead-lettered (GET /api/feeds/deadletters), by agreement."),
    ("cap_messages", "CAP messages added to an agreement's Atom feed."),
)


def metrics_text(
    clients: Iterable[Client],
    hub_stats: Mapping[str, int],
    refused: Mapping[str, int],
    feeds: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The page for ``clients`` (connected now), the hub's ``hub_stats``, ``refused`` (refusals by code) and the
    partners' ``feeds`` (each agreement's deliverer counters, :data:`FEED_COUNTERS`; counted by the gateway that
    delivers the feed: the others show 0).

    >>> print(metrics_text([], {"entries": 3, "delivered": 2, "closed_slow": 0, "redis_errors": 0}, {"forged": 1}))  # doctest: +ELLIPSIS
    # HELP watchfloor_gateway_clients Connected WebSocket clients by role.
    # TYPE watchfloor_gateway_clients gauge
    watchfloor_gateway_clients{role="supervisor"} 0
    ...
    watchfloor_gateway_entries_total 3
    ...
    watchfloor_gateway_refused_total{code="forged"} 1
    <BLANKLINE>
    >>> print(metrics_text([], {"entries": 0, "delivered": 0, "closed_slow": 0, "redis_errors": 0}, {},
    ...                    {"septa": {"delivered": 4, "dead_letters": 1}}))  # doctest: +ELLIPSIS
    # HELP ...
    watchfloor_gateway_feed_delivered_total{agreement="septa"} 4
    ...
    watchfloor_gateway_feed_dead_letters_total{agreement="septa"} 1
    ...
    watchfloor_gateway_feed_cap_messages_total{agreement="septa"} 0
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
        lines.append(f"watchfloor_gateway_{name}_total {hub_stats.get(key, 0)}")
    lines += [
        "# HELP watchfloor_gateway_refused_total Refused requests and messages by reason.",
        "# TYPE watchfloor_gateway_refused_total counter",
    ]
    lines += [f'watchfloor_gateway_refused_total{{code="{c}"}} {n}' for c, n in sorted(refused.items())]
    for key, help_ in FEED_COUNTERS if feeds else ():
        name = f"watchfloor_gateway_feed_{key}_total"
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
        lines += [f'{name}{{agreement="{a}"}} {stats.get(key, 0)}' for a, stats in sorted((feeds or {}).items())]
    return "\n".join(lines) + "\n"
