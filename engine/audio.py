"""Audio in: any file or bytes -> mono float32 at the model's rate; silero-vad speech chunks."""

from __future__ import annotations

import collections.abc
import functools
import io
import math
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.errors import InputError

ACCEPTED = "wav, flac, mp3, ogg, m4a, webm and other single-file audio or video formats ffmpeg reads"
# Below this peak amplitude a recording is digital silence, whatever its length.
SILENCE_PEAK = 1e-4
# Channels and rates any recording has; beyond them a header is hostile or broken.
MAX_CHANNELS = 32
MIN_RATE, MAX_RATE = 1000, 384000
BLOCK_SAMPLES = 1 << 20  # samples (all channels) decoded at a time: 4 MB of float32
# ffmpeg demuxers for self-contained files (names as `ffmpeg -demuxers` prints them; a name matches
# any of a demuxer's aliases, e.g. "mov" matches "mov,mp4,m4a,3gp,3g2,mj2"). Left out on purpose:
# hls, dash, concat, image2 and every other demuxer that opens further inputs or devices.
FFMPEG_DEMUXERS = ",".join([
    "wav", "w64", "flac", "mp3", "ogg", "mov", "matroska", "aac", "aiff", "caf", "au", "wv", "ape", "tta",
    "amr", "ac3", "eac3", "asf", "avi", "flv", "mpegts", "mpeg"])


def decode_audio(source: str | Path | bytes, sampling_rate: int = 16000,
                 max_seconds: float | None = None, min_seconds: float | None = None) -> np.ndarray:
    """Decode a file (path or bytes) to mono float32 at `sampling_rate`; InputError if unusable.

    Memory is bounded by the output (mono at `sampling_rate`, at most max_seconds + 1 s): the
    input is read, downmixed and resampled in blocks, whatever its channels and rate.
    """
    if source is None or (isinstance(source, (str, Path)) and not str(source)):
        raise InputError(f"No audio was given; upload or record a file ({ACCEPTED}).")
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise InputError(f"Audio file {Path(source).name!r} was not found; upload it again ({ACCEPTED}).")
    name = "the audio" if isinstance(source, bytes) else repr(Path(source).name)
    if (len(source) if isinstance(source, bytes) else Path(source).stat().st_size) == 0:
        raise InputError(f"{name} is an empty file (0 bytes); upload a recording ({ACCEPTED}).")
    try:
        audio, duration = _read_soundfile(source, sampling_rate, max_seconds, name)
    except _NotForSoundfile:
        audio, duration = _read_ffmpeg(source, sampling_rate, max_seconds, name)
    if audio.size == 0:
        raise InputError(f"{name} holds no samples (zero length); upload a recording with sound in it.")
    if max_seconds is not None and duration > max_seconds:
        raise _too_long(name, duration, max_seconds)
    if min_seconds is not None and duration < min_seconds:
        longest = f" and at most {_clock(max_seconds)}" if max_seconds is not None else ""
        raise InputError(f"{name} lasts only {duration:.2f} s, too short to transcribe; recordings of at least "
                         f"{min_seconds:g} s{longest} are accepted.")
    return audio


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


def check_shape(channels: int, rate: int, name: str) -> None:
    """Refuse channel counts and sample rates no recording has (read from the header)."""
    if not 1 <= channels <= MAX_CHANNELS or not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(f"{name} says it has {channels} channel{'s' if channels != 1 else ''} at {rate:,} Hz; "
                         f"recordings of 1 to {MAX_CHANNELS} channels at {MIN_RATE:,} to {MAX_RATE:,} Hz are "
                         f"accepted ({ACCEPTED}).")


