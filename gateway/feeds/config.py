"""The feeds' settings (``WF_FEEDS_*``) and each agreement's target (pure: reads a mapping of the environment).

==============================  ==============  ===================================================
variable                        default         meaning
==============================  ==============  ===================================================
``WF_FEEDS_SENDER``             watchfloor@     CAP ``sender``: the 911 centre, globally unique (an
                                localhost       address or domain of the centre; no spaces, commas,
                                                ``<`` or ``&``)
``WF_FEEDS_SENDER_NAME``        911 centre      CAP ``senderName``: the centre's name as people read it
``WF_FEEDS_ALLOW_HTTP``         0               1: webhooks may go over plain http to 127.0.0.1, ::1 or
                                                localhost (tests, development); https otherwise
``WF_FEEDS_ATTEMPTS``           8               attempts of one delivery before it is dead-lettered
``WF_FEEDS_MAX_AGE_S``          3600            seconds after its first attempt a delivery is dead-lettered
                                                at its next failure, whatever the attempts left
``WF_FEEDS_BACKOFF_S``          1               the first retry's delay; doubled each attempt (with jitter)
``WF_FEEDS_BACKOFF_MAX_S``      300             the longest delay between attempts (``Retry-After`` too)
``WF_FEEDS_TIMEOUT_S``          10              seconds one POST may take, connecting included
``WF_FEEDS_CAP_KEEP``           200             CAP messages kept per agreement (the Atom feed's newest)
``WF_FEEDS_LOCK_S``             15              a deliverer's lock lifetime; renewed every third of it
==============================  ==============  ===================================================

Each agreement's webhook key is read from the variable its ``webhook_secret_env``
names (:func:`feed_targets`); a named variable that is not set, or shorter than
:data:`MIN_SECRET`, stops the gateway with :class:`FeedConfigError`.

>>> from gateway.agreements import Agreement
>>> from gateway.tokens import Role
>>> a = Agreement("septa", "SEPTA", Role.TRANSIT, ("z",), "p", webhook_url="https://hooks.septa.example/wf",
...               webhook_secret_env="WF_WEBHOOK_SECRET_SEPTA", cap=True)
>>> t = feed_targets({"septa": a}, {"WF_WEBHOOK_SECRET_SEPTA": "s" * 40}, load_feed_settings({}))["septa"]
>>> t.url, len(t.secret), t.cap
('https://hooks.septa.example/wf', 40, True)
>>> feed_targets({"septa": a}, {}, load_feed_settings({}))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gateway.feeds.config.FeedConfigError: agreement 'septa': WF_WEBHOOK_SECRET_SEPTA is not set: it holds the key its webhooks ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.agreements import Agreement
from gateway.settings import GatewaySettingsError
from streams.runtime.settings import read_env

#: shortest webhook key accepted, characters
MIN_SECRET = 32
#: what CAP 1.2 forbids in ``sender`` and ``identifier`` (spaces, commas, ``<``, ``&``)
_CAP_FORBIDDEN = re.compile(r"[\s,<&]")


class FeedConfigError(GatewaySettingsError):
    """A feed setting or an agreement's webhook the gateway cannot use; the message names the variable or agreement."""


@dataclass(frozen=True)
class FeedSettings:
    """The feeds' settings (see the module docstring for each)."""

    sender: str = "watchfloor@localhost"
    sender_name: str = "911 centre"
    allow_http: bool = False
    attempts: int = 8
    max_age_s: float = 3600.0
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    timeout_s: float = 10.0
    cap_keep: int = 200
    lock_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.sender or _CAP_FORBIDDEN.search(self.sender):
            raise FeedConfigError(f"WF_FEEDS_SENDER must be non-empty without spaces, commas, '<' or '&' (CAP 1.2), got {self.sender!r}")
        if not 1 <= self.attempts <= 100:
            raise FeedConfigError(f"WF_FEEDS_ATTEMPTS must be 1..100, found {self.attempts}")
        if not 1 <= self.cap_keep <= 10_000:
            raise FeedConfigError(f"WF_FEEDS_CAP_KEEP must be 1..10000, found {self.cap_keep}")
        for var, value in (
            ("WF_FEEDS_MAX_AGE_S", self.max_age_s),
            ("WF_FEEDS_BACKOFF_S", self.backoff_s),
            ("WF_FEEDS_BACKOFF_MAX_S", self.backoff_max_s),
            ("WF_FEEDS_TIMEOUT_S", self.timeout_s),
            ("WF_FEEDS_LOCK_S", self.lock_s),
        ):
            if not value > 0:
                raise FeedConfigError(f"{var} must be > 0, found {value}")
        if self.backoff_max_s < self.backoff_s:
            raise FeedConfigError(f"WF_FEEDS_BACKOFF_MAX_S ({self.backoff_max_s}) must be at least WF_FEEDS_BACKOFF_S ({self.backoff_s})")


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return text == "1"


_ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "WF_FEEDS_SENDER": ("sender", str),
    "WF_FEEDS_SENDER_NAME": ("sender_name", str),
    "WF_FEEDS_ALLOW_HTTP": ("allow_http", _flag),
    "WF_FEEDS_ATTEMPTS": ("attempts", int),
    "WF_FEEDS_MAX_AGE_S": ("max_age_s", float),
    "WF_FEEDS_BACKOFF_S": ("backoff_s", float),
    "WF_FEEDS_BACKOFF_MAX_S": ("backoff_max_s", float),
    "WF_FEEDS_TIMEOUT_S": ("timeout_s", float),
    "WF_FEEDS_CAP_KEEP": ("cap_keep", int),
    "WF_FEEDS_LOCK_S": ("lock_s", float),
}


def load_feed_settings(environ: Mapping[str, str]) -> FeedSettings:
    """:class:`FeedSettings` from the environment; :class:`FeedConfigError` naming a malformed variable.

    >>> load_feed_settings({"WF_FEEDS_ATTEMPTS": "3"}).attempts
    3
    >>> load_feed_settings({"WF_FEEDS_ALLOW_HTTP": "yes"})
    Traceback (most recent call last):
    ...
    gateway.feeds.config.FeedConfigError: WF_FEEDS_ALLOW_HTTP: cannot read 'yes' as _flag (expected 0 or 1)
    """
    return FeedSettings(**read_env(_ENV, environ, FeedConfigError))  # type: ignore[arg-type]  # each value was cast for its field


@dataclass(frozen=True)
class FeedTarget:
    """Where one agreement's alerts go: its webhook (``url`` and the ``secret`` it is signed with) and/or CAP."""

    agreement: str
    url: str | None
    secret: bytes = b""
    cap: bool = False

    def __repr__(self) -> str:  # never the secret, in a log or a traceback
        return f"FeedTarget(agreement={self.agreement!r}, url={self.url!r}, cap={self.cap})"


def feed_targets(agreements: Mapping[str, Agreement], environ: Mapping[str, str], settings: FeedSettings) -> dict[str, FeedTarget]:
    """The targets of the agreements that have feeds, by agreement id; :class:`FeedConfigError` when one cannot be served."""
    out = {}
    for a in agreements.values():
        if not a.feeds:
            continue
        secret = b""
        if a.webhook_url is not None:
            if urlsplit(a.webhook_url).scheme == "http" and not settings.allow_http:
                raise FeedConfigError(
                    f"agreement {a.id!r}: webhook_url {a.webhook_url!r} is plain http; "
                    "set WF_FEEDS_ALLOW_HTTP=1 to allow it to a loopback host (tests, development), or use https"
                )
            var = a.webhook_secret_env or ""
            text = environ.get(var, "")
            if not text:
                raise FeedConfigError(
                    f"agreement {a.id!r}: {var} is not set: it holds the key its webhooks are signed with "
                    f'({MIN_SECRET}+ characters; e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")'
                )
            if len(text) < MIN_SECRET:
                raise FeedConfigError(f"agreement {a.id!r}: {var} has {len(text)} characters; a webhook key needs at least {MIN_SECRET}")
            secret = text.encode()
        out[a.id] = FeedTarget(a.id, a.webhook_url, secret, a.cap)
    return out
