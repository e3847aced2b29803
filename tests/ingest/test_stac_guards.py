"""STAC polling reads only what the policy allows, and only so much (issue 16, item 5).

The review's situations, reproduced: an item whose asset href is ``file:///dev/zero`` (it passed the size
check, st_size 0, and was read forever); a STAC server on 127.0.0.1 (loopback is refused by default and
allowed only by ``ORACLE_STAC_ALLOWED_NETWORKS``); a server that streams an endless body (cut off at the
cap while streaming); redirects to private addresses, to ``file:`` and in a loop; a server that never
answers. Each refusal is quick and leaves a reject row with its reason.
"""

from __future__ import annotations

import datetime as dt
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from sqlalchemy import select

from ingest.fetch import FetchPolicy, fetch
from ingest.stac import discover_assets
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.errors import ValidationError
from oracle.scheduler import StacCatalog, poll_stac
from oracle.storage.tables import Observation, Reject
from tests.fixtures.rasters import StacItemSpec, geotiff_bytes, write_stac_catalog

LOOPBACK = ("127.0.0.0/8", "::1/128")
NOW = dt.datetime.now(dt.UTC)
BOX = (36.0, -1.0, 37.0, 0.0)


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Any]:
    """Contexts with the given settings, each on a data dir (database, blobs) of its own."""
    opened: list[Context] = []

    def make(**settings: Any) -> Context:
        data = tmp_path / f"data-{len(opened)}"
        ctx = open_context(Settings(data_dir=data, _env_file=None, **settings))  # type: ignore[call-arg]
        opened.append(ctx)
        return ctx

    yield make
    for ctx in opened:
        ctx.close()


def _catalog(root: Path, *hrefs: str) -> Path:
    specs = [
        StacItemSpec(f"item-{i}", "ndvi", NOW - dt.timedelta(days=1), BOX, href)
        for i, href in enumerate(hrefs)
    ]
    return write_stac_catalog(root, specs)


def _tif(path: Path) -> Path:
    transform = Affine(0.05, 0.0, 36.0, 0.0, -0.05, 0.0)
    values = np.full((20, 20), 5000, dtype=np.int16)
    path.write_bytes(
        geotiff_bytes(
            values, transform=transform, tmp_dir=path.parent, scale=0.0001, time=NOW.isoformat(), nodata=-9999
        )
    )
    return path


def _rejects(ctx: Context) -> list[tuple[str, str]]:
    with ctx.sessions() as s:
        return [(r.reason, r.message) for r in s.scalars(select(Reject).where(Reject.source == "stac"))]


def _timed_poll(ctx: Context, catalog: str) -> tuple[Any, float]:
    ctx.extras["stac_catalogs"] = [StacCatalog(source=catalog, variable="ndvi")]
    started = time.monotonic()
    result = poll_stac(ctx)
    return result, time.monotonic() - started


# --- file: ------------------------------------------------------------------------------------------------


def test_dev_zero_asset_is_refused_quickly_with_a_recorded_reason(tmp_path: Path, make_ctx: Any) -> None:
    (tmp_path / "stac").mkdir()
    fifo = tmp_path / "stac" / "fifo.tif"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer
    (tmp_path / "stac" / "zero.tif").symlink_to("/dev/zero")
    catalog = _catalog(tmp_path / "stac", "file:///dev/zero", str(tmp_path / "stac" / "zero.tif"), str(fifo))
    ctx = make_ctx(stac_file_root=tmp_path)
    result, took = _timed_poll(ctx, str(catalog))
    assert took < 10
    assert (result.found, result.ingested, result.refused) == (3, 0, 3)
    reasons = sorted(reason for reason, _ in _rejects(ctx))
    assert reasons == ["not_a_file", "path_refused", "path_refused"]
    messages = " ".join(message for _, message in _rejects(ctx))
    assert "/dev/zero" in messages
    assert "ORACLE_STAC_FILE_ROOT" in messages


def test_local_files_are_read_only_under_the_configured_root(tmp_path: Path, make_ctx: Any) -> None:
    tif = _tif(tmp_path / "ndvi.tif")
    catalog = _catalog(tmp_path / "stac", str(tif))
    off = make_ctx()  # default: no file root, so not even a local catalog is read
    result, _ = _timed_poll(off, str(catalog))
    assert (result.catalogs, result.found, result.ingested) == (1, 0, 0)
    assert result.refused == 1
    ((reason, message),) = _rejects(off)
    assert reason == "path_refused"
    assert "ORACLE_STAC_FILE_ROOT" in message

    inside = make_ctx(stac_file_root=tmp_path / "stac")  # the catalog is under it, the asset is not
    result, _ = _timed_poll(inside, str(catalog))
    assert (result.found, result.ingested) == (1, 0)
    assert result.refused == 1
    assert [reason for reason, _ in _rejects(inside)] == ["path_refused"]

    allowed = make_ctx(stac_file_root=tmp_path)
    result, _ = _timed_poll(allowed, str(catalog))
    assert (result.found, result.ingested, result.refused) == (1, 1, 0)
    with allowed.sessions() as s:
        assert len(s.scalars(select(Observation).where(Observation.variable == "ndvi")).all()) == 1


