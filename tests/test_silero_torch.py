"""engine.silero_torch: silero-vad's network in torch (the GPU's VAD) gives the package's own model's answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.audio import SileroVad, speech_regions_and_chunks
from engine.silero_torch import WEIGHTS, SileroTorch, silero_weights
from tests.test_speech_synth import RATE, SENTENCES, make_speech, needs_espeak

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_the_torchscript_model_still_has_the_weights_read_from_it():
    """Pins the private layout read from silero-vad's TorchScript model (its `_model`'s parameter names)."""
    w = silero_weights()
    assert set(w) == set(WEIGHTS.values())
    assert w["stft"].shape == (258, 1, 256) and w["lstm.weight_ih"].shape == (512, 128)
    assert w["out.weight"].shape == (1, 128, 1)


@needs_espeak
def test_probabilities_are_the_onnx_models_frame_for_frame():
    speech = make_speech(SENTENCES[:6], pauses=[0.6, 1.5], lead=0.5)
    onnx = SileroVad(threads=1, sequence=True)
    expected = onnx._sequence.audio_forward(speech.audio, RATE)
    got = SileroTorch("cpu").probabilities(speech.audio)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4
    assert (got > 0.5).sum() > len(got) // 3  # speech is heard: the comparison is not between two silences


@needs_espeak
def test_parts_side_by_side_find_the_regions_the_cpu_threads_find():
    speech = make_speech(SENTENCES[:8], pauses=[1.5, 2.5], lead=0.8)
    audio = np.tile(speech.audio, 4)  # about 2.5 minutes: two parts
    threads = SileroVad(threads=2, sequence=True)
    probs = threads.probabilities(audio)
    got = SileroTorch("cpu").probabilities(audio, parts=2, warm=SileroVad.WARM_FRAMES)
    assert np.abs(got - probs).max() < 1e-4
    one = SileroTorch("cpu").probabilities(audio)
    assert np.abs(got - one).max() < 0.2  # a part's first frames follow 2 s of warm-up, not the whole history


def test_short_and_empty_audio():
    vad = SileroTorch("cpu")
    assert vad.probabilities(np.zeros(0, np.float32)).shape == (0,)
    assert vad.probabilities(np.zeros(100, np.float32)).shape == (1,)  # one frame, zero-padded
    assert vad.probabilities(np.zeros(5 * 512, np.float32), parts=40).shape == (5,)  # more parts than frames


@cuda
@needs_espeak
def test_on_the_gpu_the_chunks_are_the_cpus():
    speech = make_speech(SENTENCES[:8], pauses=[0.6, 1.5, 2.5], lead=0.8)
    audio = np.tile(speech.audio, 5)
    cpu = speech_regions_and_chunks(audio, RATE, vad=SileroVad(threads=1))
    gpu = speech_regions_and_chunks(audio, RATE, vad=SileroVad(threads=1), device=torch.device("cuda"))
    assert len(gpu[1]) == len(cpu[1]) and len(gpu[0]) == len(cpu[0])
    assert all(abs(a - b) <= SileroVad.FRAME for f, e in zip(gpu[0], cpu[0]) for a, b in zip(f, e))
