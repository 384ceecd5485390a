"""Speech tab in Chromium: a wav dropped onto the audio component, transcribed, subtitles downloaded."""

from __future__ import annotations

import base64
import re

import pytest
import srt

from engine.registry import PipelineRegistry
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from tests.test_speech_synth import TALK_SENTENCES, needs_espeak, talk_wav
from ui.app import build_app

pytestmark = [pytest.mark.e2e, pytest.mark.real_model, needs_real_whisper, needs_espeak]


def test_drop_transcribe_read_table_and_download_srt(make_settings, serve, page, tmp_path):
    settings = make_settings(asr_model=str(WHISPER_TINY_EN))
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)
    wav, speech = talk_wav(tmp_path)

    page.goto(url)
    target = page.locator("#speech-audio button.upload-container")
    target.wait_for(timeout=30_000)
    target.evaluate("""(el, data) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "talk.wav", {type: "audio/wav"}));
        for (const type of ["dragenter", "dragover", "drop"]) {
            el.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }
    }""", base64.b64encode(wav.read_bytes()).decode())
    page.locator("#speech-audio audio, #speech-audio [data-testid='waveform-Audio']").first.wait_for(
        state="attached", timeout=15_000)
    page.locator("#speech-run").click()

    transcript = page.locator("#speech-text textarea")
    page.wait_for_function("() => document.querySelector('#speech-text textarea').value.length > 0",
                           timeout=60_000)
    text = transcript.input_value()
    assert all(word in text.lower() for word in ("doctor", "station", "bridge"))

    table = page.locator("#speech-segments")
    table.locator("[data-testid='cell-0-0']").wait_for(timeout=15_000)
    assert table.locator("[role='row'][data-index]").count() == len(TALK_SENTENCES)

    def cell(row, col):
        return table.locator(f"[data-testid='cell-{row}-{col}']").inner_text().strip()

    def seconds(clock: str) -> float:  # the table shows m:ss.mmm, one precision for every time
        assert re.fullmatch(r"\d+:\d\d\.\d{3}", clock), clock
        minutes, secs = clock.split(":")
        return int(minutes) * 60 + float(secs)

    for row, placed in enumerate(speech.starts):
        assert seconds(cell(row, 0)) == pytest.approx(placed, abs=0.5)
    assert "doctor" in cell(0, 2).lower() and "station" in cell(1, 2).lower()
    assert "mode sequential" in page.locator("#speech-summary").inner_text()

    link = page.locator("#speech-files a[download='talk.srt']")
    with page.expect_download() as download:
        link.click()
    path = download.value.path()
    cues = list(srt.parse(open(path, encoding="utf-8").read()))
    assert len(cues) == len(TALK_SENTENCES)
    assert cues[0].start.total_seconds() == pytest.approx(speech.starts[0], abs=0.5)
    assert "doctor" in cues[0].content.lower()
