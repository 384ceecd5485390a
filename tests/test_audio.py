"""engine.audio: decoding any file to 16 kHz mono float32, and VAD chunks cut inside silences."""

from __future__ import annotations

import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from engine.audio import (MAX_CHANNELS, ChunkAudio, SileroVad, chunk_samples, decode_audio, join_regions, speech_chunks,
                          speech_regions)
from engine.errors import InputError
from tests.hostile_files import wav_header, wide_flac
from tests.test_speech_synth import RATE, SENTENCES, make_speech, needs_espeak

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(audio: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(audio.size, 1 / rate)[spectrum.argmax()])


def test_stereo_44k_int16_wav_becomes_16k_mono_float(tmp_path):
    left, right = tone(2.0, 44100, 440.0), tone(2.0, 44100, 440.0)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    audio = decode_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.shape[0] == pytest.approx(2 * RATE, abs=2)
    assert dominant_hz(audio) == pytest.approx(440.0, abs=1.0)
    assert 0.45 < np.abs(audio).max() < 0.55  # int16 scaled to [-1, 1], channels averaged


def test_channels_are_averaged(tmp_path):
    path = tmp_path / "one-side.wav"
    sf.write(path, np.stack([tone(1.0, RATE), np.zeros(RATE, np.float32)], axis=1), RATE, subtype="FLOAT")
    assert np.abs(decode_audio(path)).max() == pytest.approx(0.25, abs=0.01)


def test_8k_float_wav_is_resampled(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, tone(1.5, 8000, 300.0), 8000, subtype="FLOAT")
    audio = decode_audio(path)
    assert audio.shape[0] == pytest.approx(1.5 * RATE, abs=2)
    assert dominant_hz(audio) == pytest.approx(300.0, abs=1.0)


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["mp3", "m4a", "ogg", "opus", "webm", "aac"])
def test_compressed_files_made_with_ffmpeg(tmp_path, ext):
    wav = tmp_path / "in.wav"
    sf.write(wav, tone(2.0, 22050, 500.0), 22050, subtype="PCM_16")
    out = tmp_path / f"out.{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), str(out)], check=True)
    audio = decode_audio(out)
    assert audio.shape[0] == pytest.approx(2 * RATE, abs=0.1 * RATE)  # encoders add a little padding
    assert dominant_hz(audio) == pytest.approx(500.0, abs=2.0)
    assert decode_audio(out.read_bytes()).shape == audio.shape  # bytes work the same


def test_a_text_file_renamed_wav_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(InputError, match=r"'notes.wav' could not be decoded as audio; accepted: wav, flac"):
        decode_audio(path)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "is an empty file"),
    (lambda p: sf.write(p, np.zeros(0, np.float32), RATE), "holds no samples"),
])
def test_empty_files_are_refused(tmp_path, make, message):
    path = tmp_path / "empty.wav"
    make(path)
    with pytest.raises(InputError, match=message):
        decode_audio(path)


def test_missing_file_and_none():
    with pytest.raises(InputError, match="No audio was given"):
        decode_audio("")
    with pytest.raises(InputError, match="'gone.wav' was not found"):
        decode_audio("/nonexistent/gone.wav")


def test_longer_than_the_limit_is_refused_before_decoding_it_all(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, tone(12.0, RATE), RATE)
    with pytest.raises(InputError, match=r"lasts 0:12, longer than this server accepts \(0:10\)"):
        decode_audio(path, max_seconds=10)
    assert decode_audio(path, max_seconds=12.5).shape[0] == 12 * RATE


# --- hostile files: indirections ffmpeg would follow, headers that size memory ---------------

def server_file(tmp_path):
    """A recording elsewhere on the server, which an upload must not be able to name."""
    path = tmp_path / "server" / "private.flac"
    path.parent.mkdir()
    sf.write(path, tone(3.0, RATE, 700.0), RATE)
    return path


INDIRECTIONS = {
    "hls": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{path}\n#EXT-X-ENDLIST\n",
    "hls, file: url": "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:{path}\n",
    "hls, plain": "#EXTM3U\n#EXTINF:10.0,\n{path}\n",
    "concat": "ffconcat version 1.0\nfile '{path}'\n",
    "concat, unsafe off": "ffconcat version 1.0\nfile 'file:{path}'\noption safe 0\n",
    "dash": '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><Period>'
            '<AdaptationSet><Representation id="1" bandwidth="1"><BaseURL>{path}</BaseURL>'
            '</Representation></AdaptationSet></Period></MPD>',
    "ffmetadata": ";FFMETADATA1\ntitle={path}\n",
}


@needs_ffmpeg
@pytest.mark.parametrize("kind", INDIRECTIONS)
def test_playlists_and_lists_naming_server_files_are_not_followed(tmp_path, kind):
    private = server_file(tmp_path)
    upload = tmp_path / "x.wav"
    upload.write_text(INDIRECTIONS[kind].format(path=private))
    for source in (upload, upload.read_bytes()):
        with pytest.raises(InputError, match=r"could not be decoded as audio; accepted: wav, flac") as err:
            decode_audio(source, max_seconds=60)
        assert str(private.parent) not in str(err.value) and "/" not in str(err.value)