class _Output:
    """Mono samples appended block by block into one buffer sized from the limit (or grown without one)."""

    def __init__(self, capacity: int | None) -> None:
        # np.empty maps pages lazily: a buffer sized for the limit costs only what is written.
        self._buffer = np.empty(capacity, np.float32) if capacity is not None else None
        self._parts: list[np.ndarray] = []
        self.size = 0

    def add(self, block: np.ndarray) -> bool:
        """Append; False once a bounded buffer is full (what did not fit is dropped)."""
        if self._buffer is None:
            self._parts.append(np.array(block, np.float32))
            self.size += block.shape[0]
            return True
        room = self._buffer.shape[0] - self.size
        take = min(room, block.shape[0])
        self._buffer[self.size:self.size + take] = block[:take]
        self.size += take
        return take == block.shape[0] and take < room

    def result(self, length: int | None = None) -> np.ndarray:
        audio = self._buffer[:self.size] if self._buffer is not None else (
            np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32))
        if length is not None and length != audio.shape[0]:
            audio = audio[:length] if length < audio.shape[0] else np.pad(audio, (0, length - audio.shape[0]))
        return np.ascontiguousarray(audio, dtype=np.float32)


def _read_soundfile(source: str | Path | bytes, sampling_rate: int, max_seconds: float | None,
                    name: str) -> tuple[np.ndarray, float]:
    import soundfile as sf
    import soxr

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with sf.SoundFile(handle) as f:
            rate, channels = f.samplerate, f.channels
            check_shape(channels, rate, name)
            # mp3 headers may not know the length (frames == 0): the limit is checked after decoding.
            if max_seconds is not None and f.frames > 0 and f.frames / rate > max_seconds:
                raise _too_long(name, f.frames / rate, max_seconds)
            wanted = None if max_seconds is None else int(max_seconds * rate) + rate
            if f.frames > 0:
                wanted = f.frames if wanted is None else min(wanted, f.frames)
            ratio = sampling_rate / rate
            capacity = None if wanted is None else math.ceil(wanted * ratio) + 64
            out = _Output(capacity)
            stream = soxr.ResampleStream(rate, sampling_rate, 1, dtype="float32") if rate != sampling_rate else None
            block = max(1024, BLOCK_SAMPLES // channels)
            read = 0
            while wanted is None or read < wanted:
                frames = f.read(block if wanted is None else min(block, wanted - read), dtype="float32",
                                always_2d=True)
                if frames.shape[0] == 0:
                    break
                read += frames.shape[0]
                mono = frames[:, 0] if channels == 1 else frames.mean(axis=1, dtype=np.float32)
                mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
                if not out.add(stream.resample_chunk(mono) if stream else mono):
                    break
            if stream:
                out.add(stream.resample_chunk(np.zeros(0, np.float32), last=True))
            # The same length librosa.resample gives, so a file decodes to the same samples either way.
            return out.result(math.ceil(read * ratio) if stream else None), read / rate
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _NotForSoundfile from exc


def _read_ffmpeg(source: str | Path | bytes, sampling_rate: int, max_seconds: float | None,
                 name: str) -> tuple[np.ndarray, float]:
    # transformers' ffmpeg_read pipes from stdin (m4a with its index at the end fails that way)
    # and cannot stop early; this reads a real file and stops one second past the limit.
    # ffmpeg gets the upload and nothing else: a playlist (HLS), concat list or other indirection
    # would make it open files of the server, so only the file protocol, only for this path, and
    # only demuxers of single self-contained files.
    with tempfile.TemporaryDirectory(prefix="studio-audio-") as tmp:
        path = Path(source).resolve() if not isinstance(source, bytes) else Path(tmp) / "input"
        if isinstance(source, bytes):
            path.write_bytes(source)
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
               "-protocol_whitelist", "file", "-format_whitelist", FFMPEG_DEMUXERS,
               "-i", f"file:{path}", "-vn", "-sn", "-dn",
               "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le"]
        limit = None
        if max_seconds is not None:
            cmd += ["-t", f"{max_seconds + 1:.3f}"]
            limit = int((max_seconds + 1) * sampling_rate) + sampling_rate
        try:
            proc = subprocess.Popen(cmd + ["pipe:1"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            raise InputError(f"{name} is not a wav/flac/ogg/mp3 file and ffmpeg is not installed to "
                             f"read other formats; accepted: {ACCEPTED}.") from None
        out, full = _Output(limit), False
        try:
            while not full:
                chunk = proc.stdout.read(BLOCK_SAMPLES * 4)
                if not chunk:
                    break
                # -t stops ffmpeg near the limit; the buffer stops reading there whatever ffmpeg does.
                full = not out.add(np.frombuffer(chunk[:len(chunk) - len(chunk) % 4], np.float32))
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            if full:
                proc.kill()
            returncode = proc.wait()
    audio = out.result()
    if (returncode != 0 and not full) or audio.size == 0:
        if returncode == 0:
            raise InputError(f"{name} holds no samples (zero length); upload a recording with sound in it.")
        raise InputError(f"{name} could not be decoded as audio; accepted: {ACCEPTED}.")
    audio = np.nan_to_num(audio, nan=0.0, posinf=1.0, neginf=-1.0)
    return audio, audio.shape[0] / sampling_rate


class SileroVad:
    """silero-vad loaded once.

    With onnxruntime installed it runs silero's block-wise ("sequence") ONNX model: the same
    speech probabilities as the per-frame TorchScript model, a few calls instead of one per
    32 ms, and long audio split into parts on threads. Without it, the TorchScript model.
    """

    FRAME = 512  # samples per VAD frame at 16 kHz
    PART_S = 60.0  # audio longer than this is split into parts run on threads
    WARM_FRAMES = 64  # frames (2 s) each part runs before its first kept one, to settle the LSTM state
    MAX_THREADS = 16  # parts run at once at most (bench/README.md: 8 threads took 0.71 s for 30 min on an H200 host)

    def __init__(self, threads: int | None = None, sequence: bool | None = None) -> None:
        import os

        import torch

        torch_threads = torch.get_num_threads()
        # Importing silero_vad calls torch.set_num_threads(1); undo that for this thread's later work.
        from silero_vad import get_speech_timestamps, load_silero_vad
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        torch.set_num_threads(torch_threads)
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = max(1, threads or min(self.MAX_THREADS, usable))
        self._sequence = None
        if sequence is not False:
            try:
                self._sequence = load_silero_vad(sequence=True)
            except ImportError:
                if sequence:
                    raise
        self._model = None if self._sequence else load_silero_vad()
        self._find = get_speech_timestamps
        self._from_probs = get_speech_timestamps_from_probs
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._torch: dict[str, object] = {}  # device -> engine.silero_torch.SileroTorch

    @property
    def kind(self) -> str:
        return "onnx-sequence" if self._sequence else "torchscript"

    def speech(self, audio: np.ndarray, sampling_rate: int, max_speech_s: float,
               min_silence_ms: int = 300, pad_ms: int = 100) -> list[tuple[int, int]]:
        """Speech regions as sample ranges; regions longer than max_speech_s are split at pauses."""
        return self.speech_sets(audio, sampling_rate, [(max_speech_s, min_silence_ms, pad_ms)])[0]

    def speech_sets(self, audio: np.ndarray, sampling_rate: int, settings: Sequence[tuple[float, int, int]],
                    device=None) -> list[list[tuple[int, int]]]:
        """speech() for each (max_speech_s, min_silence_ms, pad_ms), from one pass of the model where it can.
        device: a CUDA device runs the network there (engine.silero_torch), else the CPU model."""
        audio16, step = audio, 1
        if sampling_rate != 16000:
            import librosa

            audio16 = librosa.resample(audio, orig_sr=sampling_rate, target_sr=16000)
            step = sampling_rate / 16000
        audio16 = np.ascontiguousarray(audio16, dtype=np.float32)
        n = audio.shape[0]
        gpu = device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda"
        probs = self.probabilities(audio16, device if gpu else None)
        probs = probs.tolist() if probs is not None else None
        out = []
        for max_speech_s, min_silence_ms, pad_ms in settings:
            params = dict(sampling_rate=16000, max_speech_duration_s=max_speech_s,
                          min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms)
            if probs is not None:
                found = self._from_probs(probs, audio_length_samples=audio16.shape[0], **params)
            else:
                found = self._torchscript(audio16, params)
            out.append([(min(n, int(r["start"] * step)), min(n, int(r["end"] * step))) for r in found])
        return out

    def probabilities(self, audio16: np.ndarray, device=None) -> np.ndarray | None:
        """Per-frame speech probabilities; long audio in parts on threads, each warmed on what precedes it.
        With a (CUDA) device, the torch network there, a part per PART_S run side by side. None where only
        the TorchScript model is here and no device is given (it finds regions itself)."""
        if device is not None:
            parts = max(1, int(audio16.shape[0] / 16000 // self.PART_S))
            return self._on(device).probabilities(audio16, parts=parts, warm=self.WARM_FRAMES)
        if not self._sequence:
            return None
        frames = -(-audio16.shape[0] // self.FRAME)
        parts = min(self.threads, max(1, int(audio16.shape[0] / 16000 // self.PART_S)))
        if parts == 1:
            return self._sequence.audio_forward(audio16, 16000)
        bounds = np.linspace(0, frames, parts + 1).astype(int)

        def part(i: int) -> np.ndarray:
            first, stop = bounds[i], bounds[i + 1]
            warm = min(first, self.WARM_FRAMES)
            piece = audio16[(first - warm) * self.FRAME: stop * self.FRAME]
            return self._sequence.audio_forward(np.ascontiguousarray(piece), 16000)[warm:]

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=parts) as pool:
            return np.concatenate(list(pool.map(part, range(parts))))

    def _on(self, device):
        """The torch network on `device`, built on first use."""
        from engine.silero_torch import SileroTorch

        key = str(device)
        with self._build_lock:
            if key not in self._torch:
                self._torch[key] = SileroTorch(device)
            return self._torch[key]

    def _torchscript(self, audio16: np.ndarray, params: dict) -> list[dict]:
        import torch

        threads = torch.get_num_threads()
        # The small stateful VAD runs about 5x faster on one thread (silero's own advice);
        # with torch's OpenMP backend this setting is per thread, so other requests keep theirs.
        torch.set_num_threads(1)
        try:
            with self._lock, torch.inference_mode():  # the TorchScript model keeps state between windows
                return self._find(torch.from_numpy(audio16), self._model, **params)
        finally:
            torch.set_num_threads(threads)


@functools.lru_cache(maxsize=1)
def silero_vad() -> SileroVad:
    """The process's one SileroVad, built on first use."""
    return SileroVad()


# How speech is cut into decoding windows: faster-whisper's batched pipeline's VAD settings (shorter pauses
# split regions, each keeps 0.4 s of silence a side), the regions then joined end to end up to the window.
# Against chunks that kept every pause, WER on the bench's four 10-minute recordings went from 5.3% to 4.7%
# with 10% fewer chunks (bench/README.md section 3).
CHUNK_MIN_SILENCE_MS = 160
CHUNK_PAD_MS = 400
# The speech regions that times are snapped onto: tight (0.1 s of padding), pauses from 0.3 s.
REGION_MIN_SILENCE_MS = 300
REGION_PAD_MS = 100


@dataclass(frozen=True)
class Chunk:
    """One decoding window: padded speech regions of the source audio (sample ranges, in order), joined
    end to end; the silence between them beyond their padding is left out."""

    pieces: tuple[tuple[int, int], ...]

    @property
    def start(self) -> int:
        return self.pieces[0][0]

    @property
    def end(self) -> int:
        return self.pieces[-1][1]

    @property
    def samples(self) -> int:
        return sum(e - s for s, e in self.pieces)

    def audio(self, source: np.ndarray) -> np.ndarray:
        """The chunk's samples of `source` (a view when it is one piece)."""
        if len(self.pieces) == 1:
            return source[self.start:self.end]
        return np.concatenate([source[s:e] for s, e in self.pieces])

    def seconds(self, rate: int) -> tuple[tuple[float, float], ...]:
        """The pieces in seconds of the source."""
        return tuple((s / rate, e / rate) for s, e in self.pieces)


class ChunkAudio(collections.abc.Sequence):
    """The audio of chunks, given as (source recording, Chunk) pairs, each joined only when read (a batch at
    a time): long recordings' chunks are not all copied at once. len() of an item without reading it:
    samples(i)."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, Chunk]]) -> None:
        self.parts = list(parts)

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [chunk.audio(source) for source, chunk in self.parts[index]]
        source, chunk = self.parts[index]
        return chunk.audio(source)

    def samples(self, index: int) -> int:
        return self.parts[index][1].samples

    def waves(self, index: slice, length: int, device):
        """The chunks self[index] as the rows of a zero-padded float32 tensor [rows, length] on `device` (each
        cut to `length`): the span of each recording that the rows read goes to the device in one copy, and the
        pieces are put together there, not joined on the host first."""
        import torch

        parts = self.parts[index]
        out = torch.zeros(len(parts), length, dtype=torch.float32, device=device)
        spans: dict[int, list] = {}
        for source, chunk in parts:
            span = spans.setdefault(id(source), [source, chunk.start, chunk.end])
            span[1], span[2] = min(span[1], chunk.start), max(span[2], chunk.end)
        sent = {key: (lo, torch.from_numpy(np.ascontiguousarray(source[lo:hi], dtype=np.float32)).to(device))
                for key, (source, lo, hi) in spans.items()}
        for row, (source, chunk) in enumerate(parts):
            lo, data = sent[id(source)]
            at = 0
            for start, end in chunk.pieces:
                n = min(end - start, length - at)
                if n <= 0:
                    break
                out[row, at:at + n] = data[start - lo:start - lo + n]
                at += n
        return out


def chunk_samples(chunks: Sequence[np.ndarray]) -> list[int]:
    """Samples per chunk, without joining a ChunkAudio's pieces."""
    if isinstance(chunks, ChunkAudio):
        return [chunks.samples(i) for i in range(len(chunks))]
    return [len(c) for c in chunks]


def join_regions(regions: Sequence[tuple[int, int]], max_len: int) -> list[Chunk]:
    """Padded speech regions -> chunks of at most max_len samples, each region whole in one chunk, in order
    (faster-whisper's collect_chunks). A region longer than max_len is cut into equal pieces, each its own chunk."""
    chunks: list[Chunk] = []
    current: list[tuple[int, int]] = []
    length = 0
    for start, end in regions:
        if end <= start:
            continue
        if current and start < current[-1][1]:  # overlapping padding: one piece
            start = current[-1][1]
            if end <= start:
                continue
        count = -(-(end - start) // max_len)
        step = -(-(end - start) // count)
        for lo in range(start, end, step):
            hi = min(end, lo + step)
            if current and length + hi - lo > max_len:
                chunks.append(Chunk(tuple(current)))
                current, length = [], 0
            if current and current[-1][1] == lo:  # touching pieces read as one
                current[-1] = (current[-1][0], hi)
            else:
                current.append((lo, hi))
            length += hi - lo
    if current:
        chunks.append(Chunk(tuple(current)))
    return chunks


def speech_chunks(audio: np.ndarray, sampling_rate: int, max_chunk_s: float = 30.0,
                  vad: SileroVad | None = None, device=None) -> list[Chunk]:
    """VAD-cut chunks, each at most max_chunk_s of audio, borders inside silences; [] if no speech.
    device: as SileroVad.speech_sets'."""
    return speech_regions_and_chunks(audio, sampling_rate, max_chunk_s, vad, device)[1]


def speech_regions(audio: np.ndarray, sampling_rate: int, vad: SileroVad | None = None,
                   device=None) -> list[tuple[int, int]]:
    """Where the VAD hears speech, as sample ranges (no length limit). device: as SileroVad.speech_sets'."""
    return (vad or silero_vad()).speech_sets(audio, sampling_rate, [
        (float("inf"), REGION_MIN_SILENCE_MS, REGION_PAD_MS)], device)[0]


def speech_regions_and_chunks(audio: np.ndarray, sampling_rate: int, max_chunk_s: float = 30.0,
                              vad: SileroVad | None = None,
                              device=None) -> tuple[list[tuple[int, int]], list[Chunk]]:
    """The speech regions the VAD heard (tight, as speech_regions gives them: sample ranges) and the chunks
    joined from its padded regions (join_regions), from one pass of the VAD. device: as SileroVad.speech_sets'
    (a CUDA device runs the VAD there: the speech model's, where it is on one)."""
    vad = vad or silero_vad()
    max_len = int(max_chunk_s * sampling_rate)
    tight, padded = vad.speech_sets(audio, sampling_rate, [
        (float("inf"), REGION_MIN_SILENCE_MS, REGION_PAD_MS),
        (max(1.0, max_chunk_s), CHUNK_MIN_SILENCE_MS, CHUNK_PAD_MS)], device)
    return tight, join_regions(padded, max_len)
