"""--mcp: a real MCP client (the `mcp` package) over the app's streamable HTTP endpoint."""

from __future__ import annotations

import ast
import asyncio
import base64
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, WHISPER_TINY_EN, free_port, needs_real_whisper
from ui.mcp import TOOLS

pytest.importorskip("mcp")
SPEECH = ROOT / "assets" / "speech_example.flac"
# Public endpoints that must not become tools: the Models panel's (admin-like) and the batch variants.
NOT_TOOLS = ("unload_model", "models_status", "classify_images", "classify_texts", "speech_show")


@pytest.fixture(scope="module")
def mcp_app(tiny_model):
    """python app.py --mcp, serving whisper-tiny.en and the tiny fixtures."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "SPACE", "GRADIO_MCP"))}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "app.py", "--mcp", "--port", str(port), "--device", "cpu", "--offline",
           "--asr-model", str(WHISPER_TINY_EN), "--image-model", str(tiny_model("vit_classifier")),
           "--zero-shot-model", str(tiny_model("bert_nli")), "--docqa-model", str(tiny_model("layoutlm_qa"))]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()
        yield f"{url}/gradio_api/mcp/"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def _session(url: str, calls: list[tuple[str, dict]]):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            results = [await session.call_tool(name, arguments) for name, arguments in calls]
            return tools, results


def _texts(result) -> list[str]:
    return [c.text for c in result.content if c.type == "text"]


def run_apart(coroutine):
    """asyncio.run on a thread of its own: pytest-playwright keeps an event loop running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.mark.real_model
@needs_real_whisper
def test_an_mcp_client_lists_the_four_tools_and_transcribes_and_classifies(mcp_app):
    audio = "data:audio/flac;base64," + base64.b64encode(SPEECH.read_bytes()).decode()
    tools, (transcript, scores) = run_apart(_session(mcp_app, [
        ("transcribe", {"audio": audio}),
        ("classify_text", {"text": "My phone broke and I need it today", "labels": "urgent, not urgent"}),
    ]))
    by_name = {t.name: t for t in tools}
    assert sorted(by_name) == sorted(TOOLS)
    assert not set(NOT_TOOLS) & set(by_name)
    speech = by_name["transcribe"]
    assert "Transcribe speech" in speech.description and "segments" in speech.description
    assert "audio" in speech.inputSchema["properties"]
    assert "candidate labels" in by_name["classify_text"].description
    assert {"text", "labels"} <= set(by_name["classify_text"].inputSchema["properties"])
    assert "document" in by_name["answer_document"].description
    assert "image" in by_name["classify_image"].description

    assert not transcript.isError, _texts(transcript)
    assert any("welcome to pipeline studio" in t.lower() for t in _texts(transcript))
    assert not scores.isError, _texts(scores)
    result = ast.literal_eval(next(t for t in _texts(scores) if t.lstrip().startswith("{")))
    assert sorted(result["labels"]) == ["not urgent", "urgent"] and sum(result["scores"]) == pytest.approx(1)


def test_mcp_flag_without_the_package_says_what_to_install():
    code = ("import importlib.util as u; real = u.find_spec; u.find_spec = lambda n, *a: None if n == 'mcp' "
            "else real(n, *a); import sys, runpy; sys.argv = ['app.py', '--mcp']; "
            "runpy.run_path('app.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert out.returncode != 0 and "--mcp needs the mcp package: pip install mcp" in out.stderr
