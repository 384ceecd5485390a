"""What a stranger with the link can try, sent through the launched app: forged file payloads, URL
payloads, short argument lists, login guessing, admin actions. Each refusal is checked for what the
visitor reads (what is wrong, what is accepted, no server path, no Python object) and for what it cost
the server's memory, and is followed by a request that must still work."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from engine.registry import PipelineRegistry
from tests.conftest import serving
from tests.peak_memory import PeakMemory
from ui.app import build_app
from ui.security import NO_URL_FETCH, NOT_UPLOADED, URL_PAYLOAD, LoginThrottle, Logins, client_id

ADMIN = "operator-secret-0123456789"
REFUSAL_MB = 100


def assert_for_people(message: str) -> None:
    """No server path, no Python object, no traceback in what a visitor reads."""
    assert "Traceback" not in message and " object at 0x" not in message and "<gradio." not in message
    assert "/tmp" not in message and "/work" not in message and "/root" not in message, message


class Page:
    """The calls the page itself makes (queue/join + SSE), which reach private endpoints too."""

    def __init__(self, url: str):
        self.url, self.http, self.session = url, httpx.Client(timeout=60), uuid.uuid4().hex
        self.deps = self.http.get(f"{url}config").json()["dependencies"]

    def fn_index(self, api_name: str) -> int:
        return next(d["id"] for d in self.deps if d.get("api_name") == api_name)

    def call(self, api_name: str, data: list) -> dict:
        joined = self.http.post(f"{self.url}gradio_api/queue/join", json={
            "data": data, "fn_index": self.fn_index(api_name), "session_hash": self.session,
            "event_data": None, "trigger_id": None})
        joined.raise_for_status()
        with self.http.stream("GET", f"{self.url}gradio_api/queue/data",
                              params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    return json.loads(line[5:])
        raise AssertionError("the stream ended without a result")


class Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"GIF89a")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app(tiny_model, tmp_path_factory):
    from engine.settings import Settings
    from tests.conftest import free_port

    settings = Settings.from_env(env={}, device="cpu", port=free_port(), image_model=str(tiny_model("vit_classifier")),
                                 admin_token=ADMIN)
    registry = PipelineRegistry(settings)
    with serving(build_app(settings, registry), settings) as url:
        yield url, registry, Client(url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (32, 32), "red").save(path)
    return str(path)


def classify(client: Client, png: str) -> dict:
    return client.predict(image=handle_file(png), model="vit_classifier", top_k=3, api_name="/classify_image")


@pytest.fixture(scope="module")
def recorder():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def forged(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}


@pytest.mark.parametrize("payload, expected, meta", [
    ("/etc/passwd", NOT_UPLOADED, True),
    ("HTTP:/x/y", NOT_UPLOADED, True),  # Gradio answered this one with 'Cannot move <cwd>/HTTP:/x/y ...'
    ("../../../../etc/hostname", NOT_UPLOADED, True),
    ("{recorder}/bomb.gif", URL_PAYLOAD, True),  # Gradio itself would fetch it, with no size cap
    ("/usr/share/pixmaps/debian-logo.png", NOT_UPLOADED, False),  # no "meta": Gradio still hands it over
    ("/etc/passwd\x00.png", NOT_UPLOADED, True),  # a NUL made the check itself fail (HTTP 500)
    ("{recorder}/bomb.gif", URL_PAYLOAD, False),
], ids=["absolute path", "odd scheme", "relative climb", "URL", "no meta", "NUL byte", "URL, no meta"])
def test_a_forged_file_payload_is_refused_before_gradio_reads_it(app, png, recorder, payload, expected, meta):
    url, _, client = app
    Recorder.hits.clear()
    file = forged(payload.format(recorder=recorder))
    if not meta:
        del file["meta"]
    with PeakMemory() as rss:
        answer = httpx.post(f"{url}gradio_api/call/classify_image",
                            json={"data": [file, "vit_classifier", 3, ""]}, timeout=30)
    assert answer.status_code == 400
    message = answer.json()["detail"]
    assert message == expected and "upload" in message.lower()
    assert_for_people(message)
    assert Recorder.hits == []  # nothing was fetched
    assert rss.growth_mb < REFUSAL_MB
    assert classify(client, png)  # and the app goes on serving


def test_a_forged_file_in_a_stream_chunk_is_refused(app):
    """A streaming input's chunks arrive at /stream/{event_id}, not through the queue: the same check."""
    url, _, _ = app
    for path in ("/etc/passwd", "/usr/share/pixmaps/debian-logo.png"):
        answer = httpx.post(f"{url}gradio_api/stream/anything", timeout=30,
                            json={"data": [{"path": path}, None], "fn_index": 0, "session_hash": "x"})
        assert answer.status_code == 400 and answer.json()["detail"] == NOT_UPLOADED


