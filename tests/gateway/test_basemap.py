"""The agency's basemap: WF_GATEWAY_BASEMAP read and checked at start, the archive served by byte ranges, and MapLibre
drawing it in a real headless Chromium under the SVG map, its camera on the SVG's view; nothing loaded without one."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h3
import pytest
from PIL import Image
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer
from selenium.webdriver.chrome.webdriver import WebDriver
from websockets.datastructures import Headers

from gateway.http import content_security_policy
from gateway.settings import BASEMAP_PATH, GatewaySettingsError, load_gateway_settings
from gateway.static import MAX_RANGE_BYTES, STATIC, StaticFiles
from tests.gateway import test_dashboard
from tests.gateway.live import IN_LANSDALE, GatewayProcess, token
from tests.gateway.test_dashboard import console_errors, css, new_chromium, wait_for, write_counts

#: test_dashboard's headless Chromium fixture, asked for by name below
browser = test_dashboard.browser
SECRET = "s" * 40
VENDOR = STATIC / "vendor"
#: the county around the test zones; the archive's tiles cover it from zoom 0 to MAX_ZOOM (MapLibre overzooms past it)
BOX = (-75.75, 39.95, -75.0, 40.45)
MAX_ZOOM = 12
#: the colour of every tile: nothing else on the page is this orange
TILE_RGB = (255, 128, 0)
#: MapLibre's WebGL runs on SwiftShader here (no GPU); Chromium's automatic fallback to it is deprecated, so say so
GL_ARGS = ("--enable-unsafe-swiftshader",)


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(x, n - 1), min(y, n - 1)


def write_archive(path: Path, *, tile_type: TileType = TileType.PNG) -> Path:
    """A raster PMTiles v3 archive of orange 256 px PNG tiles over BOX, zooms 0..MAX_ZOOM."""
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), TILE_RGB).save(buf, "PNG")
    png = buf.getvalue()
    ids = []
    for z in range(MAX_ZOOM + 1):
        x0, y0 = lonlat_to_tile(BOX[0], BOX[3], z)
        x1, y1 = lonlat_to_tile(BOX[2], BOX[1], z)
        ids += [zxy_to_tileid(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    with path.open("wb") as f:
        w = Writer(f)
        for tid in sorted(ids):
            w.write_tile(tid, png)
        e7 = [round(v * 1e7) for v in BOX]
        w.finalize(
            {
                "tile_type": tile_type,
                "tile_compression": Compression.NONE,
                "min_lon_e7": e7[0],
                "min_lat_e7": e7[1],
                "max_lon_e7": e7[2],
                "max_lat_e7": e7[3],
                "center_zoom": 10,
                "center_lon_e7": (e7[0] + e7[2]) // 2,
                "center_lat_e7": (e7[1] + e7[3]) // 2,
            },
            {"attribution": "Test County GIS", "name": "test basemap"},
        )
    return path


@pytest.fixture
def archive(tmp_path) -> Path:
    return write_archive(tmp_path / "county.pmtiles")


# ---------------------------------------------------------------------- settings


def settings(value: str):
    return load_gateway_settings({"WF_GATEWAY_SECRET": SECRET, "WF_GATEWAY_BASEMAP": value})


def test_a_local_archive_is_read_at_start_and_told_to_the_page_by_its_url_not_its_path(archive):
    """A PMTiles file gives kind, URL, tile type, zooms and bounds from its header; the page never sees the file's path."""
    b = settings(str(archive)).basemap
    assert b is not None and b.path == archive.resolve() and b.origin is None
    body = b.to_json()
    assert body == {
        "kind": "pmtiles",
        "url": BASEMAP_PATH,
        "tile_type": "png",
        "min_zoom": 0,
        "max_zoom": MAX_ZOOM,
        "bounds": pytest.approx(list(BOX)),
    }
    assert str(archive.parent) not in json.dumps(body)
    assert load_gateway_settings({"WF_GATEWAY_SECRET": SECRET}).basemap is None, "no basemap by default"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.pmtiles"), r"missing\.pmtiles does not exist \(expected a \.pmtiles file or an https URL\)"),
        (lambda d: str(d), r"is not a file"),
        (lambda d: _write(d / "x.pmtiles", b"<html>not tiles</html>"), r"is not a PMTiles archive: it should start with 'PMTiles'"),
        (lambda d: _write(d / "x.pmtiles", b""), r"found an empty file"),
        (lambda d: _write(d / "x.pmtiles", b"PMTiles\x03" + bytes(20)), r"is cut short: a PMTiles header is 127 bytes, the file has 28"),
        (lambda d: _write(d / "x.pmtiles", b"PMTiles\x02" + bytes(200)), r"is PMTiles version 2; the dashboard reads version 3"),
        (lambda d: _write(d / "x.pmtiles", b"PMTiles\x03" + bytes(91) + b"\x09" + bytes(100)), r"holds tiles of unknown type 9"),
        (lambda d: "http://maps.example.gov/style.json", r"is not https"),
        (lambda d: "https:///style.json", r"no host"),
        (lambda d: "https://user:pw@maps.example.gov/style.json", r"credentials"),
        (lambda d: "https://maps.example.gov/{z}/{x}/{y}.gif", r"a tile template must end in one of \.png"),
        (lambda d: "https://maps.example.gov/basemap", r"is neither a style \(\.json\), a PMTiles archive"),
    ],
)
def test_a_basemap_the_page_cannot_use_stops_the_gateway_with_a_precise_error(tmp_path, make, message):
    """Each unusable WF_GATEWAY_BASEMAP is refused at start, naming the variable and what is wrong with it."""
    with pytest.raises(GatewaySettingsError, match=r"^WF_GATEWAY_BASEMAP: cannot read .* as basemap \(") as exc:
        settings(make(tmp_path))
    assert re.search(message, str(exc.value)), str(exc.value)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_tiles_and_a_basemap_together_are_refused(archive):
    with pytest.raises(GatewaySettingsError, match="WF_GATEWAY_TILES and WF_GATEWAY_BASEMAP are both set"):
        load_gateway_settings({"WF_GATEWAY_SECRET": SECRET, "WF_GATEWAY_BASEMAP": str(archive), "WF_GATEWAY_TILES": "/t/{z}/{x}/{y}.png"})


