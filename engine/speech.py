"""Speech to text: an ASR pipeline + audio -> a Transcript with absolute segment and word times."""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from engine.audio import (ChunkAudio, chunk_samples, decode_audio, is_silent, speech_chunks, speech_regions,
                          speech_regions_and_chunks)
from engine.errors import InputError

__all__ = ["Word", "Segment", "Transcript", "TranscribeOptions", "decode_audio", "speech_chunks",
           "transcribe", "resolve_mode", "stitch", "group_words", "tidy_times", "MODES", "TIMESTAMPS"]

TIMESTAMPS = ("none", "segments", "words")
MODES = ("auto", "sequential", "chunked", "vad")
DECODINGS = ("auto", "pipeline")
# Where segment times come from: "aligned", the words' times from the model's cross-attention, one decoding
# pass per window (what faster-whisper's batched pipeline and WhisperX do), snapped to the VAD's speech;
# "tokens", Whisper's own timestamp tokens (a window that ends on an open segment is decoded again from it).
SEGMENT_TIMES = ("aligned", "tokens")
TASKS = ("transcribe", "translate")
MAX_BEAMS = 8
# num_beams=None (auto): this many beams where engine.whisper_batch searches them on a CPU (vad chunks or one
# window, no timestamp tokens), else greedy. On the bench's 2 cores 5 beams cut WER from 7.5% to 4.7% for 1.0-1.2x
# the time, still faster than faster-whisper's batched pipeline; on a GPU the greedy step runs as a CUDA graph
# and beams do not (bench/README.md sections 3 and 4).
CPU_BEAMS = 5
MAX_PROMPT_CHARS = 1000  # Whisper reads at most 223 prompt tokens; longer text keeps its end
DEFAULT_WINDOW_S = 30.0
# How words are grouped into subtitle-sized segments when the model gives only words.
SEGMENT_GAP_S = 0.8
SEGMENT_MAX_CHARS = 84  # two subtitle lines of 42 characters
SNAP_TOLERANCE_S = 0.6
ALIGN_KEEP_COST_S = 1.0
NO_SPEECH = "No speech was found in this audio."
# The registry marks each speech pipeline it loads with --speech-int8 and --speech-bf16 under these names.
SPEECH_INT8_ATTR = "studio_speech_int8"
SPEECH_BF16_ATTR = "studio_speech_bf16"

Progress = Callable[[float, float], None]  # (seconds of audio done, seconds in all)
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: tuple[Segment, ...]
    duration: float
    mode: str
    language: str | None = None
    note: str | None = None

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)


