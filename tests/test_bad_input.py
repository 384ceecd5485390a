"""Bad input on every tab, through gradio_client against one launched app.

Each case must come back as one message that says what is wrong and what is accepted, with no
stack trace and no server path in it; the same endpoint must then answer a valid request. At the
end no temporary file may be left behind by the refused requests.
"""

from __future__ import annotations

import io
import re
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from engine.registry import PipelineRegistry
from engine.settings import Settings
from tests.conftest import ROOT, free_port, serving
from tests.fixtures.tiny_models import VIT_LABELS
from ui.app import build_app

RATE = 16000
MAX_AUDIO_S = 5
MAX_PAGES = 3
MAX_PIXELS = 1_000_000
MAX_LABELS = 10
MAX_TEXT = 200
MAX_QUESTION = 100
MAX_FILE_MB = 1
SPEECH_OUTPUTS = {"good.srt", "good.vtt", "good.txt", "good.json"}  # the valid request's downloads
ZERO_SHOT_CSV = "zero_shot_results.csv"


@dataclass
class Server:
    client: Client
    url: str
    registry: PipelineRegistry
    settings: Settings
    inputs: Path  # what the tests upload (client side)
    temp: Path  # the server's tempfile.gettempdir()
    cache: Path  # the server's Gradio cache (GRADIO_TEMP_DIR)
    ran: list[str] = field(default_factory=list)
    at_start: set[Path] = field(default_factory=set)  # the cache once launched (example inputs)


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """The whole app on tiny models, small limits, and temp/cache folders of its own to watch."""
    root = tmp_path_factory.mktemp("bad-input")
    inputs, temp, cache = (root / n for n in ("inputs", "tmp", "gradio"))
    for folder in (inputs, temp, cache):
        folder.mkdir()
    settings = Settings.from_env(
        env={}, device="cpu", port=free_port(), asr_model=str(tiny_model("wav2vec2_ctc")),
        image_model=str(tiny_model("vit_classifier")), zero_shot_model=str(tiny_model("bert_nli")),
        docqa_model=str(tiny_model("layoutlm_qa")), max_audio_seconds=MAX_AUDIO_S, max_pdf_pages=MAX_PAGES,
        max_image_pixels=MAX_PIXELS, max_labels=MAX_LABELS, max_text_chars=MAX_TEXT,
        max_question_chars=MAX_QUESTION, max_file_mb=MAX_FILE_MB)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(cache))
        mp.setattr(tempfile, "tempdir", str(temp))
        registry = PipelineRegistry(settings)
        with serving(build_app(settings, registry), settings) as url:
            # download_files=False: the client, in this process too, would leave folders in the temp dir.
            yield Server(Client(url, verbose=False, download_files=False), url, registry, settings,
                         inputs, temp, cache, at_start=set(files_under(cache)))


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


# --- inputs ---------------------------------------------------------------------------------

