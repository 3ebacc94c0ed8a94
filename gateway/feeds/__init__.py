"""Alerts pushed to partners: signed webhooks and a CAP 1.2 Atom feed (issue 23).

Partners will not keep a dashboard open all day, so their alerts go to them. An
agreement (:mod:`gateway.agreements`) with ``webhook_url`` gets each alert frame
its dashboard would show POSTed to that URL, signed; one with ``cap = true`` can
read the same alerts as OASIS CAP 1.2 messages in an Atom feed
(``GET /feeds/cap.atom``). Both carry exactly the frames a WebSocket session of
the agreement receives (:func:`gateway.frames.frame_for`, the one implementation),
in stream order.

===========================  ===================================================================
module                       what
===========================  ===================================================================
:mod:`.config`               ``WF_FEEDS_*`` settings and each agreement's target (URL, secret)
:mod:`.signing`              the signature, delivery ids, the retry schedule (pure)
:mod:`.cap`                  CAP 1.2 messages and the Atom feed, built with ElementTree (pure)
:mod:`.ledger`               what a feed remembers between entries: last views, CAP references (pure)
:mod:`.store`                the feeds' Redis keys: cursors, locks, CAP messages, dead letters
:mod:`.deliverer`            one agreement's delivery loop (aiohttp, Redis)
:mod:`.routes`               ``/feeds/cap.atom``, ``/feeds/cap/{id}.xml``, ``/api/feeds/deadletters``
===========================  ===================================================================
"""
