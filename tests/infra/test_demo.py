"""The demo's choices that do not need the stack: which profile it runs under and which dashboards it offers."""

from __future__ import annotations

import argparse

from gateway.tokens import verify
from infra import demo

SECRET = "demo-test-secret-0123456789abcdef0123456789"


def test_montgomery_gets_its_partner_dashboards_and_another_city_only_its_supervisor(capsys):
    supervisor, transit, school = demo._demo_tokens(SECRET)
    assert verify(SECRET.encode(), transit).role == "transit" and verify(SECRET.encode(), school).role == "school"
    assert verify(SECRET.encode(), supervisor).agency == "Montgomery County 911"
    supervisor, transit, school = demo._demo_tokens(SECRET, montgomery=False, agency="San Francisco 911")
    assert transit is None and school is None and verify(SECRET.encode(), supervisor).agency == "San Francisco 911"
    demo._print_where_to_look("8765", supervisor, None, None)
    printed = capsys.readouterr().out
    assert "transit partner" not in printed and "the shipped partner zones are Montgomery County's" in printed


def test_the_profile_is_the_given_one_else_montgomerys_only_for_its_own_data(tmp_path, monkeypatch):
    monkeypatch.delenv("WF_PROFILE", raising=False)
    other = tmp_path / "calls.csv"
    assert demo._profile(argparse.Namespace(profile=None, path=None)) == str(demo.MONTGOMERY_PROFILE)
    assert demo._profile(argparse.Namespace(profile=None, path=str(other))) is None
    given = tmp_path / "j.toml"
    assert demo._profile(argparse.Namespace(profile=str(given), path=str(other))) == str(given.resolve())
    monkeypatch.setenv("WF_PROFILE", "/etc/wf/j.toml")
    assert demo._profile(argparse.Namespace(profile=None, path=str(other))) == "/etc/wf/j.toml"


def test_the_demo_ends_with_the_alerts_it_raised_one_line_each_in_the_jurisdictions_time():
    from zoneinfo import ZoneInfo

    t0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: Wednesday 23:13 in Berlin, 14:13 in Los Angeles
    records = [
        {"id": f"surge:c{i}:1", "state": "open", "at": t0 + 60 * i, "summary": f"Medical calls in Area {i}: 9 in 15 minutes"}
        for i in range(14)
    ]
    records.insert(1, {"id": "surge:c0:1", "state": "update", "at": t0 + 30, "summary": "grew"})
    records.append({"id": "surge:c0:1", "state": "closed", "at": t0 + 3600, "summary": "Ended"})
    records.append({"id": "old:1", "state": "open", "at": t0 + 7200, "reason": "9 calls in 15 min (a record older than summary)"})
    lines = demo.alert_lines(records, ZoneInfo("Europe/Berlin"), limit=12)
    assert lines[0] == "Alerts raised: 15 (1 update and 1 close followed)"
    assert lines[1] == "  Tue 2023-11-14 23:13 CET  Medical calls in Area 0: 9 in 15 minutes"
    assert len(lines) == 1 + 12 + 1 and lines[-1].startswith("  and 3 more ")
    assert all("grew" not in line and "Ended" not in line for line in lines), "updates and closes are counted, not listed"
    few = demo.alert_lines(records[-3:], ZoneInfo("America/Los_Angeles"))
    assert few[1:] == [
        "  Tue 2023-11-14 14:26 PST  Medical calls in Area 13: 9 in 15 minutes",
        "  Tue 2023-11-14 16:13 PST  9 calls in 15 min (a record older than summary)",
    ]


def test_the_cluster_demo_gives_every_process_the_three_brokers_the_sentinels_and_replication_3_of_2(monkeypatch):
    monkeypatch.setenv("WF_KAFKA_PORT", "19092")
    monkeypatch.setenv("WF_REDIS_PORT", "16379")
    env = demo.cluster_env()
    assert env["WF_KAFKA_BOOTSTRAP"] == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert env["WF_REDIS_SENTINELS"] == "127.0.0.1:16382,127.0.0.1:16383,127.0.0.1:16384"
    assert (env["WF_KAFKA_REPLICATION_FACTOR"], env["WF_KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    # every process reads them as its settings: a typo in a name would be ignored silently otherwise
    from streams.runtime.settings import load_settings

    s = load_settings(env)
    assert s.kafka_replication_factor == 3 and s.kafka_min_insync_replicas == 2 and len(s.redis_sentinels) == 3
