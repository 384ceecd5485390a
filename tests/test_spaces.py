"""The Hugging Face Space bundle (spaces/build.py) and its deploy command (spaces/deploy.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, free_port

SPACES_PACKAGE = "spaces==0.51.3"  # Hugging Face's ZeroGPU package, fetched into a throwaway folder


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"test_{name}", ROOT / "spaces" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build():
    return _load("build")


@pytest.fixture(scope="module")
def bundle(build, tmp_path_factory):
    return build.build_bundle(tmp_path_factory.mktemp("space") / "space", space_id="tester/studio")


def _front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_front_matter_is_a_valid_space_config(bundle):
    import gradio
    from huggingface_hub import SpaceHardware

    from engine.registry import TASKS

    meta = _front_matter(bundle / "README.md")
    required = {"title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "python_version",
                "suggested_hardware", "models", "short_description", "license", "preload_from_hub"}
    assert required <= set(meta)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert meta["app_file"] == "app.py" and (bundle / meta["app_file"]).is_file()
    assert meta["python_version"] == "3.11"  # chosen (transformers 5.24 needs 3.11+), a string, not 3.1
    assert {meta["colorFrom"], meta["colorTo"]} <= {"red", "yellow", "green", "blue", "indigo", "purple", "pink",
                                                   "gray"}
    assert meta["suggested_hardware"] in {h.value for h in SpaceHardware}
    assert meta["models"] == list(dict.fromkeys(spec.default_model for spec in TASKS.values()))
    assert meta["preload_from_hub"] == meta["models"]  # in the image at build time, not on the first request
    assert meta["license"] == "apache-2.0" and "Apache License" in (bundle / "LICENSE").read_text()
    assert (ROOT / "LICENSE").read_text() == (bundle / "LICENSE").read_text()
    assert 0 < len(meta["short_description"]) <= 60
    assert 'Client("tester/studio")' in (bundle / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("hardware", ["cpu-basic", "zero-a10g"])
def test_suggested_hardware_is_only_written_where_the_config_reference_takes_it(build, hardware):
    meta = build.front_matter(hardware)
    assert "suggested_hardware" not in meta  # cpu-basic is the default; ZeroGPU is no suggested_hardware value
    assert build.front_matter("cpu-upgrade")["suggested_hardware"] == "cpu-upgrade"
    with pytest.raises(SystemExit, match="unknown hardware 'zero-gpu'"):
        build.front_matter("zero-gpu")


def test_cpu_hardware_gets_the_cpu_only_torch_and_gpu_hardware_pypis(build, tmp_path):
    cpu = build.build_bundle(tmp_path / "cpu", hardware="cpu-basic")
    lines = (cpu / "requirements.txt").read_text().splitlines()
    torch = build.pinned_version("torch")
    assert lines[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert [ln.split()[0] for ln in lines if ln.startswith("torch")] == [f"torch=={torch}+cpu"]
    zero = build.build_bundle(tmp_path / "zero", hardware="zero-a10g")
    assert (zero / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()  # CUDA torch


def test_bundle_holds_sources_requirements_and_system_packages(bundle):
    assert (bundle / "packages.txt").read_text().split() == ["tesseract-ocr", "ffmpeg"]
    requirements = (bundle / "requirements.txt").read_text()
    assert "gradio==" in requirements and "transformers==" in requirements and "torch==" in requirements
    for path in ("app.py", "engine/registry.py", "ui/app.py", "ui/quick.py", "ui/zerogpu.py"):
        assert (bundle / path).is_file(), path
    assert not (bundle / "spaces").exists(), "our spaces/ folder would shadow Hugging Face's package"
    assert not list(bundle.rglob("__pycache__")) and not (bundle / "tests").exists()


def test_build_refuses_to_empty_a_folder_it_did_not_make(build, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="is not a bundle made by this script"):
        build.build_bundle(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_bundle_starts_from_its_own_folder_as_a_space(bundle, tiny_model):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "PYTHONPATH", "GRADIO_SERVER"))}
    env.update(SPACE_ID="tester/studio", GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False", STUDIO_SHARE="true", STUDIO_DEVICE="cpu", STUDIO_OFFLINE="true",
               STUDIO_IMAGE_MODEL=str(tiny_model("vit_classifier")))
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=bundle, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.time() + 120, None
        while time.time() < deadline and status != 200 and proc.poll() is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "Share links are not used on Hugging Face Spaces" in out and "Traceback" not in out


class FakeHfApi:
    """Records the calls spaces/deploy.py makes."""

    calls: list = []

    def __init__(self, token=None, **kwargs):
        self.calls.append(("HfApi", {"token": token, **kwargs}))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/spaces/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "commit"

    def request_space_hardware(self, repo_id, hardware, **kwargs):
        self.calls.append(("request_space_hardware", {"repo_id": repo_id, "hardware": hardware, **kwargs}))
        return None


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    return FakeHfApi.calls


def test_deploy_creates_the_space_and_uploads_the_bundle(fake_hub, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    url = _load("deploy").main(["--repo", "me/studio", "--private", "--hardware", "t4-small",
                                "--out", str(tmp_path / "space")])
    assert url == "https://huggingface.co/spaces/me/studio" and f"Space: {url}" in capsys.readouterr().out
    (_, api), (_, create), (_, upload), (_, hardware) = fake_hub
    assert api == {"token": "hf_test_token"}
    assert create == {"repo_id": "me/studio", "repo_type": "space", "space_sdk": "gradio", "private": True,
                      "exist_ok": True, "space_hardware": "t4-small"}
    assert upload["folder_path"] == str(tmp_path / "space") and upload["repo_id"] == "me/studio"
    assert upload["repo_type"] == "space" and ".pipeline-studio-space" in upload["ignore_patterns"]
    assert upload["delete_patterns"] == ["*"]  # files that left the bundle leave the Space
    assert hardware == {"repo_id": "me/studio", "hardware": "t4-small"}  # an existing Space gets it too
    assert _front_matter(tmp_path / "space" / "README.md")["suggested_hardware"] == "t4-small"


def test_deploy_uses_the_cached_login_and_leaves_hardware_alone(fake_hub, monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_cached")
    _load("deploy").main(["--repo", "me/studio", "--out", str(tmp_path / "space")])
    assert fake_hub[0] == ("HfApi", {"token": "hf_cached"})
    assert "space_hardware" not in fake_hub[1][1] and fake_hub[1][1]["private"] is False
    assert [name for name, _ in fake_hub] == ["HfApi", "create_repo", "upload_folder"]


def test_deploy_dry_run_lists_files_and_calls_nothing(fake_hub, tmp_path, capsys):
    _load("deploy").main(["--repo", "me/studio", "--dry-run", "--out", str(tmp_path / "space")])
    out = capsys.readouterr().out
    assert fake_hub == []
    assert "would create or update the Space me/studio" in out
    for name in ("README.md", "app.py", "requirements.txt", "packages.txt", "engine/registry.py"):
        assert f"  {name}  (" in out
    assert ".pipeline-studio-space" not in out


def test_deploy_without_a_token_says_how_to_get_one(fake_hub, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="no Hugging Face token; set HF_TOKEN or log in with `hf auth login`"):
        _load("deploy").main(["--repo", "me/studio", "--out", str(tmp_path / "space")])
    assert fake_hub == []


# ---------------------------------------------------------------- the `spaces` name trap

PROBE = """
import os, sys
sys.path[:0] = [p for p in os.environ["PROBE_PATH"].split(os.pathsep) if p]
import spaces
from ui.zerogpu import gpu
calls = []
if hasattr(spaces, "GPU"):  # record that our helper goes through Hugging Face's decorator
    real_gpu = spaces.GPU
    spaces.GPU = lambda *a, **k: calls.append(1) or real_gpu(*a, **k)