@needs_ffmpeg
def test_ffmpeg_is_given_only_the_upload(tmp_path, monkeypatch):
    import engine.audio as audio

    wav = tmp_path / "in.wav"
    sf.write(wav, tone(1.0, RATE), RATE)
    m4a = tmp_path / "in.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), str(m4a)], check=True)
    seen = []
    real = audio.subprocess.Popen
    monkeypatch.setattr(audio.subprocess, "Popen", lambda cmd, **kw: seen.append(cmd) or real(cmd, **kw))
    decode_audio(m4a)
    (cmd,) = seen
    assert cmd[cmd.index("-protocol_whitelist") + 1] == "file"
    assert cmd[cmd.index("-i") + 1] == f"file:{m4a.resolve()}"
    allowed = cmd[cmd.index("-format_whitelist") + 1].split(",")
    assert {"mov", "matroska", "ogg", "mp3", "wav", "flac"} <= set(allowed)
    assert not {"hls", "concat", "dash", "image2", "lavfi", "sdp", "rtsp", "ffmetadata"} & set(allowed)
    listed = subprocess.run(["ffmpeg", "-hide_banner", "-demuxers"], capture_output=True, text=True).stdout
    aliases = {a for line in listed.splitlines()[4:] if line.strip() for a in line.split()[1].split(",")}
    assert set(allowed) <= aliases  # every name is a demuxer this ffmpeg has (mov matches mov,mp4,m4a,...)


@pytest.mark.parametrize("channels, rate", [(1000, 16000), (2, 10_000_000), (1, 1)])
def test_absurd_channels_or_rates_are_refused_from_the_header(tmp_path, channels, rate):
    path = tmp_path / "odd.wav"
    path.write_bytes(wav_header(channels, rate))
    with pytest.raises(InputError, match=rf"'odd.wav' says it has {channels} channels? at {rate:,} Hz; "
                                         rf"recordings of 1 to {MAX_CHANNELS} channels at 1,000 to 384,000 Hz "
                                         r"are accepted \(wav, flac"):
        decode_audio(path, max_seconds=14400)


def test_many_channels_at_a_high_rate_decode_in_bounded_memory(tmp_path):
    """60 s of 8-channel 192 kHz silence: 369 MB as one float32 read; the output is 3.8 MB."""
    path = wide_flac(tmp_path / "wide.flac", 60)
    tracemalloc.start()
    try:
        audio = decode_audio(path, max_seconds=14400)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert audio.shape == (60 * RATE,) and audio.dtype == np.float32
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MB"


def test_block_resampling_gives_what_one_whole_resample_gives(tmp_path):
    import librosa

    stereo = np.stack([tone(7.3, 44100, 440.0), tone(7.3, 44100, 1000.0)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    whole = librosa.resample(stereo.mean(axis=1), orig_sr=44100, target_sr=RATE)
    blocks = decode_audio(path)
    assert blocks.shape == whole.shape
    assert np.abs(blocks - whole).max() < 1e-3


@needs_ffmpeg
def test_ffmpeg_output_stops_at_the_limit(tmp_path):
    path = tmp_path / "long.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=440:d=30", str(path)],
                   check=True)
    with pytest.raises(InputError, match=r"lasts 0:03, longer than this server accepts \(0:02\)"):
        decode_audio(path, max_seconds=2)


def test_join_regions_fills_each_chunk_up_to_the_window_and_leaves_out_the_silence_between():
    s = 100  # samples per "second" in this synthetic layout
    regions = [(1 * s, 4 * s), (6 * s, 9 * s), (9 * s, 12 * s), (14 * s, 19 * s), (20 * s, 22 * s)]
    chunks = join_regions(regions, max_len=10 * s)
    # 3 + 3 + 3 s fit in 10 s (6-9 and 9-12 touch: one piece); 14-19 would make 14 s, so a new chunk starts.
    assert [c.pieces for c in chunks] == [((100, 400), (600, 1200)), ((1400, 1900), (2000, 2200))]
    assert [c.samples for c in chunks] == [900, 700] and all(c.samples <= 10 * s for c in chunks)
    audio = np.arange(25 * s, dtype=np.float32)
    assert np.array_equal(chunks[0].audio(audio), np.concatenate([audio[100:400], audio[600:1200]]))
    assert chunks[1].seconds(s) == ((14.0, 19.0), (20.0, 22.0))
    assert (chunks[0].start, chunks[0].end) == (100, 1200)


