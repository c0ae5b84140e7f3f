"""Internal addresses and open doors (issue 11), through a real mitmdump: image URLs that point inside
the network (every SSRF form, on loopback listeners only: 127.0.0.2 stands for a public host through
tests/support/pretend_public.py), readiness, a FIFO in the accounts directory, `accounts import` with
hostile ids, the forward proxy's 407, and log lines that never hold a key."""

from __future__ import annotations

import base64
import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from support.gateway import ROOT, Gateway

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PRETEND_PUBLIC = ["-s", str(ROOT / "tests" / "support" / "pretend_public.py")]
PUBLIC_HOST = "127.0.0.2"  # the seam script treats it as a public address


# ---- image hosts ---------------------------------------------------------------------------------------
class ImageHost:
    """A tiny HTTP server on one loopback address that records the paths it was asked for."""

    def __init__(self, sock: socket.socket) -> None:
        self.paths: list[str] = []
        self.header_names: set[str] = set()
        port = sock.getsockname()[1]
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.paths.append(self.path)
                host.header_names.update(name.lower() for name in self.headers)
                if self.path.startswith("/pixel.png"):
                    self.reply(200, PNG, "image/png")
                elif self.path == "/big.png":
                    self.reply(200, PNG * 100, "image/png")
                elif self.path == "/page.html":
                    self.reply(200, b"<html>admin panel</html>", "text/html")
                elif self.path == "/to-internal":
                    self.reply(302, b"", "text/plain", location=f"http://127.0.0.1:{port}/pixel.png")
                elif self.path == "/to-internal-name":
                    self.reply(302, b"", "text/plain", location=f"http://internal.test:{port}/pixel.png")
                elif self.path == "/to-pixel":
                    self.reply(302, b"", "text/plain", location="/pixel.png?hop=2")
                else:
                    self.reply(404, b"not found", "text/plain")

            def reply(self, status: int, body: bytes, content_type: str, location: str = "") -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                if location:
                    self.send_header("location", location)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = sock
        sock.listen()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[int, ImageHost, ImageHost]]:
    """A "public" image host on 127.0.0.2 and an internal one on 127.0.0.1, on the same port."""
    for _ in range(20):
        public = socket.socket()
        public.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        public.bind((PUBLIC_HOST, 0))
        internal = socket.socket()
        internal.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            internal.bind(("127.0.0.1", public.getsockname()[1]))
            break
        except OSError:
            public.close()
            internal.close()
    else:
        pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")
    pair = ImageHost(public), ImageHost(internal)
    yield public.getsockname()[1], *pair
    for host in pair:
        host.stop()


@pytest.fixture
def image_hosts(hosts: tuple[int, ImageHost, ImageHost]) -> tuple[int, ImageHost, ImageHost]:
    for host in hosts[1:]:
        host.paths.clear()
        host.header_names.clear()
    return hosts


@pytest.fixture(scope="module")
def public_gateway(emulator_process, mitm_confdir, tmp_path_factory) -> Iterator[Gateway]:
    """ag_image_fetch=public, with the seam that makes 127.0.0.2 stand for a public host."""
    from support.gateway import write_account

    accounts = tmp_path_factory.mktemp("accounts-public")
    write_account(accounts, "acc1")
    with Gateway(emulator_process, accounts, confdir=mitm_confdir, options={"ag_image_fetch": "public"},
                 extra_args=PRETEND_PUBLIC) as gw:
        yield gw


def chat_with_image(gw: Gateway, image_url: str, *, path: str = "/v1/chat/completions") -> tuple[int, dict]:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": image_url}}]}]}
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request("POST", path, body=orjson.dumps(body), headers={"content-type": "application/json"})
    resp = conn.getresponse()
    return resp.status, orjson.loads(resp.read())


