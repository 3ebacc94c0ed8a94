"""Where a request's answer time goes: the stopwatch over its stages, the Server-Timing header, the histograms on /metrics."""

from __future__ import annotations

import pytest

from streams.intake.metrics import IntakeMetrics
from streams.intake.timing import LATENCY_BUCKETS, STAGES, Histogram, Stopwatch, parse_server_timing


def clock(*ticks: float):
    it = iter(ticks)
    return lambda: next(it)


def test_each_lap_is_charged_the_time_since_the_previous_one_and_the_total_is_their_sum():
    sw = Stopwatch(clock=clock(10.0, 10.002, 10.010, 10.011, 10.041))
    sw.lap("read")
    sw.lap("owners")
    sw.lap("claim")
    sw.lap("kafka")
    assert sw.laps == pytest.approx({"read": 0.002, "owners": 0.008, "claim": 0.001, "kafka": 0.030})
    assert sw.total == pytest.approx(0.041)
    assert sw.seconds("audit") == 0.0


def test_a_skipped_interval_is_charged_to_no_stage_and_a_stage_lapped_twice_adds_up():
    sw = Stopwatch(clock=clock(0.0, 1.0, 3.0, 3.5, 4.0))
    sw.lap("kafka")
    sw.skip()
    sw.lap("done")
    sw.lap("kafka")
    assert sw.laps == {"kafka": 1.5, "done": 0.5}
    assert sw.total == 4.0


def test_the_server_timing_header_reads_back_as_the_laps_and_the_total():
    sw = Stopwatch(clock=clock(0.0, 0.0012345, 0.0212345))
    sw.lap("read")
    sw.lap("kafka")
    header = sw.server_timing()
    assert header.startswith("read;dur=1.234, kafka;dur=20.000, total;dur=21.2")
    assert parse_server_timing(header) == pytest.approx({"read": 0.001234, "kafka": 0.02, "total": 0.0212345}, abs=1e-6)


def test_every_stage_the_handler_laps_is_a_known_stage_name_in_order():
    assert STAGES[0] == "read" and STAGES[-1] == "audit" and "kafka" in STAGES and len(set(STAGES)) == len(STAGES)


def test_histogram_buckets_are_cumulative_and_a_value_on_a_bound_counts_at_or_below_it():
    h = Histogram((0.01, 0.1, 1.0))
    for v in (0.005, 0.01, 0.05, 2.0):
        h.observe(v)
    lines = h.render("x_seconds", "help").splitlines()
    assert lines[:2] == ["# HELP x_seconds help", "# TYPE x_seconds histogram"]
    assert lines[2:] == [
        'x_seconds_bucket{le="0.01"} 2',
        'x_seconds_bucket{le="0.1"} 3',
        'x_seconds_bucket{le="1"} 3',
        'x_seconds_bucket{le="+Inf"} 4',
        "x_seconds_sum 2.065",
        "x_seconds_count 4",
    ]


def test_histogram_labels_go_before_le_and_on_the_sum_and_count():
    h = Histogram((1.0,))
    h.observe(0.5)
    assert h.samples("s", 'stage="kafka"').splitlines() == [
        's_bucket{stage="kafka",le="1"} 1',
        's_bucket{stage="kafka",le="+Inf"} 1',
        's_sum{stage="kafka"} 0.5',
        's_count{stage="kafka"} 1',
    ]


@pytest.mark.parametrize("bounds", [(), (0.1, 0.1), (1.0, 0.5)])
def test_histogram_bounds_must_be_increasing(bounds):
    with pytest.raises(ValueError, match="increasing"):
        Histogram(bounds)


def test_metrics_observe_every_answer_the_kafka_wait_only_when_events_were_sent_and_stages_only_when_asked():
    m = IntakeMetrics()
    sent = Stopwatch(clock=clock(0.0, 0.001, 0.009, 0.010))
    for stage in ("read", "kafka", "audit"):
        sent.lap(stage)
    refused = Stopwatch(clock=clock(0.0, 0.001, 0.002))
    refused.lap("read")
    refused.lap("audit")
    m.timed(sent)
    m.timed(refused)
    assert (m.answer.count, m.kafka_ack.count, m.stages) == (2, 1, {})
    assert m.kafka_ack.sum == pytest.approx(0.008)
    m.timed(sent, stages=True)
    assert set(m.stages) == {"read", "kafka", "audit"} and m.stages["kafka"].count == 1
    text = m.render(now=0.0)
    assert "# TYPE watchfloor_intake_answer_seconds histogram" in text
    assert "watchfloor_intake_answer_seconds_count 3" in text
    assert "watchfloor_intake_kafka_ack_seconds_count 2" in text
    assert 'watchfloor_intake_stage_seconds_bucket{stage="kafka",le="0.01"} 1' in text
    assert text.count("# TYPE watchfloor_intake_stage_seconds histogram") == 1


def test_the_latency_buckets_span_a_millisecond_to_ten_seconds():
    assert LATENCY_BUCKETS[0] == 0.001 and LATENCY_BUCKETS[-1] == 10.0
