"""The Sentinels' view in the status: each Sentinel asked for the primary, one that does not answer named missing."""

from __future__ import annotations

from dataclasses import replace

from streams.runtime import sentinelhealth
from streams.runtime.settings import load_settings
from streams.runtime.status import render, sentinel_health
from tests.stackutil import free_port


def test_a_sentinel_that_does_not_answer_is_named_missing_with_the_reason():
    port = free_port()  # nothing listens there
    settings = replace(load_settings({}), redis_sentinels=(("127.0.0.1", port),))
    health = sentinel_health(settings, timeout_s=0.5)
    assert not health.ok and health.primary is None
    assert list(health.missing) == [f"127.0.0.1:{port}"] and "ConnectionError" in health.missing[f"127.0.0.1:{port}"]


def test_the_status_shows_the_primary_the_sentinels_name_and_the_missing_one():
    health = sentinelhealth.assess("watchfloor", {"a:1": ("r1", 6379), "b:2": ("r1", 6379), "c:3": "ConnectionError: refused"})
    text = render({"sentinels": health, "metrics": {}})
    assert "redis: primary r1:6379 per 2 of 3 Sentinels (service 'watchfloor'); MISSING: c:3 (ConnectionError: refused)" in text
    assert health.to_dict()["missing"] == {"c:3": "ConnectionError: refused"} and health.to_dict()["primary"] == "r1:6379"