def uniform_message(image_url: str) -> str:
    """The one message every failed download gets, with the URL as the client sent it (query dropped)."""
    return (f"Could not fetch the image at {image_url.split('?')[0]}. The gateway fetches only publicly "
            "reachable http(s) URLs that answer with an image/* body of at most 20971520 bytes in time; send "
            "the image inline as a data: URL otherwise.")


def refused(gw: Gateway, image_url: str) -> dict:
    status, body = chat_with_image(gw, image_url)
    assert status == 400, body
    assert body["error"]["param"] == "messages[0].content[1].image_url"
    assert body["error"]["message"] == uniform_message(image_url)
    return body


# ---- SSRF: image URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0.0.0.0", "127.1",
                                  "0x7f.0.0.1", "2130706433", "internal.test"])
def test_public_refuses_loopback_listeners_in_every_spelling(public_gateway, image_hosts, emulator, host):
    port, public, internal = image_hosts
    refused(public_gateway, f"http://{host}:{port}/pixel.png")
    assert internal.paths == [] and public.paths == []  # never connected
    assert emulator.requests() == []


def test_public_refuses_an_ipv6_loopback_listener(public_gateway):
    try:
        sock = socket.socket(socket.AF_INET6)
        sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    host = ImageHost(sock)
    try:
        port = sock.getsockname()[1]
        conn = http.client.HTTPConnection("::1", port, timeout=5)  # the control: the listener answers
        conn.request("GET", "/pixel.png")
        assert conn.getresponse().read() == PNG
        host.paths.clear()
        for spelling in ("[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]"):
            refused(public_gateway, f"http://{spelling}:{port}/pixel.png")
        assert host.paths == []
    finally:
        host.stop()


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png",
                                    "http://100.64.0.1/x.png", "http://192.168.0.1/x.png", "http://[fd00::1]/x.png",
                                    "http://[fe80::1]/x.png", "http://[::ffff:169.254.169.254]/x.png",
                                    "http://[2002:7f00:1::]/x.png", "http://[64:ff9b::7f00:1]/x.png",
                                    "http://224.0.0.1/x.png", "http://[::]/x.png", "https://127.0.0.1:1/x.png"])
def test_public_refuses_internal_addresses_before_connecting(public_gateway, target):
    refused(public_gateway, target)
    assert re.search(r"image fetch failed for \S+ \(messages\[0\]\.content\[1\]\.image_url\): .*refused",
                     public_gateway.log())


def test_a_public_host_is_fetched_and_may_redirect_to_another_public_one(public_gateway, image_hosts,
                                                                         emulator):
    port, public, internal = image_hosts
    for path in ("/pixel.png", "/to-pixel"):
        status, body = chat_with_image(public_gateway, f"http://public.test:{port}{path}")
        assert status == 200, body
    assert public.paths == ["/pixel.png", "/to-pixel", "/pixel.png?hop=2"]
    assert internal.paths == []
    parts = emulator.requests()[-1]["body"]["request"]["contents"][0]["parts"]
    assert parts[1]["inlineData"]["mimeType"] == "image/png"


@pytest.mark.parametrize("path", ["/to-internal", "/to-internal-name"])
def test_a_redirect_hop_to_an_internal_address_is_refused(public_gateway, image_hosts, path):
    port, public, internal = image_hosts
    refused(public_gateway, f"http://public.test:{port}{path}")
    assert public.paths == [path]
    assert internal.paths == []


def test_every_failure_looks_the_same_to_the_client(public_gateway, image_hosts):
    """No port scanner: a refused address, a closed port, a 404, a web page and a too-big image all get
    one status and one message (the reason is in the gateway's log only)."""
    port, _, _ = image_hosts
    with socket.socket() as s:  # a port with nothing listening on the "public" host
        s.bind((PUBLIC_HOST, 0))
        closed = s.getsockname()[1]
    answers = {}
    for url in (f"http://127.0.0.1:{port}/pixel.png", f"http://public.test:{closed}/x.png",
                f"http://public.test:{port}/missing.png", f"http://public.test:{port}/page.html"):
        body = refused(public_gateway, url)
        answers[url] = body["error"]["message"].replace(url, "<url>")
    assert len(set(answers.values())) == 1
    assert "admin panel" not in public_gateway.log()
    assert "Traceback" not in public_gateway.log()


