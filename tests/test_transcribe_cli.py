"""`python app.py transcribe` in a subprocess: outputs named after the inputs, only the formats asked for,
one line per failed input, exit code 1 with the others written, folders expanded; listed in --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import srt

from tests.conftest import ROOT, WHISPER_TINY_EN, needs_real_whisper
from tests.test_speech_synth import SENTENCES, make_speech, needs_espeak

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}


def app(*args, timeout=240):
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def test_help_lists_transcribe_beside_quick():
    out = app("--help", timeout=60).stdout
    assert "quick " in out and "transcribe transcribe audio files to subtitles" in out
    sub = app("transcribe", "--help", timeout=60).stdout
    for flag in ("--out DIR", "--formats", "--asr-model", "--device", "--batch-size", "--timestamps",
                 "--max-files", "--max-audio-seconds", "--segment-times"):
        assert flag in sub, flag


@needs_real_whisper
@needs_espeak
@pytest.mark.real_model
def test_a_folder_and_files_transcribed_bad_ones_named_exit_code_one(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    make_speech(SENTENCES[:2], pauses=[1.0], lead=0.5).write(folder / "one.wav")
    make_speech(SENTENCES[4:5], pauses=[1.0], lead=0.5).write(folder / "two.wav")
    (folder / "notes.wav").write_text("not audio\n" * 30)
    out = tmp_path / "out"
    run = app("transcribe", str(folder), str(folder / "one.wav"), str(tmp_path / "missing.mp3"), "--out", str(out),
              "--formats", "srt,json", "--asr-model", str(WHISPER_TINY_EN), "--device", "cpu", "--batch-size", "4",
              "--timestamps", "words")
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert any(f"{folder / 'notes.wav'}: 'notes.wav' could not be decoded as audio" in e for e in errors)
    assert any("missing.mp3: Audio file 'missing.mp3' was not found" in e for e in errors)
    assert "2 of 4 inputs failed; the others were written to" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["one.json", "one.srt", "two.json", "two.srt"]  # one.wav once
    cues = list(srt.parse((out / "one.srt").read_text()))
    assert "fishing" in cues[0].content.lower() and cues[0].start.total_seconds() == pytest.approx(0.5, abs=0.5)
    data = json.loads((out / "two.json").read_text())
    assert "library" in data["text"].lower() and data["segments"][0]["words"]


@needs_real_whisper
@needs_espeak
@pytest.mark.real_model
def test_segment_times_flag_picks_where_the_times_come_from(tmp_path):
    speech = make_speech(SENTENCES[:2], pauses=[1.5], lead=0.8)
    speech.write(tmp_path / "one.wav")
    starts = {}
    for how in ("aligned", "tokens"):
        run = app("transcribe", str(tmp_path / "one.wav"), "--out", str(tmp_path / how), "--formats", "json",
                  "--asr-model", str(WHISPER_TINY_EN), "--device", "cpu", "--segment-times", how)
        assert run.returncode == 0, run.stderr
        data = json.loads((tmp_path / how / "one.json").read_text())
        assert "fishing" in data["text"].lower()
        starts[how] = [s["start"] for s in data["segments"]]
    for how, found in starts.items():  # both put a segment at each sentence, within a VAD frame or so
        assert len(found) == 2 and all(abs(a - b) < 0.2 for a, b in zip(found, speech.starts)), (how, found)
    bad = app("transcribe", str(tmp_path / "one.wav"), "--segment-times", "frames", timeout=60)
    assert bad.returncode != 0 and "choose from 'aligned', 'tokens'" in bad.stderr


def test_bad_flags_say_what_is_accepted(tmp_path):
    run = app("transcribe", str(tmp_path), "--formats", "srt,doc", timeout=60)
    assert run.returncode != 0 and "unknown format doc; choose from srt,vtt,txt,json" in run.stderr
