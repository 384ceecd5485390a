"""Makes the Speech tab's example recording with espeak-ng (made here, so licence-clean).

Run from the repository root: python assets/speech_examples.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
RATE = 16000
SENTENCES = (
    "Welcome to pipeline studio.",
    "Drop a recording here and it becomes text with timestamps.",
    "Long audio is cut at the pauses and transcribed in batches.",
    "Download the subtitles when it is done.",
)
PAUSE_S = 1.5


def main() -> Path:
    import librosa

    parts = [np.zeros(int(0.5 * RATE), np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(SENTENCES):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), sentence], check=True)
            clip, rate = sf.read(str(wav), dtype="float32")
            parts += [librosa.resample(clip, orig_sr=rate, target_sr=RATE), np.zeros(int(PAUSE_S * RATE), np.float32)]
    out = HERE / "speech_example.flac"
    sf.write(str(out), np.concatenate(parts) * 0.8, RATE, subtype="PCM_16")
    return out


if __name__ == "__main__":
    print(main())