@dataclass(frozen=True)
class TranscribeOptions:
    """How to transcribe; every field has the default a user would want."""

    timestamps: str = "segments"  # none | segments | words
    mode: str = "auto"  # auto | sequential | chunked | vad ; auto = vad when longer than one window
    batch_size: int = 8
    num_beams: int | None = None  # None: auto (CPU_BEAMS on a CPU where the fast path searches them, else 1)
    language: str | None = None
    task: str = "transcribe"
    generate_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Speed levers of the vad mode (bench/README.md has each one's speed and WER):
    int8: bool | None = None  # int8 decoder weights on a CPU; None: the pipeline's own default (--speech-int8, on)
    bf16: bool | None = None  # bfloat16 encoder and cross-attention on a CPU that has it; None: --speech-bf16 (on)
    auto_batch: bool = True  # on a GPU, batch as many chunks as free memory holds (batch_size the least)
    decoding: str = "auto"  # auto: engine.whisper_batch where it applies | pipeline: the pipeline per batch
    prompt: str = ""  # Whisper: words and names the speech uses (spellings), read before every piece
    segment_times: str = "aligned"  # aligned | tokens (SEGMENT_TIMES; bench/README.md has both's speed and WER)

    def __post_init__(self) -> None:
        for name, value, allowed in (("timestamps", self.timestamps, TIMESTAMPS), ("mode", self.mode, MODES),
                                     ("task", self.task, TASKS), ("decoding", self.decoding, DECODINGS),
                                     ("segment_times", self.segment_times, SEGMENT_TIMES)):
            if value not in allowed:
                raise InputError(f"{name} {value!r} is not known; choose one of {', '.join(allowed)}.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch size must be a whole number of at least 1, not {self.batch_size!r}.")
        if self.num_beams is not None and (not isinstance(self.num_beams, int) or isinstance(self.num_beams, bool)
                                           or not 1 <= self.num_beams <= MAX_BEAMS):
            raise InputError(f"beams must be a whole number from 1 to {MAX_BEAMS} (or none: auto), "
                             f"not {self.num_beams!r}.")
        if not isinstance(self.prompt, str) or len(self.prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"The prompt must be text of at most {MAX_PROMPT_CHARS} characters "
                             f"(the model reads about 220 words of it).")


def resolve_mode(mode: str, duration: float, window: float) -> str:
    """'auto' -> 'vad' when the audio is longer than one model window, else 'sequential'."""
    if mode != "auto":
        return mode
    return "vad" if duration > window else "sequential"


def model_window(pipe) -> float:
    """Seconds of audio the model sees at once (Whisper: 30)."""
    return float(getattr(pipe.feature_extractor, "chunk_length", None) or DEFAULT_WINDOW_S)


def offers_language(model: str, local: bool = True) -> bool:
    """Whether a model takes a language and a translate task (multilingual Whisper), without loading it.
    local=False: a Hub id, judged by its name (a folder of that name on the server is not read)."""
    folder = Path(model).expanduser()
    if local and folder.is_dir():
        for name, key in (("generation_config.json", "is_multilingual"), ("config.json", "model_type")):
            try:
                data = json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if key in data:
                return bool(data[key]) if key == "is_multilingual" else False
        return False
    name = model.lower()
    return "whisper" in name and not name.endswith(".en")


def whisper_languages() -> list[tuple[str, str]]:
    """(name, code) for every language Whisper knows, by name."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return sorted((name.title(), code) for code, name in LANGUAGES.items())


def transcribe(pipe, audio: np.ndarray, options: TranscribeOptions = TranscribeOptions(),
               progress: Progress | None = None, should_stop: ShouldStop | None = None) -> Transcript:
    """Transcribe mono float32 audio at the model's rate (pipe.feature_extractor.sampling_rate).

    progress(done, total) hears seconds of audio done as decoding goes. should_stop() is asked
    between batches and decoding steps; once it says yes, engine.errors.Cancelled is raised."""
    from engine.whisper_batch import TOKEN_SECONDS, AudioMeter, StepWatch, check_stop


    rate = pipe.feature_extractor.sampling_rate
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise InputError("The audio holds no samples; give a recording with sound in it.")
    duration = audio.shape[0] / rate
    window = model_window(pipe)
    mode = resolve_mode(options.mode, duration, window)
    notes: list[str] = []
    call, level = _call_kwargs(pipe, options, mode, duration, window, notes)
    language = _language(pipe, options)

    def empty(note: str) -> Transcript:
        return Transcript("", (), duration, mode, language, " ".join([note, *notes]))

    if is_silent(audio):
        return empty("The audio is silent: " + NO_SPEECH)
    regions: list[tuple[float, float]] = []
    if mode == "vad":
        found, chunks = speech_regions_and_chunks(audio, rate, max_chunk_s=window, device=vad_device(pipe))
        check_stop(should_stop)
        if not chunks:
            return empty(NO_SPEECH)
        regions = [(s / rate, e / rate) for s, e in found]
        outputs = _run_chunks(pipe, ChunkAudio([(audio, c) for c in chunks]), call, options.batch_size, progress,
                              should_stop, options)
        spans = [c.seconds(rate) for c in chunks]
    else:
        if level and options.timestamps != "none":
            # The model's own times are refined with the VAD's here too (cheap next to the model).
            regions = [(s / rate, e / rate) for s, e in speech_regions(audio, rate, device=vad_device(pipe))]
        meter = AudioMeter([duration], progress)
        meter.report()
        rows = 1
        if mode == "chunked":
            call = {**call, "chunk_length_s": window, "batch_size": options.batch_size}
            rows = min(options.batch_size, _window_count(duration, window))
        if mode == "sequential" and duration <= window:
            # One window: decoded as one vad chunk (engine.whisper_batch where it applies: the pipeline's
            # tokens without generate's per-step overhead; else the pipeline itself), progress and Stop included.
            outputs = _run_chunks(pipe, [audio], call, 1, progress, should_stop, options)
        else:
            if pipe.model.can_generate():
                def on_step(steps: int) -> None:  # the pipeline decodes `rows` windows at once
                    meter.reach(0, steps * rows * TOKEN_SECONDS)
                    meter.report()

                generate = dict(call.get("generate_kwargs") or {})
                generate["logits_processor"] = [*(generate.get("logits_processor") or ()),
                                                StepWatch(should_stop, on_step if progress else None)]
                call = {**call, "generate_kwargs": generate}
            check_stop(should_stop)
            outputs = [pipe(audio.copy(), **call)]
        meter.finish([0])
        spans = [((0.0, duration),)]
    text = " ".join(t for t in (str(o.get("text", "")).strip() for o in outputs) if t)
    segments: tuple[Segment, ...] = ()
    if level and options.timestamps != "none":
        segments = stitch(outputs, spans, duration, level, regions)
        if options.timestamps != "words":
            segments = tuple(Segment(s.start, s.end, s.text) for s in segments)
    if not text:
        notes.insert(0, NO_SPEECH)
    return Transcript(text, segments, duration, mode, language, " ".join(notes) or None)


def _run_chunks(pipe, chunks: Sequence[np.ndarray], call: Mapping[str, Any], batch_size: int,
                progress: Progress | None, should_stop: ShouldStop | None = None,
                options: TranscribeOptions = TranscribeOptions()) -> list[dict]:
    """Run audio chunks in batches, in order, reporting seconds of audio done as they decode.

    Whisper goes through engine.whisper_batch (static KV cache, CUDA graphs on a GPU: greedy gives
    the pipeline's tokens, several times faster, bench/README.md; beams and word times without timestamp
    tokens); everything else (beams with timestamp tokens, CTC) through the pipeline, batch by batch.
    """
    from engine.whisper_batch import _pipeline_path, transcribe_chunks

    if progress:
        progress(0.0, sum(n / pipe.feature_extractor.sampling_rate for n in chunk_samples(chunks)))  # as AudioMeter
    timestamps, generate = call.get("return_timestamps", False), call.get("generate_kwargs")
    if options.decoding == "pipeline" or (timestamps == "word" and options.segment_times == "tokens"):
        # (The fast path's word times come without timestamp tokens; "tokens" asks for the pipeline's, with them.)
        return _pipeline_path(pipe, chunks, batch_size, timestamps, generate, progress, should_stop)
    decode = _decode_options(pipe, options)
    if options.auto_batch and getattr(pipe, "model", None) is not None:
        from engine.speech_speed import auto_batch_size

        beams = int((generate or {}).get("num_beams") or 1)
        batch_size = auto_batch_size(pipe.model, len(chunks), batch_size, beams=beams)
    return transcribe_chunks(pipe, chunks, batch_size=batch_size, return_timestamps=timestamps,
                             generate_kwargs=generate, progress=progress, options=decode, should_stop=should_stop)


def vad_device(pipe):
    """Where the VAD runs: on the speech model's GPU where it is on one (a few hundredths of a second for
    30 minutes, against 0.35 s on 16 CPU threads: bench/README.md section 4), else on the CPU (None)."""
    device = getattr(getattr(pipe, "model", None), "device", None)
    return device if getattr(device, "type", None) == "cuda" else None


def _decode_options(pipe, options: TranscribeOptions):
    """engine.whisper_batch's options from the user's: int8 and bf16 where asked, else the pipeline's defaults."""
    from engine.whisper_batch import DecodeOptions

    int8 = options.int8 if options.int8 is not None else bool(getattr(pipe, SPEECH_INT8_ATTR, False))
    bf16 = options.bf16 if options.bf16 is not None else bool(getattr(pipe, SPEECH_BF16_ATTR, False))
    return DecodeOptions(int8=int8, bf16=bf16)