def test_a_local_file_over_the_cap_is_cut_off(tmp_path: Path) -> None:
    big = tmp_path / "big.tif"
    big.write_bytes(b"\0" * 4096)
    policy = FetchPolicy(file_root=tmp_path)
    assert fetch(str(big), policy, max_bytes=4096) == b"\0" * 4096
    with pytest.raises(ValidationError) as err:
        fetch(f"file://{big}", policy, max_bytes=4095)
    assert err.value.reason == "too_large"
    with pytest.raises(ValidationError) as err:
        fetch(f"file://elsewhere{big}", policy, max_bytes=4096)  # a remote host's file: not ours to read
    assert err.value.reason == "path_refused"


# --- http(s): -------------------------------------------------------------------------------------------


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from the server's directory, plus the misbehaving endpoints below."""

    protocol_version = "HTTP/1.1"
    stop: threading.Event

    def do_GET(self) -> None:
        route = getattr(self, "route_" + self.path.strip("/").split("?")[0].replace("-", "_"), None)
        if route is None:
            super().do_GET()
        else:
            route()

    def route_endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\0" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            while not self.stop.is_set():
                self.wfile.write(frame)
        except OSError:
            pass  # the client hung up: what the cap is for

    def route_declared_huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()

    def route_loop(self) -> None:
        self._redirect("/loop")

    def route_to_private(self) -> None:
        self._redirect("http://10.255.255.1/asset.tif")

    def route_to_file(self) -> None:
        self._redirect("file:///etc/passwd")

    def route_hang(self) -> None:
        self.stop.wait(30)

    def route_drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            if self.stop.wait(0.2):
                return
            self.wfile.write(b"\0")
            self.wfile.flush()

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Server:
    def __init__(self, directory: Path) -> None:
        stop = threading.Event()

        class Bound(Handler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(directory), **kwargs)

        Bound.stop = stop
        self.stop = stop
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bound)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "www").mkdir()
    s = Server(tmp_path / "www")
    yield s
    s.close()


OPEN = FetchPolicy(allow_http=True, allowed_networks=LOOPBACK)


def test_a_stac_server_on_loopback_needs_the_network_allowed(
    tmp_path: Path, server: Server, make_ctx: Any
) -> None:
    tif = _tif(tmp_path / "www" / "ndvi.tif")
    _catalog(tmp_path / "www" / "stac", f"{server.base}/{tif.name}")
    url = f"{server.base}/stac/catalog.json"
    refused = make_ctx(stac_allow_http=True)  # http allowed, loopback not
    result, _ = _timed_poll(refused, url)
    assert (result.catalogs, result.found, result.ingested) == (1, 0, 0)
    assert result.refused == 1
    ((reason, message),) = _rejects(refused)
    assert reason == "address_refused"
    assert "127.0.0.1" in message
    assert "ORACLE_STAC_ALLOWED_NETWORKS" in message

    allowed = make_ctx(stac_allow_http=True, stac_allowed_networks="127.0.0.0/8,::1/128")
    result, _ = _timed_poll(allowed, url)
    assert (result.found, result.ingested, result.refused) == (1, 1, 0)

    for policy, why in (
        (FetchPolicy(), "scheme_refused"),  # https only by default
        (FetchPolicy(allow_http=True), "address_refused"),
    ):
        with pytest.raises(ValidationError) as err:
            discover_assets(url, policy=policy)
        assert err.value.reason == why
    (asset,) = discover_assets(url, policy=OPEN)
    assert asset.href == f"{server.base}/ndvi.tif"


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "mixed.example": ["93.184.215.14", "10.1.2.3"],
        "mapped.example": ["::ffff:127.0.0.1"],
        "meta.example": ["169.254.169.254"],
        "zero.example": ["0.0.0.0"],  # connecting to it reaches this host
    }

    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    policy = FetchPolicy(allow_http=True, connect_timeout_s=1.0)
    for host, bad in (
        ("mixed.example", "10.1.2.3"),
        ("mapped.example", "127.0.0.1"),
        ("meta.example", "169.254.169.254"),
        ("zero.example", "0.0.0.0"),
    ):
        with pytest.raises(ValidationError) as err:
            fetch(f"http://{host}/a.tif", policy, max_bytes=100)
        assert err.value.reason == "address_refused", host
        assert bad in str(err.value)
    for literal in ("http://[::1]/x", "http://127.1/x", "http://169.254.169.254/x"):
        with pytest.raises(ValidationError) as err:
            fetch(literal, policy, max_bytes=100)
        assert err.value.reason == "address_refused", literal