@pytest.mark.parametrize(
    ("url", "kind", "tile_type"),
    [
        ("https://maps.example.gov/styles/county.json", "style", None),
        ("https://maps.example.gov/county.pmtiles", "pmtiles", None),
        ("https://maps.example.gov/t/{z}/{x}/{y}.png", "tiles", "png"),
        ("https://maps.example.gov/t/{z}/{x}/{y}.pbf", "tiles", "mvt"),
    ],
)
def test_an_https_basemap_opens_the_csp_to_its_origin_only(url, kind, tile_type):
    """An https basemap is fetched by the page: connect-src and img-src allow its origin, and nothing else changes."""
    b = settings(url).basemap
    assert b is not None and (b.kind, b.tile_type, b.url) == (kind, tile_type, url)
    csp = content_security_policy(None, b.origin)
    assert "connect-src 'self' https://maps.example.gov;" in csp and "img-src 'self' data: https://maps.example.gov;" in csp
    assert "script-src 'self';" in csp and "worker-src 'self';" in csp and "blob:" not in csp
    assert content_security_policy() == content_security_policy(None, None) and "example" not in content_security_policy()


# ---------------------------------------------------------------------- ranges (the handler, no server)


@pytest.fixture
def files(archive) -> StaticFiles:
    return StaticFiles(STATIC, "default-src 'self'", archive)


def get(files: StaticFiles, rng: str | None, method: str = "GET"):
    return files.response(BASEMAP_PATH, Headers([("Range", rng)] if rng else []), method)


def test_byte_ranges_of_the_archive_are_answered_206_with_exactly_those_bytes(files, archive):
    data = archive.read_bytes()
    size = len(data)
    for rng, (start, end) in {
        "bytes=0-511": (0, 512),
        "bytes=7-7": (7, 8),
        f"bytes={size - 10}-": (size - 10, size),
        "bytes=-100": (size - 100, size),
        f"bytes=100-{size + 5000}": (100, size),  # past the end: cut at the end
        "bytes=0-3, 10-20": (0, 4),  # several ranges: the first
    }.items():
        resp = get(files, rng)
        assert resp.status_code == 206, rng
        assert resp.body == data[start:end], rng
        assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", rng
        assert resp.headers["Content-Length"] == str(end - start) and resp.headers["Accept-Ranges"] == "bytes"
        assert resp.headers["Content-Type"] == "application/vnd.pmtiles"
    assert get(files, "bytes=0-6").body == b"PMTiles"


def test_a_request_without_a_usable_range_gets_the_whole_archive(files, archive):
    for rng in (None, "lines=1-3", "bytes=9-2", "bytes=x-y"):
        resp = get(files, rng)
        assert (resp.status_code, resp.body, resp.headers["Accept-Ranges"]) == (200, archive.read_bytes(), "bytes"), rng
        assert "Content-Range" not in resp.headers


