"""engine/live.py: utterances committed as they end, committed text never changing, bounded memory,
the session cap, silence, stream chunks past their stale header, and LiveStream's queue."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from engine.errors import InputError
from engine.live import LiveOptions, LiveSession, LiveStream, read_stream_chunk
from engine.registry import PipelineKey, load_pipeline
from engine.speech import TranscribeOptions, transcribe
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from tests.test_speech_real import wer
from tests.test_speech_synth import RATE, TALK_SENTENCES, needs_espeak, talk_wav

CHUNK = RATE // 2  # what the page sends every 0.5 s


def wav_header(rate: int, channels: int, frames: int) -> bytes:
    data = frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate,
            rate * channels * 2, channels * 2, 16) + b"data" + struct.pack("<I", data))


def test_a_chunk_is_read_past_its_stale_header(tmp_path):
    # Gradio's recorder sends the first chunk's header (0.5 s) before 1.5 s held back while the server was busy.
    rate = 48000
    tone = (np.sin(np.arange(int(1.5 * rate)) * 2 * np.pi * 440 / rate) * 16000).astype("<i2")
    path = tmp_path / "audio.wav"
    path.write_bytes(wav_header(rate, 1, rate // 2) + tone.tobytes())
    samples = read_stream_chunk(path, RATE, max_seconds=30)
    assert samples.dtype == np.float32 and samples.shape[0] == pytest.approx(1.5 * RATE, abs=2)
    assert np.abs(samples).max() == pytest.approx(16000 / 32768, rel=0.05)
    with pytest.raises(InputError, match="lasts 1.5 s; at most 1 s are accepted"):
        read_stream_chunk(path, RATE, max_seconds=1)
    stereo = tmp_path / "stereo.wav"
    stereo.write_bytes(wav_header(rate, 2, 10) + np.repeat(tone, 2).tobytes())
    assert read_stream_chunk(stereo, RATE, 30).shape[0] == pytest.approx(1.5 * RATE, abs=2)
    hostile = tmp_path / "hostile.wav"
    hostile.write_bytes(wav_header(7, 1, 10) + tone.tobytes())
    with pytest.raises(InputError, match="1 to 32 channels at 1,000 to 384,000 Hz"):
        read_stream_chunk(hostile, RATE, 30)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio" * 50)  # not a PCM header: engine.audio.decode_audio says why
    with pytest.raises(InputError, match="could not be decoded as audio"):
        read_stream_chunk(junk, RATE, 30)


class ManualExecutor:
    """Runs submitted work only when told: a server that is busy."""

    def __init__(self):
        self.work = []

    def submit(self, fn, *args):
        self.work.append((fn, args))

    def run(self):
        while self.work:
            fn, args = self.work.pop(0)
            fn(*args)


def test_audio_waiting_for_a_busy_server_is_capped_and_said():
    executor = ManualExecutor()
    stream = LiveStream(LiveSession(options=LiveOptions(max_seconds=600)), lambda: None, executor, max_backlog_s=2)
    for _ in range(10):
        stream.push(np.zeros(CHUNK, np.float32))
    assert stream.backlog_s == pytest.approx(2.0) and len(executor.work) == 1  # one drain queued, not ten
    assert "fell behind: 3.0 s of audio were skipped" in stream.session.note
    stream.close()
    executor.run()  # a closed session drops what waited: nothing is transcribed, nothing is kept
    assert stream.backlog_s == 0 and stream.session.buffer.size == 0


def test_a_worker_error_reaches_the_next_push():
    executor = ManualExecutor()

    def broken():
        raise InputError("this model cannot transcribe live")

    stream = LiveStream(LiveSession(), broken, executor)
    stream.push(np.zeros(CHUNK, np.float32))
    executor.run()
    with pytest.raises(InputError, match="cannot transcribe live"):
        stream.push(np.zeros(CHUNK, np.float32))


@pytest.fixture(scope="module")
def whisper():
    return load_pipeline(PipelineKey("automatic-speech-recognition", str(WHISPER_TINY_EN), None, "cpu", "float32"))


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    return talk_wav(tmp_path_factory.mktemp("live"))[1]


def feed_all(session, pipe, audio):
    """Feed in 0.5 s chunks; after each, the committed text so far (and the buffer's length)."""
    seen = []
    for i in range(0, audio.shape[0], CHUNK):
        session.feed(pipe, audio[i:i + CHUNK])
        seen.append((session.text, session.buffer.shape[0] / RATE, session.received))
    return seen


@needs_real_whisper
@needs_espeak
@pytest.mark.real_model
def test_utterances_commit_as_they_end_and_never_change(whisper, talk):
    # A pause of 1.2 s commits (the default waits for 2 s or 12 s of audio: context for the model).
    options = LiveOptions(max_seconds=600, long_pause_s=1.2, min_commit_s=8.0)
    session = LiveSession(options=options)
    seen = feed_all(session, whisper, np.concatenate([talk.audio, np.zeros(2 * RATE, np.float32)]))  # then a pause
    texts = [text for text, _, _ in seen]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))  # only ever appended
    assert max(buffered for _, buffered, _ in seen) <= options.max_utterance_s + options.preroll_s + 0.5
    # Sentences apart by 1.5 s or more are committed each once its pause is heard (a long pause: 1.2 s).
    assert len(session.commits) == len(TALK_SENTENCES)
    for commit, end in zip(session.commits, talk.ends):
        assert commit.speech_end == pytest.approx(end, abs=0.3)
        assert commit.received_at - end <= options.long_pause_s + 0.5 + 0.3
    result = session.finish(whisper)
    file_mode = transcribe(whisper, talk.audio, TranscribeOptions())
    reference = " ".join(TALK_SENTENCES)
    # 33 words: whisper-tiny's slips on one cut-out sentence ("meet our station") are 3 points each.
    assert wer(reference, result.text) <= wer(reference, file_mode.text) + 0.1
    assert [round(s.start) for s in result.segments] == [round(s) for s in talk.starts]
    assert result.mode == "live" and result.duration == pytest.approx(talk.duration + 2, abs=0.01)
    session.close()
    assert session.buffer.size == 0 and not session.segments and session.feed(whisper, talk.audio[:CHUNK]) is False