def test_chunk_audio_joins_a_chunk_only_when_it_is_read(monkeypatch):
    import engine.audio as audio_mod

    source = np.arange(100, dtype=np.float32)
    chunks = join_regions([(0, 10), (20, 30), (40, 45), (60, 80)], max_len=25)
    joined = []
    read = audio_mod.Chunk.audio
    monkeypatch.setattr(audio_mod.Chunk, "audio", lambda self, src: joined.append(self) or read(self, src))
    lazy = ChunkAudio([(source, c) for c in chunks])
    assert len(lazy) == 2 and chunk_samples(lazy) == [25, 20] and not joined  # lengths without joining
    assert np.array_equal(lazy[0], np.concatenate([source[0:10], source[20:30], source[40:45]]))
    assert [len(a) for a in lazy[1:]] == [20] and len(joined) == 2
    assert chunk_samples([np.zeros(3), np.zeros(5)]) == [3, 5]


def test_join_regions_cuts_speech_longer_than_the_window_and_merges_overlaps():
    chunks = join_regions([(0, 2500)], max_len=1000)
    assert all(c.samples <= 1000 for c in chunks) and len(chunks) == 3
    assert chunks[0].start == 0 and chunks[-1].end == 2500
    assert [c.pieces for c in join_regions([(0, 500), (400, 700), (650, 690)], max_len=1000)] == [((0, 700),)]


@needs_espeak
def test_vad_chunks_on_speech_with_known_pauses():
    speech = make_speech(SENTENCES[:6], pauses=[1.5, 2.5], lead=0.8)
    for window in (30.0, 9.0):
        chunks = speech_chunks(speech.audio, RATE, max_chunk_s=window)
        assert chunks, "speech was found"
        pieces = [p for c in chunks for p in c.pieces]
        for c in chunks:
            assert c.samples / RATE <= window
        for a, b in pieces:
            for start, end in zip(speech.starts, speech.ends):  # no border inside a sentence
                assert not start + 0.05 < a / RATE < end - 0.05 and not start + 0.05 < b / RATE < end - 0.05
        covered = [any(a / RATE <= s and e <= b / RATE for a, b in pieces) for s, e in zip(speech.starts, speech.ends)]
        assert all(covered), "every sentence lies wholly inside one piece of one chunk"
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(pieces, pieces[1:]))  # in order, no overlap
        # Pauses of 1.5 and 2.5 s keep 0.4 s of silence a side: the rest is left out.
        assert sum(c.samples for c in chunks) < speech.audio.size - 2 * RATE
    assert len(speech_chunks(speech.audio, RATE, max_chunk_s=9.0)) > len(speech_chunks(speech.audio, RATE, 30.0))
    regions = speech_regions(speech.audio, RATE)
    assert len(regions) == 6
    for (a, _), start in zip(regions, speech.starts):
        assert abs(a / RATE - start) < 0.2


@needs_espeak
def test_onnx_sequence_vad_finds_what_the_torchscript_vad_finds_also_in_parts_on_threads():
    speech = make_speech(SENTENCES[:8], pauses=[1.5, 2.5], lead=0.8)
    audio = np.tile(speech.audio, 4)  # about 2.5 minutes: long enough to be split into parts
    reference = SileroVad(sequence=False)
    assert reference.kind == "torchscript"
    expected = reference.speech(audio, RATE, max_speech_s=29.0)
    one, parts = SileroVad(threads=1, sequence=True), SileroVad(threads=2, sequence=True)
    assert one.kind == "onnx-sequence"
    assert one.speech(audio, RATE, max_speech_s=29.0) == expected  # the same probabilities, frame for frame
    found = parts.speech(audio, RATE, max_speech_s=29.0)
    assert len(found) == len(expected) == 4 * 8
    frame = SileroVad.FRAME  # a part's first frames follow a 2 s warm-up, not the whole history
    assert all(abs(a - b) <= frame for f, e in zip(found, expected) for a, b in zip(f, e))


def test_silence_and_noise_free_audio_has_no_chunks():
    assert speech_chunks(np.zeros(5 * RATE, np.float32), RATE) == []


def test_chunk_audio_waves_are_the_joined_chunks_zero_padded_on_the_device():
    """ChunkAudio.waves (what a GPU's log-mel reads: each recording's span sent once, pieces joined there)."""
    import torch

    from engine.audio import Chunk

    rng = np.random.default_rng(0)
    first, second = rng.standard_normal(5000).astype(np.float32), rng.standard_normal(3000).astype(np.float32)
    parts = [(first, Chunk(((100, 400), (900, 1000)))), (second, Chunk(((0, 2500),))),
             (first, Chunk(((4000, 5000),))), (second, Chunk(((2600, 2700), (2800, 3000))))]
    audio = ChunkAudio(parts)
    waves = audio.waves(slice(0, 4), 1200, "cpu")
    assert waves.shape == (4, 1200) and waves.dtype == torch.float32
    for row, joined in zip(waves, audio[0:4]):
        n = min(len(joined), 1200)
        assert np.array_equal(row[:n].numpy(), joined[:n]) and not row[n:].any()
    assert torch.equal(audio.waves(slice(1, 3), 1200, "cpu"), waves[1:3])