def write(d: Path, name: str, data: bytes | str) -> Path:
    path = d / name
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def wav(d: Path, name: str, seconds: float, silent: bool = False) -> Path:
    n = int(seconds * RATE)
    audio = np.zeros(n, np.float32) if silent else (0.3 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    sf.write(str(d / name), audio, RATE, subtype="PCM_16")
    return d / name


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds no pixel data: decoding it would fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG: ~100 KB on disk, width*height pixels (gigabytes as RGB) decoded."""
    row = b"\x00" * (1 + -(-width // 8))
    packer, parts = zlib.compressobj(9), []
    for _ in range(height // 100):
        parts.append(packer.compress(row * 100))
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def animated_gif(colours=("red", "blue")) -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in colours]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def pdf(d: Path, name: str, pages: int = 1, encrypt: Any = None) -> Path:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(d / name), encrypt=encrypt)
    for i in range(pages):
        c.drawString(72, 700, f"Invoice number: {1000 + i}")
        c.drawString(72, 680, "Total amount: 5 dollars")
        c.showPage()
    c.save()
    return d / name


def locked_pdf(d: Path) -> Path:
    from reportlab.lib import pdfencrypt

    return pdf(d, "locked.pdf", encrypt=pdfencrypt.StandardEncryption("secret", canPrint=0))


def bomb(d: Path) -> Path:
    path = d / "bomb.png"
    if not path.exists():
        path.write_bytes(png_bomb(30000, 30000))
    return path


def many_pages(d: Path) -> Path:
    path = d / "many.pdf"
    return path if path.exists() else pdf(d, "many.pdf", pages=500)


def up(path: Path) -> Any:
    return handle_file(str(path))


# --- valid requests, each checked for what a user would see ----------------------------------

def valid_speech(s: Server) -> None:
    text, segments, files = s.client.predict(up(wav(s.inputs, "good.wav", 1.0)), api_name="/transcribe")
    assert isinstance(text, str) and isinstance(segments, list)
    assert sorted(Path(f["path"]).name for f in files) == sorted(SPEECH_OUTPUTS)
    txt = next(f for f in files if f["path"].endswith(".txt"))
    assert httpx.get(txt["url"], timeout=10).text.strip() == text.strip()


def valid_image(s: Server) -> None:
    good = write(s.inputs, "good.png", encoded(Image.new("RGB", (40, 40), "red"), "PNG"))
    predictions = s.client.predict(up(good), api_name="/classify_image")
    assert len(predictions) == 5 and {p["label"] for p in predictions} == set(VIT_LABELS)
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)


def valid_text(s: Server) -> None:
    result = s.client.predict("this is urgent, call me", "urgent, phone", api_name="/classify_text")
    assert sorted(result["labels"]) == ["phone", "urgent"] and sum(result["scores"]) == pytest.approx(1.0)


def valid_document(s: Server) -> None:
    answers = s.client.predict(up(pdf(s.inputs, "good.pdf")), "What is the invoice number?",
                               api_name="/answer_document")
    assert answers and all(a["page"] == 1 and len(a["box"]) == 4 for a in answers)
    words = {"Invoice", "number:", "1000", "Total", "amount:", "5", "dollars"}
    assert all(set(a["answer"].split()) <= words for a in answers)


def valid_texts(s: Server) -> None:
    table, csv_file = s.client.predict("this is urgent\ncall my phone", None, "urgent, phone",
                                       api_name="/classify_texts")
    assert table["headers"] == ["text", "top label", "top score", "urgent", "phone"] and len(table["data"]) == 2
    assert httpx.get(csv_file["url"], timeout=10).text.splitlines()[0] == "text,top label,top score,urgent,phone"


VALID: dict[str, Callable[[Server], None]] = {
    "/transcribe": valid_speech, "/classify_image": valid_image, "/classify_text": valid_text,
    "/classify_texts": valid_texts, "/answer_document": valid_document,
}


# --- the matrix: (id, endpoint, inputs, what the message must say) ---------------------------

@dataclass(frozen=True)
class Case:
    id: str
    endpoint: str
    make: Callable[[Path], dict[str, Any]]
    says: tuple[str, ...]  # regular expressions, all of which the message must match

    def __str__(self) -> str:
        return self.id


AUDIO_OK = r"wav, flac, mp3, ogg, m4a"
IMAGE_OK = r"accepted: PNG, JPEG, WebP, GIF \(first frame\), BMP, TIFF"
DOC_OK = r"upload a PNG, JPEG, TIFF \(multi-page too\) or PDF file"
Q = "What is the invoice number?"

SPEECH = [
    Case("no file", "/transcribe", lambda d: {"audio": None}, (r"No audio was given", AUDIO_OK)),
    Case("text file named .wav", "/transcribe", lambda d: {"audio": up(write(d, "notes.wav", "not audio\n" * 50))},
         (r"'notes.wav' could not be decoded as audio", AUDIO_OK)),
    Case("PNG named .wav", "/transcribe",
         lambda d: {"audio": up(write(d, "picture.wav", encoded(Image.new("RGB", (8, 8)), "PNG")))},
         (r"'picture.wav' could not be decoded as audio", AUDIO_OK)),
    Case("empty file", "/transcribe", lambda d: {"audio": up(write(d, "zero.wav", b""))},
         (r"'zero.wav' is an empty file \(0 bytes\)", AUDIO_OK)),
    Case("zero-length audio", "/transcribe", lambda d: {"audio": up(wav(d, "nothing.wav", 0))},
         (r"'nothing.wav' holds no samples \(zero length\)", r"a recording with sound in it")),
    Case("WAV cut inside its header", "/transcribe",
         lambda d: {"audio": up(write(d, "cut.wav", wav(d, "whole.wav", 1).read_bytes()[:30]))},
         (r"'cut.wav' could not be decoded as audio", AUDIO_OK)),
    Case("random bytes named .flac", "/transcribe",
         lambda d: {"audio": up(write(d, "noise.flac", np.random.default_rng(1).bytes(4000)))},
         (r"'noise.flac' could not be decoded as audio", AUDIO_OK)),
    Case("0.1 s of audio", "/transcribe", lambda d: {"audio": up(wav(d, "blip.wav", 0.1))},
         (r"'blip.wav' lasts only 0.10 s, too short to transcribe",
          r"recordings of at least 0.25 s and at most 0:05 are accepted")),
    Case("longer than the cap", "/transcribe", lambda d: {"audio": up(wav(d, "long.wav", MAX_AUDIO_S + 2, silent=True))},
         (r"'long.wav' lasts 0:07, longer than this server accepts \(0:05\)", r"upload a shorter recording")),
    Case("beams out of range", "/transcribe", lambda d: {"audio": up(wav(d, "beams.wav", 1)), "beams": 99},
         (r"Value 99 is greater than maximum value 8",)),
]

IMAGE = [
    Case("no image", "/classify_image", lambda d: {"image": None}, (r"No image given", r"drop, upload or paste an image")),
    Case("text file named .png", "/classify_image", lambda d: {"image": up(write(d, "notes.png", "not a picture"))},
         (r"notes.png is not an image Pillow can read", IMAGE_OK)),
    Case("PDF named .png", "/classify_image", lambda d: {"image": up(write(d, "doc.png", pdf(d, "doc.pdf").read_bytes()))},
         (r"doc.png is not an image Pillow can read", IMAGE_OK)),
    Case("WAV named .jpg", "/classify_image", lambda d: {"image": up(write(d, "sound.jpg", wav(d, "s.wav", 0.5).read_bytes()))},
         (r"sound.jpg is not an image Pillow can read", IMAGE_OK)),
    Case("empty file", "/classify_image", lambda d: {"image": up(write(d, "zero.png", b""))},
         (r"zero.png is an empty file \(0 bytes\)", r"PNG, JPEG")),
    Case("truncated PNG", "/classify_image",
         lambda d: {"image": up(write(d, "cut.png", encoded(Image.new("RGB", (64, 64), "red"), "PNG")[:60]))},
         (r"cut.png could not be decoded", r"damaged or truncated", r"Accepted: PNG, JPEG")),
    Case("truncated JPEG", "/classify_image", lambda d: {"image": up(write(d, "cut.jpg", encoded(Image.fromarray(
        np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")[:800]))},
         (r"cut.jpg could not be decoded", r"damaged or truncated", r"Accepted: PNG, JPEG")),
    Case("30000x30000 PNG bomb", "/classify_image", lambda d: {"image": up(bomb(d))},
         (r"bomb.png is too large to decode safely", r"images up to 1,000,000 pixels are accepted")),
    Case("header claims 8000x8000, no pixel data", "/classify_image",
         lambda d: {"image": up(write(d, "claims.png", png_header_only(8000, 8000)))},
         (r"claims.png is 8000x8000 = 64,000,000 pixels", r"images up to 1,000,000 pixels are accepted")),
    Case("2000x2000 past the pixel limit", "/classify_image",
         lambda d: {"image": up(write(d, "big.png", encoded(Image.new("1", (2000, 2000)), "PNG")))},
         (r"big.png is 2000x2000 = 4,000,000 pixels", r"images up to 1,000,000 pixels are accepted")),
    Case("SVG", "/classify_image",
         lambda d: {"image": up(write(d, "drawing.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'))},
         (r"drawing.svg is not an image Pillow can read", IMAGE_OK)),
    Case("top_k 0", "/classify_image", lambda d: {"image": up(write(d, "k.png", encoded(Image.new("RGB", (8, 8)), "PNG"))),
                                                  "top_k": 0},
         (r"Value 0 is less than minimum value 1",)),
]

LABELS_OK = r"separated by commas or one per line"
TEMPLATE_OK = r"e\.g\. 'This example is \{\}\.'"
TEXT = [
    Case("empty text", "/classify_text", lambda d: {"text": "", "labels": "a, b"},
         (r"The text is empty", r"type or paste the text to classify")),
    Case("whitespace-only text", "/classify_text", lambda d: {"text": " \n\t ", "labels": "a, b"},
         (r"The text is empty", r"type or paste the text to classify")),
    Case("text past the limit", "/classify_text", lambda d: {"text": "word " * 60, "labels": "a, b"},
         (r"The text has 299 characters", r"at most 200 are accepted")),
    Case("only commas as labels", "/classify_text", lambda d: {"text": "hello", "labels": ",, ,\n,"},
         (r"No candidate labels given", LABELS_OK)),
    Case("no labels", "/classify_text", lambda d: {"text": "hello", "labels": ""},
         (r"No candidate labels given", LABELS_OK)),
    Case("500 labels", "/classify_text", lambda d: {"text": "hello", "labels": ",".join(f"l{i}" for i in range(500))},
         (r"500 candidate labels given", r"at most 10 are accepted")),
    Case("a 300-character label", "/classify_text", lambda d: {"text": "hello", "labels": "urgent, " + "x" * 300},
         (r"has 300 characters", r"labels of at most 200 characters are accepted")),
    Case("template without {}", "/classify_text", lambda d: {"text": "hi", "labels": "a, b", "template": "It is about"},
         (r"must contain exactly one \{\} where the label goes \(found no \{\}\)", TEMPLATE_OK)),
    Case("template with two {}", "/classify_text", lambda d: {"text": "hi", "labels": "a, b", "template": "{} or {}"},
         (r"exactly one \{\}.*\(found 2 of them\)", TEMPLATE_OK)),
    Case("template with other braces", "/classify_text",
         lambda d: {"text": "hi", "labels": "a, b", "template": "{} is {name}"},
         (r"no braces other than the one \{\}", r"write \{\{ or \}\} for a literal brace")),
    Case("a 300-character template", "/classify_text",
         lambda d: {"text": "hi", "labels": "a, b", "template": "This is {}" + "." * 290},
         (r"template has 300 characters; at most 200 are accepted", TEMPLATE_OK)),
]

TEXTS = [
    Case("no texts", "/classify_texts", lambda d: {"texts": " \n ", "file": None, "labels": "a, b"},
         (r"No texts given", r"type one text per line, or upload a \.txt")),
    Case("more texts than accepted", "/classify_texts",
         lambda d: {"texts": "\n".join(f"text {i}" for i in range(201)), "file": None, "labels": "a, b"},
         (r"201 texts given; at most 200 are classified at once",)),
    Case("CSV with only its header", "/classify_texts",
         lambda d: {"texts": "", "file": up(write(d, "header.csv", "text\n")), "labels": "a, b"},
         (r"header.csv has no rows under its header", r"one text per row")),
    Case("a .txt that is not UTF-8", "/classify_texts",
         lambda d: {"texts": "", "file": up(write(d, "latin.txt", "caf\xe9\n".encode("latin-1"))), "labels": "a, b"},
         (r"latin.txt is not UTF-8 text", r"save it as UTF-8")),
    Case("a PDF instead of .txt/.csv", "/classify_texts",
         lambda d: {"texts": "", "file": up(pdf(d, "texts.pdf")), "labels": "a, b"},
         (r"Invalid file type", r"\.csv.*\.txt")),
]

DOCUMENT = [
    Case("no document", "/answer_document", lambda d: {"document": None, "question": Q},
         (r"Upload a document first \(PNG, JPEG, TIFF or PDF\)",)),
    Case("text file named .pdf", "/answer_document",
         lambda d: {"document": up(write(d, "notes.pdf", "not a pdf")), "question": Q},
         (r"not a document this tab can read", DOC_OK)),
    Case("WAV named .png", "/answer_document",
         lambda d: {"document": up(write(d, "sound.png", wav(d, "s2.wav", 0.5).read_bytes())), "question": Q},
         (r"not a document this tab can read", DOC_OK)),
    Case("empty file", "/answer_document", lambda d: {"document": up(write(d, "zero.pdf", b"")), "question": Q},
         (r"The file is empty", DOC_OK)),
    Case("corrupt PDF", "/answer_document",
         lambda d: {"document": up(write(d, "corrupt.pdf", b"%PDF-1.7\n1 0 obj << garbage")), "question": Q},
         (r"This PDF is damaged and cannot be read", DOC_OK)),
    Case("truncated PDF", "/answer_document", lambda d: {
        "document": up(write(d, "half.pdf", pdf(d, "whole.pdf").read_bytes()[:700])), "question": Q},
         (r"This PDF is damaged and cannot be read", DOC_OK)),
    Case("encrypted PDF", "/answer_document", lambda d: {"document": up(locked_pdf(d)), "question": Q},
         (r"This PDF is encrypted \(password protected\)", r"remove the password", DOC_OK)),
    Case("a page past the page cap", "/answer_document",
         lambda d: {"document": up(many_pages(d)), "question": Q, "page": "7"},
         (r"Page 7 is not read", r"only the first 3 of this document's 500 pages",
          r"choose a page from 1 to 3, or all pages")),
    Case("page that is not a number", "/answer_document",
         lambda d: {"document": up(pdf(d, "one.pdf")), "question": Q, "page": "first"},
         (r"Page must be a page number or 'All pages', not 'first'",)),
    Case("empty question", "/answer_document", lambda d: {"document": up(pdf(d, "one.pdf")), "question": "  "},
         (r"The question is empty", r"up to 100 characters")),
    Case("5,000-character question", "/answer_document",
         lambda d: {"document": up(pdf(d, "one.pdf")), "question": "why " * 1250},
         (r"The question is 4999 characters long", r"the limit is 100")),
    Case("GIF named .png", "/answer_document",
         lambda d: {"document": up(write(d, "anim.png", animated_gif())), "question": Q},
         (r"GIF images are not accepted here", DOC_OK)),
    Case("a .gif file", "/answer_document",
         lambda d: {"document": up(write(d, "anim.gif", animated_gif())), "question": Q},
         (r"Invalid file type", r"\.png.*\.pdf")),
    Case("30000x30000 PNG bomb", "/answer_document", lambda d: {"document": up(bomb(d)), "question": Q},
         (r"This image is too large to open safely", r"the limit is 1,000,000 pixels")),
    Case("2000x2000 past the pixel limit", "/answer_document", lambda d: {
        "document": up(write(d, "big.png", encoded(Image.new("1", (2000, 2000)), "PNG"))), "question": Q},
         (r"This image is 2000x2000 pixels", r"the limit is 1,000,000 pixels")),
]

CASES = SPEECH + IMAGE + TEXT + TEXTS + DOCUMENT
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+[\w.-]+")


def assert_for_people(message: str, s: Server) -> None:
    """One line for a person: no stack trace, no path on the server."""
    assert "Traceback" not in message and 'File "' not in message, message
    for where in (s.cache, s.temp, ROOT, Path(np.__file__).parents[1]):
        assert str(where) not in message, message
    assert not _ABSOLUTE_PATH.search(message), message


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_gets_a_clear_message_and_the_next_request_works(server, case):
    with pytest.raises(AppError) as err:
        server.client.predict(**case.make(server.inputs), api_name=case.endpoint)
    message = str(err.value)
    for pattern in case.says:
        assert re.search(pattern, message), f"{case.id}: {pattern!r} not in {message!r}"
    assert_for_people(message, server)
    server.ran.append(case.id)
    VALID[case.endpoint](server)


def test_every_tab_has_at_least_eight_kinds_of_bad_input():
    for cases in (SPEECH, IMAGE, TEXT, DOCUMENT):
        assert len(cases) >= 8 and len({c.endpoint for c in cases}) == 1


# --- inputs that look bad but are answered, with a note ---------------------------------------

def notes(job) -> list[str]:
    """The gr.Info / gr.Warning messages a finished gradio_client job received."""
    updates, found = job.communicator.updates, []
    while not updates.empty():
        log = getattr(updates.get_nowait(), "log", None)
        if log:
            found.append(log[0])
    return found


def test_pure_silence_is_an_empty_transcript_with_a_note(server):
    job = server.client.submit(up(wav(server.inputs, "quiet.wav", 2, silent=True)), api_name="/transcribe")
    text, segments, files = job.result(timeout=60)
    assert text == "" and segments == [] and [Path(f["path"]).suffix for f in files] == [".json"]
    assert "The audio is silent: No speech was found in this audio." in notes(job)
    server.ran.append("silence")


def test_an_animated_gif_is_classified_by_its_first_frame(server):
    gif = write(server.inputs, "anim.gif", animated_gif(("red", "blue")))
    still = write(server.inputs, "red.png", encoded(Image.new("RGB", (32, 32), "red"), "PNG"))
    blue = write(server.inputs, "blue.png", encoded(Image.new("RGB", (32, 32), "blue"), "PNG"))
    from_gif = server.client.predict(up(gif), api_name="/classify_image")
    assert from_gif == server.client.predict(up(still), api_name="/classify_image")
    assert from_gif != server.client.predict(up(blue), api_name="/classify_image")
    server.ran.append("gif")


def test_a_pdf_past_the_page_cap_is_read_up_to_it_and_says_so(server):
    job = server.client.submit(up(many_pages(server.inputs)), Q, api_name="/answer_document")
    answers = job.result(timeout=60)
    assert answers and {a["page"] for a in answers} <= {1, 2, 3}
    assert ("Only the first 3 of 500 pages are read (the server's --max-pdf-pages limit)." in notes(job))
    server.ran.append("page cap")


def test_an_upload_over_the_size_limit_is_refused_by_the_server(server):
    big = write(server.inputs, "huge.wav", b"RIFF" + np.random.default_rng(3).bytes(int(1.5 * 2**20)))
    with big.open("rb") as fh:
        response = httpx.post(f"{server.url}gradio_api/upload", files={"files": ("huge.wav", fh)}, timeout=30)
    assert response.status_code == 413
    assert "File size exceeded maximum allowed size of 1048576 bytes" in response.text
    valid_speech(server)
    server.ran.append("size")


def test_no_temporary_files_pile_up(server):
    """Refused requests leave nothing: no temp file anywhere, nothing in Gradio's cache but the uploads
    (which expire with --cache-hours, tested below) and the valid requests' downloads."""
    if len(server.ran) < len(CASES):
        pytest.skip("checks what the whole matrix left behind; run the module")
    for valid in VALID.values():  # the valid requests have run too, with the downloads some of them make
        valid(server)
    # torch keeps one compile cache per user there (torchinductor_<user>), made once, not per request.
    assert [p.name for p in server.temp.iterdir() if not p.name.startswith("torchinductor_")] == []
    uploaded = {p.name for p in server.inputs.iterdir()}
    transcripts = {f"{Path(name).stem}{ext}" for name in uploaded for ext in (".srt", ".vtt", ".txt", ".json")}
    left = sorted(str(p.relative_to(server.cache)) for p in set(files_under(server.cache)) - server.at_start
                  if p.name not in uploaded | transcripts | {ZERO_SHOT_CSV})
    assert left == []


def test_uploads_and_results_leave_gradio_cache_after_cache_hours(make_settings, tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    settings = make_settings(image_model=str(tiny_model("vit_classifier")), cache_hours=1 / 3600)
    with serving(build_app(settings, PipelineRegistry(settings)), settings) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        with pytest.raises(AppError, match="is not an image Pillow can read"):
            client.predict(handle_file(str(write(tmp_path, "notes.png", "not a picture"))), api_name="/classify_image")
        assert [p.name for p in cache.rglob("notes.png")] == ["notes.png"]
        deadline = time.time() + 10
        while list(cache.rglob("notes.png")) and time.time() < deadline:
            time.sleep(0.25)
        assert list(cache.rglob("notes.png")) == []
        good = write(tmp_path, "good.png", encoded(Image.new("RGB", (40, 40), "red"), "PNG"))
        assert len(client.predict(handle_file(str(good)), api_name="/classify_image")) == 5