def test_the_default_is_public(start_gateway, image_hosts):
    gw = start_gateway(options={"ag_image_fetch": None})  # None: mitmproxy's default for the option
    port, _, internal = image_hosts
    refused(gw, f"http://127.0.0.1:{port}/pixel.png")
    assert internal.paths == []


def test_off_fetches_no_url_but_data_urls_work(start_gateway, image_hosts, emulator):
    import base64

    gw = start_gateway(options={"ag_image_fetch": "off"})
    port, public, internal = image_hosts
    status, body = chat_with_image(gw, f"http://127.0.0.1:{port}/pixel.png")
    assert status == 400 and "ag_image_fetch=off" in body["error"]["message"]
    assert internal.paths == [] and public.paths == []
    status, body = chat_with_image(gw, "data:image/png;base64," + base64.b64encode(PNG).decode())
    assert status == 200, body


def test_any_reaches_the_loopback_listener(start_gateway, image_hosts):
    """The control: the same URL the public gateway refuses works with ag_image_fetch=any."""
    gw = start_gateway(options={"ag_image_fetch": "any"})
    port, _, internal = image_hosts
    status, body = chat_with_image(gw, f"http://127.0.0.1:{port}/pixel.png")
    assert status == 200, body
    assert internal.paths == ["/pixel.png"]


# ---- readiness -----------------------------------------------------------------------------------------
def test_healthz_is_503_starting_until_the_accounts_are_loaded_then_200_with_counts(emulator, mitm_confdir,
                                                                                    tmp_path):
    from support.gateway import write_account

    accounts = tmp_path / "accounts"
    accounts.mkdir()
    write_account(accounts, "ready1")
    write_account(accounts, "ready2")
    write_account(accounts, "off1", disabled=True)
    gw = Gateway(emulator, accounts, confdir=mitm_confdir,
                 extra_args=["-s", str(ROOT / "tests" / "support" / "slow_first_load.py")])
    seen: list[tuple[int, dict]] = []
    deadline = time.monotonic() + 30
    gw.start(wait=False)
    try:
        while time.monotonic() < deadline and not (seen and seen[-1][0] == 200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=2)
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                seen.append((resp.status, orjson.loads(resp.read())))
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)
        assert gw.proc is not None and gw.proc.poll() is None, gw.log()
        assert "Traceback" not in gw.log()
    finally:
        gw.stop()
    assert (503, {"status": "starting"}) in seen
    assert seen[-1] == (200, {"status": "ok", "accounts": {"ready": 2, "cooling": 0, "disabled": 1}})
    first_ok = next(i for i, (status, _) in enumerate(seen) if status == 200)
    assert all(status == 200 for status, _ in seen[first_ok:])  # never back to "starting"


