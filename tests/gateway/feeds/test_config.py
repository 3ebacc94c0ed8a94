"""Feeds in the agreements file and the gateway's feed settings (gateway/agreements.py, gateway/feeds/config.py)."""

from __future__ import annotations

import pytest

from gateway.agreements import AgreementError, main, parse_agreements
from gateway.feeds.config import FeedConfigError, feed_targets, load_feed_settings

BASE = """
[agreement.septa]
agency = "SEPTA"
role = "transit"
zones = ["septa-lansdale"]
purpose = "Station staff plan for crowds."
"""
SECRET = "s" * 40


def parse(extra: str) -> dict:
    return parse_agreements(BASE + extra)


def test_an_agreement_takes_a_webhook_its_secrets_variable_and_cap():
    a = parse('webhook_url = "https://hooks.septa.example/wf"\nwebhook_secret_env = "WF_WEBHOOK_SECRET_SEPTA"\ncap = true\n')["septa"]
    assert (a.webhook_url, a.webhook_secret_env) == ("https://hooks.septa.example/wf", "WF_WEBHOOK_SECRET_SEPTA")
    assert a.cap and a.feeds
    assert not parse("")["septa"].feeds
    # /api/me shows where the webhooks go and whether there is a CAP feed, never the variable holding the key
    shown = a.to_json()
    assert shown["webhook_url"] == "https://hooks.septa.example/wf" and shown["cap"] is True
    assert "WF_WEBHOOK_SECRET_SEPTA" not in str(shown)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('webhook_url = "http://hooks.septa.example/wf"\nwebhook_secret_env = "X_KEY"\n', "is not https"),
        ('webhook_url = "ftp://hooks.septa.example/wf"\nwebhook_secret_env = "X_KEY"\n', "is not a URL"),
        ('webhook_url = "https://user:pw@hooks.septa.example/wf"\nwebhook_secret_env = "X_KEY"\n', "credentials"),
        ('webhook_url = "https://hooks.septa.example/wf"\n', 'webhook_secret_env = "WF_WEBHOOK_SECRET_SEPTA"'),
        ('webhook_secret_env = "X_KEY"\n', "webhook_url is not"),
        ('webhook_url = "https://hooks.septa.example/wf"\nwebhook_secret_env = "s3cr3t value!"\n', "the secret itself never goes"),
        ("cap = 1\n", "cap must be true or false"),
        ('cap = true\nshares = ["counts"]\n', "shares does not list alerts"),
    ],
)
def test_a_webhook_or_cap_the_gateway_cannot_serve_is_refused_with_what_to_do(extra, says):
    with pytest.raises(AgreementError, match="agreement 'septa'") as err:
        parse(extra)
    assert says in str(err.value)


def test_plain_http_to_a_loopback_host_parses_but_is_refused_unless_the_gateway_allows_it():
    agreements = parse('webhook_url = "http://127.0.0.1:9/hook"\nwebhook_secret_env = "WF_K"\n')
    env = {"WF_K": SECRET}
    with pytest.raises(FeedConfigError, match="WF_FEEDS_ALLOW_HTTP=1"):
        feed_targets(agreements, env, load_feed_settings({}))
    target = feed_targets(agreements, env, load_feed_settings({"WF_FEEDS_ALLOW_HTTP": "1"}))["septa"]
    assert target.url == "http://127.0.0.1:9/hook" and target.secret == SECRET.encode()


def test_a_named_secret_that_is_missing_or_short_stops_the_gateway_naming_the_variable():
    agreements = parse('webhook_url = "https://h.example/wf"\nwebhook_secret_env = "WF_WEBHOOK_SECRET_SEPTA"\n')
    with pytest.raises(FeedConfigError, match="WF_WEBHOOK_SECRET_SEPTA is not set"):
        feed_targets(agreements, {}, load_feed_settings({}))
    with pytest.raises(FeedConfigError, match="WF_WEBHOOK_SECRET_SEPTA has 10 characters"):
        feed_targets(agreements, {"WF_WEBHOOK_SECRET_SEPTA": "x" * 10}, load_feed_settings({}))


def test_a_target_never_shows_its_secret():
    agreements = parse('webhook_url = "https://h.example/wf"\nwebhook_secret_env = "WF_K"\n')
    target = feed_targets(agreements, {"WF_K": SECRET}, load_feed_settings({}))["septa"]
    assert SECRET not in repr(target) and SECRET not in str(target)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WF_FEEDS_SENDER": "911 centre"}, "WF_FEEDS_SENDER"),
        ({"WF_FEEDS_ATTEMPTS": "0"}, "WF_FEEDS_ATTEMPTS"),
        ({"WF_FEEDS_BACKOFF_S": "10", "WF_FEEDS_BACKOFF_MAX_S": "1"}, "WF_FEEDS_BACKOFF_MAX_S"),
        ({"WF_FEEDS_TIMEOUT_S": "fast"}, "WF_FEEDS_TIMEOUT_S"),
    ],
)
def test_a_malformed_feed_setting_names_its_variable(env, says):
    with pytest.raises(FeedConfigError, match=says):
        load_feed_settings(env)


def test_the_public_summary_says_which_partners_get_webhooks_and_cap(tmp_path, capsys):
    path = tmp_path / "agreements.toml"
    path.write_text(BASE + 'webhook_url = "https://hooks.septa.example/wf"\nwebhook_secret_env = "WF_K"\ncap = true\n')
    assert main(["summary", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "signed webhooks to hooks.septa.example and as a CAP 1.2 Atom feed" in out
    assert "WF_K" not in out