def test_an_unsatisfiable_range_is_416_with_the_size(files, archive):
    size = archive.stat().st_size
    for rng in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}", "bytes=-0"):
        resp = get(files, rng)
        assert resp.status_code == 416, rng
        assert resp.headers["Content-Range"] == f"bytes */{size}"
        assert json.loads(resp.body)["error"] == "range_not_satisfiable"


def test_no_answer_reads_more_than_the_cap(tmp_path):
    """A huge archive is read by ranges only: asking for more than MAX_RANGE_BYTES at once is refused (416)."""
    big = tmp_path / "big.pmtiles"
    with big.open("wb") as f:
        f.truncate(MAX_RANGE_BYTES + 10)
    files = StaticFiles(STATIC, "default-src 'self'", big)
    assert get(files, None).status_code == 416 and get(files, "bytes=0-").status_code == 416
    assert get(files, f"bytes=0-{MAX_RANGE_BYTES - 1}").status_code == 206


def test_head_gets_the_headers_of_the_range_and_no_body(files):
    resp = get(files, "bytes=0-99", "HEAD")
    assert (resp.status_code, resp.body, resp.headers.get_all("Content-Length")) == (206, b"", ["100"])
    assert resp.headers["Content-Range"].startswith("bytes 0-99/")


def test_without_a_basemap_the_path_is_404(archive):
    from gateway.http import HttpError

    with pytest.raises(HttpError) as exc:
        StaticFiles(STATIC, "x").response(BASEMAP_PATH, Headers(), "GET")
    assert exc.value.status == 404


def test_the_vendored_files_are_those_the_readme_lists():
    """The README's sha256 sums match the files served from /static/vendor/ (an upgrade updates both)."""
    readme = (VENDOR / "README.md").read_text()
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M))
    assert set(listed) == {"maplibre-gl-csp.js", "maplibre-gl-csp-worker.js", "maplibre-gl.css", "pmtiles.js"}
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert (VENDOR / "LICENSE-maplibre-gl.txt").is_file() and (VENDOR / "LICENSE-pmtiles.txt").is_file()


# ---------------------------------------------------------------------- live gateway and browser


@pytest.mark.stack
def test_the_live_gateway_serves_ranges_and_refuses_paths_around_the_archive(prefix, tmp_path, archive):
    """Over HTTP: 206 with the bytes asked for, 416 past the end, and no path reaching outside the served files."""
    g = GatewayProcess(prefix, env_extra={"WF_GATEWAY_BASEMAP": str(archive)}).start(tmp_path)
    try:
        data = archive.read_bytes()
        assert g.get(BASEMAP_PATH, headers={"Range": "bytes=0-126"}) == (206, data[:127])
        assert g.get(BASEMAP_PATH, headers={"Range": f"bytes={len(data)}-"})[0] == 416
        for path in (
            "/basemap.pmtiles/../gateway/settings.py",
            "/static/../settings.py",
            "/static/%2e%2e/settings.py",
            "/static/vendor/../../settings.py",
            f"/static/{archive}",
            "/county.pmtiles",
        ):
            status, body = g.get(path)
            assert status == 404, (path, status)
            assert b"PMTiles" not in body and b"GatewaySettings" not in body
        status, body = g.get_json("/api/me", token("supervisor"))
        assert status == 200 and body["basemap"]["url"] == BASEMAP_PATH and body["basemap"]["tile_type"] == "png"
    finally:
        g.stop()


@pytest.fixture
def gl_browser(tmp_path, monkeypatch) -> Iterator[Callable[..., WebDriver]]:
    """Headless Chromium as test_dashboard's ``browser`` makes it, plus WebGL on SwiftShader and the network log."""
    monkeypatch.setenv("SE_OFFLINE", "true")
    drivers: list[WebDriver] = []

    def make(name: str, extra: tuple[str, ...] = GL_ARGS) -> WebDriver:
        driver = new_chromium(tmp_path / f"chrome-{name}", extra, {"browser": "SEVERE", "performance": "ALL"})
        drivers.append(driver)
        return driver

    try:
        yield make
    finally:
        for d in drivers:
            d.quit()


