"""Render the worker's exact counters in the Prometheus text format (pure).

Counters live in the Redis hash ``P:metrics`` as ``name`` or ``name|label``
(the label is the dead-letter reason, the event kind, ...), updated in the same
transaction as the counts they describe. A family with several labels is
written ``name|value1|value2...``, the values in the order of its label names
in :data:`_LABELS` (the forecast monitor's ``forecast_coverage|cell7|8|0.8``).
"""

from __future__ import annotations

#: Label name (or names, in order) used for each labelled counter.
_LABELS: dict[str, str | tuple[str, ...]] = {
    "deadletter_total": "reason",
    "events_total": "kind",
    "response_time_negative_total": "kind",
    "detector_calls_shed_total": "detector",
    "model_residuals_total": "model",
    "model_mae": "model",
    "model_bias": "model",
    "model_drifts_total": "model",
    "model_alerts_total": "model",
    "model_alert_rate_per_day": "model",
    "surge_threshold": "scope",
    "forecast_mae": ("level", "horizon"),
    "forecast_bias": ("level", "horizon"),
    "forecast_coverage": ("level", "horizon", "nominal"),
    "forecast_drift_total": ("level", "horizon"),
    "forecast_windows_total": ("level", "horizon"),
    # the HTTP intake (streams.intake), in its own process's /metrics
    "intake_records_total": ("source", "outcome", "reason"),
    "intake_requests_total": "status",
    "intake_fields_dropped_total": "source",
    "intake_newest_event_seconds": "source",
    "intake_lag_seconds": "source",
}

#: Families that go up and down (everything else is a counter).
_GAUGES = frozenset(
    {
        "model_mae", "model_bias", "model_alert_rate_per_day", "surge_threshold",
        "detector_checkpoint_seconds", "detector_checkpoint_stall_seconds", "detector_checkpoint_bytes",
        "forecast_mae", "forecast_bias", "forecast_coverage", "forecast_build_seconds", "forecast_issued_seconds",
        "intake_newest_event_seconds", "intake_lag_seconds",
    }
)  # fmt: skip

_HELP = {
    "events_total": "Valid events folded into the counts, by kind.",
    "deadletter_total": "Records refused and sent to the dead-letter topic, by reason.",
    "pii_fields_dropped_total": "Fields outside the schema (caller data, addresses) dropped at ingestion.",
    "redelivered_skipped_total": "Records redelivered after a restart and skipped because already counted.",
    "updates_pending_total": "Incident updates that arrived before their call and were held.",
    "stale_closed_total": "Calls that never closed and stopped counting as open after the timeout.",
    "orphan_updates_expired_total": "Held updates whose call never arrived, dropped at retention.",
    "response_time_negative_total": "Status times earlier than the previous status (not sampled).",
    "detector_points_total": "Calls the detectors have processed.",
    "detector_input_duplicates_total": "Detector input dropped as a redelivered copy.",
    "detector_input_late_total": "Calls too far out of event-time order for the detectors (still counted).",
    "detector_calls_shed_total": "Calls dropped early from a detector's windows because they held their cap (memory bound).",
    "detector_checkpoints_total": "Checkpoints of the detectors written to Redis.",
    "detector_checkpoint_seconds": "Seconds the last checkpoint took, from its snapshot to its write in Redis.",
    "detector_checkpoint_stall_seconds": "Seconds the detection agent was held for the last checkpoint's snapshot.",
    "detector_checkpoint_stall_seconds_total": "Seconds the detection agent was held for checkpoint snapshots.",
    "detector_checkpoint_bytes": "Size of the last checkpoint's snapshot (the pickled detectors), bytes.",
    "fetch_records_delivered_total": "Records Faust's fetch loop delivered to this worker's agents (since it started).",
    "fetch_deliveries_blocked_total": "Deliveries that found an agent's buffer full and waited (since start; see WF_MAX_POLL_RECORDS).",
    "model_residuals_total": "Residuals (observed - expected) fed to the model's drift detector.",
    "model_mae": "Mean absolute residual of the model since its last drift.",
    "model_bias": "Mean residual of the model since its last drift.",
    "model_drifts_total": "Drifts detected in the model's residuals.",
    "model_alerts_total": "Alerts the model opened.",
    "model_alert_rate_per_day": "Alerts the model opened per day of event time.",
    "surge_threshold": "Score (-log10 p) a surge must reach, local (cell, ring) or jurisdiction-wide; kept at the profile's budget.",
    "forecast_sets_total": "Forecast sets published (Redis P:forecast and the forecasts topic).",
    "forecast_sets_skipped_total": "Forecast sets due but replaced by a newer one before they were built (a fast replay).",
    "forecast_build_seconds": "Seconds the last forecast set took to build (in a thread beside the detectors).",
    "forecast_issued_seconds": "Event time (epoch s) the last forecast set was issued at.",
    "forecast_failures_total": "Forecast sets that failed to build, to be written to Redis or to be sent (logged with the reason).",
    "forecast_windows_dropped_total": "Forecast windows the monitor could not watch (its cap, or issued too long ago).",
    "forecast_windows_total": "Forecast windows scored against the calls that came, by level and horizon (hours).",
    "forecast_mae": "Mean absolute error of the forecasts (calls), by level and horizon; decayed, half-life a week.",
    "forecast_bias": "Mean of actual minus forecast calls (positive: more came), by level and horizon; decayed, half-life a week.",
    "forecast_coverage": "Share of windows whose count fell inside the nominal prediction interval, by level and horizon; decayed.",
    "forecast_drift_total": "Drifts (ADWIN) in the forecasts' standardized residuals, by level and horizon.",
    "intake_records_total": "Records pushed to the HTTP intake, by source, outcome (accepted, duplicate, refused) and refusal reason.",
    "intake_requests_total": "Requests the HTTP intake answered, by HTTP status.",
    "intake_fields_dropped_total": "Fields outside the schema dropped from accepted records at the intake (never sent on), by source.",
    "intake_newest_event_seconds": "Event time (epoch s) of the newest record the intake accepted from the source.",
    "intake_lag_seconds": "Seconds between now and the newest event time the intake accepted from the source.",
}


