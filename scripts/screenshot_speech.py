"""Screenshot of the Speech tab with a real transcript, for docs/speech.md.

Serves the app with ../shared/models/whisper-tiny.en, uploads assets/speech_example.flac in
Chromium, transcribes it with word times and saves docs/img/speech.png.

    GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 .venv/bin/python scripts/screenshot_speech.py
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHISPER = ROOT.parent / "shared" / "models" / "whisper-tiny.en"
OUT = ROOT / "docs" / "img" / "speech.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def main() -> Path:
    from playwright.sync_api import sync_playwright

    from engine.registry import PipelineRegistry
    from engine.settings import Settings
    from ui.app import build_app, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.from_env(env={}, device="cpu", port=port, asr_model=str(WHISPER))
    demo = build_app(settings, PipelineRegistry(settings))
    launch(demo, settings, block=False, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(demo.local_url)
            page.locator("#speech-audio input[type=file]").set_input_files(str(ROOT / "assets" / "speech_example.flac"))
            page.locator("#speech-audio audio, #speech-audio [data-testid='waveform-Audio']").first.wait_for(
                state="attached", timeout=15_000)
            page.locator("#speech-timestamps label", has_text="words").click()
            page.locator("#speech-run").click()
            page.wait_for_function("() => document.querySelector('#speech-text textarea').value.length > 0",
                                   timeout=120_000)
            page.locator("#speech-words [data-testid='cell-0-0']").wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT), full_page=True)
            browser.close()
    finally:
        demo.close()
    return OUT


if __name__ == "__main__":
    print(main())
