"""Fetching a user-given URL safely: public http(s) only, every hop checked, size and time capped.

Only used with --allow-urls. The checks happen after DNS resolution and the connection goes to the
address that was checked, so a name that resolves to a private address (or re-resolves to one
between check and connect) cannot reach the server's own network. The time limit is one deadline
for the whole fetch (name lookups, connects, TLS, every redirect, headers and body): a watchdog shuts
the socket when it passes, so a server that drip-feeds bytes cannot hold a worker past it. Messages
name at most the URL's host, never the rest of the URL and never a server path.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, unquote, urljoin, urlsplit

from engine.errors import InputError

METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                      ipaddress.ip_address("100.100.100.200")}
# IPv6 prefixes that carry an IPv4 address a gateway may forward to (NAT64, 6to4, Teredo, the deprecated
# IPv4-compatible and IPv4-translated forms). Refused whole: the embedded address could be private, and
# nothing a user means to share is only reachable through them.
IPV4_CARRYING = tuple(ipaddress.ip_network(n) for n in (
    "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::/96", "::ffff:0:0:0/96"))
REDIRECTS = (301, 302, 303, 307, 308)
NOT_ENABLED = "This server does not fetch URLs; upload the file."
ACCEPTED = ("accepted: http:// or https://, a host name, an optional port from 1 to 65535, then the path "
            "of the file itself, e.g. https://example.com/speech.flac")
MAX_URL_CHARS = 2048
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 50 * 2**20
    timeout_s: float = 10.0
    max_redirects: int = 3

    @classmethod
    def from_settings(cls, settings: Any) -> "FetchLimits":
        """The upload limit (--max-file-mb) and --url-timeout-s."""
        return cls(max_bytes=int(settings.max_file_mb * 2**20), timeout_s=float(settings.url_timeout_s))

    @property
    def size_text(self) -> str:
        return f"{self.max_bytes / 2**20:.4g} MB"


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses (no loopback, private, link-local, metadata, IPv4-in-IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        elif ip.scope_id or any(ip in net for net in IPV4_CARRYING):
            return False
    return ip.is_global and not ip.is_multicast and ip not in METADATA_ADDRESSES


def url_file_name(url: str) -> str:
    """The URL's last path segment, made safe as a file name ('download' when it has none)."""
    try:
        segment = unquote(urlsplit(url.strip()).path.rsplit("/", 1)[-1])
    except ValueError:
        segment = ""
    name = re.sub(r"[^\w.-]+", "_", segment).strip("._")
    if len(name) > 100:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[:90]}.{ext[:9]}" if dot and stem else name[:100]
    return name or "download"


