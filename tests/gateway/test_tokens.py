"""Tokens: issued tokens verify, and forged, edited, expired, premature or malformed ones are refused with the right code."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from gateway.tokens import CLOCK_SKEW_S, MAX_TTL_S, Claims, Role, TokenError, issue, load_secret, main, parse_ttl, verify

ROOT = Path(__file__).resolve().parents[2]
# 64 bytes: long enough for HS512 too, so the wrong-algorithm test warns about nothing
SECRET = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210-test"
NOW = 1_700_000_000.0


def _token(**kw) -> str:
    args = {
        "subject": "ops-desk-3", "role": "transit", "agency": "SEPTA", "zones": ("septa-lansdale", "septa-ambler"), "now": NOW,
        "agreement": "septa",
    }  # fmt: skip
    args.update(kw)
    return issue(SECRET, **args)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _payload(**overrides) -> dict:
    p = {"sub": "x", "role": "transit", "agency": "SEPTA", "zones": ["z"], "iat": NOW, "exp": NOW + 3600, "jti": "j"}
    p.update(overrides)
    return {k: v for k, v in p.items() if v is not None}


def _refused(token: str | None, now: float = NOW + 10, secret: bytes = SECRET) -> str:
    with pytest.raises(TokenError) as info:
        verify(secret, token, now=now)
    return info.value.code


def test_issue_then_verify_gives_the_claims_back():
    """A token verifies to exactly the subject, role, agency, zones, agreement and times it was issued with."""
    claims = verify(SECRET, _token(ttl_s=3600), now=NOW + 5)
    zones = ("septa-lansdale", "septa-ambler")
    assert claims == Claims("ops-desk-3", Role.TRANSIT, "SEPTA", zones, NOW + 3600, NOW, claims.token_id, agreement="septa")
    assert len(claims.token_id) >= 16


def test_a_token_is_refused_before_its_not_before_time():
    """nbf is honoured: before it (beyond the clock skew) the token is not yet valid; after it, it verifies."""
    tok = _token(not_before=NOW + 600)
    with pytest.raises(TokenError, match="not_yet_valid: token not valid for another 540 s"):
        verify(SECRET, tok, now=NOW + 60)  # 540 s early, more than the CLOCK_SKEW_S allowed
    assert verify(SECRET, tok, now=NOW + 600).not_before == NOW + 600


def test_each_token_has_its_own_id():
    """Two tokens issued alike carry different random ids (jti)."""
    assert verify(SECRET, _token(), now=NOW).token_id != verify(SECRET, _token(), now=NOW).token_id


def test_token_signed_with_another_secret_is_a_bad_signature():
    """A token signed with another secret is refused as bad_signature."""
    assert _refused(issue(OTHER, subject="x", role="supervisor", agency="CCC", now=NOW)) == "bad_signature"


def test_alg_none_token_is_refused():
    """An unsigned token (alg none) claiming supervisor is refused, never trusted."""
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_payload(role='supervisor', zones=[]))}."
    assert _refused(token) == "bad_signature"


def test_other_algorithm_with_the_same_secret_is_refused():
    """Only HS256 is accepted: an HS512 token signed with the right secret is refused."""
    token = jwt.encode(_payload(), SECRET, algorithm="HS512")
    assert _refused(token) == "bad_signature"


def test_edited_payload_is_a_bad_signature():
    """Changing the payload of a valid token (transit -> supervisor) breaks its signature."""
    header, payload, sig = _token().split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(role="supervisor", zones=[])
    assert _refused(f"{header}.{_b64(data)}.{sig}") == "bad_signature"


@pytest.mark.parametrize("now", [NOW + 3600, NOW + 3600.5, NOW + 10 * 86400])
def test_expired_token_is_refused(now):
    """A token is refused as expired from its exp on, with no grace."""
    assert _refused(_token(ttl_s=3600), now=now) == "expired"


def test_token_is_valid_just_before_it_expires():
    """A token still verifies one second before exp."""
    assert verify(SECRET, _token(ttl_s=3600), now=NOW + 3599).role is Role.TRANSIT


def test_token_from_the_future_is_not_yet_valid():
    """A token issued more than the clock skew in the future is refused as not_yet_valid; within it, accepted."""
    assert _refused(_token(now=NOW + CLOCK_SKEW_S + 5), now=NOW) == "not_yet_valid"
    assert verify(SECRET, _token(now=NOW + CLOCK_SKEW_S - 5), now=NOW).subject == "ops-desk-3"


@pytest.mark.parametrize("token", [None, "", "   "])
def test_missing_token(token):
    """No token (None or blank) is refused as missing."""
    assert _refused(token) == "missing"


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a.b.c",
        jwt.encode(_payload(zones=None), SECRET, algorithm="HS256"),
        jwt.encode(_payload(jti=None), SECRET, algorithm="HS256"),
        jwt.encode(_payload(role="mayor"), SECRET, algorithm="HS256"),
        jwt.encode(_payload(zones="septa-lansdale"), SECRET, algorithm="HS256"),
        jwt.encode(_payload(agency=""), SECRET, algorithm="HS256"),
        jwt.encode(_payload(exp="tomorrow"), SECRET, algorithm="HS256"),
    ],
    ids=["garbage", "three-dots", "no-zones", "no-jti", "unknown-role", "zones-string", "empty-agency", "exp-text"],
)
def test_malformed_tokens(token):
    """Things that are not our tokens (not a JWT, a missing claim, an unknown role, a wrong claim type) are malformed."""
    assert _refused(token) == "malformed"


def test_short_secret_is_refused():
    """Secrets under 32 bytes are refused for issuing and verifying."""
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue(b"short", subject="x", role="supervisor", agency="CCC")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        verify(b"short", "a.b.c")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"ttl_s": 0}, "ttl must be more than 0"),
        ({"ttl_s": MAX_TTL_S + 1}, "at most 604800 s"),
        ({"ttl_s": float("nan")}, "ttl must be"),
        ({"agreement": None}, "a transit token needs its data-sharing agreement"),
        ({"role": "school", "agreement": None}, "a school token needs its data-sharing agreement"),
        ({"role": "commander", "zones": ()}, "only partner tokens .* name an agreement"),
        ({"role": "commander", "zones": (), "agreement": None}, "a commander token needs the event zone"),
        ({"role": "supervisor", "zones": (), "agreement": "septa"}, "only partner tokens .* name an agreement"),
        ({"role": "supervisor"}, "a supervisor token sees every zone and takes no zone ids"),
        ({"role": "mayor"}, "role must be one of supervisor, transit, school, commander"),
        ({"subject": ""}, "subject must be a non-empty printable string"),
        ({"subject": "desk\n3"}, "subject must be a non-empty printable string"),
        ({"agency": "A" * 101}, "agency must be a non-empty printable string of at most 100"),
        ({"zones": ("z", "z")}, "zone ids must be distinct"),
        ({"zones": "septa-lansdale"}, "zones must be a sequence of zone ids"),
    ],
)
def test_issue_refuses_bad_arguments(kw, message):
    """issue() raises ValueError naming the bad argument."""
    with pytest.raises(ValueError, match=message):
        _token(**kw)


def test_load_secret():
    """The secret comes from WF_GATEWAY_SECRET; missing or short, the error says how to make one."""
    assert load_secret({"WF_GATEWAY_SECRET": "k" * 48}) == b"k" * 48
    for env in ({}, {"WF_GATEWAY_SECRET": ""}, {"WF_GATEWAY_SECRET": "k" * 31}):
        with pytest.raises(ValueError, match="secrets.token_urlsafe"):
            load_secret(env)


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("8h", 28800), ("2d", 172800), ("90s", 90), ("3600", 3600), ("1.5h", 5400)])
def test_parse_ttl(text, seconds):
    """TTLs are seconds or a number with s/m/h/d."""
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "8 hours", "-1h", "h", "1w"])
def test_parse_ttl_refuses(text):
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="ttl must be"):
        parse_ttl(text)


# -- command line -------------------------------------------------------------------


def _cli(*args: str, secret: str | None = SECRET.decode()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WF_GATEWAY_SECRET"}
    if secret is not None:
        env["WF_GATEWAY_SECRET"] = secret
    return subprocess.run([sys.executable, "-m", "gateway.tokens", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_cli_issue_then_verify_round_trip():
    """`issue` prints a token that verifies with the same secret, and `inspect` prints its claims."""
    out = _cli(
        "issue",
        "--role",
        "transit",
        "--agency",
        "SEPTA",
        "--subject",
        "ops-desk-3",
        "--zones",
        "septa-norristown-tc,septa-lansdale",
        "--agreement",
        "septa",
        "--ttl",
        "8h",
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    claims = verify(SECRET, token)
    assert (claims.role, claims.agency, claims.subject, claims.zones) == (
        Role.TRANSIT,
        "SEPTA",
        "ops-desk-3",
        ("septa-norristown-tc", "septa-lansdale"),
    )
    assert claims.expires_at - claims.issued_at == 8 * 3600
    shown = _cli("inspect", token)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["zones"] == ["septa-norristown-tc", "septa-lansdale"]


def test_cli_inspect_refuses_a_forged_token():
    """`inspect` of a token signed with another secret exits 1 naming the refusal code."""
    out = _cli("inspect", issue(OTHER, subject="x", role="supervisor", agency="CCC"))
    assert out.returncode == 1
    assert "bad_signature" in out.stderr and out.stdout == ""


def test_cli_exits_2_without_a_secret():
    """Without WF_GATEWAY_SECRET the CLI exits 2 and says how to create one."""
    out = _cli("issue", "--role", "supervisor", "--agency", "CCC", "--subject", "sup-1", secret=None)
    assert out.returncode == 2
    assert "WF_GATEWAY_SECRET is not set" in out.stderr and "token_urlsafe" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "transit", "--agency", "SEPTA", "--subject", "d", "--agreement", "septa", "--ttl", "forever"], "ttl must be"),
        (["--role", "transit", "--agency", "SEPTA", "--subject", "d", "--agreement", "septa", "--ttl", "30d"], "at most 604800 s"),
        (["--role", "transit", "--agency", "SEPTA", "--subject", "d", "--zones", "z"], "needs its data-sharing agreement"),
        (["--role", "mayor", "--agency", "SEPTA", "--subject", "d"], "invalid choice"),
    ],
)
def test_cli_bad_values_exit_2(args, message, capsys):
    """Bad option values exit 2 with a message naming the problem."""
    with pytest.raises(SystemExit) as info:
        main(["issue", *args], env={"WF_GATEWAY_SECRET": SECRET.decode()})
    assert info.value.code == 2
    assert message in capsys.readouterr().err
