"""Many recordings at once: each decoded within the limits, the VAD chunks of all of them decoded in
shared batches, one Transcript (or one message) per file, subtitles per file and one zip of them all.

Sharing batches is what makes ten 5-minute files cost about what one 50-minute file costs on a GPU:
a file's last batch would otherwise run part-empty, and short files would each run alone.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine import speech
from engine.audio import ChunkAudio, decode_audio, is_silent, speech_regions_and_chunks
from engine.errors import InputError
from engine.speech import Segment, ShouldStop, Transcript, TranscribeOptions

Progress = Callable[[int, int], None]
FORMATS = ("srt", "vtt", "txt", "json")  # engine.subtitles.FORMATS, imported there only when writing


@dataclass(frozen=True)
class Limits:
    """What one request may hold (the fields of engine.settings.Settings with the same names)."""

    max_files: int = 20
    max_file_mb: float = 200.0
    max_audio_seconds: float = 4 * 3600.0
    min_audio_seconds: float = 0.25
    max_total_audio_seconds: float = 4 * 3600.0

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class FileResult:
    """One input: its name as given, the unique safe stem its outputs are named after, and either
    its transcript or the one line saying why it was not transcribed."""

    name: str
    stem: str
    transcript: Transcript | None = None
    error: str | None = None
    files: tuple[Path, ...] = ()


def safe_stem(name: str) -> str:
    """A file name's stem reduced to letters, digits, '.', '-' and '_' (no path, no leading dot)."""
    return re.sub(r"[^\w.-]+", "_", Path(str(name)).stem).strip("._")[:60] or "transcript"


def unique_stems(names: Sequence[str]) -> list[str]:
    """safe_stem of each name, with -2, -3 ... added where two would be the same (case-insensitively)."""
    seen: set[str] = set()
    out = []
    for name in names:
        stem, n = safe_stem(name), 1
        candidate = stem
        while candidate.lower() in seen:
            n += 1
            candidate = f"{stem}-{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def read_many(paths: Sequence[str | Path], rate: int, limits: Limits = Limits(),
              names: Sequence[str] | None = None) -> list[tuple[np.ndarray | None, str | None]]:
    """Decode each file within the limits: (audio, None) or (None, why not). Too many files is an
    InputError for the whole request; every other problem belongs to its file alone."""
    if not paths:
        raise InputError("No recordings were given; drop or upload one or more audio files.")
    if len(paths) > limits.max_files:
        raise InputError(f"{len(paths)} recordings given; this server transcribes at most {limits.max_files} "
                         "at once (--max-files). Send the rest in another request.")
    names = list(names) if names is not None else [Path(p).name for p in paths]
    total, out = 0.0, []
    for path, name in zip(paths, names):
        try:
            size_mb = Path(path).stat().st_size / 2**20 if Path(path).is_file() else 0.0
            if size_mb > limits.max_file_mb:
                raise InputError(f"{name!r} is {size_mb:.0f} MB; this server accepts files up to "
                                 f"{limits.max_file_mb:g} MB.")
            audio = decode_audio(path, rate, limits.max_audio_seconds, limits.min_audio_seconds)
            seconds = audio.shape[0] / rate
            if total + seconds > limits.max_total_audio_seconds:
                raise InputError(f"{name!r} was skipped: with it the recordings would last "
                                 f"{_clock(total + seconds)}, more than this server transcribes in one request "
                                 f"({_clock(limits.max_total_audio_seconds)}, --max-total-audio-seconds).")
            total += seconds
            out.append((audio, None))
        except InputError as exc:
            out.append((None, str(exc)))
    return out