def test_an_endless_body_is_cut_off_at_the_cap(tmp_path: Path, server: Server, make_ctx: Any) -> None:
    _catalog(tmp_path / "www" / "stac", f"{server.base}/endless")
    ctx = make_ctx(stac_allow_http=True, stac_allowed_networks="127.0.0.0/8", stac_max_asset_bytes=5_000_000)
    result, took = _timed_poll(ctx, f"{server.base}/stac/catalog.json")
    assert took < 20
    assert (result.found, result.refused) == (1, 1)
    ((reason, message),) = _rejects(ctx)
    assert reason == "too_large"
    assert "ORACLE_STAC_MAX_ASSET_BYTES" in message

    started = time.monotonic()
    with pytest.raises(ValidationError) as err:
        fetch(f"{server.base}/endless", OPEN, max_bytes=1_000_000)
    assert err.value.reason == "too_large"
    with pytest.raises(ValidationError) as err:
        fetch(f"{server.base}/declared-huge", OPEN, max_bytes=1_000_000)
    assert err.value.reason == "too_large"
    assert time.monotonic() - started < 10


def test_polling_refuses_redirect_tricks_and_silent_servers_quickly(
    tmp_path: Path, server: Server, make_ctx: Any
) -> None:
    paths = ("loop", "to-private", "to-file", "hang")
    _catalog(tmp_path / "www" / "stac", *(f"{server.base}/{p}" for p in paths))
    ctx = make_ctx(
        stac_allow_http=True,
        stac_allowed_networks="127.0.0.0/8",
        stac_read_timeout_s=0.5,
        stac_connect_timeout_s=1.0,
    )
    result, took = _timed_poll(ctx, f"{server.base}/stac/catalog.json")
    assert took < 15
    assert (result.found, result.refused) == (4, 4)
    assert sorted(reason for reason, _ in _rejects(ctx)) == [
        "address_refused",  # /to-private: 10.255.255.1, never connected to
        "scheme_refused",  # /to-file: file:///etc/passwd
        "timeout",  # /hang: no answer within the read timeout
        "too_many_redirects",  # /loop
    ]


def test_redirects_are_limited_and_each_target_is_checked(server: Server) -> None:
    for path, reason in (
        ("/loop", "too_many_redirects"),
        ("/to-private", "address_refused"),
        ("/to-file", "scheme_refused"),
    ):
        with pytest.raises(ValidationError) as err:
            fetch(f"{server.base}{path}", OPEN, max_bytes=1000)
        assert err.value.reason == reason, path


def test_connect_and_read_timeouts_and_a_deadline(server: Server) -> None:
    policy = FetchPolicy(allow_http=True, allowed_networks=LOOPBACK, read_timeout_s=0.5, deadline_s=2.0)
    for path in ("/hang", "/drip"):  # silent; and a byte every 0.2 s, each read well within its timeout
        started = time.monotonic()
        with pytest.raises(ValidationError) as err:
            fetch(f"{server.base}{path}", policy, max_bytes=10_000)
        assert err.value.reason == "timeout", path
        assert time.monotonic() - started < 5, path


def test_a_remote_document_cannot_point_at_local_files(tmp_path: Path, server: Server) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"type": "Catalog"}')
    _catalog(tmp_path / "www" / "stac", f"file://{secret}")
    (asset,) = discover_assets(f"{server.base}/stac/catalog.json", policy=OPEN)
    with pytest.raises(ValidationError) as err:
        fetch(asset.href, OPEN, max_bytes=1000)
    assert err.value.reason == "path_refused"
    with pytest.raises(ValidationError) as err:  # nor can a catalog link lead there
        fetch(f"file://{secret}", OPEN, max_bytes=1000)
    assert err.value.reason == "path_refused"


def test_other_schemes_are_refused() -> None:
    for href in ("ftp://example.org/a.tif", "s3://bucket/a.tif", "gopher://example.org/", "data:,abc"):
        with pytest.raises(ValidationError) as err:
            fetch(href, FetchPolicy(allow_http=True), max_bytes=100)
        assert err.value.reason == "scheme_refused", href


def test_settings_parse_the_allowed_networks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORACLE_STAC_ALLOWED_NETWORKS", "10.0.0.0/8, fd00::/8")
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.stac_allowed_networks == ["10.0.0.0/8", "fd00::/8"]
    policy = FetchPolicy.from_settings(settings)
    assert [str(n) for n in policy.allowed_networks] == ["10.0.0.0/8", "fd00::/8"]
    assert (policy.allow_http, policy.file_root) == (False, None)
    from oracle.config import load_settings
    from oracle.errors import ConfigError

    monkeypatch.setenv("ORACLE_STAC_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ConfigError, match="ORACLE_STAC_ALLOWED_NETWORKS"):
        load_settings(data_dir=tmp_path, _env_file=None)