def _resolve(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class URLFetcher:
    """What the tabs fetch through: off unless --allow-urls; resolve and is_allowed are injectable for tests."""

    enabled: bool = False
    limits: FetchLimits = FetchLimits()
    resolve: Callable[[str, int], list[str]] = _resolve
    is_allowed: Callable[[str], bool] = is_public_address

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "URLFetcher":
        return cls(enabled=bool(settings.allow_urls), limits=FetchLimits.from_settings(settings), **overrides)

    def fetch(self, url: str) -> bytes:
        if not self.enabled:
            raise InputError(NOT_ENABLED)
        return fetch_url(url, self.limits, self.resolve, self.is_allowed)

    def download(self, url: str, folder: str | Path) -> Path:
        """Fetch into folder/<the URL's last path segment>, so the decoders see it as an upload of that name."""
        data = self.fetch(url)
        path = Path(folder) / url_file_name(url)
        path.write_bytes(data)
        return path


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.expired()
        return left

    def expired(self) -> InputError:
        return InputError(f"The URL did not send the whole file within {self.seconds:g} s (the server's "
                          "--url-timeout-s); upload the file instead.")


def fetch_url(url: str, limits: FetchLimits = FetchLimits(),
              resolve: Callable[[str, int], list[str]] = _resolve,
              is_allowed: Callable[[str], bool] = is_public_address) -> bytes:
    """GET a public http(s) URL and return its body, or raise InputError saying why not."""
    deadline = _Deadline(limits.timeout_s)
    for _ in range(limits.max_redirects + 1):
        target = _parse(url)
        addresses = _within(deadline, resolve, target.host, target.port)
        if not addresses or not all(is_allowed(a) for a in addresses):
            raise InputError(f"{target.host} is not a public internet address; only public http(s) URLs "
                             "are fetched.")
        status, location, body = _get(target, addresses[0], limits, deadline)
        if status in REDIRECTS and location:
            try:
                url = urljoin(url, location)
            except ValueError:
                raise InputError(f"{target.host} redirected to a malformed URL; {ACCEPTED}.") from None
            continue
        if status != 200:
            raise InputError(f"The URL answered HTTP {status}; only URLs that return the file directly work.")
        return body
    raise InputError(f"The URL redirected more than {limits.max_redirects} times.")


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, no brackets
    port: int
    host_header: str
    path: str  # path and query as sent, percent-encoded ASCII


def _parse(url: str) -> _Target:
    """Split and check a URL; every malformed form is an InputError saying what is accepted."""
    def bad(why: str) -> InputError:
        return InputError(f"This URL is malformed ({why}); {ACCEPTED}.")

    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise bad(f"it is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise bad("it holds spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise bad("its [IPv6 address] is unclosed or not valid") from None
    if parts.scheme not in ("http", "https"):
        raise InputError("Only http:// and https:// URLs are accepted, e.g. https://example.com/speech.flac.")
    if "@" in parts.netloc:
        raise InputError("URLs with a user name or password (user:pass@host) are not accepted; use a URL "
                         "that needs no login.")
    try:
        port = parts.port
    except ValueError:
        raise bad("its port is not a number from 1 to 65535") from None
    if port == 0:
        raise bad("its port is not a number from 1 to 65535")
    host = parts.hostname or ""
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise bad("its host name is not a valid domain name") from None
    literal = "[" in parts.netloc or ":" in host
    if not re.fullmatch(r"[A-Za-z0-9._:%-]+", host) or (literal and not _is_ip(host)):
        raise bad("it has no valid host name")
    port = port or (443 if parts.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if parts.port is None else f"{shown}:{port}"
    safe = "/%:@!$&'()*+,;=-._~"
    path = quote(parts.path or "/", safe=safe) + (f"?{quote(parts.query, safe=safe + '?')}" if parts.query else "")
    return _Target(parts.scheme, host, port, host_header, path)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _within(deadline: _Deadline, resolve: Callable[[str, int], list[str]], host: str, port: int) -> list[str]:
    """resolve(host, port) in a thread, so a slow DNS answer counts against the deadline too."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["addresses"] = list(resolve(host, port))
        except Exception as exc:  # noqa: BLE001 - reported below as "could not be resolved"
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="url-resolve")
    thread.start()
    thread.join(deadline.left())
    if thread.is_alive():
        raise deadline.expired()
    if "error" in box:
        raise InputError(f"The address {host} could not be resolved.") from None
    return box["addresses"]


class _Watchdog(threading.Thread):
    """Shuts the connection's socket once the deadline passes, which ends any read or handshake blocked on it."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: _Deadline):
        super().__init__(daemon=True, name="url-deadline")
        self.conn, self.deadline, self.fired = conn, deadline, False
        self.done = threading.Event()

    def run(self) -> None:
        if self.done.wait(max(0.0, self.deadline.end - time.monotonic())):
            return
        self.fired = True
        while True:  # again and again: the socket may be swapped for its TLS wrapper meanwhile
            sock = self.conn.sock
            if sock is not None:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass
            if self.done.wait(0.05):
                return


def _get(target: _Target, address: str, limits: FetchLimits, deadline: _Deadline) -> tuple[int, str | None, bytes]:
    timeout = deadline.left()
    if target.scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPS(target.host, address, target.port, timeout)
    else:
        conn = http.client.HTTPConnection(address, target.port, timeout=timeout)
    watchdog = _Watchdog(conn, deadline)
    watchdog.start()
    try:
        # No gzip or other coding is asked for (identity only), and one that comes anyway is refused below:
        # the body is never decompressed.
        conn.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
        for name, value in (("Host", target.host_header), ("User-Agent", "pipeline-studio"),
                            ("Accept-Encoding", "identity"), ("Connection", "close")):
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        if resp.status in REDIRECTS:
            return resp.status, resp.getheader("Location"), b""
        if resp.status != 200:  # its body is never read
            return resp.status, None, b""
        coding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        if coding != "identity":
            raise InputError(f"{target.host} sent the file compressed ({coding[:20]}); only files served "
                             "as they are can be used.")
        too_big = InputError(f"The file at that URL is larger than this server accepts ({limits.size_text}).")
        declared = (resp.getheader("Content-Length") or "").strip()
        declared_bytes = int(declared) if declared.isdigit() else None
        if declared_bytes is not None and declared_bytes > limits.max_bytes:
            raise too_big
        chunks, size = [], 0
        while True:
            chunk = resp.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limits.max_bytes:
                raise too_big
            chunks.append(chunk)
        if watchdog.fired:
            raise deadline.expired()
        if declared_bytes is not None and size < declared_bytes:
            raise InputError(f"{target.host} closed the connection before the whole file arrived "
                             f"({size:,} of {declared_bytes:,} bytes).")
        return resp.status, None, b"".join(chunks)
    except InputError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if watchdog.fired or isinstance(exc, (socket.timeout, TimeoutError)):
            raise deadline.expired() from None
        if isinstance(exc, ssl.SSLError):
            raise InputError(f"The secure connection to {target.host} failed ({type(exc).__name__}); the "
                             "server's certificate may be invalid.") from None
        if isinstance(exc, http.client.HTTPException):
            raise InputError(f"{target.host} sent an answer that is not valid HTTP ({type(exc).__name__}, e.g. "
                             "too many or too long headers).") from None
        raise InputError(f"The URL could not be fetched ({type(exc).__name__}).") from None
    finally:
        watchdog.done.set()
        conn.close()


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, with the certificate verified for the original host name."""

    def __init__(self, hostname: str, address: str, port: int, timeout: float):
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._hostname = hostname

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), self.timeout)
        # The handshake runs on self.sock, where the watchdog can reach it.
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._hostname,
                                              do_handshake_on_connect=False)
        self.sock.do_handshake()