def warm_up(pipe, options: TranscribeOptions = TranscribeOptions()) -> float:
    """Run the vad mode's pieces once on 2 s of noise, so the first request does not pay for one-time
    work (the VAD session, int8 weights, first-call kernels); seconds it took. --preload calls it."""
    import time
    import warnings

    started = time.perf_counter()
    rate = pipe.feature_extractor.sampling_rate
    noise = (np.random.default_rng(0).standard_normal(2 * rate) * 0.05).astype(np.float32)
    try:
        speech_regions(noise, rate, device=vad_device(pipe))
        options = replace(options, generate_kwargs={**options.generate_kwargs, "max_new_tokens": 8})
        call, _ = _call_kwargs(pipe, options, "vad", 2.0, model_window(pipe), [])
        _run_chunks(pipe, [noise], call, 1, None, None, options)
    except Exception as exc:  # noqa: BLE001 - a model that cannot warm up still serves; its first call says why
        warnings.warn(f"speech warm-up failed: {exc}", RuntimeWarning)
    return time.perf_counter() - started


def _call_kwargs(pipe, options: TranscribeOptions, mode: str, duration: float, window: float,
                 notes: list[str]) -> tuple[dict[str, Any], str | None]:
    """Pipeline call arguments, and what the returned chunks are: 'segment', 'word' or None."""
    kind = getattr(pipe, "type", "")
    want = options.timestamps
    call: dict[str, Any] = {}
    level: str | None = None
    if kind == "seq2seq_whisper":
        gen = pipe.model.generation_config
        from engine.whisper_batch import alignment_heads

        has_heads = bool(alignment_heads(pipe.model))
        if want == "words" and not has_heads:
            notes.append("This model has no alignment heads, so it gives segment times, not word times.")
            want = "segments"
        if want == "words" or (want == "segments" and _aligns(options, mode, duration, window, has_heads)):
            call["return_timestamps"], level = "word", "word"
        elif want == "segments" or (mode == "sequential" and duration > window):
            # Whisper's own long-form decoding needs timestamps even when none are shown.
            call["return_timestamps"], level = True, "segment"
        beams = options.num_beams
        if beams is None:
            beams = auto_beams(pipe, options, mode, duration, window, call.get("return_timestamps", False))
        generate: dict[str, Any] = {"num_beams": beams}
        if options.prompt.strip():
            generate["prompt_ids"] = prompt_ids(pipe, options.prompt)
        if getattr(gen, "is_multilingual", False):
            generate["task"] = options.task
            if options.language:
                generate["language"] = options.language
        elif options.task == "translate" or (options.language or "en").lower() not in ("en", "english"):
            notes.append("This model is English-only: the language and translate options were ignored.")
        call["generate_kwargs"] = {**generate, **options.generate_kwargs}
    elif kind in ("ctc", "ctc_with_lm"):
        if want != "none":
            call["return_timestamps"], level = "word", "word"
        if options.language or options.task != "transcribe":
            notes.append("This model has a single language: the language and translate options were ignored.")
    else:
        if want != "none":
            notes.append("This model gives no timestamps; only the text is shown.")
        if pipe.model.can_generate():
            call["generate_kwargs"] = {"num_beams": options.num_beams or 1, **options.generate_kwargs}
    return call, level


