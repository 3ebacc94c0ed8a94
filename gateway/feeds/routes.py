"""The feeds' HTTP routes (handlers in :mod:`gateway.api`'s route table; adapter: they read the feeds' Redis keys).

=====================================  ============  ==================================================
route                                  roles         answers
=====================================  ============  ==================================================
``GET /feeds/cap.atom``                partners,     the agreement's newest CAP messages (``limit``, 50
                                       supervisors   by default), newest first, as Atom (RFC 4287), each
                                                     entry's content the CAP 1.2 message; ``ETag``, and
                                                     304 to a matching ``If-None-Match``
``GET /feeds/cap/{identifier}.xml``    partners,     one CAP message (``application/cap+xml``)
                                       supervisors
``GET /api/feeds/deadletters``         supervisors   deliveries given up, newest first (``agreement``,
                                                     ``limit``): agreement, delivery id, stream id,
                                                     attempts, last status or error, the frame
=====================================  ============  ==================================================

A partner reads its own agreement's feed, with the same Bearer token as the API; the
feed is the whole agreement's, so a token narrowed to fewer zones than its agreement is
refused it (403 ``forbidden``), as is any other agreement named in ``?agreement=``
(403, whether it exists or not). A supervisor names the agreement (``?agreement=``; 404
``not_found`` for one that does not exist). An agreement without ``cap = true``: 403
``not_shared``. An identifier that is not one of the agreement's kept messages: 404.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote

from websockets.http11 import Response

from gateway.feeds.cap import CAP_MIME, atom_feed
from gateway.http import HttpError, integer, json_response, one, only, response
from gateway.tokens import Role

if TYPE_CHECKING:
    from gateway.api import ApiRequest
    from gateway.server import Gateway

#: messages an Atom answer lists by default
ATOM_DEFAULT = 50
ATOM_MIME = "application/atom+xml; charset=utf-8"


def _agreement(gw: Gateway, req: ApiRequest) -> str:
    """The agreement whose CAP feed the caller may read (see the module docstring)."""
    named = one(req.query, "agreement")
    plan = req.scope.plan
    if req.claims.role is Role.SUPERVISOR:
        if named is None:
            raise HttpError(400, "bad_agreement", "name the agreement whose feed to read: ?agreement=<id>")
        if named not in gw.agreements:
            raise HttpError(404, "not_found", "no data-sharing agreement with this id")
        aid = named
    else:
        assert plan is not None  # partners only (the route table)
        if named is not None and named != plan.agreement:
            raise HttpError(403, "forbidden", "a partner token reads its own agreement's feed only")
        if set(req.scope.unit_ids) != {u.id for u in plan.units}:
            raise HttpError(403, "forbidden", "the CAP feed is the whole agreement's; this token names fewer zones than its agreement")
        aid = plan.agreement
    target = gw.feeds.targets.get(aid)
    if target is None or not target.cap:
        raise HttpError(403, "not_shared", f"agreement {aid!r} has no CAP feed (cap = true in its agreement)")
    return aid


def _query(req: ApiRequest, aid: str) -> str:
    return f"?agreement={quote(aid)}" if req.claims.role is Role.SUPERVISOR else ""


async def cap_atom(gw: Gateway, req: ApiRequest) -> Response:
    only(req.query, {"agreement", "limit"})
    aid = _agreement(gw, req)
    limit = integer(req.query, "limit", ATOM_DEFAULT, 1, gw.feeds.settings.cap_keep)
    messages = await gw.feeds.store.cap_messages(aid, limit)
    tag = hashlib.sha256("\n".join([aid, str(limit)] + [m.identifier for m in messages]).encode()).hexdigest()[:32]
    etag = f'"{tag}"'
    extra = [("ETag", etag), ("Vary", "Authorization")]
    if req.if_none_match is not None and etag in [t.strip() for t in req.if_none_match.split(",")]:
        return response(304, b"", ATOM_MIME, extra)
    agreement = gw.agreements[aid]
    q = _query(req, aid)
    body = atom_feed(
        messages,
        feed_id=f"urn:watchfloor:feed:{aid}",
        title=f"Alerts for {agreement.agency} ({aid}) from {gw.feeds.settings.sender_name}",
        author=gw.feeds.settings.sender_name,
        self_href=f"/feeds/cap.atom{q}",
        href_of={m.identifier: f"/feeds/cap/{m.identifier}.xml{q}" for m in messages},
        updated_if_empty=0.0,
    )
    return response(200, body, ATOM_MIME, extra)


async def cap_message(gw: Gateway, req: ApiRequest) -> Response:
    only(req.query, {"agreement"})
    aid = _agreement(gw, req)
    name = req.params[0]
    identifier = name[: -len(".xml")] if name.endswith(".xml") else ""
    message = None
    if identifier and len(identifier) <= 100:
        message = await gw.feeds.store.cap_message(aid, identifier)
    if message is None:
        raise HttpError(404, "not_found", "no CAP message with this identifier in this agreement's feed (or older than it keeps)")
    return response(200, message.xml, f"{CAP_MIME}; charset=utf-8")


async def dead_letters(gw: Gateway, req: ApiRequest) -> Response:
    only(req.query, {"agreement", "limit"})
    limit = integer(req.query, "limit", 100, 1, 10_000)
    aid = one(req.query, "agreement")
    if aid is not None and aid not in gw.agreements:
        raise HttpError(404, "not_found", "no data-sharing agreement with this id")
    rows = await gw.feeds.store.dead_letters(aid, limit)
    return json_response(200, {"deadletters": rows})
