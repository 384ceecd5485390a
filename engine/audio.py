"""Audio in: any file or bytes -> mono float32 at the model's rate; silero-vad speech chunks."""

from __future__ import annotations

import functools
import io
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.errors import InputError

ACCEPTED = "wav, flac, mp3, ogg, m4a (anything ffmpeg reads)"
# Below this peak amplitude a recording is digital silence, whatever its length.
SILENCE_PEAK = 1e-4


def decode_audio(source: str | Path | bytes, sampling_rate: int = 16000,
                 max_seconds: float | None = None) -> np.ndarray:
    """Decode a file (path or bytes) to mono float32 at `sampling_rate`; InputError if unusable."""
    if source is None or (isinstance(source, (str, Path)) and not str(source)):
        raise InputError(f"No audio was given; upload or record a file ({ACCEPTED}).")
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise InputError(f"Audio file {Path(source).name!r} was not found; upload it again ({ACCEPTED}).")
    name = "the audio" if isinstance(source, bytes) else repr(Path(source).name)
    if (len(source) if isinstance(source, bytes) else Path(source).stat().st_size) == 0:
        raise InputError(f"{name} is an empty file (0 bytes); upload a recording ({ACCEPTED}).")
    try:
        audio, rate = _read_soundfile(source, max_seconds)
    except _NotForSoundfile:
        audio, rate = _read_ffmpeg(source, sampling_rate, max_seconds, name)
    if audio.size == 0:
        raise InputError(f"{name} holds no samples (zero length); upload a recording with sound in it.")
    duration = audio.shape[0] / rate
    if max_seconds is not None and duration > max_seconds:
        raise _too_long(name, duration, max_seconds)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    audio = np.nan_to_num(audio.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
    if rate != sampling_rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sampling_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def is_silent(audio: np.ndarray) -> bool:
    """True for digital silence (no sample louder than SILENCE_PEAK)."""
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


class _NotForSoundfile(Exception):
    pass


def _too_long(name: str, duration: float, max_seconds: float) -> InputError:
    return InputError(f"{name} lasts {_clock(duration)}, longer than this server accepts "
                      f"({_clock(max_seconds)}); cut it or upload a shorter recording.")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _read_soundfile(source: str | Path | bytes, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with sf.SoundFile(handle) as f:
            rate = f.samplerate
            # mp3 headers may not know the length (frames == 0): the limit is checked after decoding.
            if max_seconds is not None and f.frames > 0 and f.frames / rate > max_seconds:
                raise _too_long("the audio" if isinstance(source, bytes) else repr(Path(source).name),
                                f.frames / rate, max_seconds)
            frames = -1 if max_seconds is None else int(max_seconds * rate) + rate
            return f.read(frames=frames, dtype="float32", always_2d=False), rate
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _NotForSoundfile from exc


def _read_ffmpeg(source: str | Path | bytes, sampling_rate: int, max_seconds: float | None,
                 name: str) -> tuple[np.ndarray, int]:
    # transformers' ffmpeg_read pipes from stdin (m4a with its index at the end fails that way)
    # and cannot stop early; this reads a real file and stops one second past the limit.
    with tempfile.TemporaryDirectory(prefix="studio-audio-") as tmp:
        path = str(source)
        if isinstance(source, bytes):
            path = str(Path(tmp) / "input")
            Path(path).write_bytes(source)
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-vn",
               "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le"]
        if max_seconds is not None:
            cmd += ["-t", f"{max_seconds + 1:.3f}"]
        try:
            done = subprocess.run(cmd + ["pipe:1"], capture_output=True, check=False)
        except FileNotFoundError:
            raise InputError(f"{name} is not a wav/flac/ogg/mp3 file and ffmpeg is not installed to "
                             f"read other formats; accepted: {ACCEPTED}.") from None
    audio = np.frombuffer(done.stdout, np.float32)
    if done.returncode != 0 or audio.size == 0:
        if done.returncode == 0:
            raise InputError(f"{name} holds no samples (zero length); upload a recording with sound in it.")
        raise InputError(f"{name} could not be decoded as audio; accepted: {ACCEPTED}.")
    return audio, sampling_rate


class SileroVad:
    """silero-vad loaded once; a lock because the model keeps state between windows."""

    def __init__(self) -> None:
        import torch

        threads = torch.get_num_threads()
        # Importing silero_vad calls torch.set_num_threads(1); undo that for this thread's later work.
        from silero_vad import get_speech_timestamps, load_silero_vad

        torch.set_num_threads(threads)
        self._model = load_silero_vad()
        self._find = get_speech_timestamps
        self._lock = threading.Lock()

    def speech(self, audio: np.ndarray, sampling_rate: int, max_speech_s: float,
               min_silence_ms: int = 300, pad_ms: int = 100) -> list[tuple[int, int]]:
        """Speech regions as sample ranges; regions longer than max_speech_s are split at pauses."""
        import torch

        audio16, step = audio, 1
        if sampling_rate != 16000:
            import librosa

            audio16 = librosa.resample(audio, orig_sr=sampling_rate, target_sr=16000)
            step = sampling_rate / 16000
        threads = torch.get_num_threads()
        # The small stateful VAD runs about 5x faster on one thread (silero's own advice);
        # with torch's OpenMP backend this setting is per thread, so other requests keep theirs.
        torch.set_num_threads(1)
        try:
            with self._lock, torch.inference_mode():
                found = self._find(torch.from_numpy(np.ascontiguousarray(audio16)), self._model,
                                   sampling_rate=16000, max_speech_duration_s=max_speech_s,
                                   min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms)
        finally:
            torch.set_num_threads(threads)
        n = audio.shape[0]
        return [(min(n, int(r["start"] * step)), min(n, int(r["end"] * step))) for r in found]


@functools.lru_cache(maxsize=1)
def silero_vad() -> SileroVad:
    """The process's one SileroVad, built on first use."""
    return SileroVad()


def pack_regions(regions: Sequence[tuple[int, int]], total: int, max_len: int,
                 pad: int) -> list[tuple[int, int]]:
    """Group speech regions into chunks of at most max_len samples, cut inside the silences.

    A chunk runs from its first region's start to its last region's end, widened by up to
    `pad` samples of the surrounding silence (never past the middle of a pause, never beyond
    max_len); regions longer than max_len are cut into equal pieces as a last resort.
    """
    pieces: list[tuple[int, int]] = []
    for start, end in sorted(regions):
        start, end = max(0, start), min(total, end)
        if end <= start:
            continue
        if pieces and start < pieces[-1][1]:  # overlapping regions merge
            start = pieces.pop()[0]
        count = -(-(end - start) // max_len)
        step = -(-(end - start) // count)
        pieces += [(s, min(end, s + step)) for s in range(start, end, step)]
    groups: list[list[int]] = []
    for start, end in pieces:
        if groups and end - groups[-1][0] <= max_len and start >= groups[-1][1]:
            groups[-1][1] = end
        else:
            groups.append([start, end])
    chunks = []
    for i, (start, end) in enumerate(groups):
        before = groups[i - 1][1] if i else 0
        after = groups[i + 1][0] if i + 1 < len(groups) else total
        room = max(0, max_len - (end - start))
        left = min(pad, (start - before) // 2 if i else start, room // 2)
        right = min(pad, (after - end) // 2 if i + 1 < len(groups) else after - end, room - left)
        chunks.append((start - left, end + right))
    return chunks


def speech_chunks(audio: np.ndarray, sampling_rate: int, max_chunk_s: float = 30.0, pad_s: float = 0.4,
                  vad: SileroVad | None = None) -> list[tuple[int, int]]:
    """VAD-cut sample ranges, each at most max_chunk_s long, borders inside silences; [] if no speech."""
    return speech_regions_and_chunks(audio, sampling_rate, max_chunk_s, pad_s, vad)[1]


def speech_regions(audio: np.ndarray, sampling_rate: int, vad: SileroVad | None = None) -> list[tuple[int, int]]:
    """Where the VAD hears speech, as sample ranges (no length limit)."""
    return (vad or silero_vad()).speech(audio, sampling_rate, max_speech_s=float("inf"))


def speech_regions_and_chunks(audio: np.ndarray, sampling_rate: int, max_chunk_s: float = 30.0,
                              pad_s: float = 0.4, vad: SileroVad | None = None
                              ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The speech regions the VAD heard and the chunks packed from them (both sample ranges)."""
    vad = vad or silero_vad()
    max_len = int(max_chunk_s * sampling_rate)
    pad = int(pad_s * sampling_rate)
    regions = vad.speech(audio, sampling_rate, max_speech_s=max(1.0, max_chunk_s - 2 * pad_s - 0.5))
    return regions, pack_regions(regions, audio.shape[0], max_len, pad)