# ---- the accounts directory ----------------------------------------------------------------------------
def wait_for(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def health(gw: Gateway) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("GET", "/healthz")
    return orjson.loads(conn.getresponse().read())


def test_a_fifo_in_the_accounts_dir_blocks_neither_start_nor_watcher_nor_cli(start_gateway, tmp_path):
    import os
    import subprocess
    import sys

    from support.gateway import write_account

    accounts = tmp_path / "accounts"
    accounts.mkdir()
    write_account(accounts, "acc1")
    os.mkfifo(accounts / "at-start.json")
    gw = start_gateway(accounts={}, accounts_dir=accounts)  # start-up reads the directory: must not block
    assert health(gw)["accounts"]["ready"] == 1
    os.mkfifo(accounts / "later.json")
    write_account(accounts, "acc2")  # the watcher must get past the new FIFO to see this one
    assert wait_for(lambda: health(gw)["accounts"]["ready"] == 2), gw.log()
    assert "at-start.json: not a regular file (a FIFO); skipped" in gw.log()
    assert "later.json: not a regular file (a FIFO); skipped" in gw.log()
    status, body = chat_with_image(gw, "data:image/png;base64,iVBORw0KGgo=")
    assert status == 200, body
    argv = [sys.executable, "-m", "antigravity_gw", "accounts", "list", "--dir", str(accounts)]
    result = subprocess.run(argv,
                            capture_output=True, text=True, timeout=30, cwd=ROOT / "addons")
    assert result.returncode == 0
    assert "acc1@example.com" in result.stdout and "acc2@example.com" in result.stdout
    assert result.stderr.count("not a regular file (a FIFO); skipped") == 2


def test_accounts_import_never_writes_outside_dir(tmp_path):
    import subprocess
    import sys

    source = tmp_path / "manager"
    (source / "accounts").mkdir(parents=True)
    hostile = ["../../../escaped", str(tmp_path / "absolute"), "..", "nul\x00byte", "a/../../b"]
    for n, ident in enumerate(hostile):
        (source / "accounts" / f"f{n}.json").write_bytes(
            orjson.dumps({"id": ident, "email": f"u{n}@example.com", "token": {"refresh_token": f"rt{n}"}}))
    (source / "accounts.json").write_bytes(orjson.dumps({"accounts": [{"id": i} for i in hostile]}))
    dest = tmp_path / "a" / "b" / "gw"
    before = set(tmp_path.rglob("*"))
    result = subprocess.run([sys.executable, "-m", "antigravity_gw", "accounts", "import", str(source),
                             "--dir", str(dest)],
                            capture_output=True, text=True, timeout=30, cwd=ROOT / "addons")
    assert result.returncode == 0, result.stderr
    assert f"{len(hostile)} imported, 0 skipped" in result.stdout
    new = set(tmp_path.rglob("*")) - before - {tmp_path / "a", tmp_path / "a" / "b", dest}
    assert len(new) == len(hostile) and all(p.parent == dest and p.suffix == ".json" for p in new)


# ---- forward-proxy mode: other hosts need the key too ----------------------------------------------------
PROXY_KEY = "sk-gw-proxy-key-5f1c"


@pytest.fixture
def forward_proxy(start_gateway) -> Gateway:
    return start_gateway(mode="regular", options={"ag_auth_mode": "strict", "ag_api_key": PROXY_KEY})


def via_proxy(gw: Gateway, url: str, headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
    conn.request("GET", url, headers=headers or {})
    resp = conn.getresponse()
    headers: dict[str, str] = {}
    for name, value in resp.getheaders():  # repeated fields joined, as RFC 9110 allows
        headers[name.lower()] = f"{headers[name.lower()]}, {value}" if name.lower() in headers else value
    return resp.status, headers, resp.read()


def connect(gw: Gateway, target: str, headers: dict[str, str] | None = None) -> tuple[socket.socket, bytes]:
    """A raw CONNECT; returns the socket and the proxy's answer head."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        piece = sock.recv(4096)
        if not piece:
            break
        head += piece
    return sock, head


def test_forward_proxy_answers_407_without_the_key_for_other_hosts(forward_proxy, image_hosts):
    port, _, internal = image_hosts
    status, headers, body = via_proxy(forward_proxy, f"http://127.0.0.1:{port}/pixel.png")
    assert status == 407
    assert 'Basic realm="antigravity-gateway"' in headers["proxy-authenticate"]
    assert orjson.loads(body)["error"]["code"] == "proxy_authentication_required"
    for wrong in ("Bearer sk-wrong", "Basic " + base64.b64encode(b"user:sk-wrong").decode()):
        url = f"http://127.0.0.1:{port}/pixel.png"
        assert via_proxy(forward_proxy, url, {"proxy-authorization": wrong})[0] == 407
    assert internal.paths == []


@pytest.mark.parametrize("credentials", [f"Bearer {PROXY_KEY}",
                                         "Basic " + base64.b64encode(f"me:{PROXY_KEY}".encode()).decode()])
def test_forward_proxy_relays_other_hosts_with_the_key_and_strips_it(forward_proxy, image_hosts, credentials):
    port, _, internal = image_hosts
    status, _, body = via_proxy(forward_proxy, f"http://127.0.0.1:{port}/pixel.png",
                                {"proxy-authorization": credentials})
    assert (status, body) == (200, PNG)
    assert internal.paths == ["/pixel.png"]
    assert "proxy-authorization" not in internal.header_names  # the key stays with the gateway
    assert PROXY_KEY not in forward_proxy.log()


def test_forward_proxy_connect_needs_the_key(forward_proxy, image_hosts):
    port, _, internal = image_hosts
    sock, head = connect(forward_proxy, f"127.0.0.1:{port}")
    sock.close()
    assert head.startswith(b"HTTP/1.1 407") and b"proxy-authenticate" in head.lower()
    sock, head = connect(forward_proxy, f"127.0.0.1:{port}", {"proxy-authorization": f"Bearer {PROXY_KEY}"})
    with sock:
        assert head.startswith(b"HTTP/1.1 200")
        request = f"GET /pixel.png HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    assert answer.split(b"\r\n", 1)[0].endswith(b" 200 OK") and answer.endswith(PNG)
    assert internal.paths == ["/pixel.png"]  # only the tunnel opened with the key got through


def test_forward_proxy_still_serves_the_intercepted_api_with_the_api_key(forward_proxy):
    sock, head = connect(forward_proxy, "api.openai.com:443")  # no proxy key: the API key is checked inside
    sock.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert via_proxy(forward_proxy, "http://api.openai.com/v1/models")[0] == 401
    with_key = {"authorization": f"Bearer {PROXY_KEY}"}
    status, _, _ = via_proxy(forward_proxy, "http://api.openai.com/v1/models", with_key)
    assert status == 200


# ---- logs keep the promise -----------------------------------------------------------------------------
LOG_KEY = "sk-gw-log-secret-7d3e9a"


def test_no_key_reaches_the_log_even_from_mitmproxy_itself(start_gateway):
    """mitmproxy logs a request cut off mid-headers with its raw bytes; protocol errors quote them."""
    gw = start_gateway(options={"ag_auth_mode": "strict", "ag_api_key": LOG_KEY,
                                "termlog_verbosity": "debug"})
    cut_off = [
        f"POST /v1/chat/completions?key={LOG_KEY} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {LOG_KEY}\r\n",
        f"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: {LOG_KEY}\r\n"
        f"x-goog-api-key: {LOG_KEY}\r\nCookie: s=",
        f"GET /v1/models HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic "
        f"{base64.b64encode(f'u:{LOG_KEY}'.encode()).decode()}\r\n",
        f"GET /v1/models?key={LOG_KEY} HTTP/1.1\r\nHost: x\r\nbad header line {LOG_KEY}\r\n\r\n",
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {LOG_KEY}\r\n"
        "Content-Length: zz\r\n\r\n",
    ]
    for raw in cut_off:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(raw.encode())
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    status, _ = chat_with_image(gw, f"http://127.0.0.1:1/x.png?key={LOG_KEY}")  # 401 first: no key sent
    assert status == 401
    for query in (f"?key={LOG_KEY}", f"?api_key={LOG_KEY}"):  # Gemini-style clients; mitmdump prints URLs
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", "/v1/models" + query, headers={"authorization": f"Bearer {LOG_KEY}"})
        assert conn.getresponse().status == 200
    assert wait_for(lambda: gw.log().count("[redacted]") >= 4), gw.log()
    assert "before completing request headers" in gw.log()  # the line is there, without the key
    assert LOG_KEY not in gw.log()
    assert base64.b64encode(f"u:{LOG_KEY}".encode()).decode() not in gw.log()
