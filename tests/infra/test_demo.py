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
