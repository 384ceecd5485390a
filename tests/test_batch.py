"""engine/batch.py: many files share batches and give what transcribe() gives each; limits per file and
per request; safe, unique output names; the zip."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from engine import whisper_batch
from engine.batch import Limits, FileResult, read_many, run_many, safe_stem, transcribe_many, unique_stems, write_many
from engine.errors import InputError
from engine.registry import PipelineKey, load_pipeline
from engine.speech import Segment, Transcript, TranscribeOptions, transcribe
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from tests.test_speech_synth import RATE, SENTENCES, make_speech, needs_espeak


@pytest.mark.parametrize("name, stem", [("talk.wav", "talk"), ("../../etc/passwd.wav", "passwd"),
                                        ("..wav", "transcript"), ("my talk (1).flac", "my_talk_1"),
                                        ("C:\\x\\y.wav", "C_x_y"), ("a" * 200 + ".wav", "a" * 60)])
def test_stems_are_safe_file_names(name, stem):
    assert safe_stem(name) == stem


def test_formats_are_the_subtitle_writers():
    from engine import batch, subtitles

    assert batch.FORMATS == subtitles.FORMATS


def test_stems_are_unique_whatever_the_case():
    assert unique_stems(["a.wav", "A.flac", "a.mp3", "b.wav"]) == ["a", "A-2", "a-3", "b"]


def test_the_zip_holds_every_file_by_its_safe_name_and_the_errors(tmp_path):
    said = Transcript("Hello there.", (Segment(0.5, 1.5, "Hello there."),), 2.0, "vad", "en")
    results = [FileResult("../up.wav", safe_stem("../up.wav"), said),
               FileResult("bad.wav", "bad", error="'bad.wav' could not be decoded as audio")]
    written, archive = write_many(results, tmp_path / "out", formats=("srt", "txt"))
    assert [p.name for p in written[0].files] == ["up.srt", "up.txt"] and written[1].files == ()
    names = zipfile.ZipFile(archive).namelist()
    assert names == ["up.srt", "up.txt", "errors.txt"]
    assert "bad.wav: 'bad.wav' could not be decoded" in zipfile.ZipFile(archive).read("errors.txt").decode()
    with pytest.raises(InputError, match="Unknown subtitle format doc"):
        write_many(results, tmp_path / "x", formats=("doc",))


def write(path, audio):
    import soundfile as sf

    sf.write(str(path), audio, RATE, subtype="PCM_16")
    return path


def test_limits_per_file_and_per_request(tmp_path):
    tone = (np.sin(np.arange(3 * RATE) / 5) * 0.3).astype(np.float32)
    paths = [write(tmp_path / f"t{i}.wav", tone) for i in range(3)]
    (tmp_path / "notes.wav").write_text("not audio\n" * 30)
    short = write(tmp_path / "short.wav", tone[:RATE // 10])
    loaded = read_many([*paths, tmp_path / "notes.wav", short], RATE, Limits(max_total_audio_seconds=7))
    assert [a is not None for a, _ in loaded] == [True, True, False, False, False]
    messages = [e for _, e in loaded]
    assert "'t2.wav' was skipped: with it the recordings would last 0:09" in messages[2]
    assert "(0:07, --max-total-audio-seconds)" in messages[2]
    assert "'notes.wav' could not be decoded as audio" in messages[3]
    assert "'short.wav' lasts only 0.10 s" in messages[4]
    with pytest.raises(InputError, match="3 recordings given; this server transcribes at most 2 at once"):
        read_many(paths, RATE, Limits(max_files=2))


@pytest.fixture(scope="module")
def whisper():
    return load_pipeline(PipelineKey("automatic-speech-recognition", str(WHISPER_TINY_EN), None, "cpu", "float32"))


@needs_real_whisper
@needs_espeak
@pytest.mark.real_model
def test_files_share_batches_and_each_gets_what_transcribe_gives_it(whisper, monkeypatch):
    audios = [make_speech(SENTENCES[i:i + 2], pauses=[1.0], lead=0.5).audio for i in (0, 2, 4)]
    audios.append(np.zeros(2 * RATE, np.float32))  # a silent file among them
    calls, steps = [], []
    real = whisper_batch.transcribe_chunks
    monkeypatch.setattr(whisper_batch, "transcribe_chunks",
                        lambda pipe, chunks, **kw: calls.append((len(chunks), kw["options"].int8))
                        or real(pipe, chunks, **kw))
    options = TranscribeOptions(mode="vad", batch_size=8)
    many = transcribe_many(whisper, audios, options, progress=lambda done, total: steps.append((done, total)))
    assert calls == [(3, False)]  # one call, one batch holding all three files
    transcribe_many(whisper, audios[:1], TranscribeOptions(mode="vad", int8=True))
    assert calls[-1] == (1, True)  # the speed levers (--speech-int8, the GPU batch) reach shared batches too
    total = steps[0][1]  # seconds of audio in the chunks, reported as they are decoded
    assert steps[0] == (0, total) and steps[-1] == pytest.approx((total, total)) and total > 6
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)
    monkeypatch.setattr(whisper_batch, "transcribe_chunks", real)
    for audio, result in zip(audios, many):
        alone = transcribe(whisper, audio, options)
        assert (result.text, result.segments, result.note) == (alone.text, alone.segments, alone.note)
    assert many[0].segments[0].start == pytest.approx(0.5, abs=0.3) and many[3].text == ""


@needs_real_whisper
@needs_espeak
@pytest.mark.real_model
def test_one_bad_file_does_not_stop_the_others(whisper, tmp_path):
    good = make_speech(SENTENCES[:1], pauses=[1.0], lead=0.5).write(tmp_path / "good.wav")
    (tmp_path / "bad.wav").write_bytes(b"\0" * 10)
    results = run_many(whisper, [tmp_path / "bad.wav", good, good], TranscribeOptions(), Limits())
    assert [r.stem for r in results] == ["bad", "good", "good-2"]
    assert results[0].transcript is None and "could not be decoded" in results[0].error
    assert "fishing" in results[1].transcript.text.lower() and results[2].transcript.text == results[1].transcript.text


@needs_real_whisper
def test_many_files_run_the_vad_where_one_file_would(whisper, monkeypatch):
    """On a GPU the VAD runs on the speech model's device (engine.speech.vad_device), for many files too."""
    import engine.batch as batch
    from engine import speech

    seen = []
    real = batch.speech_regions_and_chunks
    monkeypatch.setattr(speech, "vad_device", lambda pipe: "the model's gpu")
    monkeypatch.setattr(batch, "speech_regions_and_chunks",
                        lambda *a, device=None, **k: seen.append(device) or real(*a, **k))
    noise = (np.random.default_rng(0).standard_normal(3 * RATE) * 0.1).astype(np.float32)
    transcribe_many(whisper, [noise, noise], TranscribeOptions(mode="vad"))
    assert seen == ["the model's gpu", "the model's gpu"]
