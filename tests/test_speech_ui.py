"""Speech tab through gradio_client: the /transcribe API with defaults, options, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import srt
from gradio_client import Client, handle_file

from engine.registry import PipelineRegistry
from engine.settings import Settings
from tests.conftest import WHISPER_TINY_EN, free_port, needs_real_whisper, serving
from tests.test_speech_synth import RATE, TALK_SENTENCES, needs_espeak, talk_wav
from ui.app import build_app
from ui.tabs import speech as speech_tab

pytestmark = [pytest.mark.real_model, needs_real_whisper, needs_espeak]
MAX_SECONDS = 60


@pytest.fixture(scope="module")
def app():
    """The whole app, serving whisper-tiny.en, accepting at most a minute of audio."""
    settings = Settings.from_env(env={}, device="cpu", port=free_port(), asr_model=str(WHISPER_TINY_EN),
                                 max_audio_seconds=MAX_SECONDS)
    registry = PipelineRegistry(settings)
    with serving(build_app(settings, registry), settings) as url:
        yield Client(url, verbose=False), registry


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    return talk_wav(tmp_path_factory.mktemp("talk"))


def test_predict_with_defaults_returns_text_segments_and_subtitle_files(app, talk):
    client, _ = app
    path, speech = talk
    text, segments, files = client.predict(handle_file(str(path)), api_name="/transcribe")
    assert all(word in text.lower() for word in ("doctor", "station", "bridge"))
    assert len(segments) == len(TALK_SENTENCES)
    assert all(set(s) == {"start", "end", "text"} for s in segments)
    for seg, placed in zip(segments, speech.starts):
        assert seg["start"] == pytest.approx(placed, abs=0.5) and seg["start"] < seg["end"] <= speech.duration
    assert [p.rsplit("/", 1)[-1] for p in files] == ["talk.srt", "talk.vtt", "talk.txt", "talk.json"]
    cues = list(srt.parse(open(files[0], encoding="utf-8").read()))
    # Each segment is one or more cues of at most two lines of 42 characters, its words in order.
    assert " ".join(c.content.replace("\n", " ") for c in cues) == " ".join(s["text"] for s in segments)
    assert all(len(line) <= 42 for c in cues for line in c.content.split("\n"))
    assert open(files[2], encoding="utf-8").read().strip() == text


def test_subtitle_layout_through_the_api(app, talk):
    client, _ = app
    path, _ = talk
    text, segments, files = client.predict(handle_file(str(path)), line_chars=20, lines=1, api_name="/transcribe")
    cues = list(srt.parse(open(files[0], encoding="utf-8").read()))
    assert all(len(c.content) <= 20 and "\n" not in c.content for c in cues) and len(cues) > len(segments)
    assert " ".join(c.content for c in cues) == " ".join(s["text"] for s in segments)
    # One cue per word needs word times: they are computed for the subtitles, and the API's segments stay
    # as asked (no words), while the cues follow the words one by one.
    text, segments, files = client.predict(handle_file(str(path)), word_cues=True, api_name="/transcribe")
    cues = list(srt.parse(open(files[0], encoding="utf-8").read()))
    assert [c.content for c in cues] == text.split() and all("words" not in s for s in segments)
    assert all(a.start <= b.start for a, b in zip(cues, cues[1:]))
    three = list(srt.parse(open(client.predict(handle_file(str(path)), cue_words=3, api_name="/transcribe")[2][0],
                                encoding="utf-8").read()))
    assert all(len(c.content.split()) <= 3 for c in three)


def test_word_times_and_modes_through_the_api(app, talk):
    client, _ = app
    path, speech = talk
    text, segments, _ = client.predict(handle_file(str(path)), timestamps="words", mode="vad", batch_size=2,
                                       api_name="/transcribe")
    assert "doctor" in text.lower()
    words = [w for s in segments for w in s["words"]]
    assert words[0]["text"] == "The" and words[0]["start"] == pytest.approx(speech.starts[0], abs=0.5)
    assert all(s["start"] <= w["start"] <= w["end"] <= s["end"] for s in segments for w in s["words"])
    text, segments, _ = client.predict(handle_file(str(path)), timestamps="none", mode="chunked",
                                       api_name="/transcribe")
    assert "station" in text.lower() and segments == []


def write(path, audio, rate=RATE):
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return handle_file(str(path))


def test_silence_is_an_empty_transcript_not_an_error(app, tmp_path):
    client, _ = app
    text, segments, files = client.predict(write(tmp_path / "quiet.wav", np.zeros(5 * RATE, np.float32)),
                                           api_name="/transcribe")
    # No empty subtitles to download: only the .json, whose note says the audio is silent.
    assert text == "" and segments == [] and [f.rsplit("/", 1)[-1] for f in files] == ["quiet.json"]


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "No audio was given; drop, upload or record a file"),
    (lambda d: (d / "notes.wav").write_text("not audio at all\n" * 50) and handle_file(str(d / "notes.wav")),
     "could not be decoded as audio; accepted: wav, flac, mp3, ogg, m4a"),
    (lambda d: write(d / "empty.wav", np.zeros(0, np.float32)), "holds no samples"),
    (lambda d: write(d / "long.wav", np.zeros((MAX_SECONDS + 5) * RATE, np.float32)),
     r"lasts 1:05, longer than this server accepts \(1:00\)"),
])
def test_bad_input_gets_a_clear_message(app, tmp_path, make, message):
    client, registry = app
    with pytest.raises(Exception, match=message):
        client.predict(make(tmp_path), api_name="/transcribe")


def test_a_model_outside_the_list_is_refused_before_loading(app, talk):
    client, registry = app
    before = registry.loads
    with pytest.raises(Exception, match="(is not offered here|is not in the list of choices)"):
        client.predict(handle_file(str(talk[0])), model="/etc", api_name="/transcribe")
    assert registry.loads == before


def test_language_options_show_only_for_multilingual_models(make_settings, tiny_model):
    settings = make_settings(asr_model=str(tiny_model("whisper")))
    demo = speech_tab.demo(PipelineRegistry(settings), settings)
    row = next(b for b in demo.blocks.values() if b.elem_id == "speech-language-row")
    assert row.visible
    settings = make_settings(asr_model=str(WHISPER_TINY_EN))
    demo = speech_tab.demo(PipelineRegistry(settings), settings)
    assert not next(b for b in demo.blocks.values() if b.elem_id == "speech-language-row").visible


def test_a_prompt_is_read_and_a_bad_one_gets_a_message(app, talk):
    client, _ = app
    path, _ = talk
    plain = client.predict(handle_file(str(path)), api_name="/transcribe")[0]
    # Whisper writes in the prompt's style: one in lower case without punctuation gives text without either.
    prompted = client.predict(handle_file(str(path)), prompt="hello my friend how are you today i am fine thanks",
                              api_name="/transcribe")[0]
    assert plain != plain.lower() and "." in plain
    assert prompted == prompted.lower() and "." not in prompted and "?" not in prompted
    assert all(word in prompted for word in ("doctor", "station", "bridge"))
    with pytest.raises(Exception, match=r"special tokens such as <\|endoftext\|>"):
        client.predict(handle_file(str(path)), prompt="hello <|endoftext|>", api_name="/transcribe")
    with pytest.raises(Exception, match=r"at most 1000 characters"):
        client.predict(handle_file(str(path)), prompt="word " * 300, api_name="/transcribe")


def test_the_live_part_reads_the_tabs_prompt(make_settings, tiny_model):
    import gradio as gr

    settings = make_settings(asr_model=str(tiny_model("whisper_en")))
    demo = speech_tab.demo(PipelineRegistry(settings), settings)
    listen = next(f for f in demo.fns.values() if f.api_name == "speech_live").fn
    live, _, _ = listen(None, None, None, "segments", "Ada Lovelace, Babbage")
    try:
        assert live.session.transcribe_options.prompt == "Ada Lovelace, Babbage"
    finally:
        live.close()
    with pytest.raises(gr.Error, match="at most 1000 characters"):
        listen(None, None, None, "segments", "x" * 1001)
