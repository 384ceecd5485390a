"""whisper-tiny.en on three minutes of espeak-ng speech: vad vs sequential vs chunked, and timestamps."""

from __future__ import annotations

import time

import pytest

from bench.speech_audio import wer
from engine.registry import PipelineKey, load_pipeline
from engine.speech import TranscribeOptions, transcribe
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from tests.test_speech_synth import SENTENCES, make_speech, needs_espeak

pytestmark = [pytest.mark.real_model, needs_real_whisper, needs_espeak]
PAUSES = [2.0, 3.0, 4.0, 2.5]


@pytest.fixture(scope="session")
def long_speech():
    """30 distinct sentences with 2-4 s pauses: a little over three minutes."""
    return make_speech(SENTENCES, pauses=PAUSES)


@pytest.fixture(scope="module")
def whisper():
    return load_pipeline(PipelineKey("automatic-speech-recognition", str(WHISPER_TINY_EN), None, "cpu", "float32"))


@pytest.fixture(scope="module")
def runs(whisper, long_speech):
    """mode -> (Transcript, seconds); each mode runs once per session, on demand."""
    done = {}

    def run(mode):
        if mode not in done:
            started = time.perf_counter()
            done[mode] = transcribe(whisper, long_speech.audio, TranscribeOptions(mode=mode)), \
                time.perf_counter() - started
        return done[mode]
    return run


def report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n[speech] {line}")


def test_vad_is_as_accurate_as_sequential_and_puts_each_sentence_where_it_was_said(runs, long_speech, capsys):
    assert long_speech.duration >= 180
    reference = " ".join(SENTENCES)
    (seq, seq_s), (vad, vad_s) = runs("sequential"), runs("auto")  # auto: vad past one 30 s window
    seq_wer, vad_wer = wer(reference, seq.text), wer(reference, vad.text)
    report(capsys, f"{long_speech.duration:.0f} s of speech: sequential WER {seq_wer:.1%} in {seq_s:.1f} s, "
                   f"vad WER {vad_wer:.1%} in {vad_s:.1f} s ({len(vad.segments)} segments)")
    assert vad.mode == "vad"
    assert vad_wer <= seq_wer + 0.01
    assert vad_wer < 0.2
    starts = [s.start for s in vad.segments]
    for placed, sentence in zip(long_speech.starts, SENTENCES):
        nearest = min(starts, key=lambda s: abs(s - placed))
        assert abs(nearest - placed) <= 0.5, f"{sentence!r} placed at {placed:.2f} s, nearest segment {nearest:.2f} s"
    times = [t for s in vad.segments for t in (s.start, s.end)]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= long_speech.duration
    assert all(s.text.strip() for s in vad.segments)


def test_chunked_runs_and_its_wer_is_reported(runs, long_speech, capsys):
    chunked, seconds = runs("chunked")
    score = wer(" ".join(SENTENCES), chunked.text)
    report(capsys, f"chunked (pipeline chunk_length_s=30, stride 5 s) WER {score:.1%} in {seconds:.1f} s")
    assert chunked.mode == "chunked" and len(chunked.text.split()) > 300


def test_word_times_on_real_speech(whisper):
    speech = make_speech(SENTENCES[:3], pauses=[2.0, 3.0], lead=0.7)
    result = transcribe(whisper, speech.audio, TranscribeOptions(timestamps="words"))
    assert result.mode == "sequential" and len(result.segments) == 3
    for segment, placed in zip(result.segments, speech.starts):
        assert abs(segment.words[0].start - placed) <= 0.5
        assert segment.words[0].start == segment.start and segment.words[-1].end == segment.end
    assert [w.text.lower() for w in result.segments[0].words][:3] == ["the", "harbor", "lights"]
    times = [t for w in result.words for t in (w.start, w.end)]
    assert times == sorted(times)
