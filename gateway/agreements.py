"""Data-sharing agreements as configuration: what each partner agency may see (pure but for the command line).

One TOML file (``WF_GATEWAY_AGREEMENTS``, default ``infra/sharing/agreements.toml``)
holds an ``[agreement.<id>]`` table per partner agency; the gateway loads it
at start and refuses to start on a bad one. A partner token names its
agreement (``--agreement``); the gateway then scopes it by the agreement, and
the token may only narrow it (fewer zones). ``/api/me`` shows a partner its
agreement, and ``python -m gateway.agreements summary`` prints every agreement
in plain language for public transparency.

=================  ========  ===================================================================
key                default   meaning
=================  ========  ===================================================================
``agency``         required  the agency named in its tokens (``--agency``)
``role``           required  ``transit`` or ``school``
``zones``          required  zone ids (from the zone files) it may see
``purpose``        required  one sentence: why the agency receives this data
``k``              3         released counts below k are withheld (at least the gateway's
                             ``WF_GATEWAY_K``)
``window_min``     60        size of the released time windows (15, 30, 60, ... 1440 minutes)
``offset_min``     0         windows start this many minutes after midnight UTC (e.g. 300 for
                             days that start at midnight US Eastern standard time)
``history_h``      168       how far back released windows can be read and are kept (hours)
``shares``         all       which of ``alerts``, ``counts`` and ``history`` it receives (with
                             ``history``, also a forecast made from it: :mod:`gateway.partnerforecast`)
``groups``         none      category groups released apart, e.g.
                             ``groups = {Traffic = ["TRAFFIC"], Other = ["EMS", ...]}``;
                             must cover every category once (none: totals only)
``contact``        ""        who at the 911 centre answers for the agreement
``webhook_url``    none      where its alerts are pushed as signed webhooks (:mod:`gateway.feeds`):
                             ``https://...``; ``http://`` only to 127.0.0.1, ::1 or localhost,
                             and only when the gateway allows it (``WF_FEEDS_ALLOW_HTTP``)
``webhook_secret`` none      the environment variable holding the key its webhooks are signed
``_env``                     with (e.g. ``WF_WEBHOOK_SECRET_SEPTA``; 32+ characters), never the
                             key itself; required with ``webhook_url``; the gateway refuses to
                             start when the variable is not set
``cap``            false     its alerts as a CAP 1.2 Atom feed at ``/feeds/cap.atom``
=================  ========  ===================================================================

``webhook_url`` and ``cap`` need ``alerts`` among the ``shares``: a feed carries the alerts
its dashboard shows (:func:`gateway.frames.frame_for`), nothing else.

Examples
--------
>>> text = '''
... [agreement.septa]
... agency = "SEPTA"
... role = "transit"
... zones = ["septa-lansdale"]
... purpose = "Station staff plan for crowds and road closures."
... '''
>>> a = parse_agreements(text)["septa"]
>>> a.role, a.k, a.window_min, a.shares
(<Role.TRANSIT: 'transit'>, 3, 60, ('alerts', 'counts', 'history'))
>>> parse_agreements(text.replace('"transit"', '"supervisor"'))
Traceback (most recent call last):
...
gateway.agreements.AgreementError: agreement 'septa': role must be transit or school, got 'supervisor'
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.disclosure import WINDOW_CHOICES, DisclosureError, Plan, units_for
from gateway.tokens import PARTNER_ROLES, Role
from gateway.zones import Zone

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AGREEMENTS = ROOT / "infra" / "sharing" / "agreements.toml"
SHARES = ("alerts", "counts", "history")
_ID = re.compile(r"[a-z0-9_-]{1,64}")
_KEYS = {
    "agency", "role", "zones", "purpose", "k", "window_min", "offset_min", "history_h", "shares", "groups", "contact",
    "webhook_url", "webhook_secret_env", "cap",
}  # fmt: skip
#: an environment variable's name, as a webhook secret is named
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")
#: hosts a webhook may be sent to over plain http (tests and development, when the gateway allows it)
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class AgreementError(ValueError):
    """An agreements file that cannot be used; the message names the agreement and the key."""


@dataclass(frozen=True)
class Agreement:
    """One partner agency's data-sharing agreement (see the module docstring for each field)."""

    id: str
    agency: str
    role: Role
    zones: tuple[str, ...]
    purpose: str
    k: int = 3
    window_min: int = 60
    offset_min: int = 0
    history_h: int = 168
    shares: tuple[str, ...] = SHARES
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    contact: str = ""
    #: where alerts are pushed as signed webhooks (:mod:`gateway.feeds`), or None
    webhook_url: str | None = None
    #: the environment variable holding the webhooks' signing key (never the key itself)
    webhook_secret_env: str | None = None
    #: whether its alerts are served as a CAP 1.2 Atom feed (``/feeds/cap.atom``)
    cap: bool = False

    @property
    def feeds(self) -> bool:
        """Whether alerts are pushed to it or served to it as CAP (:mod:`gateway.feeds`)."""
        return self.webhook_url is not None or self.cap

    def plan(self, zones_by_id: Mapping[str, Zone]) -> Plan:
        """The released table of this agreement over the zones that exist; :class:`AgreementError` if one is missing."""
        missing = [z for z in self.zones if z not in zones_by_id]
        if missing:
            raise AgreementError(f"agreement {self.id!r}: unknown zone(s) {', '.join(missing)} (not in the zone files)")
        try:
            return Plan(
                self.id,
                units_for(zones_by_id[z] for z in self.zones),
                window_min=self.window_min,
                k=self.k,
                groups=self.groups,
                offset_min=self.offset_min,
                history_h=self.history_h,
                alerts="alerts" in self.shares,
            )
        except DisclosureError as exc:
            raise AgreementError(str(exc)) from None

    def to_json(self, names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """What ``/api/me`` shows the partner of its agreement (``names``: zone id -> place name, for the summary)."""
        return {
            "id": self.id,
            "agency": self.agency,
            "role": self.role.value,
            "zones": list(self.zones),
            "purpose": self.purpose,
            "k": self.k,
            "window_min": self.window_min,
            "offset_min": self.offset_min,
            "history_h": self.history_h,
            "shares": list(self.shares),
            "groups": {g: list(c) for g, c in self.groups.items()},
            "contact": self.contact,
            # where its webhooks go and whether it has a CAP feed; never the secret, nor the variable holding it
            "webhook_url": self.webhook_url,
            "cap": self.cap,
            "summary": self.summary(names),
        }

    def summary(self, names: Mapping[str, str] | None = None) -> str:
        """The agreement in plain language (``names``: zone id -> place name, where known).

        >>> a = Agreement("s", "SEPTA", Role.TRANSIT, ("a",), "Crowds.", shares=("alerts",))
        >>> print(a.summary({"a": "Ambler station"}))  # doctest: +NORMALIZE_WHITESPACE
        SEPTA (transit) receives, for Ambler station: alerts when more calls than usual touch these places
        (no counts, no caller details). Purpose: Crowds.
        """
        names = names or {}
        places = ", ".join(names.get(z, z) for z in self.zones)
        hours = {60: "hour", 1440: "day"}.get(self.window_min, f"{self.window_min} minutes")
        parts = []
        if "alerts" in self.shares:
            parts.append("alerts when more calls than usual touch these places (no counts, no caller details)")
        grouped = f" by {', '.join(self.groups)}" if self.groups else ""
        if "counts" in self.shares:
            parts.append(
                f"the number of 911 calls{grouped} in each place per {hours}, once each {hours} has ended, "
                f"withheld when fewer than {self.k}"
            )
        if "history" in self.shares:
            parts.append(f"those numbers for the last {self.history_h} hours, and from them alone what to expect in the next hours")
        pushed = []
        if self.webhook_url is not None:
            pushed.append(f"as signed webhooks to {_host(self.webhook_url)}")
        if self.cap:
            pushed.append("as a CAP 1.2 Atom feed")
        how = f" The alerts are also sent {' and '.join(pushed)}, exactly as its dashboard shows them." if pushed else ""
        return f"{self.agency} ({self.role.value}) receives, for {places}: {'; '.join(parts)}. Purpose: {self.purpose}{how}"


def parse_agreements(text: str, *, min_k: int = 2, where: str = "agreements") -> dict[str, Agreement]:
    """The agreements of a TOML text by id; :class:`AgreementError` naming the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgreementError(f"{where}: not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"agreement"})
    if extra:
        raise AgreementError(f"{where}: unknown top-level key(s) {', '.join(extra)}; agreements go in [agreement.<id>] tables")
    out = {}
    for aid, body in (data.get("agreement") or {}).items():
        out[aid] = _agreement(aid, body, min_k)
    return out


def load_agreements(path: Path | None, *, min_k: int = 2) -> dict[str, Agreement]:
    """The agreements in ``path`` (None or a missing default file: none, so no partner is served)."""
    if path is None or (path == DEFAULT_AGREEMENTS and not path.exists()):
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgreementError(f"cannot read the agreements file {path}: {exc}") from None
    return parse_agreements(text, min_k=min_k, where=str(path))


def _agreement(aid: str, body: object, min_k: int) -> Agreement:
    where = f"agreement {aid!r}"
    if not _ID.fullmatch(aid):
        raise AgreementError(f"{where}: an id is 1-64 characters of a-z, 0-9, '-' and '_'")
    if not isinstance(body, dict):
        raise AgreementError(f"{where}: must be a table")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise AgreementError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    for key in ("agency", "role", "zones", "purpose"):
        if key not in body:
            raise AgreementError(f"{where}: {key} is required")
    try:
        role = Role(body["role"])
    except ValueError:
        role = None
    if role not in PARTNER_ROLES:
        raise AgreementError(f"{where}: role must be transit or school, got {body['role']!r}")
    zones = body["zones"]
    if not isinstance(zones, list) or not zones or not all(isinstance(z, str) and z for z in zones) or len(set(zones)) != len(zones):
        raise AgreementError(f"{where}: zones must be a non-empty list of distinct zone ids")
    k = _int(body, "k", 3, where)
    if k < min_k:
        raise AgreementError(f"{where}: k = {k} is below the gateway's minimum WF_GATEWAY_K = {min_k}")
    window = _int(body, "window_min", 60, where)
    if window not in WINDOW_CHOICES:
        raise AgreementError(f"{where}: window_min must be one of {', '.join(map(str, WINDOW_CHOICES))}, got {window}")
    shares = body.get("shares", list(SHARES))
    if not isinstance(shares, list) or not set(shares) <= set(SHARES) or not shares:
        raise AgreementError(f"{where}: shares must list some of {', '.join(SHARES)}, got {shares!r}")
    groups = body.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(v, list) and all(isinstance(c, str) for c in v) for v in groups.values()):
        raise AgreementError(f"{where}: groups must map a group name to a list of categories")
    for key in ("agency", "purpose", "contact"):
        value = body.get(key, "")
        if not isinstance(value, str) or len(value) > 500 or (key != "contact" and not value.strip()):
            raise AgreementError(f"{where}: {key} must be text of at most 500 characters")
    webhook_url, secret_env, cap = _feeds(aid, body, shares)
    agreement = Agreement(
        id=aid,
        agency=body["agency"].strip(),
        role=role,
        zones=tuple(zones),
        purpose=body["purpose"].strip(),
        k=k,
        window_min=window,
        offset_min=_int(body, "offset_min", 0, where),
        history_h=_int(body, "history_h", 168, where),
        shares=tuple(s for s in SHARES if s in shares),
        groups={g: tuple(c) for g, c in groups.items()},
        contact=body.get("contact", "").strip(),
        webhook_url=webhook_url,
        webhook_secret_env=secret_env,
        cap=cap,
    )
    try:
        Plan(aid, (), window_min=agreement.window_min, k=agreement.k, groups=agreement.groups,
             offset_min=agreement.offset_min, history_h=agreement.history_h)  # fmt: skip
    except DisclosureError as exc:
        raise AgreementError(str(exc)) from None
    return agreement


def _feeds(aid: str, body: dict[str, Any], shares: list[str]) -> tuple[str | None, str | None, bool]:
    """``webhook_url``, ``webhook_secret_env`` and ``cap`` of agreement ``aid``'s table, checked."""
    where = f"agreement {aid!r}"
    url = body.get("webhook_url")
    env = body.get("webhook_secret_env")
    cap = body.get("cap", False)
    if not isinstance(cap, bool):
        raise AgreementError(f"{where}: cap must be true or false, got {cap!r}")
    if url is not None:
        if not isinstance(url, str):
            raise AgreementError(f"{where}: webhook_url must be a URL, got {url!r}")
        check_webhook_url(url, f"{where}: webhook_url")
        if env is None:
            example = "WF_WEBHOOK_SECRET_" + re.sub(r"[^A-Z0-9]", "_", aid.upper())
            raise AgreementError(
                f"{where}: webhook_url needs webhook_secret_env, the environment variable holding the key "
                f'its webhooks are signed with (e.g. webhook_secret_env = "{example}")'
            )
    if env is not None:
        if url is None:
            raise AgreementError(f"{where}: webhook_secret_env is set but webhook_url is not; set both or neither")
        if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
            raise AgreementError(
                f"{where}: webhook_secret_env must name an environment variable (A-Z, 0-9, _), got {env!r}; "
                "the secret itself never goes in this file"
            )
    if (url is not None or cap) and "alerts" not in shares:
        raise AgreementError(f"{where}: webhook_url and cap push its alerts, but shares does not list alerts")
    return url, env, cap


def check_webhook_url(url: str, where: str = "webhook_url") -> None:
    """Refuse a webhook URL that is not ``https://host/...`` (or ``http://`` to a loopback host); :class:`AgreementError`.

    >>> check_webhook_url("https://alerts.septa.example/watchfloor")
    >>> check_webhook_url("http://127.0.0.1:8080/hook")
    >>> check_webhook_url("http://alerts.septa.example/hook")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gateway.agreements.AgreementError: webhook_url: 'http://alerts.septa.example/hook' is not https (plain http only to 127.0.0.1, ...)
    """
    try:
        u = urlsplit(url)
        host = u.hostname
    except ValueError:
        raise AgreementError(f"{where}: {url!r} is not a URL like https://alerts.example.org/watchfloor") from None
    if not host or u.scheme not in ("https", "http"):
        raise AgreementError(f"{where}: {url!r} is not a URL like https://alerts.example.org/watchfloor")
    if u.username or u.password or u.fragment:
        raise AgreementError(f"{where}: {url!r} carries credentials or a fragment; the webhook is authenticated by its signature")
    if u.scheme == "http" and host not in LOOPBACK_HOSTS:
        loopback = ", ".join(LOOPBACK_HOSTS)
        raise AgreementError(f"{where}: {url!r} is not https (plain http only to {loopback}, for tests, with WF_FEEDS_ALLOW_HTTP=1)")


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _int(body: dict[str, Any], key: str, default: int, where: str) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AgreementError(f"{where}: {key} must be an integer, got {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    from gateway.settings import DEFAULT_ZONES
    from gateway.zones import ZoneError, load_zone_files

    parser = argparse.ArgumentParser(
        prog="python -m gateway.agreements", description="Check the data-sharing agreements, or print them in plain language."
    )
    parser.add_argument("command", choices=("summary", "check"), help="summary: Markdown for the public; check: validate against the zones")
    parser.add_argument("--file", type=Path, default=DEFAULT_AGREEMENTS, help=f"agreements file (default {DEFAULT_AGREEMENTS})")
    parser.add_argument("--zones", type=Path, default=DEFAULT_ZONES, help="zone GeoJSON file or folder (default infra/zones)")
    args = parser.parse_args(argv)
    try:
        agreements = load_agreements(args.file)
        files = sorted(args.zones.glob("*.geojson")) if args.zones.is_dir() else [args.zones]
        zones = load_zone_files(files)
        plans = {a.id: a.plan(zones) for a in agreements.values()}
    except (AgreementError, ZoneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "check":
        for a in agreements.values():
            units = plans[a.id].units
            areas = f"{len(a.zones)} zone(s) in {len(units)} released area(s)"
            print(f"{a.id}: {a.agency} ({a.role.value}), {areas}, k = {a.k}, {a.window_min}-min windows")
        return 0
    names = {z.id: z.name for z in zones.values()}
    print("# What partner agencies receive from the 911 centre\n")
    print("Every agreement below is enforced by the gateway; no partner receives caller details, exact locations,")
    print("supervisors' notes or any count below its threshold. How: docs/privacy.md.\n")
    for a in agreements.values():
        print(f"- **{a.agency}** ({a.id}): {a.summary(names)}" + (f" Contact: {a.contact}." if a.contact else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
