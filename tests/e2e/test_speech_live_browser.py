"""Live microphone transcription in Chromium: a fake microphone plays espeak speech; the transcript grows
while it plays, close to file mode's, each sentence shortly after it was said; Stop gives the downloads."""

from __future__ import annotations

import time

import numpy as np
import pytest
import srt

from engine.registry import PipelineRegistry
from engine.speech import TranscribeOptions, transcribe
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from bench.speech_audio import wer
from tests.test_speech_synth import RATE, TALK_SENTENCES, Speech, make_speech, needs_espeak
from ui.app import build_app

pytestmark = [pytest.mark.e2e, pytest.mark.real_model, needs_real_whisper, needs_espeak]
TRAILING_S = 6.0  # silence after the speech, so the fake microphone's loop does not start again while recording
# "Within a few seconds": what the shared 2-core machine manages under its colleagues' load (bench/README.md
# has the figures on two dedicated cores).
MAX_DELAY_S = 8.0
KEY_WORDS = ("afternoon", "station", "storm")  # one word of each of TALK_SENTENCES, in order


def mic_wav(folder) -> tuple:
    # 2 s before the first word: Gradio's recorder drops what it records before the stream has started
    # (the page says "Connecting" meanwhile), as a person waits for "Listening".
    speech = make_speech(TALK_SENTENCES, pauses=[1.5, 2.0], lead=2.0)
    audio = np.concatenate([speech.audio, np.zeros(int(TRAILING_S * RATE), np.float32)])
    padded = Speech(audio, speech.sentences, speech.starts, speech.ends)
    return padded.write(folder / "mic.wav"), speech


@pytest.fixture
def mic_page(playwright, browser_type_launch_args, make_settings, serve, tmp_path):
    wav, speech = mic_wav(tmp_path)
    args = [*browser_type_launch_args.get("args", []), "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}"]
    browser = playwright.chromium.launch(**{**browser_type_launch_args, "args": args})
    settings = make_settings(asr_model=str(WHISPER_TINY_EN))
    registry = PipelineRegistry(settings)
    url = serve(build_app(settings, registry), settings)
    registry.get("automatic-speech-recognition")  # loaded before recording, as after any first use
    page = browser.new_context(permissions=["microphone"], viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    try:
        yield page, speech, registry
    finally:
        browser.close()


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_speak_and_read_along_then_stop_for_the_downloads(mic_page, capsys):
    page, speech, registry = mic_page
    box = page.locator("#speech-live-text textarea")
    page.locator("#speech-live-audio button.record-button").wait_for(timeout=30_000)
    page.locator("#speech-live-audio button.record-button").click()
    started = time.monotonic()
    appeared: dict[int, float] = {}  # sentence -> seconds after Record when its word was first on screen
    seen: list[str] = []
    while time.monotonic() - started < speech.duration + 4:
        shown = box.input_value()
        for i, word in enumerate(KEY_WORDS):
            if i not in appeared and word in shown.lower():
                appeared[i] = time.monotonic() - started  # in the open line or a committed one
        committed = [line for line in lines_of(shown) if not line.endswith("…")]
        if len(committed) > len(seen):
            assert committed[:len(seen)] == seen  # committed lines never change
            seen = committed
        time.sleep(0.1)
    page.locator("#speech-live-audio button", has_text="Stop").click()
    page.locator("#speech-live-files a[download='live.srt']").wait_for(timeout=60_000)
    final = lines_of(box.input_value())
    assert final[:len(seen)] == seen

    live_text = " ".join(line.split("] ", 1)[1] for line in final)
    file_text = transcribe(registry.get("automatic-speech-recognition"), speech.audio, TranscribeOptions()).text
    reference = " ".join(TALK_SENTENCES)
    live_wer, file_wer = wer(reference, live_text), wer(reference, file_text)
    # Each sentence's words are on screen within MAX_DELAY_S of the moment it was said (microphone start
    # ~ Record): first in the open line, committed later (a commit waits for 12 s of audio or a 2 s pause).
    delays = [appeared[i] - end for i, end in enumerate(speech.ends) if i in appeared]
    with capsys.disabled():
        print(f"\n[live] WER live {live_wer:.1%} vs file {file_wer:.1%}; sentence end -> line shown: "
              f"{', '.join(f'{d:.1f} s' for d in delays)}; {page.locator('#speech-live-status').inner_text()!r}; "
              f"{final}")
    # 33 words, each 3 points: across runs on the shared machine live was 6-19% (file mode 0%); the misses
    # are whisper-tiny on sentences cut out alone and words in chunks Gradio dropped while the machine was
    # saturated (the status counts what arrived); 18.75% (6 words) was seen in a full-suite run, so the
    # bound is 7 words over file mode's: still far from what a broken stream gives (most words missing).
    assert live_wer <= file_wer + 0.22, final
    assert len(seen) >= 1, "sentences were committed while the microphone played"
    assert len(delays) >= len(TALK_SENTENCES) - 1 and max(delays) <= MAX_DELAY_S
    starts = [float(line[1:].split("]")[0].split(":")[1]) for line in final]
    assert 0 < starts[0] <= speech.starts[0] + 0.5  # from the start of the recording, less what was dropped

    with page.expect_download() as download:
        page.locator("#speech-live-files a[download='live.srt']").click()
    cues = list(srt.parse(open(download.value.path(), encoding="utf-8").read()))
    assert len(cues) >= len(TALK_SENTENCES) and "doctor" in cues[0].content.lower()
