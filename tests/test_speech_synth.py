"""Speech made with espeak-ng at known places, for the speech tests (and a check of the maker)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

RATE = 16000
ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")

SENTENCES = (
    "The harbour lights came on one by one as the fishing boats returned.",
    "Please remember to water the tomato plants before you leave for work.",
    "Our train to the mountains departs at seven o'clock tomorrow morning.",
    "She painted the kitchen door a bright shade of yellow last summer.",
    "The library will be closed on Monday because of the national holiday.",
    "A small brown dog was sleeping under the table in the garden.",
    "He bought three loaves of bread and a jar of honey at the market.",
    "The children built a sand castle with tall towers near the water.",
    "Our teacher explained how the moon changes shape during the month.",
    "The old bridge over the river was repaired after the winter storms.",
    "My grandmother keeps her letters in a wooden box under the bed.",
    "The museum opened a new exhibition about ancient ships and sailors.",
    "We planted apple trees along the fence at the back of the house.",
    "The football match was cancelled because the field was flooded.",
    "A gentle wind moved the curtains while everyone was reading quietly.",
    "The baker wakes up before dawn to prepare fresh bread for the village.",
    "They watched the stars from the roof until it was almost midnight.",
    "The orchestra practised the second symphony for the spring concert.",
    "Farmers in the valley grow potatoes, carrots and sweet yellow corn.",
    "The doctor told him to drink more water and walk every afternoon.",
    "An eagle was circling high above the forest looking for food.",
    "The new bicycle path connects the school with the public park.",
    "Her brother repaired the broken clock that had stopped years ago.",
    "At the end of the day we shared soup and stories by the fire.",
    "The captain checked the weather report before the ship left the port.",
    "A basket of ripe strawberries was waiting on the kitchen table.",
    "The students carried their heavy books up the stairs to the classroom.",
    "Snow covered the hills and the roads were quiet for two days.",
    "The gardener cut the roses and placed them in a glass vase.",
    "Everyone clapped when the young pianist finished her first piece.",
)


@dataclass(frozen=True)
class Speech:
    """Mono float32 audio at RATE with each sentence's text and where it was placed (seconds)."""

    audio: np.ndarray
    sentences: tuple[str, ...]
    starts: tuple[float, ...]
    ends: tuple[float, ...]

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / RATE

    def write(self, path: Path) -> Path:
        import soundfile as sf

        sf.write(str(path), self.audio, RATE, subtype="PCM_16")
        return path


def say(text: str) -> np.ndarray:
    """One sentence from espeak-ng, resampled to RATE, with its own leading/trailing silence trimmed."""
    import librosa
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run([ESPEAK, "-v", "en-us", "-w", str(out), text], check=True, capture_output=True)
        audio, rate = sf.read(str(out), dtype="float32")
    audio = librosa.resample(audio, orig_sr=rate, target_sr=RATE)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0]:loud[-1] + 1]


def make_speech(sentences: Sequence[str], pauses: Sequence[float], lead: float = 1.0) -> Speech:
    """Sentences separated by the given pauses (seconds), after `lead` seconds of silence."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        clips = list(pool.map(say, sentences))
    parts, starts, ends, t = [np.zeros(int(lead * RATE), np.float32)], [], [], lead
    for i, clip in enumerate(clips):
        starts.append(t)
        t += clip.shape[0] / RATE
        ends.append(t)
        gap = pauses[i % len(pauses)] if i + 1 < len(clips) else lead
        parts += [clip, np.zeros(int(round(gap * RATE)), np.float32)]
        t += int(round(gap * RATE)) / RATE
    return Speech(np.concatenate(parts) * 0.8, tuple(sentences), tuple(starts), tuple(ends))


@needs_espeak
def test_make_speech_places_each_sentence_where_it_says():
    speech = make_speech(SENTENCES[:3], pauses=[2.0, 3.0], lead=0.5)
    loud = np.abs(speech.audio) > 0.005
    for start, end in zip(speech.starts, speech.ends):
        assert loud[int(start * RATE)] and not loud[int(start * RATE) - 400]
        assert not loud[int(end * RATE) + 400:int(end * RATE) + 1600].any()
    assert speech.starts[1] - speech.ends[0] == pytest.approx(2.0, abs=1e-3)
    assert speech.starts[2] - speech.ends[1] == pytest.approx(3.0, abs=1e-3)


# A short three-sentence recording for the tab's API and browser tests.
TALK_SENTENCES = (
    "The doctor told him to drink more water and walk every afternoon.",
    "Shall we meet at the station at noon?",
    "The old bridge over the river was repaired after the winter storms.",
)


def talk_wav(folder: Path) -> tuple[Path, Speech]:
    """talk.wav (16-bit, 16 kHz) of TALK_SENTENCES with 1.5 and 2 s pauses, and where each was placed."""
    speech = make_speech(TALK_SENTENCES, pauses=[1.5, 2.0], lead=0.8)
    return speech.write(Path(folder) / "talk.wav"), speech
