"""Fetching a user-given URL safely: public http(s) only, every hop checked, size and time capped.

Only used with --allow-urls. The checks happen after DNS resolution and the connection goes to the
address that was checked, so a name that resolves to a private address (or re-resolves to one
between check and connect) cannot reach the server's own network.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

from engine.errors import InputError

METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                      ipaddress.ip_address("100.100.100.200")}


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 50 * 2**20
    timeout_s: float = 10.0
    max_redirects: int = 3


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses (no loopback, private, link-local, metadata)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and ip not in METADATA_ADDRESSES


def _resolve(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def fetch_url(url: str, limits: FetchLimits = FetchLimits(),
              resolve: Callable[[str, int], list[str]] = _resolve,
              is_allowed: Callable[[str], bool] = is_public_address) -> bytes:
    """GET a public http(s) URL and return its body, or raise InputError saying why not."""
    for _ in range(limits.max_redirects + 1):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError("Only http:// and https:// URLs are accepted.")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = resolve(parts.hostname, port)
        except OSError:
            raise InputError(f"The address {parts.hostname} could not be resolved.") from None
        if not addresses or not all(is_allowed(a) for a in addresses):
            raise InputError(f"{parts.hostname} is not a public internet address; only public http(s) URLs "
                             "are fetched.")
        status, location, body = _get(parts, addresses[0], port, limits)
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise InputError(f"The URL answered HTTP {status}; only URLs that return the file directly work.")
        return body
    raise InputError(f"The URL redirected more than {limits.max_redirects} times.")


def _get(parts, address: str, port: int, limits: FetchLimits) -> tuple[int, str | None, bytes]:
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if parts.scheme == "https":
        conn = _PinnedHTTPS(parts.hostname, address, port, limits.timeout_s)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=limits.timeout_s)
    try:
        conn.request("GET", path, headers={"Host": host_header, "User-Agent": "pipeline-studio"})
        resp = conn.getresponse()
        declared = resp.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes:
            raise InputError(f"The file at that URL is larger than {limits.max_bytes // 2**20} MB.")
        body = resp.read(limits.max_bytes + 1)
        if len(body) > limits.max_bytes:
            raise InputError(f"The file at that URL is larger than {limits.max_bytes // 2**20} MB.")
        return resp.status, resp.getheader("Location"), body
    except (socket.timeout, TimeoutError):
        raise InputError(f"The URL did not answer within {limits.timeout_s:g} s.") from None
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(f"The URL could not be fetched ({type(exc).__name__}).") from None
    finally:
        conn.close()


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, with the certificate verified for the original host name."""

    def __init__(self, hostname: str, address: str, port: int, timeout: float):
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._hostname = hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._hostname)