def double(x):
    return 2 * x
wrapped = gpu(double)
print("FILE", getattr(spaces, "__file__", None))
print("HAS_GPU", hasattr(spaces, "GPU"))
print("SAME", wrapped is double)
print("GPU_CALLS", len(calls))
print("CALL", wrapped(21))
import gradio as gr
with gr.Blocks():
    gr.Button().click(double, gr.Number(), gr.Number())
print("BLOCKS", "ok")
"""


def _probe(*extra_path: str, **env: str) -> dict[str, str]:
    run_env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SYSTEM", "PYTHONPATH")}
    run_env.update(env, PROBE_PATH=os.pathsep.join([str(ROOT), *extra_path]))
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=run_env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def test_spaces_folder_is_not_a_package():
    assert (ROOT / "spaces").is_dir() and not (ROOT / "spaces" / "__init__.py").exists()


def test_without_hf_spaces_our_folder_is_an_empty_namespace_and_gpu_is_a_no_op():
    result = _probe(SPACE_ID="tester/studio")
    assert result["FILE"] == "None" and result["HAS_GPU"] == "False"
    assert result["SAME"] == "True" and result["GPU_CALLS"] == "0" and result["CALL"] == "42"
    assert result["BLOCKS"] == "ok"


@pytest.fixture(scope="module")
def hf_spaces(tmp_path_factory):
    target = tmp_path_factory.mktemp("hf-spaces")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "--no-deps", "--target", str(target), SPACES_PACKAGE], capture_output=True, text=True,
                         timeout=180)
    if out.returncode != 0:
        pytest.skip(f"could not install {SPACES_PACKAGE} from PyPI: {out.stderr.strip()[-300:]}")
    return target


def test_import_spaces_means_hugging_faces_package_when_installed(hf_spaces):
    # On a Space (SYSTEM=spaces) gradio itself calls spaces.gradio_auto_wrap on every event.
    result = _probe(str(hf_spaces), SPACE_ID="tester/studio", SYSTEM="spaces")
    assert result["FILE"] == str(hf_spaces / "spaces" / "__init__.py") and result["HAS_GPU"] == "True"
    assert result["GPU_CALLS"] == "1" and result["CALL"] == "42"  # through spaces.GPU: a no-op off ZeroGPU
    assert result["BLOCKS"] == "ok"


def test_gpu_helper_passes_duration_and_needs_a_space(monkeypatch):
    import types

    from ui.zerogpu import gpu

    seen = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn=None, duration=None: (lambda f: seen.append(duration) or f) if fn is None \
        else seen.append("plain") or fn
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.delenv("SPACE_ID", raising=False)
    gpu(len)
    assert seen == []  # not on a Space: spaces.GPU is never consulted
    monkeypatch.setenv("SPACE_ID", "tester/studio")
    assert gpu(len) is len and gpu(duration=90)(len) is len
    assert seen == ["plain", 90]
