"""URL inputs through the launched app (gradio_client), with the fetcher's resolver pointed at a local server.

With --allow-urls a URL is fetched and handled like an upload of the URL's file name; a private URL
gets the refusal; with the flag off the URL field is hidden, every endpoint refuses a URL, and the
local server sees no request at all.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from engine.registry import PipelineRegistry
from engine.settings import Settings
from engine.urls import URLFetcher
from tests.conftest import ROOT, WHISPER_TINY_EN, free_port, serving
from tests.test_bad_input import pdf
from ui.app import build_app

SPEECH = ROOT / "assets" / "speech_example.flac"
PUBLIC_HOST = "files.example"  # resolves to 127.0.0.2, which this test treats as public
MAX_FILE_MB = 1
REFUSED_OFF = "This server does not fetch URLs; upload the file."


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A local file server on 127.0.0.2 (the 'public' host) and one on 127.0.0.1 (the server's own network)."""
    root = tmp_path_factory.mktemp("served")
    shutil.copy(SPEECH, root / "speech_example.flac")
    (root / "notes.wav").write_text("not audio\n" * 50)
    (root / "big.flac").write_bytes(b"\0" * (2 * 2**20))
    Image.new("RGB", (40, 40), "red").save(root / "red.png")
    pdf(root, "invoice.pdf")
    seen: list[tuple[str, str]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            seen.append((self.server.server_address[0], self.path))

    servers = [http.server.ThreadingHTTPServer((host, 0), Handler) for host in ("127.0.0.2", "127.0.0.1")]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield {"public": f"http://{PUBLIC_HOST}:{servers[0].server_address[1]}",
           "private": f"http://127.0.0.1:{servers[1].server_address[1]}", "seen": seen, "root": root}
    for s in servers:
        s.shutdown()
        s.server_close()


def local_resolve(host: str, port: int) -> list[str]:
    return ["127.0.0.2"] if host == PUBLIC_HOST else ["127.0.0.1"]


def treat_127_0_0_2_as_public(address: str) -> bool:
    return address == "127.0.0.2"


@contextlib.contextmanager
def launched(tiny_model, tmp_path_factory, allow_urls: bool, is_allowed=treat_127_0_0_2_as_public,
             resolve=local_resolve, **overrides):
    """The whole app on tiny models, its fetcher's resolver injected; yields (client, url, Gradio cache)."""
    cache = tmp_path_factory.mktemp("gradio-cache")
    models = {"asr_model": str(tiny_model("wav2vec2_ctc")), "image_model": str(tiny_model("vit_classifier")),
              "zero_shot_model": str(tiny_model("bert_nli")), "docqa_model": str(tiny_model("layoutlm_qa"))}
    settings = Settings.from_env(env={}, device="cpu", port=free_port(), allow_urls=allow_urls,
                                 max_file_mb=MAX_FILE_MB, url_timeout_s=5, **{**models, **overrides})
    fetcher = URLFetcher.from_settings(settings, resolve=resolve, is_allowed=is_allowed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(cache))
        with serving(build_app(settings, PipelineRegistry(settings), fetcher=fetcher), settings) as url:
            yield Client(url, verbose=False, download_files=False), url, cache


@pytest.fixture(scope="module")
def app_on(tiny_model, tmp_path_factory):
    with launched(tiny_model, tmp_path_factory, allow_urls=True) as app:
        yield app


def url_folders(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("url-*") if p.is_dir()]


def config_visible(client: Client) -> dict[str, bool]:
    components = client.config["components"]
    return {c["props"]["elem_id"]: c["props"].get("visible", True) for c in components
            if c.get("props", {}).get("elem_id", "").endswith(("-url", "-urls"))}


def test_url_fields_are_shown_with_the_flag(app_on):
    client, url, _ = app_on
    assert config_visible(client) == {"speech-url": True, "image-url": True, "image-urls": True, "document-url": True}


def test_transcribe_a_url_like_an_upload_of_the_same_file(app_on, files):
    client, _, cache = app_on
    by_url = client.predict(None, url=f"{files['public']}/speech_example.flac", api_name="/transcribe")
    by_upload = client.predict(handle_file(str(SPEECH)), api_name="/transcribe")
    assert by_url[:2] == by_upload[:2]  # same transcript and segments
    # The downloads are named after the URL's file, and the fetched file is not kept.
    assert sorted(Path(f["path"]).name for f in by_url[2]) == [
        "speech_example.json", "speech_example.srt", "speech_example.txt", "speech_example.vtt"]
    assert url_folders(cache) == []


@pytest.mark.skipif(not WHISPER_TINY_EN.is_dir(), reason="../shared/models/whisper-tiny.en absent")
def test_transcribe_a_url_with_a_real_model(tiny_model, tmp_path_factory, files):
    with launched(tiny_model, tmp_path_factory, allow_urls=True, asr_model=str(WHISPER_TINY_EN)) as (client, _, _):
        text, segments, _ = client.predict(None, url=f"{files['public']}/speech_example.flac", api_name="/transcribe")
    words = text.lower()
    assert "pipeline studio" in words and "subtitles" in words and len(segments) >= 3


@pytest.mark.parametrize("path, says", [
    ("/notes.wav", r"^'notes.wav' could not be decoded as audio; accepted: wav, flac"),  # the upload's message
    ("/big.flac", r"^The file at that URL is larger than this server accepts \(1 MB\)\.$"),
    ("/missing.flac", r"^The URL answered HTTP 404; only URLs that return the file directly work\.$"),
])
def test_url_problems_get_the_uploads_messages(app_on, files, path, says):
    client, _, cache = app_on
    with pytest.raises(AppError, match=says) as err:
        client.predict(None, url=f"{files['public']}{path}", api_name="/transcribe")
    assert str(files["root"]) not in str(err.value) and str(cache) not in str(err.value)
    assert url_folders(cache) == []


def test_a_private_url_is_refused_and_never_requested(app_on, files):
    client, _, cache = app_on
    before = len(files["seen"])
    for endpoint, args in (("/transcribe", (None,)), ("/classify_image", (None,)),
                           ("/answer_document", (None, "What is the invoice number?"))):
        with pytest.raises(AppError, match=r"^127.0.0.1 is not a public internet address; only public http\(s\) "
                                           r"URLs are fetched\.$"):
            client.predict(*args, url=f"{files['private']}/speech_example.flac", api_name=endpoint)
    assert files["seen"][before:] == [] and url_folders(cache) == []


def test_a_file_and_a_url_together_are_refused(app_on, files):
    client, _, _ = app_on
    with pytest.raises(AppError, match="Give either a file or a URL, not both"):
        client.predict(handle_file(str(SPEECH)), url=f"{files['public']}/speech_example.flac",
                       api_name="/transcribe")


def test_classify_an_image_url(app_on, files):
    client, _, _ = app_on
    by_url = client.predict(None, url=f"{files['public']}/red.png", api_name="/classify_image")
    assert by_url == client.predict(handle_file(str(files["root"] / "red.png")), api_name="/classify_image")
    _, table = client.predict([], urls=f"{files['public']}/red.png\n{files['public']}/notes.wav",
                              api_name="/classify_images")
    rows = table["data"]
    assert [r[0] for r in rows] == ["red.png", "notes.wav"]
    assert rows[0][1] == by_url[0]["label"]
    assert rows[1][1] == "(not classified)" and rows[1][3].startswith("notes.wav is not an image Pillow can read")


def test_answer_a_document_url(app_on, files):
    client, _, cache = app_on
    answers = client.predict(None, "What is the invoice number?", url=f"{files['public']}/invoice.pdf",
                             api_name="/answer_document")
    assert answers and all(a["page"] == 1 and len(a["box"]) == 4 for a in answers)
    assert answers == client.predict(handle_file(str(files["root"] / "invoice.pdf")), "What is the invoice number?",
                                     api_name="/answer_document")


def test_flag_off_hides_the_field_refuses_every_url_and_fetches_nothing(tiny_model, tmp_path_factory, files):
    looked_up = []

    def spy(host, port):  # would let the fetch through, if anything asked
        looked_up.append(host)
        return ["127.0.0.2"]

    before = len(files["seen"])
    target = f"{files['public']}/speech_example.flac"
    with launched(tiny_model, tmp_path_factory, allow_urls=False, is_allowed=lambda address: True,
                  resolve=spy) as (client, url, cache):
        assert config_visible(client) == {"speech-url": False, "image-url": False, "image-urls": False,
                                       "document-url": False}
        calls = [("/transcribe", (None,), {"url": target}),
                 ("/transcribe", (handle_file(str(SPEECH)),), {"url": target}),
                 ("/classify_image", (None,), {"url": target}),
                 ("/classify_images", ([],), {"urls": target}),
                 ("/answer_document", (None, "What is the invoice number?"), {"url": target})]
        for endpoint, args, kwargs in calls:
            with pytest.raises(AppError, match=f"^{REFUSED_OFF}$"):
                client.predict(*args, **kwargs, api_name=endpoint)
        # Uploads still work as before.
        text, _, _ = client.predict(handle_file(str(SPEECH)), api_name="/transcribe")
        assert isinstance(text, str)
    assert looked_up == [] and files["seen"][before:] == [] and url_folders(cache) == []
