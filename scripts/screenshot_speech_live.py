"""Screenshot of the Speech tab's Live part while a fake microphone speaks, for docs/speech.md.

Chromium plays an espeak-ng recording as its microphone (--use-file-for-fake-audio-capture); the
app serves ../shared/models/whisper-tiny.en; after the speech, the Live part is saved as
docs/img/speech_live.png (before Stop, so the growing transcript and the status line show).

    GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 .venv/bin/python scripts/screenshot_speech_live.py
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHISPER = ROOT.parent / "shared" / "models" / "whisper-tiny.en"
OUT = ROOT / "docs" / "img" / "speech_live.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream"]


def main() -> Path:
    import numpy as np
    from playwright.sync_api import sync_playwright

    from engine.registry import PipelineRegistry
    from engine.settings import Settings
    from tests.test_speech_synth import RATE, TALK_SENTENCES, Speech, make_speech
    from ui.app import build_app, launch

    speech = make_speech(TALK_SENTENCES, pauses=[1.5, 2.0], lead=0.8)
    wav = Path(tempfile.mkdtemp()) / "mic.wav"
    Speech(np.concatenate([speech.audio, np.zeros(8 * RATE, np.float32)]), (), (), ()).write(wav)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.from_env(env={}, device="cpu", port=port, asr_model=str(WHISPER))
    registry = PipelineRegistry(settings)
    demo = build_app(settings, registry)
    launch(demo, settings, block=False, quiet=True)
    registry.get("automatic-speech-recognition")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
            page = browser.new_context(permissions=["microphone"], viewport={"width": 1400, "height": 900}).new_page()
            page.goto(demo.local_url)
            page.locator("#speech-live-audio button.record-button").click()
            time.sleep(speech.duration + 4)
            live = page.locator("#speech-live")
            live.scroll_into_view_if_needed()
            OUT.parent.mkdir(parents=True, exist_ok=True)
            live.screenshot(path=str(OUT))
            browser.close()
    finally:
        demo.close()
    return OUT


if __name__ == "__main__":
    print(main())
