"""A Faust or aiokafka upgrade fails here, not in the worker: the pinned release, the hash of every upstream source relied on."""

from __future__ import annotations

import tomllib

import faust
import pytest

from streams import faustext
from streams.faustext import kafka_backoff, transport, upstream
from streams.runtime.settings import load_settings
from tests.stackutil import ROOT


@pytest.mark.parametrize("name", sorted(upstream.UPSTREAM))
def test_the_installed_source_of_each_method_copied_or_built_on_is_the_pinned_release_one(name):
    # On a failure: read the upstream change, carry it into streams/faustext, then update the hash
    # (python -m streams.faustext.upstream prints them) -- see streams/faustext/upstream.py.
    assert upstream.source_hash(name) == upstream.UPSTREAM[name], f"{name} changed upstream"


def test_the_installed_faust_is_the_release_pinned_in_pyproject():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"faust-streaming=={upstream.PINNED_FAUST}" in dependencies
    assert faust.__version__ == upstream.PINNED_FAUST
    assert upstream.refusal() is None


def test_the_table_covers_every_faust_method_the_subclasses_override():
    # an override added to a subclass without its upstream hash would escape the check above
    from streams.faustext.fastpath import LeanMonitor, RawSchema

    checked = 0
    for cls in (transport.Consumer, transport.ConsumerThread, transport.Producer, transport.ProducerBuffer, LeanMonitor, RawSchema):
        for attr, value in vars(cls).items():
            if not callable(value) or (attr.startswith("__") and attr != "__init__"):
                continue
            owner = next((k for k in cls.__mro__[1:] if attr in vars(k)), None)
            if owner is not None:  # it overrides an upstream method
                assert f"{owner.__module__}:{owner.__qualname__}.{attr}" in upstream.UPSTREAM, f"{cls.__name__}.{attr}: hash it"
                checked += 1
    assert checked >= 13


def test_a_source_that_differs_from_the_pinned_one_is_named():
    name = "faust.transport.consumer:Consumer.getmany"
    table = {**upstream.UPSTREAM, name: "0" * 64}
    assert upstream.source_hash(name) != table[name]
    upstream.changed.cache_clear()
    try:
        original = upstream.UPSTREAM
        upstream.UPSTREAM = table
        assert upstream.changed() == (name,)
        assert name in upstream.refusal()
    finally:
        upstream.UPSTREAM = original
        upstream.changed.cache_clear()
    assert upstream.changed() == ()


@pytest.mark.parametrize("version", ["0.15.4", "0.15.30", "0.16.0", "0.15.2"])
def test_another_faust_release_is_refused_and_runs_as_released(monkeypatch, caplog, version):
    settings = load_settings({})
    faustext.uninstall()  # whatever an earlier test installed: this one starts from Faust as released
    try:
        monkeypatch.setattr(faust, "__version__", version)
        with caplog.at_level("WARNING", logger="streams.faustext"):
            assert faustext.install(settings) is False
        assert f"faust-streaming {version} is installed" in caplog.text
        assert not transport.registered() and not kafka_backoff.installed()
        assert faustext.app_options(settings) == {}
        assert faustext.topic_options(settings) == {"key_serializer": "raw", "value_serializer": "raw"}
    finally:
        monkeypatch.undo()
        faustext.install(settings)


def test_a_changed_upstream_source_is_refused_and_runs_as_released(monkeypatch, caplog):
    settings = load_settings({})
    faustext.uninstall()
    try:
        monkeypatch.setattr(upstream, "changed", lambda: ("faust.transport.consumer:Consumer.getmany",))
        with caplog.at_level("WARNING", logger="streams.faustext"):
            assert faustext.install(settings) is False
        assert "Consumer.getmany" in caplog.text
        assert not faustext.installed()
        assert faustext.app_options(settings) == {}
    finally:
        monkeypatch.undo()
        faustext.install(settings)
