"""An agreement's ``shares`` bound what reaches the partner by every path: without ``alerts``, no alert at all
(WebSocket frames, ``/api/alerts``, an alert's records), while the same zone under an agreement that shares them sees it."""

from __future__ import annotations

import time

import pytest

from tests.gateway.live import IN_LANSDALE, GatewayProcess, drain, make_alert, publish, recv_until, token

pytestmark = pytest.mark.stack

AGREEMENTS = """
[agreement.counts-only]
agency = "Counts Only Transit"
role = "transit"
zones = ["septa-lansdale"]
purpose = "Planning from counts alone."
shares = ["counts"]

[agreement.with-alerts]
agency = "Alerts Transit"
role = "transit"
zones = ["septa-lansdale"]
purpose = "Station staff act on alerts."
shares = ["alerts", "counts"]
"""


@pytest.fixture
def sgw(prefix, tmp_path):
    path = tmp_path / "agreements.toml"
    path.write_text(AGREEMENTS)
    g = GatewayProcess(prefix, env_extra={"WF_GATEWAY_AGREEMENTS": str(path)}).start(tmp_path)
    yield g
    g.stop()


def partner(agreement: str, agency: str) -> str:
    return token("transit", zones=("septa-lansdale",), agreement=agreement, agency=agency)


def test_an_agreement_that_does_not_share_alerts_gets_none_by_any_path(sgw, r, prefix):
    without, with_ = partner("counts-only", "Counts Only Transit"), partner("with-alerts", "Alerts Transit")
    ws_without, ws_with = sgw.ws(without), sgw.ws(with_)
    try:
        recv_until(ws_without, lambda f: f.get("type") == "welcome")
        recv_until(ws_with, lambda f: f.get("type") == "welcome")
        alert = make_alert("surge:shares-1", (IN_LANSDALE,), observed=14, at=time.time())
        publish(r, prefix, alert)
        got, _ = recv_until(ws_with, lambda f: f.get("type") == "alert")
        seen = drain(ws_without)
    finally:
        ws_without.close()
        ws_with.close()
    assert got["alert"]["kind"] == "surge", "the control: the same zone under an agreement sharing alerts sees it"
    assert [f for f in seen if f.get("type") in ("alert", "action")] == []

    status, body = sgw.get_json("/api/alerts?state=all", without)
    assert (status, body["alerts"]) == (200, [])
    status, body = sgw.get_json("/api/alerts?state=all", with_)
    assert status == 200 and len(body["alerts"]) == 1
    their_id = body["alerts"][0]["alert"]["id"]
    assert sgw.get(f"/api/alerts/{their_id}/records", with_)[0] == 200
    assert sgw.get(f"/api/alerts/{their_id}/records", without)[0] == 404
