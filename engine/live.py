"""Live transcription: audio arriving in small chunks -> committed utterances plus an open tail.

silero-vad finds where speech stops; an utterance followed by enough silence is transcribed once
with engine.speech.transcribe and committed (its text and times never change afterwards). The
speech after the last commit, the open tail, is transcribed again as it grows, for display only.
Only the audio since the last commit is kept, so memory is bounded by `max_utterance_s` whatever
the recording's length; the whole session is bounded by `max_seconds` of audio received.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.audio import check_shape, decode_audio, silero_vad
from engine.errors import InputError
from engine.speech import Segment, Transcript, TranscribeOptions, Word, tidy_times, transcribe



@dataclass(frozen=True)
class LiveOptions:
    """When an utterance is committed and how much audio a session may hold."""

    max_seconds: float = 4 * 3600.0  # audio one session may send in all (--max-audio-seconds)
    commit_silence_s: float = 0.5  # silence after speech that ends an utterance
    # Audio a commit holds at least, unless a long pause ends it: context for the model. Measured on 7
    # recordings (bench/README.md): 12 s and 2 s pauses gave 8.9% WER against 11.9% with 8 s and 1.2 s,
    # for 0.3 s more from an utterance's end to its commit; the open tail shows the words meanwhile.
    min_commit_s: float = 12.0
    long_pause_s: float = 2.0  # a pause this long commits whatever came before it
    max_utterance_s: float = 20.0  # commit anyway (at the longest pause) past this: inside Whisper's 30 s
    preroll_s: float = 0.5  # silence kept before speech, so the VAD and the model hear its onset
    tail_every_s: float = 1.0  # audio added between two decodings of the open tail
    max_lag_s: float = 1.0  # behind real time by more than this: skip tail decodings until caught up

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.max_utterance_s <= 2 * self.commit_silence_s:
            raise ValueError("max_seconds must be positive and max_utterance_s longer than two silences")


@dataclass(frozen=True)
class Commit:
    """One committed utterance, for the latency figures: where its speech ended and how much audio
    had been received when it was committed (seconds of the recording), and how far processing was
    behind the audio then (backlog plus the time this feed took up to the commit)."""

    speech_end: float
    received_at: float
    behind_s: float
    wall: float = 0.0  # time.perf_counter() at the commit

    @property
    def latency_s(self) -> float:
        """From the end of the utterance to its committed text, when audio arrives in real time."""
        return self.received_at - self.speech_end + self.behind_s


@dataclass
class LiveSession:
    """One recording's state; plain data (picklable), fed and finished with a pipeline."""

    rate: int = 16000
    options: LiveOptions = field(default_factory=LiveOptions)
    transcribe_options: TranscribeOptions = field(default_factory=TranscribeOptions)
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    offset: float = 0.0  # absolute time of buffer[0], seconds from the start of the recording
    received: float = 0.0  # seconds of audio received in all
    segments: list[Segment] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tail: str = ""
    tail_at: float = -1.0  # `received` when the tail was last decoded
    busy_s: float = 0.0  # wall seconds spent in feed()
    lag_s: float = 0.0  # how far processing is behind the audio received (never below 0)
    commits: list[Commit] = field(default_factory=list)
    full: bool = False  # max_seconds reached: further audio is ignored
    _started: float = field(default=0.0, repr=False)
    closed: bool = False
    note: str | None = None

    @property
    def text(self) -> str:
        """The committed text (never changes once there)."""
        return " ".join(self.texts)

    @property
    def real_time_factor(self) -> float:
        return self.busy_s / self.received if self.received else 0.0

    def feed(self, pipe, samples: np.ndarray, vad=None) -> bool:
        """Add mono float32 samples at self.rate; commit finished utterances, decode the tail.

        False when nothing was taken (the session is closed or has reached max_seconds)."""
        if self.closed or self.full:
            return False
        started = self._started = time.perf_counter()
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        room = int(round((self.options.max_seconds - self.received) * self.rate))
        if samples.shape[0] >= room:
            samples, self.full = samples[:max(0, room)], True
            self.note = (f"The recording reached this server's limit of {self.options.max_seconds:g} s; "
                         "what came after it was not transcribed.")
        self.buffer = np.concatenate([self.buffer, samples])
        self.received += samples.shape[0] / self.rate
        speaking = self._commit_finished(pipe, vad or silero_vad())
        if not speaking:
            self.tail = ""
        elif self._wants_tail():
            self.tail = transcribe(pipe, self.buffer, self._tail_options()).text
            self.tail_at = self.received
        spent = time.perf_counter() - started
        self.busy_s += spent
        self.lag_s = max(0.0, self.lag_s + spent - samples.shape[0] / self.rate)
        return True

    def finish(self, pipe, vad=None) -> Transcript:
        """Commit what is left and return the whole recording's transcript; the buffer is emptied."""
        if not self.closed and self.buffer.size:
            started = self._started = time.perf_counter()
            regions = self._regions(vad or silero_vad())
            if regions:
                self._commit(pipe, self.buffer.shape[0], regions[-1][1])
            self.busy_s += time.perf_counter() - started
        self.buffer, self.tail = np.zeros(0, np.float32), ""
        notes = [n for n in (self.note, None if self.text else "No speech was heard in this recording.") if n]
        language = "en" if getattr(pipe, "type", "") == "seq2seq_whisper" and not getattr(
            getattr(pipe.model, "generation_config", None), "is_multilingual", False) else None
        return Transcript(self.text, tidy_times(self.segments, self.received), self.received, "live", language,
                          " ".join(notes) or None)

    def close(self) -> None:
        """Forget everything (the page closed or the state expired)."""
        self.closed = True
        self.buffer, self.tail = np.zeros(0, np.float32), ""
        self.segments, self.texts, self.commits = [], [], []

    # -- inside

    def _regions(self, vad) -> list[tuple[int, int]]:
        if not self.buffer.size:
            return []
        return vad.speech(self.buffer, self.rate, max_speech_s=self.options.max_utterance_s,
                          min_silence_ms=int(self.options.commit_silence_s * 1000 * 0.6))

    def _commit_finished(self, pipe, vad) -> bool:
        """Commit the utterances that have ended; True when speech is still open in the buffer."""
        regions = self._regions(vad)
        rate, end = self.rate, self.buffer.shape[0]
        if not regions:  # silence: keep only a pre-roll
            self._drop(max(0, end - int(self.options.preroll_s * rate)))
            return False
        self._drop(max(0, regions[0][0] - int(self.options.preroll_s * rate)))
        if self.buffer.shape[0] != end:
            return self._commit_finished(pipe, vad)  # times moved: find the regions again
        silence = int(self.options.commit_silence_s * rate)
        finished = [i for i, (_, stop) in enumerate(regions) if end - stop >= silence]
        # A short utterance waits for the next one (shown meanwhile as the tail): Whisper reads a few
        # sentences together better than each alone. A long pause, or enough audio, commits it.
        long_pause = int(self.options.long_pause_s * rate)
        finished = [i for i in finished if regions[i][1] >= self.options.min_commit_s * rate
                    or (regions[i + 1][0] if i + 1 < len(regions) else end) - regions[i][1] >= long_pause]
        if not finished and end > self.options.max_utterance_s * rate and len(regions) > 1:
            finished = [len(regions) - 2]  # no pause long enough: cut at the last one there is
        if not finished:
            if end > (self.options.max_utterance_s + self.options.preroll_s) * rate:
                self._commit(pipe, end, regions[-1][1])  # speech without any pause: cut where it is
                return False
            return True
        last = finished[-1]
        stop = regions[last][1]
        following = regions[last + 1][0] if last + 1 < len(regions) else end
        cut = min(stop + int(0.25 * rate), (stop + following) // 2)
        self._commit(pipe, cut, stop)
        return last + 1 < len(regions)

    def _commit(self, pipe, cut: int, speech_end: int) -> None:
        piece = self.buffer[:cut]
        result = transcribe(pipe, piece, self._commit_options())
        if result.text:
            segments = result.segments or (Segment(0.0, speech_end / self.rate, result.text),)
            for seg in segments:
                self.segments.append(Segment(seg.start + self.offset, seg.end + self.offset, seg.text,
                                             tuple(Word(w.start + self.offset, w.end + self.offset, w.text)
                                                   for w in seg.words)))
            self.texts.append(result.text)
            behind = self.lag_s + time.perf_counter() - self._started
            self.commits.append(Commit(self.offset + speech_end / self.rate, self.received, behind,
                                       time.perf_counter()))
        self._drop(cut)
        self.tail_at = -1.0  # the tail changed: decode it again

    def _commit_options(self) -> TranscribeOptions:
        # Pieces are short: decoded as file mode's vad chunks are (engine.whisper_batch for greedy Whisper).
        o = self.transcribe_options  # the live view shows every utterance's times: at least segments
        return TranscribeOptions(timestamps="segments" if o.timestamps == "none" else o.timestamps, mode="vad",
                                 batch_size=1, num_beams=o.num_beams or 1,  # auto: greedy (latency)
                                 language=o.language, task=o.task,
                                 generate_kwargs=o.generate_kwargs, prompt=o.prompt,
                                 int8=o.int8, bf16=o.bf16, segment_times=o.segment_times)

    def _tail_options(self) -> TranscribeOptions:
        o = self.transcribe_options  # shown only until committed: text alone, greedy
        return TranscribeOptions(timestamps="none", mode="vad", batch_size=1, language=o.language, task=o.task,
                                 generate_kwargs=o.generate_kwargs, prompt=o.prompt, int8=o.int8, bf16=o.bf16)

    def _drop(self, samples: int) -> None:
        if samples > 0:
            self.buffer = self.buffer[samples:].copy()
            self.offset += samples / self.rate

    def _wants_tail(self) -> bool:
        if self.lag_s > self.options.max_lag_s:
            return False
        if self.tail_at < 0:
            return True
        return self.received - self.tail_at >= self.options.tail_every_s



class LiveStream:
    """A LiveSession fed from the thread that receives audio: push() returns at once and the audio is
    transcribed on `executor` (shared by every stream, so it bounds the model work of all of them).

    Gradio's stream event keeps only the latest chunk that arrived while its handler ran, so the
    handler must never wait for the model. Audio waiting to be transcribed is capped at
    `max_backlog_s`; past it the oldest is dropped and the session's note says how much.
    """

    def __init__(self, session: LiveSession, pipe_for: Callable[[], Any], executor: Executor,
                 max_backlog_s: float = 60.0) -> None:
        self.session, self._pipe_for, self._executor = session, pipe_for, executor
        self.max_backlog_s = max_backlog_s
        self._inbox: list[np.ndarray] = []
        self._queued = 0
        self._running = False
        self._dropped_s = 0.0
        self._done = threading.Condition()
        self.error: BaseException | None = None
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=4096)  # (seconds received in all, wall)
        self._pushed_s = 0.0
        self._recent: dict[str, np.ndarray] = {}
        self._made = time.perf_counter()
        self.latencies: deque[float] = deque(maxlen=1000)  # utterance end heard -> its text committed, s

    def _measure(self, before: int) -> None:
        """Wall seconds from the arrival of each new commit's last speech to the commit itself."""
        for commit in self.session.commits[before:]:
            arrived = next((wall for total, wall in self._arrivals if total >= commit.speech_end), None)
            if arrived is not None:
                self.latencies.append(max(0.0, commit.wall - arrived))

    def chunk(self, path: str, read: Callable[..., np.ndarray], max_seconds: float) -> np.ndarray:
        """A chunk file's samples. Gradio stores uploads under their content's hash, so two identical
        chunks (digital silence) share a path, which may be gone once the first was read and deleted:
        the last few chunks read are remembered by path."""
        try:
            samples = read(path, self.session.rate, max_seconds)
        except FileNotFoundError:
            if path in self._recent:
                return self._recent[path]
            raise InputError("A chunk of the microphone stream was lost; stop and record again.") from None
        self._recent[path] = samples
        while len(self._recent) > 16:
            self._recent.pop(next(iter(self._recent)))
        return samples

    @property
    def idle_s(self) -> float:
        """Seconds since audio last arrived (since the stream was made, before any)."""
        last = self._arrivals[-1][1] if self._arrivals else self._made
        return time.perf_counter() - last

    @property
    def backlog_s(self) -> float:
        return self._queued / self.session.rate

    def push(self, samples: np.ndarray) -> None:
        """Queue audio for transcription (raises the worker's error, if it had one)."""
        if self.error is not None:
            raise self.error
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._done:
            if self.session.closed or self.session.full:
                return
            self._inbox.append(samples)
            self._queued += samples.shape[0]
            self._pushed_s += samples.shape[0] / self.session.rate
            self._arrivals.append((self._pushed_s, time.perf_counter()))
            limit = int(self.max_backlog_s * self.session.rate)
            while self._queued > limit and len(self._inbox) > 1:
                old = self._inbox.pop(0)
                self._queued -= old.shape[0]
                self._dropped_s += old.shape[0] / self.session.rate
                self.session.note = (f"The server fell behind: {self._dropped_s:.1f} s of audio were skipped "
                                     "(it transcribes at most one minute behind real time).")
            if not self._running:
                self._running = True
                self._executor.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._done:
                if not self._inbox or self.session.closed:
                    self._inbox, self._queued, self._running = [], 0, False
                    self._done.notify_all()
                    return
                audio = np.concatenate(self._inbox)
                self._inbox, self._queued = [], 0
            try:
                before = len(self.session.commits)
                self.session.feed(self._pipe_for(), audio)
                self._measure(before)
            except BaseException as exc:  # noqa: BLE001 - reported to the page by the next push/finish
                with self._done:
                    self.error, self._inbox, self._queued, self._running = exc, [], 0, False
                    self._done.notify_all()
                return

    def finish(self, timeout: float | None = None) -> Transcript:
        """Wait (at most `timeout` s) for the queued audio, then the recording's whole transcript."""
        with self._done:
            self._done.wait_for(lambda: not self._running, timeout)
        if self.error is not None:
            raise self.error
        with self._done:
            before = len(self.session.commits)
            result = self.session.finish(self._pipe_for())
            self._measure(before)
            return result

    def close(self) -> None:
        with self._done:
            self._inbox, self._queued = [], 0
            self.session.close()