def auto_beams(pipe, options: TranscribeOptions, mode: str, duration: float, window: float,
               return_timestamps: bool | str) -> int:
    """What num_beams=None means for a Whisper pipeline: CPU_BEAMS where engine.whisper_batch's beam search
    runs on a CPU (chunks decoded once each, vad or one window, without timestamp tokens), else 1 (greedy):
    the pipeline's beam search is several times slower, and on a GPU the greedy step runs as a CUDA graph."""
    device = getattr(getattr(pipe, "model", None), "device", None)
    no_tokens = return_timestamps in (False, None) or (return_timestamps == "word" and options.segment_times == "aligned")
    searched_here = _chunks_decoded_once(mode, duration, window) and no_tokens and options.decoding == "auto"
    return CPU_BEAMS if searched_here and getattr(device, "type", None) == "cpu" else 1


def _aligns(options: TranscribeOptions, mode: str, duration: float, window: float, has_heads: bool) -> bool:
    """Whether segments come from aligned words: chunks (vad, or one window) decoded once each, without
    timestamp tokens, by the fast path (greedy or beams)."""
    return (options.segment_times == "aligned" and has_heads and _chunks_decoded_once(mode, duration, window)
            and options.decoding == "auto")


def _chunks_decoded_once(mode: str, duration: float, window: float) -> bool:
    """vad chunks, or audio of one window: what _run_chunks hands to engine.whisper_batch."""
    return mode == "vad" or (mode == "sequential" and duration <= window)


