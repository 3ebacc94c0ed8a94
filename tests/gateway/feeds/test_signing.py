"""Webhook signatures, delivery ids and the retry schedule (gateway/feeds/signing.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gateway.feeds.signing import (
    Verdict,
    backoff_s,
    classify,
    delivery_id,
    delivery_key,
    next_delay,
    retry_after_s,
    signature,
    verify,
)

SECRET = b"partner-secret-" + b"x" * 32
BODY = b'{"type":"alert","id":"c-x","alert":{"id":"a-1"}}'


def test_the_signature_is_the_hex_hmac_sha256_of_timestamp_dot_body_as_a_receiver_computes_it():
    by_hand = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1700000000, BODY) == f"sha256={by_hand}"


def test_verify_refuses_another_body_another_key_another_timestamp_and_a_stale_one():
    sig = signature(SECRET, 1700000000, BODY)
    assert verify(SECRET, "1700000000", BODY, sig, now=1700000010)
    assert not verify(SECRET, "1700000000", BODY + b" ", sig, now=1700000010)
    assert not verify(b"y" * 47, "1700000000", BODY, sig, now=1700000010)
    assert not verify(SECRET, "1700000001", BODY, sig, now=1700000010)
    assert not verify(SECRET, "1700000000", BODY, sig, now=1700000000 + 301)
    assert not verify(SECRET, "soon", BODY, sig, now=1700000000)


def test_a_delivery_id_is_stable_per_agreement_and_entry_and_tells_nothing_of_the_stream_id():
    key = delivery_key(b"gateway-secret-" + b"z" * 32)
    a = delivery_id(key, "septa", "1700000000123-4")
    assert a == delivery_id(key, "septa", "1700000000123-4")
    assert a != delivery_id(key, "septa", "1700000000123-5")
    assert a != delivery_id(key, "mciu-1", "1700000000123-4")
    assert a != delivery_id(delivery_key(b"another-secret-" + b"z" * 32), "septa", "1700000000123-4")
    assert "1700000000123" not in a and "-4" not in a[len("wf-septa-") :]
    # a valid CAP identifier: no spaces, commas, '<' or '&'
    assert not set(a) & set(" ,<&")


def test_an_unkeyed_delivery_id_would_give_the_stream_id_away_so_the_key_matters():
    # what a partner could do against sha256(agreement + stream id): try each millisecond of the alert's minute
    sid = "1700000000123-0"
    unkeyed = hashlib.sha256(f"septa\n{sid}".encode()).hexdigest()[:24]
    found = next(ms for ms in range(1700000000000, 1700000060000) if hashlib.sha256(f"septa\n{ms}-0".encode()).hexdigest()[:24] == unkeyed)
    assert found == 1700000000123
    keyed = delivery_id(delivery_key(b"s" * 40), "septa", sid).rsplit("-", 1)[1]
    assert all(hashlib.sha256(f"septa\n{ms}-0".encode()).hexdigest()[:24] != keyed for ms in range(1700000000000, 1700000001000))


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(None, "retry"), (200, "delivered"), (202, "delivered"), (204, "delivered"), (301, "refused"), (302, "refused"),
     (400, "refused"), (401, "refused"), (404, "refused"), (408, "retry"), (413, "refused"), (425, "retry"),
     (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry")],
)  # fmt: skip
def test_each_answer_is_delivered_worth_retrying_or_refused(status, verdict):
    assert classify(status).value == verdict


def test_the_backoff_doubles_from_the_base_is_capped_and_its_jitter_stays_within_half_to_all_of_the_step():
    steps = [backoff_s(n, 1.0, 60.0, 1.0) for n in range(1, 10)]
    assert steps == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    for n in range(1, 10):
        low, high = backoff_s(n, 1.0, 60.0, 0.0), backoff_s(n, 1.0, 60.0, 1.0)
        assert low == pytest.approx(high / 2)
        assert low <= backoff_s(n, 1.0, 60.0, 0.37) <= high
    assert backoff_s(500, 1.0, 60.0, 1.0) == 60.0  # no overflow however many attempts


def _kw(**over):
    return {"attempts": 5, "max_age_s": 100.0, "base_s": 1.0, "max_s": 30.0, "retry_after": None, "u": 1.0, **over}


def test_a_delivery_is_retried_until_its_attempts_or_its_age_run_out_then_given_up():
    assert [next_delay(Verdict.RETRY, n, age_s=0.0, **_kw()) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, None]
    assert next_delay(Verdict.RETRY, 1, age_s=100.0, **_kw()) is None
    assert next_delay(Verdict.RETRY, 4, age_s=95.0, **_kw()) == 5.0  # the last wait ends at the age limit
    assert next_delay(Verdict.DELIVERED, 1, age_s=0.0, **_kw()) is None
    assert next_delay(Verdict.REFUSED, 1, age_s=0.0, **_kw()) is None


def test_retry_after_is_honoured_up_to_the_longest_wait():
    assert next_delay(Verdict.RETRY, 1, age_s=0.0, **_kw(retry_after=7.0)) == 7.0
    assert next_delay(Verdict.RETRY, 1, age_s=0.0, **_kw(retry_after=0.0)) == 0.0
    assert next_delay(Verdict.RETRY, 1, age_s=0.0, **_kw(retry_after=3600.0)) == 30.0
    assert retry_after_s("  12 ", 0.0) == 12.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 + 100) == 0.0  # in the past: now
    assert retry_after_s("-5", 0.0) is None and retry_after_s("", 0.0) is None