def archive_requests(driver: WebDriver) -> list[tuple[str | None, int | None]]:
    """(Range header, status) of each request the page made for the archive, from Chromium's network log."""
    sent: dict[str, str | None] = {}
    status: dict[str, int] = {}
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg["method"] == "Network.requestWillBeSent" and params["request"]["url"].endswith(BASEMAP_PATH):
            headers = {k.lower(): v for k, v in params["request"]["headers"].items()}
            sent[params["requestId"]] = headers.get("range")
        elif msg["method"] == "Network.responseReceived" and params["requestId"] in sent:
            status[params["requestId"]] = params["response"]["status"]
    return [(rng, status.get(rid)) for rid, rng in sent.items()]


def resources(driver: WebDriver) -> list[str]:
    return driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")


#: the MapLibre map, its camera, its element's place, the orange of the centre pixel and the path of the SVG's cell
#: (arguments[1]), read after a frame is drawn, in one turn: the SVG and the camera it sets are of the same draw
READ_BASEMAP = """
const done = arguments[arguments.length - 1];
const div = document.querySelector('#map .basemap');
const m = div.maplibreMap;
const svg = document.querySelector('#map svg');
m.once('render', () => {
  const gl = m.painter.context.gl;
  const px = new Uint8Array(4);
  gl.readPixels(gl.drawingBufferWidth >> 1, gl.drawingBufferHeight >> 1, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
  const [lng, lat] = JSON.parse(arguments[0]);
  const p = m.project([lng, lat]);
  const a = div.getBoundingClientRect(), b = svg.getBoundingClientRect();
  done({loaded: m.loaded(), pixel: Array.from(px), point: [p.x, p.y], zoom: m.getZoom(), center: m.getCenter().toArray(),
        divBox: [a.left, a.top, a.width, a.height], svgBox: [b.left, b.top, b.width, b.height],
        attribution: (div.querySelector('.maplibregl-ctrl-attrib') || {}).textContent || '',
        path: (document.querySelector(arguments[1]) || {getAttribute: () => null}).getAttribute('d')});
});
m.triggerRepaint();
"""


@pytest.mark.stack
def test_the_dashboard_draws_the_pmtiles_basemap_under_the_map_on_the_svgs_view(prefix, r, gl_browser, tmp_path, archive):
    """With WF_GATEWAY_BASEMAP=<raster .pmtiles> the page loads the vendored MapLibre and pmtiles, reads the archive by
    Range requests (206), draws its tiles under the SVG map, and puts a point where the SVG draws it (within 2 px)."""
    write_counts(r, prefix)
    g = GatewayProcess(prefix, env_extra={"WF_GATEWAY_BASEMAP": str(archive)}).start(tmp_path)
    driver = gl_browser("basemap")
    try:
        driver.get(f"{g.base}/#token={token('supervisor', subject='sup-basemap')}")
        wait_for(driver, "the connection state to be live", lambda d: css(d, "#conn-state[data-state='live']"))
        cell = f"#map svg path.cell[data-cell='{IN_LANSDALE}']"
        wait_for(driver, "the Lansdale cell on the map", lambda d: css(d, cell))
        wait_for(driver, "MapLibre to load the basemap", lambda d: css(d, "#map .basemap[data-state='ready']"), timeout=40)
        lat, lng = h3.cell_to_boundary(IN_LANSDALE)[0]
        driver.set_script_timeout(20)
        # the cell's path, the SVG's box and MapLibre's projection read in one script: the map draws its SVG (and sets the
        # basemap's camera) again as counts arrive, and a path read before the projection may be of an earlier view
        got = driver.execute_async_script(READ_BASEMAP, json.dumps([lng, lat]), cell)
        for _ in range(10):  # read again when the SVG was caught mid-draw
            if got["svgBox"][2] > 0 and got["path"]:
                break
            time.sleep(0.2)
            got = driver.execute_async_script(READ_BASEMAP, json.dumps([lng, lat]), cell)
        # the SVG path starts at the cell's first vertex (h3's boundary, [lat, lng])
        x, y = (float(v) for v in re.match(r"M([-\d.]+),([-\d.]+)", got["path"]).groups())
        assert got["loaded"], got
        assert got["divBox"] == pytest.approx(got["svgBox"], abs=1), "the basemap's element lies exactly under the SVG"
        assert abs(got["point"][0] - x) < 2 and abs(got["point"][1] - y) < 2, (got["point"], (x, y), got)
        assert got["pixel"][:3] == pytest.approx(list(TILE_RGB), abs=8), f"the centre pixel is the tiles' orange: {got['pixel']}"
        assert "Test County GIS" in got["attribution"], "the archive's attribution is kept"
        requests = archive_requests(driver)
        assert requests and all(rng and rng.startswith("bytes=") for rng, _ in requests), requests
        assert all(status == 206 for _, status in requests), requests
        loaded = resources(driver)
        for name in ("maplibre-gl-csp.js", "pmtiles.js", "maplibre-gl.css"):
            assert any(u.endswith(f"/static/vendor/{name}") for u in loaded), name
        assert not console_errors(driver), "no script error, refused load or CSP violation"
        assert not css(driver, "#messages")[0].text
    finally:
        g.stop()


