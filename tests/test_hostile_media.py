"""Hostile uploads through the real endpoints of one launched app (every upload of a public app is hostile).

Each file is made here, small on disk, and built to cost the server far more than its size (or to
make a decoder open the server's own files). Each must come back as one message for people (what is
wrong, what is accepted, no server path, no traceback) while the server's memory (this process, where
the app runs, plus its children such as ffmpeg) grows less than MAX_GROWTH_MB; the same endpoint must
then answer a valid request.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from engine.registry import PipelineRegistry
from engine.settings import Settings
from tests import hostile_files as hostile
from tests.conftest import ROOT, WHISPER_TINY_EN, free_port, serving
from tests.peak_memory import PeakMemory
from ui.app import build_app

pytestmark = pytest.mark.skipif(__import__("shutil").which("ffmpeg") is None, reason="ffmpeg is not installed")

MAX_GROWTH_MB = 100
MAX_PIXELS = 40_000_000  # the default limit: a 12000x12000 picture is 3.6 times over it
MAX_AUDIO_S = 35
SERVER_SPEECH = ROOT / "assets" / "speech_example.flac"  # a file of the server's own, with known words
SERVER_WORDS = {"welcome", "pipeline", "studio", "recording", "timestamps", "subtitles", "batches"}
AUDIO_OK = r"accepted: wav, flac, mp3, ogg, m4a, webm and other single-file audio or video formats"
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+[\w.-]+")


@dataclass
class Server:
    client: Client
    inputs: Path
    real_whisper: bool


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    real_whisper = WHISPER_TINY_EN.is_dir()  # real words make "the server file's words come back" visible
    settings = Settings.from_env(
        env={}, device="cpu", port=free_port(),
        asr_model=str(WHISPER_TINY_EN if real_whisper else tiny_model("wav2vec2_ctc")),
        image_model=str(tiny_model("vit_classifier")), zero_shot_model=str(tiny_model("bert_nli")),
        docqa_model=str(tiny_model("layoutlm_qa")), max_audio_seconds=MAX_AUDIO_S, max_image_pixels=MAX_PIXELS,
        max_file_mb=2)
    inputs = tmp_path_factory.mktemp("hostile")
    with serving(build_app(settings, PipelineRegistry(settings)), settings) as url:
        s = Server(Client(url, verbose=False, download_files=False), inputs, real_whisper)
        for check in VALID.values():  # models loaded and caches warm before anything is measured
            check(s)
        yield s


def write(d: Path, name: str, data: bytes | str) -> Path:
    path = d / name
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def refused(s: Server, endpoint: str, path: Path, *args) -> tuple[str, float]:
    """The message of the refusal and how much the server grew while giving it."""
    with PeakMemory() as memory:
        with pytest.raises(AppError) as err:
            s.client.predict(handle_file(str(path)), *args, api_name=endpoint)
    message = str(err.value)
    assert "Traceback" not in message and 'File "' not in message, message
    assert not _ABSOLUTE_PATH.search(message) and str(ROOT) not in message, message
    print(f"\n{path.name} -> {endpoint}: +{memory.growth_mb:.0f} MB; {message}")
    return message, memory.growth_mb


# --- valid requests, each checked for what a user sees ----------------------------------------

def valid_speech(s: Server) -> None:
    path = s.inputs / "good.wav"
    sf.write(path, (0.3 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    text, segments, files = s.client.predict(handle_file(str(path)), api_name="/transcribe")
    assert isinstance(text, str) and isinstance(segments, list) and len(files) == 4


def valid_image(s: Server) -> None:
    good = write(s.inputs, "good.png", _png(Image.new("RGB", (40, 40), "red")))
    predictions = s.client.predict(handle_file(str(good)), api_name="/classify_image")
    assert len(predictions) == 5 and all(0 <= p["score"] <= 1 for p in predictions)


def valid_document(s: Server) -> None:
    from reportlab.pdfgen import canvas

    path = s.inputs / "good.pdf"
    c = canvas.Canvas(str(path))
    c.drawString(72, 700, "Invoice number: 1000")
    c.save()
    answers = s.client.predict(handle_file(str(path)), "What is the invoice number?", api_name="/answer_document")
    assert answers and all(a["page"] == 1 and set(a["answer"].split()) <= {"Invoice", "number:", "1000"}
                           for a in answers)


VALID = {"/transcribe": valid_speech, "/classify_image": valid_image, "/answer_document": valid_document}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


# --- Speech --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_a_playlist_naming_a_server_file_is_refused_and_its_words_do_not_come_back(server, kind):
    make = hostile.hls_playlist if kind == "hls" else hostile.concat_list
    upload = write(server.inputs, "x.wav", make(SERVER_SPEECH.resolve()))
    message, growth = refused(server, "/transcribe", upload)
    assert re.search(rf"'x.wav' could not be decoded as audio; {AUDIO_OK}", message), message
    assert not SERVER_WORDS & set(re.findall(r"[a-z]+", message.lower()))
    assert growth < MAX_GROWTH_MB
    valid_speech(server)


@pytest.mark.skipif(not WHISPER_TINY_EN.is_dir(), reason="../shared/models/whisper-tiny.en absent")
def test_the_server_file_itself_has_words_the_test_would_see(server, tmp_copy):
    """The control for the test above: uploaded as itself, the file's words do come back."""
    text, _, _ = server.client.predict(handle_file(str(tmp_copy(SERVER_SPEECH))), api_name="/transcribe")
    assert len(SERVER_WORDS & set(re.findall(r"[a-z]+", text.lower()))) >= 3, text