def prompt_ids(pipe, text: str):
    """generate's prompt_ids for `text` (<|startofprev|> and at most 223 text tokens, the last ones)."""
    import torch

    try:
        ids = pipe.tokenizer.get_prompt_ids(text.strip(), return_tensors="pt")
    except ValueError:
        raise InputError("The prompt may not contain Whisper's special tokens such as <|endoftext|>; "
                         "give plain words.") from None
    room = pipe.model.config.max_target_positions // 2 - 1
    return torch.cat([ids[:1], ids[1:][-room:]]) if ids.shape[0] > room + 1 else ids


def _language(pipe, options: TranscribeOptions) -> str | None:
    gen = getattr(pipe.model, "generation_config", None)
    if getattr(pipe, "type", "") == "seq2seq_whisper" and not getattr(gen, "is_multilingual", False):
        return "en"
    return options.language


def _window_count(duration: float, window: float) -> int:
    # The pipeline's default stride is window/6 on each side, so windows advance by 2/3 of one.
    step = window * 2 / 3
    return max(1, math.ceil(max(0.0, duration - window) / step) + 1)


def stitch(outputs: Sequence[Mapping[str, Any]], spans: Sequence[Sequence[tuple[float, float]]],
           duration: float, level: str, regions: Sequence[tuple[float, float]] = ()) -> tuple[Segment, ...]:
    """Pipeline outputs of consecutive chunks of audio -> segments in absolute, tidy time.

    Each output's "chunks" hold (start, end) timestamps relative to its audio, which is spans[i]: the
    (start, end) seconds of the source it was joined from, in order (engine.audio.Chunk); a missing end
    means "until the chunk ends". With level 'word' the chunks are words, grouped into segments that never
    span two chunks. Given the speech regions a VAD heard (absolute seconds), times are moved onto them
    (see snap_to_speech).
    """
    segments: list[Segment] = []
    for out, pieces in zip(outputs, spans):
        offset, stop = pieces[0][0], pieces[-1][1]
        items = _absolute(out.get("chunks") or [], pieces)
        inside = sorted((a, b) for a, b in regions if b > offset and a < stop)
        if level == "word":
            words = _join_pieces(items)
            if inside:  # onto the speech before grouping: aligned words stretch across pauses, which hides them
                words = [Word(*_snap_word(inside, w.start, w.end), w.text) for w in words]
            segments += group_words(words)  # each segment spans its (snapped) words
        else:
            found = [Segment(s, e, t.strip()) for s, e, t in items if _has_word(t)]
            segments += snap_to_speech(found, inside) if inside else found
    return tidy_times(segments, duration)