def read_stream_chunk(path: str | Path, rate: int, max_seconds: float) -> np.ndarray:
    """One chunk of a browser's microphone stream -> mono float32 at `rate`.

    Gradio's streaming recorder (6.31) sends every chunk as the first chunk's 44-byte WAV header
    followed by the PCM recorded since the last one, which is more than the header's length field
    says whenever chunks were held back while the server was busy: a WAV reader would drop the rest.
    So a 16-bit PCM WAV is read from its header's format and the file's real size; anything else
    goes through engine.audio.decode_audio. Bounded by max_seconds (InputError beyond it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    with open(path, "rb") as fh:
        head = fh.read(44)
    fmt = _pcm16_header(head)
    if fmt is None:
        return decode_audio(path, rate, max_seconds)
    channels, source_rate = fmt
    check_shape(channels, source_rate, "the microphone stream")
    frames = (path.stat().st_size - 44) // (2 * channels)
    if frames > max_seconds * source_rate:
        raise InputError(f"A chunk of the microphone stream lasts {frames / source_rate:.1f} s; "
                         f"at most {max_seconds:g} s are accepted at a time.")
    pcm = np.fromfile(path, dtype="<i2", count=frames * channels, offset=44).reshape(-1, channels)
    mono = (pcm.astype(np.float32) / 32768.0).mean(axis=1)
    if source_rate == rate or not mono.size:
        return np.ascontiguousarray(mono, dtype=np.float32)
    import soxr

    return soxr.resample(mono, source_rate, rate).astype(np.float32)


def _pcm16_header(head: bytes) -> tuple[int, int] | None:
    """(channels, rate) of a canonical 44-byte 16-bit PCM WAV header, else None."""
    if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE" or head[12:16] != b"fmt " \
            or head[36:40] != b"data":
        return None
    tag, channels, source_rate = struct.unpack("<HHI", head[20:28])
    bits = struct.unpack("<H", head[34:36])[0]
    if tag != 1 or bits != 16:
        return None
    return channels, source_rate
