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

from gradio_client.utils import is_file_obj_with_meta, is_http_url_like

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

# Routes whose JSON body carries an event's input values.
EVENT_PATHS = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/call/", "/gradio_api/api/")
LOGIN_PATHS = ("/login", "/login/")
MAX_EVENT_BODY = 64 * 2**20  # far above any legitimate form value; uploads go to /upload, not here
NOT_UPLOADED = ("A file in this request was not uploaded to this server. Upload it first (the page does "
                "this; gradio_client's handle_file does it for API calls) and send the path /upload returned.")
URL_PAYLOAD = ("A file in this request is a URL. Files are accepted as uploads only; where this server "
               "fetches URLs (--allow-urls), put the address in the tab's URL field.")


@dataclass
class LoginThrottle:
    """Failed logins per client: after `free` failures each further try waits twice as long, up to `cap_s`."""

    free: int = 3
    base_s: float = 1.0
    cap_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, client: str) -> float:
        """Seconds this client must wait before its next try (0: it may try now)."""
        with self._lock:
            count, last = self._failures.get(client, (0, 0.0))
        if count < self.free:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2 ** (count - self.free))
        return max(0.0, last + delay - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            count, _ = self._failures.get(client, (0, 0.0))
            self._failures[client] = (count + 1, self.clock())
            if len(self._failures) > 10_000:  # bounded: forget the oldest
                for key in sorted(self._failures, key=lambda k: self._failures[k][1])[:1000]:
                    del self._failures[key]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


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


def file_problem(data: Any, upload_folder: str) -> str | None:
    """Why a request's input values must be refused (a URL, or a file not under the upload folder)."""
    root = os.path.realpath(upload_folder)
    found: list[str] = []

    def walk(value: Any) -> None:
        if found:
            return
        if is_file_obj_with_meta(value):
            path = value["path"]
            if is_http_url_like(path):
                found.append(URL_PAYLOAD)
            elif os.path.commonpath([root, os.path.realpath(path)]) != root:
                found.append(NOT_UPLOADED)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return found[0] if found else None


class Guard:
    """ASGI middleware: the login throttle and the file-payload check."""

    def __init__(self, app: ASGIApp, upload_folder: str | Callable[[], str], throttle: LoginThrottle | None = None,
                 blocks: Any = None):
        self.app = app
        self._upload_folder = upload_folder
        self.throttle = throttle or LoginThrottle()
        self.blocks = blocks

    @property
    def upload_folder(self) -> str:
        folder = self._upload_folder
        return folder() if callable(folder) else folder

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in LOGIN_PATHS:
            return await self._login(scope, receive, send)
        if path.startswith(EVENT_PATHS):
            return await self._event(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Callable, send: Callable) -> None:
        client = client_id(scope)
        wait = self.throttle.wait_s(client)
        if wait > 0:
            return await _respond(send, 429, f"Too many failed logins from this address; try again in "
                                             f"{math.ceil(wait)} s.", {"retry-after": str(math.ceil(wait))})
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.throttle.succeeded(client)
        elif status and status[0] in (400, 401):
            self.throttle.failed(client)

    async def _event(self, scope: Scope, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        chunks, size = [], 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_EVENT_BODY:
                return await _respond(send, 413, f"This request is larger than {MAX_EVENT_BODY // 2**20} MB; "
                                                 "upload files through /upload and send their paths.")
        body = b"".join(chunks)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None  # Gradio answers malformed JSON itself
        data = payload.get("data") if isinstance(payload, dict) else None
        problem = file_problem(data, self.upload_folder) or arity_problem(self.blocks, path, payload)
        if problem:
            return await _respond(send, 400, problem)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