def _join_pieces(items: Sequence[tuple[float, float, str]]) -> list[Word]:
    """Word chunks -> Words; Whisper marks a new word with a leading space, so a chunk without
    one ("'clock" after " o", a lone ".") belongs to the word before it. CTC words have no spaces."""
    spaced = any(t.startswith(" ") for _, _, t in items)
    words: list[Word] = []
    for start, end, text in items:
        glue = words and (not _has_word(text) or (spaced and not text.startswith(" ")))
        if glue:
            last = words[-1]
            words[-1] = Word(last.start, max(last.end, end), last.text + text.strip())
        elif _has_word(text):
            words.append(Word(start, end, text.strip()))
    return words


_ALNUM = re.compile(r"[^\W_]")  # a character str.isalnum() accepts (\w is those and "_")


def _has_word(text: str) -> bool:
    return _ALNUM.search(text) is not None


def _absolute(chunks: Iterable[Mapping[str, Any]], pieces: Sequence[tuple[float, float]]
              ) -> list[tuple[float, float, str]]:
    """(start, end, text) in seconds of the source, from times in the joined audio of `pieces`."""
    offset, stop = pieces[0][0], pieces[-1][1]
    at = list(itertools.accumulate((b - a for a, b in pieces[:-1]), initial=0.0))  # where each piece begins

    def place(t: float) -> float:
        i = max(0, bisect.bisect_right(at, t) - 1)
        return min(pieces[i][0] + max(0.0, t - at[i]), stop)

    items: list[tuple[float, float, str]] = []
    for chunk in chunks:
        start, end = (tuple(chunk.get("timestamp") or (None, None)) + (None, None))[:2]
        start = offset if start is None else place(float(start))
        if start >= stop and items:
            start = items[-1][1]  # times past the chunk's end are the model's guess, not a place
        end = stop if end is None else place(float(end))
        items.append((start, max(start, end), str(chunk.get("text", ""))))
    return items


def group_words(words: Sequence[Word], max_gap: float = SEGMENT_GAP_S,
                max_chars: int = SEGMENT_MAX_CHARS) -> list[Segment]:
    """Words -> segments, cut after sentence ends, at pauses longer than max_gap, or when too long."""
    segments: list[Segment] = []
    current: list[Word] = []

    def close() -> None:
        if current:
            segments.append(Segment(current[0].start, current[-1].end, " ".join(w.text for w in current),
                                    tuple(current)))
            current.clear()

    length = -1  # characters of the current words joined by spaces
    for word in words:
        if current and (word.start - current[-1].end > max_gap or length + 1 + len(word.text) > max_chars):
            close()
        length = length + 1 + len(word.text) if current else len(word.text)
        current.append(word)
        if word.text.endswith((".", "?", "!")):
            close()
    close()
    return segments


def snap_to_speech(segments: Sequence[Segment], regions: Sequence[tuple[float, float]],
                   tolerance: float = SNAP_TOLERANCE_S) -> list[Segment]:
    """Move segment and word times onto the speech regions a VAD heard (absolute seconds).

    Whisper's own times drift by seconds on small models: a segment's start usually takes in
    the pause before it. Segment starts are aligned to region starts (align_starts) and an end
    in a pause moves back to where speech stopped (within `tolerance` of a region's end: to
    that end). A word is kept inside the region it overlaps most. A segment with words spans them.
    """
    regions = sorted(regions)
    if not regions or not segments:
        return list(segments)
    if all(seg.words for seg in segments):
        out = []
        for seg in segments:
            words = tuple(Word(*_snap_word(regions, w.start, w.end), w.text) for w in seg.words)
            out.append(Segment(words[0].start, words[-1].end, seg.text, words))
        return out
    aligned = align_starts([seg.start for seg in segments], regions)
    out = []
    for seg, region in zip(segments, aligned):
        start = regions[region][0] if region is not None else seg.start
        out.append(Segment(start, _snap_end(regions, start, seg.end, tolerance), seg.text))
    return out


def _snap_word(regions: Sequence[tuple[float, float]], start: float, end: float) -> tuple[float, float]:
    best, most = None, 0.0
    for a, b in regions:
        if b <= start:
            continue
        if a >= end:
            break
        if min(end, b) - max(start, a) > most:
            best, most = (a, b), min(end, b) - max(start, a)
    if best is None:  # wholly in a pause: nothing to go by
        return start, end
    return max(start, best[0]), min(end, best[1])


