"""The app launched on a free port and called through gradio_client."""

import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

from engine.registry import PipelineRegistry
from tests.conftest import ROOT, free_port
from ui.app import TABS, build_app


def test_models_panel_api_reports_loaded_pipelines_by_folder_name(make_settings, serve, tiny_model):
    settings = make_settings(image_model=str(tiny_model("vit_classifier")))
    registry = PipelineRegistry(settings)
    url = serve(build_app(settings, registry), settings)
    client = Client(url, verbose=False)
    table, events = client.predict(api_name="/models_status")
    assert table["data"] == [] and events == ""
    registry.get("image-classification")
    (row,) = client.predict(api_name="/models_status")[0]["data"]
    folder = tiny_model("vit_classifier")
    # The folder's name, never the server's path to it.
    assert row[0] == Path(folder).name and row[1] == "image-classification" and row[2] == "cpu"
    assert row[3] == "float32" and str(Path(folder).parent) not in str(row)


def test_every_tab_is_built(make_settings):
    settings = make_settings()
    demo = build_app(settings, PipelineRegistry(settings))
    config = demo.get_config_file()
    labels = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert {label for label, _, _ in TABS} <= labels


def test_app_py_serves_http_200_and_share_offline_says_why():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu", "--share"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline, status = time.time() + 90, None
        while time.time() < deadline and status != 200:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200  # serving locally, whatever happens to the share link
        while time.time() < deadline and not any("No public share link" in line for line in lines):
            time.sleep(0.2)  # the share attempt ends after the server is up
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    out = "".join(lines)
    assert "No public share link could be made" in out and f"127.0.0.1:{port}" in out


def test_bad_device_flag_exits_with_clear_message():
    out = subprocess.run([sys.executable, "app.py", "--device", "cuda:3"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert "device 'cuda:3' is not available here; devices found: cpu" in out.stderr
    assert "Traceback" not in out.stderr
