"""Model health: drift on each model's residuals, error and alert rate as metrics (pure).

Every detector's residuals (observed minus expected for the surge model; the
window score for the mix model, whose "expected" is a score near zero) go
through one River :class:`~river.drift.ADWIN` per model. A drift says the
residuals' mean moved: the baseline no longer describes the stream and the
model's alerts deserve less trust until it has re-learnt. :meth:`metrics`
gives the counters in the project's ``name|label`` convention
(``streams/runtime/metrics.py``), the label being the model name.
"""

from __future__ import annotations

import math

from river import drift

from detectors.base import Detector

#: Alert rates are per day of event time; a span shorter than this counts as this long,
#: so the first alert after start-up does not read as thousands a day.
_MIN_SPAN_S = 3600.0


class _ModelHealth:
    """What is kept per model: the drift detector and plain counters."""

    __slots__ = ("adwin", "n", "abs_sum", "drifts", "alerts")

    def __init__(self, adwin: drift.ADWIN) -> None:
        self.adwin = adwin
        self.n = 0
        self.abs_sum = 0.0
        self.drifts = 0
        self.alerts = 0


class ResidualDriftMonitor(Detector):
    """ADWIN on each model's residuals, plus per-model error, drift and alert counters.

    Call :meth:`update` with every residual a model produces (signed, so a bias
    shows as a shift of the mean; pass ``abs(residual)`` instead to watch the
    error's size). Call :meth:`record_alert` once per alert a model raises (on
    ``OPEN``) and :meth:`record_time` with the event-time clock (e.g. each
    watermark), so alert rates have a time span. Models are created on first
    mention; state is one small ADWIN window and five numbers per model.

    Warm-up: ADWIN tests nothing before ``grace_period`` residuals of a model,
    and after a drift it starts again from an empty window. It checks for a
    change every ``clock`` residuals, so a drift is reported up to ``clock``
    residuals after the point where it is first detectable.

    Parameters
    ----------
    delta
        ADWIN significance: the smaller, the fewer false drifts and the later true ones.
    clock
        Residuals between ADWIN's change checks.
    grace_period
        Residuals a model needs before its first check.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(3)
    >>> monitor = ResidualDriftMonitor()
    >>> monitor
    ResidualDriftMonitor(delta=0.002, clock=32, grace_period=30)
    >>> residuals = [rng.gauss(0, 1) for _ in range(500)] + [rng.gauss(2, 1) for _ in range(500)]
    >>> [i for i, r in enumerate(residuals) if monitor.update("surge", r)]
    [543]
    >>> monitor.record_time(0.0)
    >>> monitor.record_alert("surge", 2 * 86400.0)
    >>> m = monitor.metrics()
    >>> m["model_residuals_total|surge"], m["model_drifts_total|surge"], m["model_alert_rate_per_day|surge"]
    (1000, 1, 0.5)
    >>> m["model_mae|surge"], m["model_bias|surge"]  # doctest: +ELLIPSIS
    (1.40..., 2.03...)
    """

    def __init__(self, delta: float = 0.002, clock: int = 32, grace_period: int = 30) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta is a significance level in (0, 1), got {delta}")
        if clock < 1:
            raise ValueError(f"clock must be at least 1 residual, got {clock}")
        if grace_period < 1:
            raise ValueError(f"grace_period must be at least 1 residual, got {grace_period}")
        self.delta = delta
        self.clock = clock
        self.grace_period = grace_period
        self._models: dict[str, _ModelHealth] = {}
        self._first_at: float | None = None
        self._last_at: float | None = None

    @property
    def models(self) -> tuple[str, ...]:
        """Models mentioned so far, sorted."""
        return tuple(sorted(self._models))

    def update(self, model: str, residual: float) -> bool:
        """Fold one residual of ``model``; True when this residual completes a detected drift."""
        if not math.isfinite(residual):
            raise ValueError(f"residual of {model!r} must be a finite number, got {residual!r}")
        health = self._health(model)
        health.n += 1
        health.abs_sum += abs(residual)
        health.adwin.update(residual)
        if health.adwin.drift_detected:
            health.drifts += 1
            return True
        return False

    def record_alert(self, model: str, at: float) -> None:
        """Count one alert of ``model`` raised at event time ``at`` (call once per alert, on OPEN)."""
        self._health(model).alerts += 1
        self.record_time(at)

    def record_time(self, at: float) -> None:
        """Extend the event-time span the alert rates are computed over."""
        if not math.isfinite(at):
            raise ValueError(f"event time must be a finite number of epoch seconds, got {at!r}")
        self._first_at = at if self._first_at is None else min(self._first_at, at)
        self._last_at = at if self._last_at is None else max(self._last_at, at)

    def metrics(self) -> dict[str, float | int]:
        """Per model, keyed ``name|model``.

        ``model_residuals_total`` (count), ``model_mae`` (mean absolute residual
        since start), ``model_bias`` (mean residual since the last drift, from
        ADWIN's window), ``model_drifts_total``, ``model_alerts_total`` and
        ``model_alert_rate_per_day`` (alerts per day of event time recorded, the
        span counted as at least an hour). Error metrics are 0.0 before the first
        residual.
        """
        span = 0.0 if self._first_at is None or self._last_at is None else self._last_at - self._first_at
        days = max(span, _MIN_SPAN_S) / 86400.0
        out: dict[str, float | int] = {}
        for model in sorted(self._models):
            h = self._models[model]
            out[f"model_residuals_total|{model}"] = h.n
            out[f"model_mae|{model}"] = h.abs_sum / h.n if h.n else 0.0
            out[f"model_bias|{model}"] = float(h.adwin.estimation)
            out[f"model_drifts_total|{model}"] = h.drifts
            out[f"model_alerts_total|{model}"] = h.alerts
            out[f"model_alert_rate_per_day|{model}"] = h.alerts / days if self._first_at is not None else 0.0
        return out

    def _health(self, model: str) -> _ModelHealth:
        health = self._models.get(model)
        if health is None:
            if not model or "|" in model:
                raise ValueError(f"model must be a non-empty name without '|' (it becomes a metrics label), got {model!r}")
            adwin = drift.ADWIN(delta=self.delta, clock=self.clock, grace_period=self.grace_period)
            health = self._models[model] = _ModelHealth(adwin)
        return health