@pytest.mark.stack
def test_without_webgl_the_page_says_once_the_basemap_could_not_be_drawn_and_keeps_the_svg_map(prefix, r, gl_browser, tmp_path, archive):
    """Chromium with no WebGL: MapLibre cannot start; the page says so in #messages and the SVG map is drawn as ever."""
    write_counts(r, prefix)
    g = GatewayProcess(prefix, env_extra={"WF_GATEWAY_BASEMAP": str(archive)}).start(tmp_path)
    driver = gl_browser("no-webgl", ("--disable-3d-apis", "--disable-webgl"))
    try:
        driver.get(f"{g.base}/#token={token('supervisor', subject='sup-nogl')}")
        wait_for(driver, "the connection state to be live", lambda d: css(d, "#conn-state[data-state='live']"))
        wait_for(driver, "hot-spot cells on the map", lambda d: css(d, "#map svg path.cell"))
        wait_for(driver, "the page to say the basemap failed", lambda d: "basemap could not be drawn" in css(d, "#messages")[0].text)
        assert not css(driver, "#map .basemap"), "the failed basemap's element is removed"
        assert not css(driver, "#map rect.map-bg.veil"), "the SVG map's own background is back"
        assert css(driver, f"#map svg path.cell[data-cell='{IN_LANSDALE}']")
    finally:
        g.stop()


@pytest.mark.stack
def test_a_dashboard_without_a_basemap_requests_no_vendored_file(gw, r, prefix, browser):
    """No WF_GATEWAY_BASEMAP: /api/me says null and the page loads nothing from /static/vendor/ (it works offline)."""
    write_counts(r, prefix)
    tok = token("supervisor", subject="sup-nobasemap")
    assert gw.get_json("/api/me", tok)[1]["basemap"] is None
    driver = browser("nobasemap")
    driver.get(f"{gw.base}/#token={tok}")
    wait_for(driver, "the connection state to be live", lambda d: css(d, "#conn-state[data-state='live']"))
    wait_for(driver, "hot-spot cells on the map", lambda d: css(d, "#map svg path.cell"))
    vendor = [u for u in resources(driver) if "/static/vendor/" in u]
    assert not vendor, vendor
    assert not css(driver, "#map .basemap") and not css(driver, "script[src*='vendor'], link[href*='vendor']")
    assert gw.get(BASEMAP_PATH)[0] == 404


def test_the_profiles_basemap_is_the_default_and_the_settings_win(archive, tmp_path):
    """A profile's [basemap] is drawn when neither WF_GATEWAY_BASEMAP nor WF_GATEWAY_TILES is set; either setting
    wins over it; a profile basemap the page cannot use stops the gateway naming the profile and the table."""
    import asyncio

    from gateway.audit import AuditLog
    from gateway.places import Places
    from gateway.server import Gateway
    from gateway.store import Store

    def basemap_of(env: dict[str, str], places: Places):
        async def build():
            store = Store.from_url("redis://127.0.0.1:1/0", "unused", 1)  # never connected: only built
            return Gateway(
                load_gateway_settings({"WF_GATEWAY_SECRET": SECRET, **env}), store, AuditLog(store.client, "unused"), places=places
            )

        return asyncio.run(build()).settings.basemap

    other = write_archive(tmp_path / "other.pmtiles")
    profiled = Places(basemap={"pmtiles": str(archive)})
    got = basemap_of({}, profiled)
    assert got is not None and got.path == archive.resolve()
    assert basemap_of({"WF_GATEWAY_BASEMAP": str(other)}, profiled).path == other.resolve()
    assert basemap_of({"WF_GATEWAY_TILES": "/t/{z}/{x}/{y}.png"}, profiled) is None
    assert basemap_of({}, Places()) is None
    with pytest.raises(
        GatewaySettingsError, match=r"WF_PROFILE .*\[basemap\]: 'http://tiles\.example\.gov/\{z\}/\{x\}/\{y\}\.png' is not https"
    ):
        basemap_of({"WF_PROFILE": str(tmp_path / "p.toml")}, Places(basemap={"tiles": "http://tiles.example.gov/{z}/{x}/{y}.png"}))
