"""engine.subtitles: .srt/.vtt/.txt/.json written by libraries, read back by libraries."""

from __future__ import annotations

import datetime as dt
import json

import pytest
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


def _spoken(text: str, start: float = 0.0, step: float = 0.5) -> Segment:
    words = tuple(Word(start + i * step, start + (i + 1) * step, w) for i, w in enumerate(text.split()))
    return Segment(start, words[-1].end, text, words)


LONG = ("the quick brown fox jumps over the lazy dog while the farmer watches from the old wooden gate "
        "and the sun goes down behind the hills")


def test_long_segments_are_split_into_cues_of_two_lines_of_42_characters_at_word_times():
    from engine.subtitles import SubtitleOptions, cues

    found = cues([_spoken(LONG)], SubtitleOptions())
    assert len(found) > 1
    for cue in found:
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
    assert " ".join(c.text.replace("\n", " ") for c in found) == LONG  # nothing lost or repeated
    words = LONG.split()
    first_count = len(found[0].text.split())
    assert found[0].start == 0.0 and found[0].end == first_count * 0.5  # the last word's end
    assert found[1].start == first_count * 0.5 and found[1].text.split()[0] == words[first_count]
    srt_cues = list(srt.parse(to_srt([_spoken(LONG)])))
    assert [c.content for c in srt_cues] == [c.text for c in found]


def test_words_per_cue_and_word_level_cues():
    from engine.subtitles import SubtitleOptions, cues

    seg = _spoken("one two three four five")
    assert [c.text for c in cues([seg], SubtitleOptions(max_words=2))] == ["one two", "three four", "five"]
    per_word = cues([seg], SubtitleOptions(word_level=True))
    assert [(c.start, c.end, c.text) for c in per_word] == [(i * 0.5, (i + 1) * 0.5, w) for i, w in
                                                          enumerate("one two three four five".split())]
    captions = webvtt.from_string(to_vtt([seg], SubtitleOptions(word_level=True))).captions
    assert [c.text for c in captions] == "one two three four five".split()


def test_a_segment_without_word_times_is_wrapped_and_timed_by_its_characters():
    from engine.subtitles import SubtitleOptions, cues

    found = cues([Segment(10.0, 20.0, LONG)], SubtitleOptions(max_line_chars=30, max_lines=1))
    assert all(len(c.text) <= 30 and "\n" not in c.text for c in found)
    assert found[0].start == 10.0 and found[-1].end == pytest.approx(20.0)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(found, found[1:]))
    unlimited = cues([Segment(10.0, 20.0, LONG)], SubtitleOptions(max_line_chars=0, max_lines=0))
    assert [(c.start, c.end, c.text) for c in unlimited] == [(10.0, 20.0, LONG)]


def test_silence_gets_no_empty_subtitle_files(tmp_path):
    silent = Transcript("", (), 5.0, "vad", "en", "The audio is silent.")
    paths = write_all(silent, tmp_path, stem="quiet")
    assert [p.name for p in paths] == ["quiet.json"]
    assert json.loads(paths[0].read_text())["note"] == "The audio is silent."


def test_clock_shows_minutes_seconds_and_milliseconds_with_one_precision():
    from engine.subtitles import clock

    assert [clock(t) for t in (0, 4, 6.187, 62.5, 3723.4567)] == [
        "0:00.000", "0:04.000", "0:06.187", "1:02.500", "1:02:03.457"]