def _snap_end(regions: Sequence[tuple[float, float]], start: float, end: float, tolerance: float) -> float:
    j = bisect.bisect_right([a for a, _ in regions], end) - 1  # the last region starting before `end`
    if j >= 0 and end > regions[j][1] and regions[j][1] > start:
        return regions[j][1]  # in a pause: back to where speech stopped
    if j >= 0 and 0 <= regions[j][1] - end <= tolerance:
        return regions[j][1]
    return max(start, end)


def align_starts(starts: Sequence[float], regions: Sequence[tuple[float, float]],
                 keep_cost: float = ALIGN_KEEP_COST_S) -> list[int | None]:
    """For each segment start (in order), the index of the region it begins at, or None.

    A monotone alignment where a region begins at most one segment. Moving a start to a
    region start costs the seconds of *speech* passed over (moving across a pause is free:
    a segment does not begin in silence); leaving a start where it is (mid-speech) costs
    keep_cost. The cheapest alignment wins (dynamic programming, like edit distance).
    """
    m, k = len(starts), len(regions)
    bounds = [0.0]
    for a, b in regions:
        bounds.append(bounds[-1] + (b - a))

    def speech_before(t: float) -> float:
        i = bisect.bisect_right([a for a, _ in regions], t)
        if i == 0:
            return 0.0
        a, b = regions[i - 1]
        return bounds[i - 1] + min(t, b) - a

    before = [speech_before(t) for t in starts]
    region_before = [bounds[j] for j in range(k)]
    inf = float("inf")
    cost = [[inf] * (k + 1) for _ in range(m + 1)]
    move = [[0] * (k + 1) for _ in range(m + 1)]
    cost[0] = [0.0] * (k + 1)
    for i in range(1, m + 1):
        cost[i][0], move[i][0] = cost[i - 1][0] + keep_cost, 2
        for j in range(1, k + 1):
            options = (cost[i][j - 1], cost[i - 1][j - 1] + abs(before[i - 1] - region_before[j - 1]),
                       cost[i - 1][j] + keep_cost)
            move[i][j] = min(range(3), key=options.__getitem__)
            cost[i][j] = options[move[i][j]]
    aligned: list[int | None] = [None] * m
    i, j = m, k
    while i > 0:
        step = move[i][j] if j > 0 else 2
        if step == 0:
            j -= 1
        elif step == 1:
            aligned[i - 1] = j - 1
            i, j = i - 1, j - 1
        else:
            i -= 1
    return aligned


def tidy_times(segments: Sequence[Segment], duration: float) -> tuple[Segment, ...]:
    """Clamp every time to [0, duration] and make the whole sequence of times non-decreasing.

    Starts are trusted over ends: an end that runs past the next start is pulled back to it.
    """
    def fix(items: Sequence[Any], lo: float, hi: float) -> list[tuple[float, float]]:
        starts, floor = [], lo
        for item in items:
            floor = min(max(_clamp(item.start, lo, hi), floor), hi)
            starts.append(floor)
        times = []
        for i, item in enumerate(items):
            nxt = starts[i + 1] if i + 1 < len(items) else hi
            times.append((starts[i], min(max(_clamp(item.end, lo, hi), starts[i]), nxt)))
        return times

    def ms(t: float) -> float:  # millisecond times read better; rounding keeps their order
        return min(round(t, 3), duration)

    out = []
    for seg, (start, end) in zip(segments, fix(segments, 0.0, duration)):
        words = tuple(Word(ms(s), ms(e), w.text) for w, (s, e) in zip(seg.words, fix(seg.words, start, end)))
        out.append(Segment(ms(start), ms(end), seg.text, words))
    return tuple(out)


def _clamp(value: float, lo: float, hi: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        return lo
    return min(max(value, lo), hi)