def test_gradios_own_media_and_url_routes_are_closed(app, png, recorder):
    """process_recording ran Gradio's ffmpeg (all demuxers, no time limit) on any upload; /file=<url>
    fetched and streamed any public address, whatever --allow-urls says."""
    url, _, client = app
    Recorder.hits.clear()
    answer = httpx.post(f"{url}gradio_api/process_recording", files={"video": ("rec.webm", b"#EXTM3U\n")},
                        timeout=30)
    assert answer.status_code == 404
    for target in (f"{recorder}/x.bin", recorder.replace("http", "HTTP") + "/x", "https%3A%2F%2Fexample.com%2Fx"):
        answer = httpx.get(f"{url}gradio_api/file={target}", timeout=30)
        assert answer.status_code == 403 and answer.json()["detail"] == NO_URL_FETCH
    assert Recorder.hits == []
    assert classify(client, png)


def test_too_few_values_say_how_many_the_endpoint_takes(app, png):
    url, _, client = app
    answer = httpx.post(f"{url}gradio_api/call/classify_image", json={"data": []}, timeout=30)
    assert answer.status_code == 400
    message = answer.json()["detail"]
    assert "takes 4 input values" in message and "gave 0" in message and "view_api" in message
    assert_for_people(message)
    assert classify(client, png)


def test_unloading_is_for_the_operator_only(app, png):
    url, registry, client = app
    classify(client, png)
    assert registry.status()
    assert not any("unload" in name for name in client.view_api(print_info=False, return_format="dict")
                   ["named_endpoints"])
    with pytest.raises(ValueError):  # gradio_client cannot reach it at all
        client.predict(registry.status()[0]["id"], "", api_name="/unload_model")
    page = Page(url)
    key_id = registry.status()[0]["id"]
    assert str(Path(registry.key_for("image-classification").model).parent) not in key_id  # no server path
    for token in ("", "guess", ADMIN[:-1] + "x"):
        result = page.call("unload_model", [key_id, token])
        assert not result["success"] and "operator" in result["output"]["error"]
        assert registry.status()  # still loaded
    assert page.call("unload_model", [key_id, ADMIN])["success"]
    assert registry.status() == []


def test_without_an_admin_token_there_is_no_unload_at_all(make_settings, serve, tiny_model):
    settings = make_settings(image_model=str(tiny_model("vit_classifier")))
    demo = build_app(settings, PipelineRegistry(settings))
    assert not any(fn.api_name and "unload" in fn.api_name for fn in demo.fns.values())
    config = demo.get_config_file()
    assert any("STUDIO_ADMIN_TOKEN" in str(c["props"].get("value", "")) for c in config["components"])


def test_the_models_status_names_no_server_path(app, png):
    url, registry, client = app
    classify(client, png)
    table, _ = client.predict(api_name="/models_status")
    assert table["data"][0][0] == "vit_classifier"
    assert_for_people(json.dumps(table))
    config = httpx.get(f"{url}config").text  # the page: dropdown choices and values
    assert str(Path(registry.key_for("image-classification").model).parent) not in config


