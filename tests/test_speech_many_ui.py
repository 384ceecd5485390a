"""/transcribe_many through gradio_client: per-file results, one bad file among good ones, the zip, --max-files."""

from __future__ import annotations

import zipfile

import pytest
import srt
from gradio_client import Client, handle_file

from engine.registry import PipelineRegistry
from engine.settings import Settings
from tests.conftest import WHISPER_TINY_EN, free_port, needs_real_whisper, serving
from tests.test_speech_synth import SENTENCES, make_speech, needs_espeak
from ui.app import build_app

pytestmark = [pytest.mark.real_model, needs_real_whisper, needs_espeak]


@pytest.fixture(scope="module")
def app():
    settings = Settings.from_env(env={}, device="cpu", port=free_port(), asr_model=str(WHISPER_TINY_EN), max_files=3)
    registry = PipelineRegistry(settings)
    with serving(build_app(settings, registry), settings) as url:
        yield Client(url, verbose=False), registry


def test_many_files_give_each_its_results_and_one_zip(app, tmp_path):
    client, _ = app
    first = make_speech(SENTENCES[:2], pauses=[1.0], lead=0.5).write(tmp_path / "first talk.wav")
    second = make_speech(SENTENCES[4:5], pauses=[1.0], lead=0.8).write(tmp_path / "second.wav")
    (tmp_path / "broken.flac").write_text("not audio\n" * 40)
    results, downloads, archive = client.predict(
        [handle_file(str(first)), handle_file(str(tmp_path / "broken.flac")), handle_file(str(second))],
        api_name="/transcribe_many")
    assert [r["file"] for r in results] == ["first talk.wav", "broken.flac", "second.wav"]
    assert "fishing" in results[0]["text"].lower() and "tomato" in results[0]["text"].lower()
    assert len(results[0]["segments"]) == 2 and results[0]["segments"][0]["start"] == pytest.approx(0.5, abs=0.5)
    assert results[1]["error"].startswith("'broken.flac' could not be decoded as audio") and results[1]["text"] == ""
    assert "library" in results[2]["text"].lower() and results[2]["error"] is None
    assert results[0]["downloads"] == ["first_talk.srt", "first_talk.vtt", "first_talk.txt", "first_talk.json"]
    assert sorted(p.rsplit("/", 1)[-1] for p in downloads) == sorted(results[0]["downloads"] + results[2]["downloads"])
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == [*results[0]["downloads"], *results[2]["downloads"], "errors.txt"]
        cues = list(srt.parse(zf.read("second.srt").decode()))
        assert len(cues) == 1 and cues[0].start.total_seconds() == pytest.approx(0.8, abs=0.5)
        assert "broken.flac" in zf.read("errors.txt").decode()


def test_the_prompt_reaches_every_file(app, tmp_path):
    client, _ = app
    first = make_speech(SENTENCES[:2], pauses=[1.0], lead=0.5).write(tmp_path / "a.wav")
    second = make_speech(SENTENCES[4:5], pauses=[1.0], lead=0.5).write(tmp_path / "b.wav")
    # Whisper writes in the prompt's style: lower case (names aside) without punctuation.
    results, _, _ = client.predict([handle_file(str(first)), handle_file(str(second))],
                                   prompt="hello my friend how are you today i am fine thanks",
                                   api_name="/transcribe_many")
    assert all(r["text"] and r["text"][0].islower() and "." not in r["text"] for r in results), results
    plain, _, _ = client.predict([handle_file(str(first))], api_name="/transcribe_many")
    assert plain[0]["text"][0].isupper() and "." in plain[0]["text"]


def test_more_files_than_max_files_are_refused_before_any_model_loads(tmp_path):
    settings = Settings.from_env(env={}, device="cpu", port=free_port(), asr_model=str(WHISPER_TINY_EN), max_files=2)
    registry = PipelineRegistry(settings)
    paths = [make_speech(SENTENCES[:1], pauses=[1.0]).write(tmp_path / f"{i}.wav") for i in range(3)]
    with serving(build_app(settings, registry), settings) as url:
        with pytest.raises(Exception, match="3 recordings given; this server transcribes at most 2 at once"):
            Client(url, verbose=False).predict([handle_file(str(p)) for p in paths], api_name="/transcribe_many")
    assert registry.loads == 0
