"""The URL guard: public http(s) only, checked after DNS and on every redirect, capped in size."""

import http.server
import threading

import pytest

from engine.errors import InputError
from engine.urls import FetchLimits, fetch_url, is_public_address


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254",
                                     "::1", "fe80::1", "fd00:ec2::254", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1",
                                     "224.0.0.1"])
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "151.101.1.1", "2606:4700::1111"])
def test_public_addresses_pass(address):
    assert is_public_address(address)


@pytest.fixture
def server():
    """Two local servers: 127.0.0.2 plays a 'public' host, 127.0.0.1 the server's own network."""
    routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = [http.server.ThreadingHTTPServer((host, 0), Handler) for host in ("127.0.0.2", "127.0.0.1")]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    public, private = (f"http://{s.server_address[0]}:{s.server_address[1]}" for s in servers)
    yield routes, public, private
    for s in servers:
        s.shutdown()


def only_127_0_0_2(address):
    return address == "127.0.0.2"


def test_loopback_url_refused_after_resolution(server):
    routes, _, private = server
    routes["/x"] = (200, {}, b"secret")
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url(f"{private}/x")
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url(private.replace("127.0.0.1", "localhost") + "/x")


def test_public_fetch_works_and_redirect_to_private_is_rechecked(server):
    routes, public, private = server
    routes["/img"] = (200, {}, b"picture")
    assert fetch_url(f"{public}/img", is_allowed=only_127_0_0_2) == b"picture"
    routes["/hop"] = (302, {"Location": "/img"}, b"")
    assert fetch_url(f"{public}/hop", is_allowed=only_127_0_0_2) == b"picture"
    routes["/evil"] = (302, {"Location": f"{private}/secret"}, b"")
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url(f"{public}/evil", is_allowed=only_127_0_0_2)


def test_name_resolving_to_private_is_refused():
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url("http://example.test/x", resolve=lambda host, port: ["10.1.2.3"])
    with pytest.raises(InputError, match="not a public internet address"):
        fetch_url("http://example.test/x", resolve=lambda host, port: ["8.8.8.8", "192.168.0.1"])


def test_schemes_size_redirect_loops_and_status(server):
    routes, public, _ = server
    for bad in ("file:///etc/passwd", "ftp://x/y", "gopher://a", "javascript:alert(1)", "/etc/passwd"):
        with pytest.raises(InputError, match="Only http:// and https://"):
            fetch_url(bad)
    routes["/big"] = (200, {}, b"x" * 2048)
    with pytest.raises(InputError, match="larger than"):
        fetch_url(f"{public}/big", FetchLimits(max_bytes=1024), is_allowed=only_127_0_0_2)
    routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(InputError, match="redirected more than 3 times"):
        fetch_url(f"{public}/loop", is_allowed=only_127_0_0_2)
    with pytest.raises(InputError, match="HTTP 404"):
        fetch_url(f"{public}/missing", is_allowed=only_127_0_0_2)
