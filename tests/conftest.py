"""Shared fixtures: offline environment, tiny models built locally, a launched app, a browser."""

from __future__ import annotations

import os

# Before gradio / huggingface_hub are imported by any test module.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHISPER_TINY_EN = ROOT.parent / "shared" / "models" / "whisper-tiny.en"
needs_real_whisper = pytest.mark.skipif(not WHISPER_TINY_EN.is_dir(), reason="../shared/models/whisper-tiny.en absent")
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """tiny_model("vit") -> folder of a tiny random model built once per session."""
    from tests.fixtures.tiny_models import cached_build

    root = tmp_path_factory.mktemp("tiny-models")
    return lambda name: cached_build(name, root)


@pytest.fixture
def make_settings():
    from engine.settings import Settings

    def make(**overrides):
        return Settings.from_env(env={}, device="cpu", port=free_port(), **overrides)

    return make


@contextlib.contextmanager
def serving(demo, settings):
    """Launch a Blocks on settings.port without blocking; yield its URL; close it after."""
    from ui.app import launch

    launch(demo, settings, block=False, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.fixture
def serve():
    """serve(demo, settings) -> url; every app launched this way is closed after the test."""
    stack = contextlib.ExitStack()
    with stack:
        yield lambda demo, settings: stack.enter_context(serving(demo, settings))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    args = {**browser_type_launch_args, "headless": True,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run"]}
    if Path(CHROMIUM).exists():
        args["executable_path"] = CHROMIUM
    return args


@pytest.fixture
def tmp_copy(tmp_path):
    """Copy a file into tmp_path (uploads must not touch the repository's own assets)."""
    return lambda src: Path(shutil.copy(src, tmp_path / Path(src).name))
