"""The intake's settings from WF_INTAKE_* (the ones not covered by the module's doctests)."""

from __future__ import annotations

import pytest

from streams.intake.settings import load_intake_settings
from streams.runtime.settings import SettingsError


def test_stage_timing_is_off_unless_wf_intake_stage_timing_turns_it_on():
    assert load_intake_settings({}).stage_timing is False
    assert load_intake_settings({"WF_INTAKE_STAGE_TIMING": "yes"}).stage_timing is True
    assert load_intake_settings({"WF_INTAKE_STAGE_TIMING": "0"}).stage_timing is False


def test_a_stage_timing_value_that_is_no_flag_is_an_error_naming_the_variable():
    with pytest.raises(SettingsError, match="WF_INTAKE_STAGE_TIMING: cannot read 'maybe'"):
        load_intake_settings({"WF_INTAKE_STAGE_TIMING": "maybe"})


def test_the_producer_lingers_no_time_unless_wf_intake_kafka_linger_ms_says_so_within_a_second():
    assert load_intake_settings({}).kafka_linger_ms == 0
    assert load_intake_settings({"WF_INTAKE_KAFKA_LINGER_MS": "5"}).kafka_linger_ms == 5
    with pytest.raises(SettingsError, match="WF_INTAKE_KAFKA_LINGER_MS must be 0..1000 ms, found 5000"):
        load_intake_settings({"WF_INTAKE_KAFKA_LINGER_MS": "5000"})
