"""URL inputs in Chromium: with --allow-urls the Speech tab's URL field transcribes a file from a (local) server."""

from __future__ import annotations

import pytest

from engine.registry import PipelineRegistry
from engine.urls import URLFetcher
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from tests.test_urls_app import files, local_resolve, treat_127_0_0_2_as_public  # noqa: F401 - files is a fixture
from ui.app import build_app

pytestmark = [pytest.mark.e2e]


@needs_real_whisper
def test_type_a_url_and_transcribe(make_settings, serve, page, files):  # noqa: F811
    settings = make_settings(asr_model=str(WHISPER_TINY_EN), allow_urls=True)
    fetcher = URLFetcher.from_settings(settings, resolve=local_resolve, is_allowed=treat_127_0_0_2_as_public)
    page.goto(serve(build_app(settings, PipelineRegistry(settings), fetcher=fetcher), settings))
    field = page.locator("#speech-url textarea, #speech-url input").first
    field.wait_for(timeout=30_000)
    field.fill(f"{files['public']}/speech_example.flac")
    page.locator("#speech-run").click()
    page.wait_for_function("() => document.querySelector('#speech-text textarea').value.length > 0",
                           timeout=60_000)
    assert "pipeline studio" in page.locator("#speech-text textarea").input_value().lower()
    assert page.locator("#speech-files a[download='speech_example.srt']").count() == 1


def test_no_url_field_without_the_flag(make_settings, serve, page):
    settings = make_settings()
    page.goto(serve(build_app(settings, PipelineRegistry(settings)), settings))
    page.locator("#speech-audio").wait_for(timeout=30_000)
    for elem_id in ("speech-url", "image-url", "image-urls", "document-url"):
        assert not page.locator(f"#{elem_id}").is_visible()
