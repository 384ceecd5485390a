"""Stopping a run: a cancelled API job stops the engine and the server's CPU; the first request
says which model is loading. Real whisper-tiny.en, through the launched app and gradio_client."""

from __future__ import annotations

import time

import numpy as np
import psutil
import pytest

import engine.whisper_batch as wb
from engine.registry import PipelineRegistry, load_pipeline
from tests.conftest import WHISPER_TINY_EN, needs_real_whisper
from tests.test_speech_synth import SENTENCES, needs_espeak, make_speech
from ui.app import build_app

pytestmark = [pytest.mark.real_model, needs_real_whisper, needs_espeak]
MODEL = WHISPER_TINY_EN.name  # the Model dropdown offers the folder by its name


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """About 100 s of speech (a 35 s recording three times): several chunks, one default batch."""
    speech = make_speech(SENTENCES[:10], pauses=[1.0, 2.0])
    path = tmp_path_factory.mktemp("long") / "long.wav"
    audio = np.concatenate([speech.audio] * 3)
    import soundfile as sf

    sf.write(str(path), audio, 16000, subtype="PCM_16")
    return path


class DecodeSteps:
    """Counts the fast path's decoding steps (one per token, all rows of a batch at once)."""

    def __init__(self, monkeypatch):
        self.count = 0
        step = wb._StaticDecoder.step

        def counted(decoder, *args):
            self.count += 1
            return step(decoder, *args)

        monkeypatch.setattr(wb._StaticDecoder, "step", counted)

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n:
            assert time.monotonic() < deadline, f"only {self.count} decoding steps in {timeout} s"
            time.sleep(0.05)


def cpu_seconds_over(seconds: float) -> float:
    """CPU time (user + system, all threads) this process (the server) spends in the next `seconds`."""
    proc = psutil.Process()
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return (after.user - before.user) + (after.system - before.system)


def assert_work_stopped(steps: DecodeSteps) -> None:
    """No decoding step after the cancel has been answered, and the server's CPU is idle."""
    at_cancel = steps.count
    busy = cpu_seconds_over(1.0)
    assert steps.count - at_cancel <= 1, f"{steps.count - at_cancel} decoding steps ran after the cancel"
    assert busy < 0.3, f"the server used {busy:.2f} s of CPU in the second after the cancel"


def start_transcription(client, wav):
    from gradio_client import handle_file

    return client.submit(handle_file(str(wav)), MODEL, "segments", "auto", "auto", "transcribe",
                         8, 1, api_name="/transcribe")


def test_cancelled_api_job_stops_the_engine_and_the_cpu(make_settings, serve, long_wav, monkeypatch):
    from gradio_client import Client

    settings = make_settings(asr_model=str(WHISPER_TINY_EN))
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)
    steps = DecodeSteps(monkeypatch)
    client = Client(url, verbose=False)
    job = start_transcription(client, long_wav)
    steps.wait_for(20)
    started = time.perf_counter()
    assert job.cancel()
    while not job.done():  # /cancel answers once the engine has stopped
        time.sleep(0.05)
    print(f"cancel answered in {time.perf_counter() - started:.2f} s after {steps.count} steps")
    assert_work_stopped(steps)
    # The worker is free again: a short clip is transcribed at once.
    short = long_wav.parent / "short.wav"
    import soundfile as sf

    audio, rate = sf.read(str(long_wav), dtype="float32")
    sf.write(str(short), audio[: 8 * rate], rate, subtype="PCM_16")
    from gradio_client import handle_file

    began = time.perf_counter()
    text = client.predict(handle_file(str(short)), MODEL, "segments", "auto", "auto", "transcribe",
                          8, 1, api_name="/transcribe")[0]
    print(f"next clip took {time.perf_counter() - began:.2f} s")
    assert "harbo" in text.lower()
    client.close()


def test_first_request_names_the_model_it_loads_and_shows_the_download(make_settings, serve, long_wav):
    from gradio_client import Client

    def slow_loader(key):  # a Hub download stands in: tqdm bars inside the load, as huggingface_hub draws
        from tqdm import tqdm

        for _ in tqdm(range(4), desc="Downloading model.safetensors", unit="B"):
            time.sleep(0.4)
        return load_pipeline(key)

    settings = make_settings(asr_model=str(WHISPER_TINY_EN))
    url = serve(build_app(settings, PipelineRegistry(settings, loader=slow_loader)), settings)
    client = Client(url, verbose=False)
    short = long_wav.parent / "first.wav"
    import soundfile as sf

    audio, rate = sf.read(str(long_wav), dtype="float32")
    sf.write(str(short), audio[: 6 * rate], rate, subtype="PCM_16")
    job = start_transcription(client, short)
    seen: list[str] = []
    while not job.done():
        for unit in job.status().progress_data or ():
            text = f"{unit.desc} {unit.index}/{unit.length} {unit.unit}"
            if not seen or seen[-1] != text:
                seen.append(text)
        time.sleep(0.05)
    assert "harbo" in job.result()[0].lower()
    assert any("Loading whisper-tiny.en (first use)" in s for s in seen), seen
    assert any("Downloading model.safetensors" in s for s in seen), seen
    assert any("Transcribing" in s for s in seen), seen
    # Loaded now: the second request goes straight to work.
    seen.clear()
    job = start_transcription(client, short)
    while not job.done():
        seen += [str(u.desc) for u in job.status().progress_data or ()]
        time.sleep(0.05)
    assert not any("Loading" in s for s in seen), seen
    client.close()


def test_time_left_comes_from_the_rate_so_far():
    from ui.common import time_left

    assert time_left(0, 100, 5.0) is None and time_left(1, 100, 5.0) is None  # too early to say
    assert time_left(25, 100, 10.0) == "about 30 s left"
    assert time_left(10, 100, 10.0) == "about 1 min 30 s left"
    assert time_left(100, 100, 10.0) is None


def test_a_cancelled_many_files_job_stops_too(make_settings, serve, long_wav, monkeypatch):
    from gradio_client import Client, handle_file

    settings = make_settings(asr_model=str(WHISPER_TINY_EN))
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)
    steps = DecodeSteps(monkeypatch)
    client = Client(url, verbose=False)
    job = client.submit([handle_file(str(long_wav)), handle_file(str(long_wav))], MODEL, api_name="/transcribe_many")
    steps.wait_for(20)
    assert job.cancel()
    while not job.done():
        time.sleep(0.05)
    assert_work_stopped(steps)
    client.close()
