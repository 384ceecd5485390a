"""The URL guard: public http(s) only, checked after DNS and on every redirect, capped in size and time."""

import contextlib
import re
import gzip
import http.server
import socket
import threading
import time

import pytest

from engine.errors import InputError
from engine.settings import Settings
from engine.urls import NOT_ENABLED, FetchLimits, URLFetcher, fetch_url, is_public_address, url_file_name

ACCEPTED = r"accepted: http:// or https://, a host name, an optional port from 1 to 65535"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254",
                                     "::1", "fe80::1", "fd00:ec2::254", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1",
                                     "224.0.0.1", "not an address", ""])
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", [
    "64:ff9b::7f00:1", "64:ff9b::808:808",  # NAT64 (well-known prefix), loopback and public inside
    "64:ff9b:1::a00:1",  # NAT64, local-use prefix
    "2002:7f00:1::1", "2002:808:808::1",  # 6to4
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::7f00:1", "::8.8.8.8", "::a00:1",  # IPv4-compatible
    "::ffff:0:7f00:1",  # IPv4-translated
    "fe80::1%2",  # scoped
])
def test_ipv6_forms_that_carry_an_ipv4_address_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "151.101.1.1", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert is_public_address(address)


@pytest.fixture
def server():
    """Two local servers: 127.0.0.2 plays a 'public' host, 127.0.0.1 the server's own network."""
    routes, seen = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, dict(self.headers)))
            status, headers, body = routes.get(self.path, (404, {}, b"not here"))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = [http.server.ThreadingHTTPServer((host, 0), Handler) for host in ("127.0.0.2", "127.0.0.1")]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    public, private = (f"http://{s.server_address[0]}:{s.server_address[1]}" for s in servers)
    yield routes, public, private, seen
    for s in servers:
        s.shutdown()
        s.server_close()


