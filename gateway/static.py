"""The dashboard's files (``gateway/static``), served by name: only the files present at start, nothing else.

``GET /`` and ``GET /index.html`` answer ``index.html``; ``GET /static/<name>``
answers the file ``<name>`` below the folder when it was there at start (404
otherwise, so no path reaches outside it). Text is served as UTF-8.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from websockets.http11 import Response

from gateway.http import HttpError, clip, response

STATIC = Path(__file__).resolve().parent / "static"


class StaticFiles:
    """The files below ``root`` (listed once, here), answered with the Content-Security-Policy ``csp``."""

    def __init__(self, root: Path, csp: str) -> None:
        self.csp = csp
        #: the dashboard's files by path below ``root``: only these are served (no path traversal)
        self.files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}

    def response(self, path: str) -> Response:
        """The answer to ``GET path`` (``/``, ``/index.html`` or ``/static/...``); :class:`~gateway.http.HttpError` 404 if unknown."""
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        if name not in self.files:
            raise HttpError(404, "not_found", f"no such file {clip(name, 100)!r}")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        return response(200, self.files[name].read_bytes(), ctype, csp=self.csp)
