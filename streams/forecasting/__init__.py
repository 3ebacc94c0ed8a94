"""Forecasts of the next hour, shift and day, as the worker publishes them (pure).

- :mod:`~streams.forecasting.build`: the forecast set (JSON) from a forecaster, an issue time and the profile's places;
- :mod:`~streams.forecasting.issuer`: the forecaster and its monitor fed every call, a set due every 15 minutes of event time.

The detection runner owns the issuer; the detection agent builds and publishes the sets
(:mod:`streams.detection.agent`).
"""