def test_a_header_with_absurd_channels_is_refused_from_the_header(server):
    upload = write(server.inputs, "wide.wav", hostile.wav_header(channels=1000, rate=16000, frames=50))
    message, growth = refused(server, "/transcribe", upload)
    assert re.search(r"'wide.wav' says it has 1000 channels at 16,000 Hz; recordings of 1 to 32 channels at "
                     r"1,000 to 384,000 Hz are accepted \(wav, flac", message), message
    assert growth < MAX_GROWTH_MB
    valid_speech(server)


def test_eight_channels_at_192_khz_decode_in_the_memory_of_the_model_input(server):
    """30 s of 8-channel 192 kHz silence (46 KB of FLAC): 184 MB as one float32 read, 1.9 MB as the
    model's input. It is answered (silence: an empty transcript), in bounded memory."""
    upload = hostile.wide_flac(server.inputs / "wide.flac", 30)
    assert upload.stat().st_size < 200_000
    with PeakMemory() as memory:
        text, segments, _ = server.client.predict(handle_file(str(upload)), api_name="/transcribe")
    print(f"\nwide.flac (30 s, 8 ch, 192 kHz) -> /transcribe: +{memory.growth_mb:.0f} MB")
    assert text == "" and segments == []
    assert memory.growth_mb < MAX_GROWTH_MB


def test_eight_channels_at_192_khz_past_the_length_limit_are_refused_from_the_header(server):
    upload = hostile.wide_flac(server.inputs / "long-wide.flac", MAX_AUDIO_S + 5)
    message, growth = refused(server, "/transcribe", upload)
    assert re.search(r"'long-wide.flac' lasts 0:40, longer than this server accepts \(0:35\); cut it or "
                     r"upload a shorter recording", message), message
    assert growth < MAX_GROWTH_MB
    valid_speech(server)


# --- Image ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, make", [
    ("icon.ico", lambda: hostile.ico(hostile.png_bomb(12000, 12000, rgba=True))),
    ("icon.icns", lambda: hostile.icns(hostile.png_bomb(12000, 12000, rgba=True))),
], ids=["ico", "icns"])
def test_an_icon_holding_a_huge_picture_is_refused_before_decoding(server, name, make):
    upload = write(server.inputs, name, make())
    assert upload.stat().st_size < 1_000_000
    message, growth = refused(server, "/classify_image", upload)
    assert re.search(rf"{re.escape(name)} holds a 12000x12000 = 144,000,000 pixel picture \(its icon directory "
                     r"says \d+x\d+\); images up to 40,000,000 pixels are accepted", message), message
    assert growth < MAX_GROWTH_MB
    valid_image(server)


# --- Document ------------------------------------------------------------------------------

def test_a_huge_second_tiff_page_is_refused_before_any_page_is_decoded_or_read(server):
    upload = write(server.inputs, "scan.tif", hostile.tiff_small_then_big(12000))
    assert upload.stat().st_size < 200_000
    started = time.perf_counter()
    message, growth = refused(server, "/answer_document", upload, "What is the invoice number?")
    assert re.search(r"This document: page 2 is 12000x12000 = 144,000,000 pixels; images up to 40,000,000 "
                     r"pixels are accepted", message), message
    assert growth < MAX_GROWTH_MB and time.perf_counter() - started < 5  # no OCR of 144 megapixels
    valid_document(server)


def test_an_icon_under_a_png_name_is_refused_before_decoding(server):
    upload = write(server.inputs, "scan.png", hostile.ico(hostile.png_bomb(12000, 12000, rgba=True)))
    message, growth = refused(server, "/answer_document", upload, "What is the invoice number?")
    assert re.search(r"This document holds a 12000x12000 = 144,000,000 pixel picture \(its icon directory says "
                     r"256x256\); images up to 40,000,000 pixels are accepted", message), message
    assert growth < MAX_GROWTH_MB
    valid_document(server)


@pytest.mark.parametrize("indirect", [False, True], ids=["inline resources", "indirect resources"])
def test_a_pdf_of_nested_forms_is_refused_before_pdfium_expands_it(server, indirect):
    """3 KB, six levels of a form drawing the next ten times: pdfium took minutes to load the page."""
    upload = write(server.inputs, "forms.pdf", hostile.nested_forms_pdf(6, indirect_resources=indirect))
    assert upload.stat().st_size < 5_000
    started = time.perf_counter()
    message, growth = refused(server, "/answer_document", upload, "What is the invoice number?")
    assert "Page 1 of this PDF is too complex to render safely (it draws more than 1,000 forms" in message
    assert time.perf_counter() - started < 10 and growth < MAX_GROWTH_MB
    valid_document(server)


def test_a_pdf_with_a_few_forms_still_renders(tmp_path):
    from engine.document import read_document, render_page

    doc = read_document(hostile.nested_forms_pdf(2), Settings())  # 10 uses: a page with a logo, say
    image, _ = render_page(doc, 1, Settings())
    assert image.size[0] > 600 and image.getpixel((image.size[0] // 2, image.size[1] // 2)) == (0, 0, 0)


def test_many_large_images_at_once_cost_what_two_decodes_cost(server):
    """Under 40 Mpx but 16-bit: each cost 1.2 GB as float64 planes, and 32 could decode at once (4: +3.9 GB)."""
    path = server.inputs / "grey16.png"
    Image.fromarray(np.tile(np.arange(6300, dtype=np.uint16) * 10, (6300, 1))).save(path)
    assert path.stat().st_size < 2_000_000
    with PeakMemory() as memory:
        jobs = [server.client.submit(handle_file(str(path)), api_name="/classify_image") for _ in range(4)]
        results = [job.result(timeout=300) for job in jobs]
    print(f"\n4 x grey16.png at once: +{memory.growth_mb:.0f} MB")
    assert all(len(r) == 5 for r in results)
    assert memory.growth_mb < 700
