"""Transcript -> .srt / .vtt / .txt / .json files, written with the srt and webvtt-py libraries.

Cue layout (line length, lines per cue, words per cue, one cue per word) is ours: neither library
lays text out, and the rules are the ones whisper-webui and stable-ts offer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import srt
import webvtt

if TYPE_CHECKING:
    from engine.speech import Segment, Transcript, Word

FORMATS = ("srt", "vtt", "txt", "json")


@dataclass(frozen=True)
class SubtitleOptions:
    """How transcript segments become cues. 0 turns a limit off."""

    max_line_chars: int = 42  # the common broadcast limit
    max_lines: int = 2
    max_words: int = 0  # words per cue (needs word timestamps)
    word_level: bool = False  # one cue per word (needs word timestamps)

    def __post_init__(self) -> None:
        if self.max_line_chars < 0 or self.max_lines < 0 or self.max_words < 0:
            raise ValueError("subtitle limits must be 0 (off) or more")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # lines joined by "\n"


def cues(segments: Sequence["Segment"], options: SubtitleOptions = SubtitleOptions()) -> list[Cue]:
    """The cues a viewer sees: no empty or zero-length ones; long segments split within the limits,
    at word times where the segment has them, else in proportion to the characters."""
    out: list[Cue] = []
    for seg in segments:
        if not seg.text.strip() or seg.end <= seg.start:
            continue
        words = [w for w in seg.words if w.text.strip()]
        if words and (options.word_level or options.max_words):
            groups = [[w] for w in words] if options.word_level else _by_count(words, options.max_words)
            groups = [part for group in groups for part in _by_length(group, options)]
        elif words:
            groups = _by_length(words, options)
        else:
            out += _split_plain(seg.start, seg.end, seg.text, options)
            continue
        for group in groups:
            end = max(group[-1].end, group[0].start + 0.001)
            out.append(Cue(group[0].start, end, _layout(" ".join(w.text.strip() for w in group), options)))
    return out


def _capacity(options: SubtitleOptions) -> int:
    return options.max_line_chars * options.max_lines if options.max_line_chars and options.max_lines else 0


def _by_count(words: list["Word"], n: int) -> list[list["Word"]]:
    return [words[i:i + n] for i in range(0, len(words), n)]


def _by_length(words: list["Word"], options: SubtitleOptions) -> list[list["Word"]]:
    """Consecutive words packed into cues whose text fits max_lines lines of max_line_chars."""
    groups: list[list["Word"]] = []
    for word in words:
        if groups and _fits(" ".join(w.text.strip() for w in [*groups[-1], word]), options):
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


def _fits(text: str, options: SubtitleOptions) -> bool:
    if not _capacity(options):
        return True
    return len(_lines(text, options.max_line_chars)) <= options.max_lines


def _lines(text: str, width: int) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width=width, break_long_words=True) if width else [text]


def _layout(text: str, options: SubtitleOptions) -> str:
    return "\n".join(_lines(text.strip(), options.max_line_chars))


def _split_plain(start: float, end: float, text: str, options: SubtitleOptions) -> list[Cue]:
    """A segment without word times: its wrapped lines in groups of max_lines, timed by characters."""
    lines = _lines(text.strip(), options.max_line_chars)
    per_cue = options.max_lines or len(lines)
    chunks = ["\n".join(lines[i:i + per_cue]) for i in range(0, len(lines), per_cue)]
    total = sum(len(c) for c in chunks) or 1
    out, at = [], start
    for chunk in chunks:
        step = (end - start) * len(chunk) / total
        out.append(Cue(at, min(end, at + step), chunk))
        at += step
    return out


def clock(seconds: float) -> str:
    """0:04.000, 12:03.450, 1:02:03.456: minutes and seconds to the millisecond, hours when there are some."""
    ms = max(0, round(seconds * 1000))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{minutes:02d}:{rest / 1000:06.3f}" if hours else f"{minutes}:{rest / 1000:06.3f}"
    return f"{hours}:{text}" if hours else text


def to_srt(segments: Sequence["Segment"], options: SubtitleOptions = SubtitleOptions()) -> str:
    subs = [srt.Subtitle(index=i, start=dt.timedelta(seconds=c.start), end=dt.timedelta(seconds=c.end),
                         content=c.text)
            for i, c in enumerate(cues(segments, options), start=1)]
    return srt.compose(subs, reindex=False)


def to_vtt(segments: Sequence["Segment"], options: SubtitleOptions = SubtitleOptions()) -> str:
    captions = [webvtt.Caption(start=_vtt_time(c.start), end=_vtt_time(c.end), text=c.text)
                for c in cues(segments, options)]
    return webvtt.WebVTT(captions=captions).content


def to_txt(transcript: "Transcript") -> str:
    return transcript.text.strip() + "\n"


def to_json(transcript: "Transcript") -> str:
    return json.dumps(dataclasses.asdict(transcript), ensure_ascii=False, indent=2) + "\n"


def write_all(transcript: "Transcript", folder: str | Path, stem: str = "transcript",
              options: SubtitleOptions = SubtitleOptions()) -> list[Path]:
    """Write stem.srt, stem.vtt, stem.txt and stem.json into folder; return their paths. With nothing
    said (silence) only the .json, which holds the note saying so, is written: no empty subtitles."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {"srt": to_srt(transcript.segments, options), "vtt": to_vtt(transcript.segments, options),
             "txt": to_txt(transcript), "json": to_json(transcript)}
    spoken = bool(transcript.text.strip()) and bool(cues(transcript.segments, options))
    paths = []
    for ext in FORMATS if spoken else ("json",):
        path = folder / f"{stem}.{ext}"
        path.write_text(texts[ext], encoding="utf-8")
        paths.append(path)
    return paths


def _vtt_time(seconds: float) -> str:
    # WebVTT's timestamp is SRT's with a dot before the milliseconds.
    return srt.timedelta_to_srt_timestamp(dt.timedelta(seconds=max(0.0, seconds))).replace(",", ".")
