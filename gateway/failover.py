"""Moving between gateways and resuming by id (pure: no I/O), for WebSocket clients given several gateway addresses.

A client that loses its gateway moves to the next address of its list (round robin) and reconnects with the
``last_id`` of the last ``alert`` or ``action`` frame it applied; the gateway then sends what was missed after it
(:mod:`gateway.hub`). :class:`Rotation` says where to go next and how long to wait first; :class:`Resume` keeps
the cursor and drops a frame already applied. :mod:`gateway.client` drives both over ``websockets``; the
dashboard's ``js/failover.js`` follows the same rules.

Waiting: the first try at each other address after a loss waits only a jitter (up to :data:`MOVE_JITTER_S`, so
that the clients of a lost gateway do not all arrive at the same millisecond); once every address has failed in a
row, each further try waits an exponential backoff with jitter (half to all of ``min_s * 2**round``, at most
``max_s``), as the dashboard's ``Backoff`` does.

>>> r = Rotation(("http://a:1", "http://b:2"), rng=lambda: 0.5)
>>> r.current, r.label
('http://a:1', 'gateway 1')
>>> r.lost()
0.125
>>> r.current, r.label
('http://b:2', 'gateway 2')
>>> r.lost(), r.current       # b failed too: a whole round failed, back off
(0.375, 'http://a:1')
>>> r.connected(); r.lost()   # a live connection resets the round
0.125
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from urllib.parse import urlencode, urlsplit

#: longest wait before trying the next address after a loss, seconds (scaled by a random 0-1)
MOVE_JITTER_S = 0.25
#: heartbeat frames (``WF_GATEWAY_HEARTBEAT_S`` apart, announced in ``welcome``) a client may miss before it takes
#: its gateway for lost: a machine gone from the network sends no close (``js/failover.js`` says the same)
MISSED_HEARTBEATS = 3
#: frames whose ids are kept to recognise a repeat when ids cannot be compared (partners' sealed cursors)
SEEN_IDS = 10_000
_STREAM_ID = re.compile(r"(\d+)-(\d+)")
#: frames that carry a resume id
RESUMABLE = ("alert", "action")


class Rotation:
    """Where a client connects: ``addresses`` (gateway base URLs) in order, starting at ``start``.

    Call :meth:`lost` when a connection fails or drops (it moves to the next address and returns the seconds to
    wait before trying it) and :meth:`connected` when one is live again (the gateway sent ``caught_up``).
    ``rng`` returns a float in [0, 1) (``random.random``).
    """

    def __init__(
        self, addresses: Sequence[str], *, start: int = 0, rng: Callable[[], float], min_s: float = 0.5, max_s: float = 15.0
    ) -> None:
        if not addresses:
            raise ValueError("no gateway address: give at least one base URL, e.g. http://127.0.0.1:8765")
        if not 0 <= start < len(addresses):
            raise ValueError(f"start must be an index of the {len(addresses)} addresses, found {start}")
        self.addresses = tuple(addresses)
        self.index = start
        self.rng = rng
        self.min_s = min_s
        self.max_s = max_s
        #: addresses tried in a row without a live connection
        self.failures = 0
        #: rounds of every address failed in a row
        self.rounds = 0

    @property
    def current(self) -> str:
        return self.addresses[self.index]

    @property
    def label(self) -> str:
        """How a person is told which gateway this is ("gateway 2"): its place in the list, from 1."""
        return f"gateway {self.index + 1}"

    def lost(self) -> float:
        """The current address failed or dropped: move to the next one; the seconds to wait before trying it."""
        self.failures += 1
        self.index = (self.index + 1) % len(self.addresses)
        if self.failures < len(self.addresses):
            return MOVE_JITTER_S * self.rng()
        base = min(self.max_s, self.min_s * 2.0**self.rounds)
        self.rounds += 1
        return base * (0.5 + self.rng() / 2)

    def connected(self) -> None:
        """The current address is live: the next loss starts a new round."""
        self.failures = 0
        self.rounds = 0


class Resume:
    """The resume cursor (``last_id``) and the frames already applied.

    Supervisors' and commanders' ids are Redis stream ids, which only grow: a frame whose id is not above the last
    applied one is a repeat. Partners' ids are sealed cursors (:mod:`gateway.cursors`), a fresh text each time, so
    only an exact repeat among the last :data:`SEEN_IDS` is recognised (the gateway's resume sends none).

    >>> r = Resume("5-0")
    >>> [r.accept({"type": "alert", "id": i}) for i in ("6-0", "5-9", "6-0", "10-0")]
    [True, False, False, True]
    >>> r.last_id, r.accept({"type": "counts"})
    ('10-0', True)
    """

    def __init__(self, last_id: str | None = None) -> None:
        self.last_id = last_id
        self._last = _ordered(last_id)
        self._seen: OrderedDict[str, None] = OrderedDict()

    def accept(self, frame: dict[str, object]) -> bool:
        """Whether ``frame`` is to be applied (True for every frame without a resume id); remembers its id."""
        if frame.get("type") not in RESUMABLE:
            return True
        fid = frame.get("id")
        if not isinstance(fid, str):
            return True
        key = _ordered(fid)
        if key is not None:
            if self._last is not None and key <= self._last:
                return False
            self._last = key
        else:
            if fid in self._seen:
                return False
            self._seen[fid] = None
            while len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        self.last_id = fid
        return True


def _ordered(stream_id: str | None) -> tuple[int, int] | None:
    m = _STREAM_ID.fullmatch(stream_id or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def socket_url(base: str, token: str, last_id: str | None) -> str:
    """The ``/ws`` URL of the gateway at ``base`` (``http(s)://host[:port]``) with the token and the resume cursor.

    >>> socket_url("https://gw2.example.org", "t0k", "1700000000000-3")
    'wss://gw2.example.org/ws?token=t0k&last_id=1700000000000-3'
    """
    u = urlsplit(base.rstrip("/"))
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError(f"{base!r} is not a gateway base URL like http://127.0.0.1:8765")
    query = {"token": token, **({"last_id": last_id} if last_id is not None else {})}
    return f"{'wss' if u.scheme == 'https' else 'ws'}://{u.netloc}/ws?{urlencode(query)}"
