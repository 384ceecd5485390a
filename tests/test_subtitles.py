"""engine.subtitles: .srt/.vtt/.txt/.json written by libraries, read back by libraries."""

from __future__ import annotations

import datetime as dt
import json

import srt
import webvtt

from engine.speech import Segment, Transcript, Word
from engine.subtitles import to_srt, to_vtt, write_all

TRANSCRIPT = Transcript(
    text="Hello there. It is 3:05, time for tea.",
    segments=(Segment(0.5, 1.75, "Hello there.", (Word(0.5, 0.9, "Hello"), Word(1.0, 1.75, "there."))),
              Segment(1.75, 1.75, "  "),  # empty and zero-length: not a cue
              Segment(3661.25, 3664.0, "It is 3:05, time for tea.")),
    duration=3670.0, mode="vad", language="en", note=None)


def test_srt_parses_back_with_times_and_text():
    cues = list(srt.parse(to_srt(TRANSCRIPT.segments)))
    assert [c.content for c in cues] == ["Hello there.", "It is 3:05, time for tea."]
    assert cues[0].start == dt.timedelta(seconds=0.5) and cues[0].end == dt.timedelta(seconds=1.75)
    assert cues[1].start == dt.timedelta(hours=1, minutes=1, seconds=1.25)
    assert [c.index for c in cues] == [1, 2]
    assert to_srt(TRANSCRIPT.segments).startswith("1\n00:00:00,500 --> 00:00:01,750\nHello there.\n")


def test_vtt_parses_back():
    text = to_vtt(TRANSCRIPT.segments)
    assert text.startswith("WEBVTT")
    captions = webvtt.from_string(text).captions
    assert [(c.start, c.end, c.text) for c in captions] == [
        ("00:00:00.500", "00:00:01.750", "Hello there."),
        ("01:01:01.250", "01:01:04.000", "It is 3:05, time for tea.")]


def test_write_all_writes_four_files(tmp_path):
    paths = write_all(TRANSCRIPT, tmp_path / "out", stem="talk")
    assert [p.name for p in paths] == ["talk.srt", "talk.vtt", "talk.txt", "talk.json"]
    assert paths[2].read_text() == "Hello there. It is 3:05, time for tea.\n"
    data = json.loads(paths[3].read_text())
    assert data["segments"][0] == {"start": 0.5, "end": 1.75, "text": "Hello there.",
                                   "words": [{"start": 0.5, "end": 0.9, "text": "Hello"},
                                             {"start": 1.0, "end": 1.75, "text": "there."}]}
    assert data["duration"] == 3670.0 and data["mode"] == "vad" and data["language"] == "en"


def test_no_segments_gives_valid_empty_files():
    assert to_srt(()) == ""
    assert webvtt.from_string(to_vtt(())).captions == []
