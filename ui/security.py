"""The app's front door: slow repeated failed logins, refuse file payloads that were not uploaded here.

One ASGI middleware, given to Gradio's FastAPI app through launch(app_kwargs={"middleware": ...}).
Gradio itself fetches a file input whose `path` is an http(s) URL (with no size cap) and answers a
forged local `path` with a message naming the server's folders; both are refused here, before
Gradio reads the payload, with a message that names neither.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from urllib.parse import unquote

from gradio_client.utils import is_http_url_like

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

# Routes whose JSON body carries an event's input values (stream/: each chunk of a streaming input).
EVENT_PATHS = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/call/", "/gradio_api/api/",
               "/gradio_api/stream/")
LOGIN_PATHS = ("/login", "/login/")
# Gradio routes this app does not use and a visitor must not reach: process_recording runs Gradio's own
# ffmpeg (every demuxer, no time limit) on any upload, for screen recordings this app has none of.
CLOSED_PATHS = ("/gradio_api/process_recording",)
FILE_ROUTE = "/gradio_api/file="
NO_URL_FETCH = ("This server does not fetch URLs for visitors; files are served only from what it made or "
                "was sent.")
MAX_EVENT_BODY = 64 * 2**20  # far above any legitimate form value; uploads go to /upload, not here
NOT_UPLOADED = ("A file in this request was not uploaded to this server. Upload it first (the page does "
                "this; gradio_client's handle_file does it for API calls) and send the path /upload returned.")
URL_PAYLOAD = ("A file in this request is a URL. Files are accepted as uploads only; where this server "
               "fetches URLs (--allow-urls), put the address in the tab's URL field.")


@dataclass
class LoginThrottle:
    """Failed logins per key: after `free` failures each further try waits twice as long, up to `cap_s`.

    A try is counted when it starts (a success takes it back), so a burst of simultaneous guesses is
    throttled like a sequence of them."""

    free: int = 3
    base_s: float = 1.0
    cap_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, key: str) -> float:
        """Seconds this key must wait before its next try (0: it may try now)."""
        with self._lock:
            return self._wait(key)

    def _wait(self, key: str) -> float:
        count, last = self._failures.get(key, (0, 0.0))
        if count < self.free:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2 ** (count - self.free))
        return max(0.0, last + delay - self.clock())

    def attempt(self, key: str) -> float:
        """0 and the try counted as a failure until it succeeds; or the seconds to wait, nothing counted."""
        with self._lock:
            wait = self._wait(key)
            if wait == 0.0:
                self._count(key)
            return wait

    def failed(self, key: str) -> None:
        with self._lock:
            self._count(key)

    def _count(self, key: str) -> None:
        count, _ = self._failures.get(key, (0, 0.0))
        self._failures[key] = (count + 1, self.clock())
        if len(self._failures) > 10_000:  # bounded: forget the oldest
            for old in sorted(self._failures, key=lambda k: self._failures[k][1])[:1000]:
                del self._failures[old]

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def take_back(self, key: str) -> None:
        """Uncount one try (it succeeded)."""
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
            if count > 1:
                self._failures[key] = (count - 1, last)
            else:
                self._failures.pop(key, None)


@dataclass
class Logins:
    """Three counts a login must pass: its address (3 free failures), the user name it tries (10: an
    attacker who rotates addresses still meets this), and all logins together (50)."""

    by_client: LoginThrottle = field(default_factory=LoginThrottle)
    by_user: LoginThrottle = field(default_factory=lambda: LoginThrottle(free=10))
    overall: LoginThrottle = field(default_factory=lambda: LoginThrottle(free=50, cap_s=60.0))

    def attempt(self, client: str, user: str) -> float:
        keys = ((self.by_client, client), (self.by_user, user), (self.overall, "*"))
        waits = [throttle.wait_s(key) for throttle, key in keys]
        if max(waits) > 0:
            return max(waits)
        for throttle, key in keys:
            throttle.attempt(key)
        return 0.0

    def succeeded(self, client: str, user: str) -> None:
        self.by_client.succeeded(client)
        self.by_user.succeeded(user)
        self.overall.take_back("*")  # one user's success must not clear everyone else's failures


def client_id(scope: Scope) -> str:
    """The visitor's address: the socket's peer, or, behind a local proxy (a share tunnel, a Space's
    front), the address that proxy appended last to X-Forwarded-For (earlier entries are the client's
    own word and can be forged)."""
    host = (scope.get("client") or ("unknown", 0))[0]
    try:
        behind_proxy = not ipaddress.ip_address(host).is_global
    except ValueError:
        behind_proxy = True
    if behind_proxy:
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for" and value.strip():
                return value.decode("latin-1").split(",")[-1].strip()
    return host


def is_uploaded(path: Any, upload_folder: str) -> bool:
    """True for a path inside the upload folder (links resolved); False for anything else, NUL bytes too."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return False
    root = os.path.realpath(upload_folder)
    try:
        return os.path.commonpath([root, os.path.realpath(path)]) == root
    except ValueError:  # another drive, a NUL, ...
        return False


