"""Transcript -> .srt / .vtt / .txt / .json files, written with the srt and webvtt-py libraries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import srt
import webvtt

if TYPE_CHECKING:
    from engine.speech import Segment, Transcript

FORMATS = ("srt", "vtt", "txt", "json")


def to_srt(segments: Sequence["Segment"]) -> str:
    subs = [srt.Subtitle(index=i, start=dt.timedelta(seconds=s.start), end=dt.timedelta(seconds=s.end),
                         content=s.text.strip())
            for i, s in enumerate(_cues(segments), start=1)]
    return srt.compose(subs, reindex=False)


def to_vtt(segments: Sequence["Segment"]) -> str:
    captions = [webvtt.Caption(start=_vtt_time(s.start), end=_vtt_time(s.end), text=s.text.strip())
                for s in _cues(segments)]
    return webvtt.WebVTT(captions=captions).content


def to_txt(transcript: "Transcript") -> str:
    return transcript.text.strip() + "\n"


def to_json(transcript: "Transcript") -> str:
    return json.dumps(dataclasses.asdict(transcript), ensure_ascii=False, indent=2) + "\n"


def write_all(transcript: "Transcript", folder: str | Path, stem: str = "transcript") -> list[Path]:
    """Write stem.srt, stem.vtt, stem.txt and stem.json into folder; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {"srt": to_srt(transcript.segments), "vtt": to_vtt(transcript.segments),
             "txt": to_txt(transcript), "json": to_json(transcript)}
    paths = []
    for ext in FORMATS:
        path = folder / f"{stem}.{ext}"
        path.write_text(texts[ext], encoding="utf-8")
        paths.append(path)
    return paths


def _cues(segments: Sequence["Segment"]) -> list["Segment"]:
    # Players drop cues with no text or no duration; keep only those a viewer would see.
    return [s for s in segments if s.text.strip() and s.end > s.start]


def _vtt_time(seconds: float) -> str:
    # WebVTT's timestamp is SRT's with a dot before the milliseconds.
    return srt.timedelta_to_srt_timestamp(dt.timedelta(seconds=max(0.0, seconds))).replace(",", ".")