@contextlib.contextmanager
def raw_server(answer):
    """A socket server on 127.0.0.2 whose every connection is handed to answer(conn) after the request is read."""
    srv = socket.create_server(("127.0.0.2", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            def one(conn=conn):
                with conn:
                    conn.recv(65536)
                    try:
                        answer(conn)
                    except OSError:
                        pass
            threading.Thread(target=one, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.2:{srv.getsockname()[1]}"
    finally:
        stop.set()
        srv.close()


def only_127_0_0_2(address):
    return address == "127.0.0.2"


def public_fetch(url, limits=FetchLimits()):
    return fetch_url(url, limits, is_allowed=only_127_0_0_2)


def test_loopback_url_refused_after_resolution(server):
    routes, _, private, seen = server
    routes["/x"] = (200, {}, b"secret")
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url(f"{private}/x")
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url(private.replace("127.0.0.1", "localhost") + "/x")
    assert seen == []


def test_public_fetch_works_and_redirect_to_private_is_rechecked(server):
    routes, public, private, seen = server
    routes["/img"] = (200, {}, b"picture")
    assert public_fetch(f"{public}/img") == b"picture"
    routes["/hop"] = (302, {"Location": "/img"}, b"")
    assert public_fetch(f"{public}/hop") == b"picture"
    routes["/evil"] = (302, {"Location": f"{private}/secret"}, b"")
    routes["/secret"] = (200, {}, b"the server's own network")
    with pytest.raises(InputError, match="127.0.0.1 is not a public internet address"):
        public_fetch(f"{public}/evil")
    assert "/secret" not in [path for path, _ in seen]  # the private hop was never requested
    routes["/to-file"] = (302, {"Location": "file:///etc/passwd"}, b"")
    with pytest.raises(InputError, match="Only http:// and https://"):
        public_fetch(f"{public}/to-file")
    routes["/to-login"] = (302, {"Location": f"http://user:pw@{public[7:]}/img"}, b"")
    with pytest.raises(InputError, match="user name or password"):
        public_fetch(f"{public}/to-login")


def test_name_resolving_to_private_is_refused():
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url("http://example.test/x", resolve=lambda host, port: ["10.1.2.3"])
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url("http://example.test/x", resolve=lambda host, port: ["8.8.8.8", "192.168.0.1"])
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url("http://example.test/x", resolve=lambda host, port: ["64:ff9b::a9fe:a9fe"])  # NAT64 metadata
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url("http://example.test/x", resolve=lambda host, port: [])


def test_schemes_size_redirect_loops_and_status(server):
    routes, public, _, seen = server
    for bad in ("file:///etc/passwd", "ftp://x/y", "gopher://a", "javascript:alert(1)", "/etc/passwd"):
        with pytest.raises(InputError, match="Only http:// and https://"):
            fetch_url(bad)
    routes["/big"] = (200, {}, b"x" * 2048)
    with pytest.raises(InputError, match=r"larger than this server accepts \(0.0009766 MB\)"):
        public_fetch(f"{public}/big", FetchLimits(max_bytes=1024))
    routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(InputError, match="redirected more than 3 times"):
        public_fetch(f"{public}/loop")
    with pytest.raises(InputError, match="HTTP 404"):
        public_fetch(f"{public}/missing")


@pytest.mark.parametrize("url, why", [
    ("http://x:99999/", "port is not a number from 1 to 65535"),
    ("http://x:0/", "port is not a number from 1 to 65535"),
    ("http://x:abc/", "port is not a number from 1 to 65535"),
    ("http://[::1/", r"\[IPv6 address\] is unclosed or not valid"),
    ("http:///file.wav", "no valid host name"),
    ("http://:80/file.wav", "no valid host name"),
    ("http://exa mple.com/a.wav", "spaces or control characters"),
    ("http://example.com/a\r\nX-Injected: 1", "spaces or control characters"),
    ("http://example.com/" + "a" * 3000, "longer than 2048 characters"),
    ("http://ex<am>ple.com/", "no valid host name"),
    ("http://[not-ip]/", r"\[IPv6 address\] is unclosed or not valid"),
])
def test_every_malformed_url_is_an_input_error_saying_what_is_accepted(url, why):
    resolved = []
    with pytest.raises(InputError, match=why) as err:
        fetch_url(url, resolve=lambda host, port: resolved.append(host) or ["8.8.8.8"])
    assert re.search(ACCEPTED, str(err.value)) and resolved == []


def test_credentials_in_the_url_are_refused_and_not_echoed():
    with pytest.raises(InputError, match="user name or password") as err:
        fetch_url("http://admin:hunter2@example.com/a.flac", resolve=lambda h, p: ["8.8.8.8"])
    assert "hunter2" not in str(err.value) and "admin" not in str(err.value)


def test_messages_name_the_host_only(server):
    routes, public, _, _ = server
    with pytest.raises(InputError) as err:
        public_fetch(f"{public}/private-token-123/audio.flac?key=s3cret")
    assert "private-token" not in str(err.value) and "s3cret" not in str(err.value)
    with pytest.raises(InputError) as err:
        fetch_url("http://intranet.example/secret-path/x", resolve=lambda h, p: ["10.0.0.1"])
    assert str(err.value).startswith("intranet.example is not") and "secret-path" not in str(err.value)


def test_no_compression_is_asked_for_and_a_compressed_body_is_refused(server):
    routes, public, _, seen = server
    routes["/plain"] = (200, {}, b"raw")
    assert public_fetch(f"{public}/plain") == b"raw"
    assert seen[-1][1].get("Accept-Encoding") == "identity"
    bomb = gzip.compress(b"\0" * 10_000_000)  # 10 MB behind ~10 KB
    routes["/bomb"] = (200, {"Content-Encoding": "gzip"}, bomb)
    with pytest.raises(InputError, match=r"sent the file compressed \(gzip\)"):
        public_fetch(f"{public}/bomb", FetchLimits(max_bytes=1_000_000))


def test_content_length_lies(server):
    routes, public, _, _ = server
    routes["/claims-huge"] = (200, {"Content-Length": str(10 * 2**30)}, b"tiny")
    with pytest.raises(InputError, match="larger than this server accepts"):
        public_fetch(f"{public}/claims-huge", FetchLimits(max_bytes=1024))
    routes["/claims-small"] = (200, {"Content-Length": "10"}, b"y" * 4096)
    assert public_fetch(f"{public}/claims-small", FetchLimits(max_bytes=1024)) == b"y" * 10
    routes["/claims-more"] = (200, {"Content-Length": "5000"}, b"z" * 100)
    with pytest.raises(InputError, match=r"closed the connection before the whole file arrived \(100 of 5,000"):
        public_fetch(f"{public}/claims-more")


def test_no_content_length_is_capped_while_streaming():
    def endless(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x" * 65536)

    with raw_server(endless) as url:
        with pytest.raises(InputError, match="larger than this server accepts"):
            public_fetch(f"{url}/stream", FetchLimits(max_bytes=200_000))


def test_non_200_body_is_not_read():
    def error_page(conn):
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 100000000\r\n\r\n")
        time.sleep(3)  # a fetcher reading the body would wait here until its deadline

    with raw_server(error_page) as url:
        started = time.monotonic()
        with pytest.raises(InputError, match="HTTP 500"):
            public_fetch(f"{url}/x", FetchLimits(timeout_s=5))
        assert time.monotonic() - started < 1.0


def test_header_flood_is_refused():
    def flood(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\nbody")

    def long_line(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 200_000 + b"\r\n\r\nbody")

    for answer in (flood, long_line):
        with raw_server(answer) as url:
            with pytest.raises(InputError, match="127.0.0.2 sent an answer that is not valid HTTP"):
                public_fetch(f"{url}/x")


def drip(head: bytes, body: bytes, every: float):
    def answer(conn):
        for byte in head + body:
            conn.sendall(bytes([byte]))
            time.sleep(every)
    return answer


@pytest.mark.parametrize("where", ["body", "headers", "redirects", "tls"])
def test_the_timeout_is_one_deadline_for_the_whole_fetch(where):
    timeout = 1.5
    if where == "body":  # 40 bytes, one every 0.25 s: 10 s in all, but no single read waits 1.5 s
        answer = drip(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n", b"x" * 40, 0.25)
    elif where == "headers":
        answer = drip(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: 1\r\n" * 20 + b"\r\n", b"", 0.05)
    elif where == "tls":  # the server's TLS handshake record (16 KB announced) comes a byte every 0.25 s
        answer = drip(b"\x16\x03\x03\x40\x00", b"\x00" * 40, 0.25)
    else:  # every hop answers within the timeout; together they take longer
        def answer(conn):
            time.sleep(0.6)
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")
    with raw_server(answer) as url:
        started = time.monotonic()
        with pytest.raises(InputError, match=r"did not send the whole file within 1.5 s"):
            public_fetch(f"{url.replace('http:', 'https:') if where == 'tls' else url}/slow",
                         FetchLimits(timeout_s=timeout, max_redirects=10))
        wall = time.monotonic() - started
    assert timeout - 0.1 < wall < timeout + 0.5, wall


def test_slow_name_lookup_counts_against_the_deadline():
    def slow(host, port):
        time.sleep(3)
        return ["8.8.8.8"]

    started = time.monotonic()
    with pytest.raises(InputError, match="within 0.5 s"):
        fetch_url("http://example.test/a.wav", FetchLimits(timeout_s=0.5), resolve=slow)
    assert time.monotonic() - started < 1.0


def test_fetcher_off_fetches_nothing(server, tmp_path):
    routes, public, _, seen = server
    routes["/a.flac"] = (200, {}, b"audio")
    looked_up = []
    off = URLFetcher.from_settings(Settings(), resolve=lambda h, p: looked_up.append(h) or ["127.0.0.2"],
                                   is_allowed=only_127_0_0_2)
    with pytest.raises(InputError, match="^This server does not fetch URLs; upload the file.$"):
        off.download(f"{public}/a.flac", tmp_path)
    assert off.enabled is False and looked_up == [] and seen == [] and list(tmp_path.iterdir()) == []
    assert NOT_ENABLED == "This server does not fetch URLs; upload the file."


def test_fetcher_on_uses_the_upload_limit_and_names_the_file_after_the_url(server, tmp_path):
    routes, public, _, _ = server
    routes["/files/My%20Talk.flac?x=1"] = (200, {}, b"audio")
    settings = Settings(allow_urls=True, max_file_mb=0.5, url_timeout_s=4)
    on = URLFetcher.from_settings(settings, is_allowed=only_127_0_0_2)
    assert on.limits == FetchLimits(max_bytes=2**19, timeout_s=4.0)
    path = on.download(f"{public}/files/My%20Talk.flac?x=1#frag", tmp_path)
    assert path == tmp_path / "My_Talk.flac" and path.read_bytes() == b"audio"


@pytest.mark.parametrize("url, name", [
    ("https://example.com/a/b/speech.flac", "speech.flac"),
    ("https://example.com/a/b/my%20talk.mp3?dl=1", "my_talk.mp3"),
    ("https://example.com/", "download"),
    ("https://example.com", "download"),
    ("https://example.com/..%2F..%2Fetc%2Fpasswd", "etc_passwd"),
    ("https://example.com/%2e%2e", "download"),
    ("https://example.com/" + "n" * 300 + ".png", "n" * 90 + ".png"),
    ("http://[::1/", "download"),
])
def test_url_file_name(url, name):
    assert url_file_name(url) == name