def file_problem(data: Any, upload_folder: str) -> str | None:
    """Why a request's input values must be refused (a URL, or a file not under the upload folder).

    Any object with a "path" key is a file to Gradio (FileData's "meta" marker is optional to it: a
    payload without one is still handed to the component), so every one is checked; a "url" key alone
    is checked as a URL."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if found:
            return
        if isinstance(value, dict) and ("path" in value or "url" in value):
            path, url = value.get("path"), value.get("url")
            if path is None and isinstance(url, str):
                path = url
            if isinstance(path, str) and is_http_url_like(path.strip()):
                found.append(URL_PAYLOAD)
            elif path is not None and not is_uploaded(path, upload_folder):
                found.append(NOT_UPLOADED)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return found[0] if found else None


class Guard:
    """ASGI middleware: the login throttle and the file-payload check."""

    def __init__(self, app: ASGIApp, upload_folder: str | Callable[[], str], logins: Logins | None = None,
                 blocks: Any = None):
        self.app = app
        self._upload_folder = upload_folder
        self.logins = logins or Logins()
        self.blocks = blocks

    @property
    def upload_folder(self) -> str:
        folder = self._upload_folder
        return folder() if callable(folder) else folder

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.rstrip("/") in CLOSED_PATHS:
            return await _respond(send, 404, "Not found.")
        if path.startswith(FILE_ROUTE) and is_http_url_like(unquote(path[len(FILE_ROUTE):]).strip().lower()):
            return await _respond(send, 403, NO_URL_FETCH)  # Gradio would fetch and stream any public URL
        if scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if path in LOGIN_PATHS:
            return await self._login(scope, receive, send)
        if path.startswith(EVENT_PATHS):
            return await self._event(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Callable, send: Callable) -> None:
        client = client_id(scope)
        body = await _read_body(receive, 64 * 1024)
        if body is None:
            return await _respond(send, 413, "This login request is too large.")
        user = _form_field(body, "username")
        wait = self.logins.attempt(client, user)  # counted now: simultaneous guesses wait like sequential ones
        if wait > 0:
            return await _respond(send, 429, f"Too many failed logins; try again in {math.ceil(wait)} s.",
                                  {"retry-after": str(math.ceil(wait))})
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, _replay(body, receive), watch)
        if status and status[0] == 200:
            self.logins.succeeded(client, user)

    async def _event(self, scope: Scope, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        body = await _read_body(receive, MAX_EVENT_BODY)
        if body is None:
            return await _respond(send, 413, f"This request is larger than {MAX_EVENT_BODY // 2**20} MB; "
                                             "upload files through /upload and send their paths.")
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None  # Gradio answers malformed JSON itself
        data = payload.get("data") if isinstance(payload, dict) else None
        problem = file_problem(data, self.upload_folder) or arity_problem(self.blocks, path, payload)
        if problem:
            return await _respond(send, 400, problem)
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Callable, limit: int) -> bytes | None:
    """The whole request body, or None past `limit` bytes (or if the client went away)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _form_field(body: bytes, name: str) -> str:
    """A field of a login form, urlencoded (API clients) or multipart (the login page's FormData)."""
    import re
    from urllib.parse import parse_qs

    text = body.decode("utf-8", "replace")
    found = re.search(rf'name="{name}"\r?\n(?:[^\r\n]+\r?\n)*\r?\n([^\r\n]*)', text)
    if found:
        return found.group(1).strip()[:200]
    try:
        values = parse_qs(text, max_num_fields=20).get(name) or [""]
    except ValueError:
        return ""
    return values[0].strip()[:200]


def arity_problem(blocks: Any, path: str, payload: Any) -> str | None:
    """Too few input values for the event: say how many it takes (Gradio's own text lists Python objects)."""
    if blocks is None or not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return None
    fns = getattr(blocks, "fns", {})
    name = path.rstrip("/").rsplit("/", 1)[-1] if not path.startswith("/gradio_api/queue/") else None
    if name is not None:
        fn = next((f for f in fns.values() if f.api_name == name), None)
    else:
        fn = fns.get(payload.get("fn_index")) if isinstance(payload.get("fn_index"), int) else None
    if fn is None or len(payload["data"]) >= len(fn.inputs):
        return None
    labels = [getattr(block, "label", None) or type(block).__name__ for block in fn.inputs]
    return (f"This endpoint takes {len(fn.inputs)} input values ({', '.join(map(str, labels))}); the request "
            f"gave {len(payload['data'])}. gradio_client's view_api() lists them.")


async def _respond(send: Callable, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail, "error": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def upload_folder() -> str:
    """Where Gradio keeps uploads (its cache): GRADIO_TEMP_DIR, else <tmp>/gradio."""
    from gradio.utils import get_upload_folder

    return str(Path(get_upload_folder()))
