"""Moving between gateways and resuming by id (gateway.failover), the peers setting and what it opens (pure)."""

from __future__ import annotations

import pytest

from gateway.failover import MOVE_JITTER_S, SEEN_IDS, Resume, Rotation, socket_url
from gateway.http import content_security_policy
from gateway.settings import GatewaySettings, GatewaySettingsError, load_gateway_settings

SECRET = {"WF_GATEWAY_SECRET": "s" * 40}


def test_a_lost_gateway_is_left_for_the_next_at_once_and_a_round_of_failures_backs_off():
    r = Rotation(("http://a", "http://b", "http://c"), start=1, rng=lambda: 1.0)
    assert [r.lost() for _ in range(2)] == [MOVE_JITTER_S, MOVE_JITTER_S], "each other address is tried after a jitter only"
    assert r.current == "http://a"
    waits = [r.lost() for _ in range(6)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0], "then the backoff doubles up to its cap"
    assert r.current == "http://a", "six more moves: twice round the three"
    r.connected()
    assert r.lost() == MOVE_JITTER_S


def test_the_rotation_goes_round_the_list_in_order_and_names_each_gateway_by_its_place():
    r = Rotation(("http://a", "http://b"), rng=lambda: 0.0)
    seen = []
    for _ in range(4):
        seen.append((r.current, r.label))
        r.lost()
    assert seen == [("http://a", "gateway 1"), ("http://b", "gateway 2")] * 2


def test_a_rotation_needs_an_address_and_a_start_within_the_list():
    with pytest.raises(ValueError, match="no gateway address"):
        Rotation((), rng=lambda: 0.0)
    with pytest.raises(ValueError, match="start must be an index of the 2 addresses"):
        Rotation(("http://a", "http://b"), start=2, rng=lambda: 0.0)


def test_stream_ids_at_or_below_the_last_applied_are_repeats_and_other_frames_pass():
    r = Resume()
    frames = [{"type": "alert", "id": "10-0"}, {"type": "action", "id": "10-1"}, {"type": "alert", "id": "10-0"}]
    frames += [{"type": "counts"}, {"type": "alert", "id": "9-5"}, {"type": "caught_up", "id": "10-1"}, {"type": "alert", "id": "11-0"}]
    assert [r.accept(f) for f in frames] == [True, True, False, True, False, True, True]
    assert r.last_id == "11-0"


def test_sealed_cursors_are_repeats_only_when_identical_and_the_memory_of_them_is_bounded():
    r = Resume("c-first")
    assert r.accept({"type": "alert", "id": "c-a"}) and not r.accept({"type": "alert", "id": "c-a"})
    assert r.accept({"type": "alert", "id": "c-b"}) and r.last_id == "c-b"
    for i in range(SEEN_IDS):
        r.accept({"type": "alert", "id": f"c-{i}"})
    assert r.accept({"type": "alert", "id": "c-a"}), "the oldest are forgotten"


def test_the_socket_url_follows_the_scheme_and_carries_the_cursor_escaped():
    assert socket_url("http://10.0.0.5:8080/", "a b", None) == "ws://10.0.0.5:8080/ws?token=a+b"
    assert socket_url("https://gw", "t", "c-x/y=") == "wss://gw/ws?token=t&last_id=c-x%2Fy%3D"
    with pytest.raises(ValueError, match="not a gateway base URL"):
        socket_url("gw:8080", "t", None)


def test_peers_are_read_as_browsers_write_origins():
    s = load_gateway_settings(
        {**SECRET, "WF_GATEWAY_PEERS": " http://10.0.0.5:8080 ,HTTP://GW2:80/, https://[::1]:443,http://10.0.0.5:8080"}
    )
    assert s.peers == ("http://10.0.0.5:8080", "http://gw2", "https://[::1]")
    assert s.peer_sockets == ("ws://10.0.0.5:8080", "ws://gw2", "wss://[::1]")
    assert load_gateway_settings(SECRET).peers == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ftp://gw1", "http or https and a host"),
        ("gw1:8080", "http or https and a host"),
        ("http://gw1/watchfloor", "found path '/watchfloor'"),
        ("http://gw1?x=1", "found query 'x=1'"),
        ("http://gw1#top", "found fragment 'top'"),
        ("http://user:pw@gw1", "holds credentials"),
        ("http://gw1:http", "Port could not be cast"),
        ("http://gw1:70000", "Port out of range"),
    ],
)
def test_a_malformed_peer_is_refused_naming_the_variable_and_what_is_wrong(text, says):
    with pytest.raises(GatewaySettingsError, match="WF_GATEWAY_PEERS") as err:
        load_gateway_settings({**SECRET, "WF_GATEWAY_PEERS": f"http://ok:1,{text}"})
    assert says in str(err.value)


def test_peers_given_in_code_are_checked_too():
    with pytest.raises(GatewaySettingsError, match="WF_GATEWAY_PEERS"):
        GatewaySettings(b"s" * 40, peers=("http://gw1/",))


def test_the_csp_lets_the_page_reach_each_peer_and_nothing_else():
    csp = content_security_policy(peers=("http://10.0.0.5:8080", "https://gw2.example.org"))
    connect = next(d for d in csp.split("; ") if d.startswith("connect-src"))
    assert connect.split()[1:] == [
        "'self'",
        "http://10.0.0.5:8080",
        "ws://10.0.0.5:8080",
        "https://gw2.example.org",
        "wss://gw2.example.org",
    ]
    assert next(d for d in content_security_policy().split("; ") if d.startswith("connect-src")) == "connect-src 'self'"
