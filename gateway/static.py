"""The dashboard's files (``gateway/static``) and the basemap archive, served by name: only the files present at start.

``GET /`` and ``GET /index.html`` answer ``index.html``; ``GET /static/<name>``
answers the file ``<name>`` below the folder when it was there at start (404
otherwise, so no path reaches outside it). Text is served as UTF-8.

``GET /basemap.pmtiles`` answers the local basemap archive (``WF_GATEWAY_BASEMAP``,
404 when there is none) by byte ranges, as PMTiles readers ask for it (RFC 9110
section 14): ``Range: bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` is answered
``206 Partial Content`` with ``Content-Range``; a range that starts past the end
``416`` with ``Content-Range: bytes */size``; a malformed ``Range`` header is
ignored (the whole file, 200), and several ranges in one header are answered with
the first. No answer carries more than :data:`MAX_RANGE_BYTES` (416 past that, so
a request cannot make the gateway read a whole country's archive into memory).
Every answer says ``Accept-Ranges: bytes``; ``HEAD`` gets the headers only.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Response

from gateway.http import HttpError, clip, json_response, response
from gateway.settings import BASEMAP_PATH

STATIC = Path(__file__).resolve().parent / "static"
#: the most bytes one answer reads from the basemap (a PMTiles reader asks for 16 KiB, then a directory or a tile)
MAX_RANGE_BYTES = 16 * 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a ``Range`` header asks of a ``size``-byte file; None to send it all; ValueError if unsatisfiable.

    Only the first of several ranges is kept; a header that is not a byte range is ignored (RFC 9110 section 14.2).

    >>> byte_range("bytes=0-9", 100), byte_range("bytes=90-", 100), byte_range("bytes=-5", 100), byte_range("bytes=95-200", 100)
    ((0, 10), (90, 100), (95, 100), (95, 100))
    >>> byte_range("lines=1-2", 100) is None, byte_range("bytes=5-2", 100) is None, byte_range(None, 100) is None
    (True, True, True)
    >>> byte_range("bytes=100-", 100)
    Traceback (most recent call last):
    ...
    ValueError: bytes=100- starts at or past the end of the file (100 bytes)
    """
    if header is None:
        return None
    m = _RANGE.fullmatch(header.split(",")[0].strip())
    if m is None or m.group(1) == m.group(2) == "":
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # a suffix: the last n bytes
        n = int(last)
        if n == 0:
            raise ValueError(f"{clip(header, 60)} asks for no bytes")
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else int(last) + 1
    if last != "" and int(last) < start:
        return None  # last < first: not a valid range, ignored
    if start >= size:
        raise ValueError(f"{clip(header, 60)} starts at or past the end of the file ({size} bytes)")
    return start, min(end, size)


class StaticFiles:
    """The files below ``root`` (listed once, here) and the ``basemap`` archive, answered with the CSP ``csp``."""

    def __init__(self, root: Path, csp: str, basemap: Path | None = None) -> None:
        self.csp = csp
        self.basemap = basemap
        #: the dashboard's files by path below ``root``: only these are served (no path traversal)
        self.files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}

    def response(self, path: str, headers: Headers | None = None, method: str = "GET") -> Response:
        """The answer to ``GET path`` (``/``, ``/index.html``, ``/static/...`` or :data:`~gateway.settings.BASEMAP_PATH`)
        with the request's ``headers`` (its ``Range``); :class:`~gateway.http.HttpError` 404 if unknown."""
        if path == BASEMAP_PATH:
            if self.basemap is None:
                raise HttpError(404, "not_found", "no basemap: the gateway has no WF_GATEWAY_BASEMAP file")
            return self._ranged(self.basemap, headers.get("Range") if headers else None, method)
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        if name not in self.files:
            raise HttpError(404, "not_found", f"no such file {clip(name, 100)!r}")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        return response(200, self.files[name].read_bytes(), ctype, csp=self.csp)

    def _ranged(self, file: Path, header: str | None, method: str) -> Response:
        size = file.stat().st_size
        try:
            span = byte_range(header, size)
        except ValueError as exc:
            return self._unsatisfiable(size, str(exc))
        start, end = span if span is not None else (0, size)
        if end - start > MAX_RANGE_BYTES:
            return self._unsatisfiable(size, f"at most {MAX_RANGE_BYTES} bytes an answer; ask for a range (PMTiles readers do)")
        extra = [("Accept-Ranges", "bytes")]
        if span is not None:
            extra.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        if method == "HEAD":
            resp = response(206 if span else 200, b"", "application/vnd.pmtiles", extra, csp=self.csp)
            del resp.headers["Content-Length"]  # Headers appends: the empty body's length would be sent too
            resp.headers["Content-Length"] = str(end - start)  # what a GET would send
            return resp
        with file.open("rb") as f:
            f.seek(start)
            body = f.read(end - start)
        return response(206 if span else 200, body, "application/vnd.pmtiles", extra, csp=self.csp)

    def _unsatisfiable(self, size: int, message: str) -> Response:
        extra = [("Accept-Ranges", "bytes"), ("Content-Range", f"bytes */{size}")]
        return json_response(416, {"error": "range_not_satisfiable", "message": message}, extra, csp=self.csp)