def transcribe_many(pipe, audios: Sequence[np.ndarray], options: TranscribeOptions = TranscribeOptions(),
                    progress: Progress | None = None, should_stop: ShouldStop | None = None) -> list[Transcript]:
    """Transcribe several recordings (mono float32 at the model's rate), the same way transcribe()
    does in `vad` mode, but with the chunks of all of them in shared batches.

    Modes other than auto and vad have no chunks to share: each file goes through transcribe().
    """
    if options.mode not in ("auto", "vad"):
        return [speech.transcribe(pipe, a, options, should_stop=should_stop) for a in _counted(audios, progress)]
    rate = pipe.feature_extractor.sampling_rate
    window = speech.model_window(pipe)
    plans, parts = [], []
    for audio in audios:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise InputError("The audio holds no samples; give a recording with sound in it.")
        duration = audio.shape[0] / rate
        notes: list[str] = []
        call, level = speech._call_kwargs(pipe, options, "vad", duration, window, notes)
        found, ranges = ([], []) if is_silent(audio) else speech_regions_and_chunks(
            audio, rate, max_chunk_s=window, device=speech.vad_device(pipe))
        plans.append((duration, notes, call, level, found, ranges, len(parts), is_silent(audio)))
        parts += [(audio, c) for c in ranges]  # joined a batch at a time (ChunkAudio)
    call = next((p[2] for p in plans), {})  # the same for every file: it depends on the options alone in vad mode
    # As one file's chunks go: the fast path or the pipeline, --speech-int8, the batch from free GPU memory.
    outputs = speech._run_chunks(pipe, ChunkAudio(parts), call, options.batch_size, progress, should_stop,
                                 options) if parts else []
    language = speech._language(pipe, options)
    results = []
    for duration, notes, _, level, found, ranges, first, silent in plans:
        if silent or not ranges:
            note = ("The audio is silent: " if silent else "") + speech.NO_SPEECH
            results.append(Transcript("", (), duration, "vad", language, " ".join([note, *notes])))
            continue
        mine = outputs[first:first + len(ranges)]
        text = " ".join(t for t in (str(o.get("text", "")).strip() for o in mine) if t)
        segments: tuple[Segment, ...] = ()
        if level and options.timestamps != "none":
            segments = speech.stitch(mine, [c.seconds(rate) for c in ranges], duration, level,
                                     [(s / rate, e / rate) for s, e in found])
            if options.timestamps != "words":
                segments = tuple(Segment(s.start, s.end, s.text) for s in segments)
        if not text:
            notes.insert(0, speech.NO_SPEECH)
        results.append(Transcript(text, segments, duration, "vad", language, " ".join(notes) or None))
    return results


def run_many(pipe, paths: Sequence[str | Path], options: TranscribeOptions = TranscribeOptions(),
             limits: Limits = Limits(), names: Sequence[str] | None = None,
             progress: Progress | None = None, should_stop: ShouldStop | None = None) -> list[FileResult]:
    """read_many + transcribe_many: one FileResult per input, in order (files not written yet)."""
    names = list(names) if names is not None else [Path(p).name for p in paths]
    loaded = read_many(paths, pipe.feature_extractor.sampling_rate, limits, names)
    good = [audio for audio, _ in loaded if audio is not None]
    transcripts = iter(transcribe_many(pipe, good, options, progress, should_stop) if good else [])
    return [FileResult(name, stem, None if error else next(transcripts), error)
            for name, stem, (_, error) in zip(names, unique_stems(names), loaded)]


def write_many(results: Sequence[FileResult], folder: str | Path, formats: Sequence[str] = FORMATS,
               zip_name: str | None = "subtitles.zip") -> tuple[list[FileResult], Path | None]:
    """Write each transcript's files (named after its stem) into folder, and optionally one zip of
    them all with an errors.txt listing the files that failed. Returns the results with their files."""
    from engine.subtitles import write_all

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise InputError(f"Unknown subtitle format {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}.")
    written = []
    for result in results:
        if result.transcript is None:
            written.append(result)
            continue
        with tempfile.TemporaryDirectory(prefix="speech-many-") as tmp:
            paths = []
            for path in write_all(result.transcript, tmp, result.stem):
                if path.suffix[1:] in formats:
                    paths.append(Path(shutil.move(str(path), folder / path.name)))
        written.append(FileResult(result.name, result.stem, result.transcript, result.error, tuple(paths)))
    if zip_name is None:
        return written, None
    archive = folder / zip_name
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for result in written:
            for path in result.files:
                zf.write(path, arcname=path.name)  # stems are safe_stem'd: no folders, no '..'
        failed = [f"{r.name}: {r.error}" for r in written if r.error]
        if failed:
            zf.writestr("errors.txt", "\n".join(failed) + "\n")
    return written, archive


def _counted(audios: Sequence[np.ndarray], progress: Progress | None):
    for i, audio in enumerate(audios):
        if progress:
            progress(i, len(audios))
        yield audio
    if progress:
        progress(len(audios), len(audios))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