def test_repeated_failed_logins_are_slowed_per_client(make_settings, serve, tiny_model):
    settings = make_settings(auth="alice:correct-horse-battery")
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    started = time.perf_counter()
    codes = [httpx.post(f"{url}login", data={"username": "alice", "password": f"guess{i}"}, headers=attacker).status_code
             for i in range(30)]
    elapsed = time.perf_counter() - started
    # Three passwords are checked freely; after that each wait doubles (1 s, 2 s, 4 s ...), so in these few
    # seconds only a handful more were checked, and the rest were refused unread.
    assert codes[:3] == [400, 400, 400] and set(codes[3:]) <= {400, 429}
    assert codes.count(400) <= 3 + int(elapsed + 1).bit_length() and codes.count(429) >= 24
    right = httpx.post(f"{url}login", data={"username": "alice", "password": "correct-horse-battery"},
                       headers=attacker)
    if right.status_code == 429:
        assert "try again in" in right.json()["detail"]
        time.sleep(float(right.headers["retry-after"]))
        right = httpx.post(f"{url}login", data={"username": "alice", "password": "correct-horse-battery"},
                           headers=attacker)
    assert right.status_code == 200
    # Another visitor is not locked out by the attacker.
    other = httpx.post(f"{url}login", data={"username": "alice", "password": "correct-horse-battery"},
                       headers={"X-Forwarded-For": "198.51.100.2"})
    assert other.status_code == 200


def test_a_burst_of_simultaneous_guesses_is_throttled_like_a_sequence(make_settings, serve):
    from concurrent.futures import ThreadPoolExecutor

    settings = make_settings(auth="alice:correct-horse-battery")
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)
    headers = {"X-Forwarded-For": "203.0.113.8"}

    def guess(i):
        return httpx.post(f"{url}login", data={"username": "alice", "password": f"g{i}"}, headers=headers).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(guess, range(40)))
    assert codes.count(400) <= 4 and codes.count(429) >= 36  # 60 at once were all checked before


def test_rotating_forwarded_addresses_still_meets_the_per_user_limit(make_settings, serve):
    settings = make_settings(auth="alice:correct-horse-battery")
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)
    codes = [httpx.post(f"{url}login", data={"username": "alice", "password": f"g{i}"},
                        headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(40)]
    assert codes.count(400) <= 12 and codes.count(429) >= 28  # ten free for the user, whatever the address


def test_the_login_counts_by_address_user_and_overall():
    logins = Logins()
    for i in range(10):
        assert logins.attempt(f"10.0.0.{i}", "alice") == 0.0
    assert logins.attempt("10.0.0.99", "alice") > 0  # the eleventh for alice, from a new address
    assert logins.attempt("10.0.0.99", "bob") == 0.0  # another user is not locked out
    logins.succeeded("10.0.0.99", "bob")
    assert logins.by_user.wait_s("alice") > 0  # bob's success clears nothing of alice's


def test_the_throttle_doubles_the_wait_and_forgets_on_success():
    now = [0.0]
    throttle = LoginThrottle(free=2, base_s=1.0, cap_s=8.0, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("a")
    assert throttle.wait_s("a") == 1.0
    throttle.failed("a")
    assert throttle.wait_s("a") == 2.0
    for _ in range(10):
        throttle.failed("a")
    assert throttle.wait_s("a") == 8.0  # capped
    now[0] += 8.0
    assert throttle.wait_s("a") == 0.0
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.wait_s("a") == 0.0


def test_the_client_address_trusts_only_the_last_proxy_hop():
    headers = [(b"x-forwarded-for", b"1.2.3.4, 203.0.113.9")]
    assert client_id({"client": ("127.0.0.1", 1), "headers": headers}) == "203.0.113.9"
    assert client_id({"client": ("8.8.8.8", 1), "headers": headers}) == "8.8.8.8"  # no proxy: XFF is forgeable