def render_prometheus(counters: dict[str, float], prefix: str = "watchfloor_") -> str:
    """Counters as Prometheus exposition text.

    >>> print(render_prometheus({"events_total|call": 3, "deadletter_total|not_json": 1, "model_mae|surge": 0.5}), end="")
    # HELP watchfloor_deadletter_total Records refused and sent to the dead-letter topic, by reason.
    # TYPE watchfloor_deadletter_total counter
    watchfloor_deadletter_total{reason="not_json"} 1
    # HELP watchfloor_events_total Valid events folded into the counts, by kind.
    # TYPE watchfloor_events_total counter
    watchfloor_events_total{kind="call"} 3
    # HELP watchfloor_model_mae Mean absolute residual of the model since its last drift.
    # TYPE watchfloor_model_mae gauge
    watchfloor_model_mae{model="surge"} 0.5
    """
    families: dict[str, list[tuple[str | None, float]]] = {}
    for key, value in counters.items():
        name, _, text = key.partition("|")
        families.setdefault(name, []).append((text or None, value))
    lines = []
    for name in sorted(families):
        full = prefix + name
        lines.append(f"# HELP {full} {_HELP.get(name, name)}")
        lines.append(f"# TYPE {full} {'gauge' if name in _GAUGES else 'counter'}")
        for label, value in sorted(families[name], key=lambda lv: lv[0] or ""):
            lines.append(f"{full}{_tag(name, label)} {value}")
    return "\n".join(lines) + "\n"


def _tag(name: str, label: str | None) -> str:
    """The ``{...}`` of one sample: its label name(s) and value(s).

    >>> _tag("forecast_coverage", "cell7|8|0.8"), _tag("events_total", "call"), _tag("x", None)
    ('{level="cell7",horizon="8",nominal="0.8"}', '{kind="call"}', '')
    """
    if not label:
        return ""
    names = _LABELS.get(name, "label")
    if isinstance(names, str):
        return f'{{{names}="{label}"}}'
    values = label.split("|", len(names) - 1)
    if len(values) != len(names):
        raise ValueError(f"metric {name!r} takes the labels {', '.join(names)} ({name}|{'|'.join(names)}), got {label!r}")
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, values, strict=True)) + "}"
