"""A real gateway process for tests, and the helpers to talk to it (HTTP, WebSocket, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import h3
import redis
from websockets.sync.client import ClientConnection, connect

from detectors.types import Alert, AlertKind, AlertState
from gateway.agreements import DEFAULT_AGREEMENTS, load_agreements
from gateway.client import FailoverClient
from gateway.settings import DEFAULT_ZONES
from gateway.tokens import issue
from gateway.zones import load_zone_files
from infra.stack import redis_port, terminate
from tests.stackutil import free_port

ROOT = Path(__file__).resolve().parents[2]
#: the test stack's Redis (infra.stack: WF_REDIS_PORT, so a second stack can run beside another checkout's)
REDIS_URL = f"redis://127.0.0.1:{redis_port()}/0"

ZONES = load_zone_files(sorted(DEFAULT_ZONES.glob("*.geojson")))
LANSDALE = ZONES["septa-lansdale"]
IN_LANSDALE = sorted(LANSDALE.cells)[0]
# a cell far from every configured zone (Pottstown, western edge of the county)
FAR = h3.latlng_to_cell(40.2454, -75.6496, 8)
assert all(FAR not in z.cells for z in ZONES.values())
SECRET = b"test-secret-" + b"x" * 40
AGREEMENTS = load_agreements(DEFAULT_AGREEMENTS)

#: the named areas of the tests' profile (write_profile): one holding the Lansdale zone, one around FAR
INSIDE_AREA = "Lansdale Borough"
OUTSIDE_AREA = "Pottstown Borough"
#: what every area name here has and no zone or agreement name does
AREA_WORD = "Borough"
INSIDE_CELLS = frozenset(c for z in LANSDALE.cells for c in h3.grid_disk(z, 1))
OUTSIDE_CELLS = frozenset(h3.grid_disk(FAR, 2))


def write_profile(folder: Path, timezone: str = "America/Los_Angeles", residents: dict[str, int] | None = None) -> Path:
    """A profile in ``timezone`` naming the two areas (their outlines drawn from their res-8 cells), with their
    ``residents`` (area name -> number) as the areas' population when given."""
    features = [
        {
            "type": "Feature",
            "properties": {"town": name, **({"residents": residents[name]} if residents else {})},
            "geometry": h3.cells_to_h3shape(sorted(cells)).__geo_interface__,
        }
        for name, cells in ((INSIDE_AREA, INSIDE_CELLS), (OUTSIDE_AREA, OUTSIDE_CELLS))
    ]
    (folder / "areas.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    path = folder / "jurisdiction.toml"
    path.write_text(
        f'id = "test-county"\nname = "Test County"\ntimezone = "{timezone}"\n\n'
        '[areas]\ngeojson = "areas.geojson"\nname_property = "town"\nresolution = 8\n'
        + ('population_property = "residents"\n' if residents else "")
    )
    return path


@dataclass
class GatewayProcess:
    prefix: str
    port: int = field(default_factory=free_port)
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self, tmp: Path) -> GatewayProcess:
        env = dict(os.environ)
        env.update(
            WF_GATEWAY_SECRET=SECRET.decode(),
            WF_REDIS_PREFIX=self.prefix,
            WF_GATEWAY_PORT=str(self.port),
            WF_GATEWAY_COUNTS_S="0.5",
            # the tests knock and read much faster than a person: the rate limits have tests of their own
            WF_GATEWAY_API_RATE="10000",
            WF_GATEWAY_ANON_RATE="10000",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env_extra)
        self.log_path = tmp / f"gateway-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.get("/healthz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway did not answer /healthz within 30 s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 20)

    def kill(self) -> None:
        """SIGKILL: no close frames, no audit flush; the kernel resets its connections."""
        assert self.proc is not None, "the gateway was never started"
        self.proc.kill()
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, token: str | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.base + path, headers={**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``, read with a supervisor's token (it is not public)."""
        status, body = self.get("/metrics", token("supervisor", subject="metrics-reader"))
        assert status == 200, body
        return body.decode()

    def get_json(self, path: str, token: str | None = None) -> tuple[int, dict]:
        status, body = self.get(path, token)
        return status, json.loads(body)

    def ws(self, token: str | None, last_id: str | None = None, **kw) -> ClientConnection:
        q = [] if token is None else [f"token={token}"]
        if last_id is not None:
            q.append(f"last_id={last_id}")
        return connect(f"ws://127.0.0.1:{self.port}/ws?" + "&".join(q), open_timeout=10, legacy=True, **kw)


def agreement_for(role: str, zones: tuple[str, ...]) -> str:
    """The id of the demo agreement (infra/sharing/agreements.toml) of this partner role that holds these zones."""
    return next(a.id for a in AGREEMENTS.values() if a.role == role and set(zones) <= set(a.zones))


def token(
    role: str,
    *,
    zones: tuple[str, ...] = (),
    subject: str | None = None,
    agency: str = "Montgomery County 911",
    ttl_s: float = 3600,
    agreement: str | None = None,
) -> str:
    """A token signed with the tests' secret; a partner's names the agreement (infra/sharing) holding its zones, and its agency."""
    if role in ("transit", "school") and agreement is None:
        agreement = agreement_for(role, zones)
        agency = AGREEMENTS[agreement].agency
    return issue(SECRET, subject=subject or f"{role}-1", role=role, agency=agency, zones=zones, ttl_s=ttl_s, agreement=agreement)


def make_alert(
    alert_id: str,
    cells: tuple[str, ...],
    *,
    observed: int = 12,
    expected: float = 3.0,
    score: float = 7.0,
    categories: dict[str, int] | None = None,
    state: AlertState = AlertState.OPEN,
    at: float | None = None,
    kind: AlertKind = AlertKind.SURGE,
) -> dict:
    at = time.time() if at is None else at
    return Alert(
        id=alert_id,
        kind=kind,
        state=state,
        started_at=at - 600,
        at=at,
        cells=cells,
        window_min=15,
        observed=observed,
        expected=expected,
        score=score,
        p_value=10**-score,
        categories=categories or {"TRAFFIC": observed},
        model="surge-poisson-scan",
        model_version="1.0",
        reason=f"{observed} calls in 15 min in {', '.join(cells)}, {expected} expected",
    ).to_json()


def publish(r: redis.Redis, prefix: str, alert: dict) -> str:
    """Append an alert record to the alerts stream as the worker's detection agent does."""
    return r.xadd(f"{prefix}:alerts", {"alert": json.dumps(alert)})


def recv_until(ws: ClientConnection, pred, timeout_s: float = 10.0) -> tuple[dict, list[dict]]:
    """Frames until one satisfies ``pred``; returns it and every frame read (it included)."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching frame within {timeout_s} s; got {[g.get('type') for g in got]}")
        msg = json.loads(ws.recv(timeout=left))
        got.append(msg)
        if pred(msg):
            return msg, got


def drain(ws: ClientConnection, quiet_s: float = 0.7, max_s: float = 5.0) -> list[dict]:
    """Every frame until none arrives for ``quiet_s`` or ``max_s`` have passed (count frames never stop)."""
    got = []
    deadline = time.monotonic() + max_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(json.loads(ws.recv(timeout=min(quiet_s, left))))
        except TimeoutError:
            break
    return got


class ClientThread:
    """A :class:`gateway.client.FailoverClient` run in a thread of its own (its own event loop), keeping every
    frame it yields in ``frames``; for the synchronous tests. ``stop`` ends it; ``error`` is what ended it otherwise."""

    def __init__(self, addresses: list[str], tok: str, *, last_id: str | None = None, ping_s: float = 2.0) -> None:
        self.client = FailoverClient(addresses, tok, last_id=last_id, ping_s=ping_s)
        self.frames: list[dict] = []
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ClientThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            async for frame in self.client.frames():
                self.frames.append(frame)

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001  # kept for the test to raise: a thread's exception is otherwise only printed
            self.error = exc

    def of(self, kind: str) -> list[dict]:
        return [f for f in list(self.frames) if f.get("type") == kind]

    def wait_for(self, what: str, pred, timeout_s: float = 20.0) -> None:
        """Wait until ``pred(self)`` is true; fail naming ``what`` (and the client's events) after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error is not None:
                raise AssertionError(f"the client ended while waiting for {what}: {self.error!r}")
            if pred(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"waited {timeout_s} s for {what}; events: {self.client.events}; frames: {len(self.frames)}")

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the client had ended
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
