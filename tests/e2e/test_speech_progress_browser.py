"""Speech tab in Chromium, long audio with the default settings: the progress text moves inside the
one default batch, Stop stops the work, and closing the page cancels its job."""

from __future__ import annotations

import re
import time

import pytest

from engine.registry import PipelineRegistry
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from tests.test_cancel import DecodeSteps, assert_work_stopped, long_wav  # noqa: F401 - a fixture
from tests.test_speech_synth import needs_espeak
from ui.app import build_app

pytestmark = [pytest.mark.e2e, pytest.mark.real_model, needs_real_whisper, needs_espeak]
DONE = re.compile(r"(\d+)\s*/\s*(\d+)\s*s of audio")


def start(page, url, wav):
    page.goto(url)
    page.locator("#speech-audio input[type=file]").set_input_files(str(wav))
    page.locator("#speech-audio audio, #speech-audio [data-testid='waveform-Audio']").first.wait_for(
        state="attached", timeout=15_000)
    page.locator("#speech-run").click()


def progress_text(page) -> str:
    return page.evaluate("() => document.querySelector('#speech-text')?.innerText || ''")


@pytest.fixture
def app_url(make_settings, serve):
    settings = make_settings(asr_model=str(WHISPER_TINY_EN))
    return serve(build_app(settings, PipelineRegistry(settings)), settings)


def test_progress_moves_inside_the_default_batch_and_stop_stops_it(app_url, page, long_wav, monkeypatch):
    steps = DecodeSteps(monkeypatch)
    start(page, app_url, long_wav)
    seen, began = [], time.monotonic()
    while time.monotonic() - began < 60:
        found = DONE.search(progress_text(page))
        if found:
            done = int(found.group(1))
            if not seen or seen[-1] != done:
                seen.append(done)
            if len([d for d in seen if d > 0]) >= 3:
                break
        time.sleep(0.1)
    total = int(found.group(2))
    print(f"progress seen {seen} of {total} s after {time.monotonic() - began:.1f} s")
    assert total >= 90  # seconds of speech, all in one batch of 8 chunks
    assert len([d for d in seen if 0 < d < total]) >= 3 and seen == sorted(seen)
    page.locator("#speech-stop").click()
    deadline = time.monotonic() + 10
    while DONE.search(progress_text(page)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the /cancel request returns once the engine has stopped
    assert_work_stopped(steps)
    assert page.locator("#speech-text textarea").input_value() == ""


def test_closing_the_page_cancels_its_job(app_url, browser, long_wav, monkeypatch):
    steps = DecodeSteps(monkeypatch)
    page = browser.new_page()
    start(page, app_url, long_wav)
    steps.wait_for(20)
    page.close()
    closed = time.monotonic()
    last, still = steps.count, time.monotonic()
    while time.monotonic() - closed < 10:  # the job is marked gone when the event stream closes
        time.sleep(0.1)
        if steps.count != last:
            last, still = steps.count, time.monotonic()
        elif time.monotonic() - still > 0.6:
            break
    print(f"steps stopped {still - closed:.2f} s after the page closed")
    assert still - closed < 2.0
    assert_work_stopped(steps)