@needs_real_whisper
@pytest.mark.real_model
def test_silence_commits_nothing_and_keeps_only_a_preroll(whisper):
    session = LiveSession(options=LiveOptions(max_seconds=600))
    rng = np.random.default_rng(0)
    seen = feed_all(session, whisper, (rng.standard_normal(8 * RATE) * 1e-3).astype(np.float32))  # room noise
    assert all(text == "" for text, _, _ in seen) and session.tail == ""
    assert max(buffered for _, buffered, _ in seen) <= session.options.preroll_s + 0.5
    result = session.finish(whisper)
    assert result.text == "" and result.segments == () and "No speech was heard" in result.note


@needs_real_whisper
@pytest.mark.real_model
@needs_real_whisper
@needs_espeak
@pytest.mark.real_model
def test_close_sentences_are_committed_together(whisper):
    from tests.test_speech_synth import make_speech, SENTENCES

    speech = make_speech(SENTENCES[:3], pauses=[0.7], lead=0.5)  # short pauses: read together, for context
    session = LiveSession(options=LiveOptions(max_seconds=600))
    feed_all(session, whisper, speech.audio)
    assert len(session.commits) <= 1  # the first two together once 8 s were heard; the rest on Stop
    result = session.finish(whisper)
    assert len(result.segments) == 3 and "fishing" in result.text.lower() and "tomato" in result.text.lower()


def test_a_session_takes_no_more_than_its_cap(whisper):
    session = LiveSession(options=LiveOptions(max_seconds=3))
    took = [session.feed(whisper, np.zeros(CHUNK, np.float32)) for _ in range(10)]
    assert took == [True] * 6 + [False] * 4 and session.received == pytest.approx(3.0)
    assert "limit of 3 s" in session.finish(whisper).note
