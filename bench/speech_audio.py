"""Long espeak-ng recordings with known text: sentences with pauses, 16 kHz mono float32."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RATE = 16000
CACHE = Path(tempfile.gettempdir()) / "pipeline-studio-bench"

_TEMPLATES = (
    "The {adj} {noun} {verb} the {noun2} near the {place}.",
    "Every {time} my {person} walks to the {place} with a {adj} {noun}.",
    "We saw a {adj} {noun} behind the {place} {time}.",
    "Please bring the {noun} and the {noun2} to the {place}.",
    "The {person} said that the {noun} was too {adj} for the {place}.",
    "After the storm the {noun} in the {place} looked very {adj}.",
    "Our {person} {verb} a {adj} {noun2} every {time}.",
    "Nobody knew why the {noun} {verb} the {adj} {noun2}.",
    "In the {place} there is a {adj} {noun} next to the {noun2}.",
    "The {person} will paint the {noun} {colour} before the {time} ends.",
)
_WORDS = {
    "adj": "quiet small heavy bright old gentle tall narrow warm careful empty famous".split(),
    "noun": "garden window river teacher basket bridge letter kitchen market station ladder engine".split(),
    "noun2": "table mountain village bottle tower library blanket harbour orchard carpet lantern wagon".split(),
    "verb": "carried painted found repaired watched opened cleaned followed moved measured".split(),
    "place": "school harbour forest museum bakery valley hospital castle meadow airport".split(),
    "person": "brother neighbour teacher doctor captain grandmother farmer gardener".split(),
    "time": "morning evening winter summer weekend afternoon".split(),
    "colour": "green yellow blue white orange purple".split(),
}


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` varied English sentences, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        template = rng.choice(_TEMPLATES)
        out.append(template.format(**{k: rng.choice(v) for k, v in _WORDS.items()}))
    return out


def speak(text: str, voice: str = "en-us") -> np.ndarray:
    """One sentence through espeak-ng, resampled to 16 kHz mono float32."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
        with wave.open(str(path)) as f:
            rate = f.getframerate()
            pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    if rate != RATE:
        from scipy.signal import resample_poly

        g = np.gcd(rate, RATE)
        audio = resample_poly(audio, RATE // g, rate // g).astype(np.float32)
    return audio


def recording(seconds: float, seed: int = 0, pause: tuple[float, float] = (0.4, 1.5)) -> tuple[np.ndarray, str]:
    """At least `seconds` of speech: sentences with pauses between them, and the spoken text.

    Cached under the system temp folder, so several benchmarks in one run share it.
    """
    key = hashlib.sha1(f"{seconds}:{seed}:{pause}:{_TEMPLATES}:{_WORDS}".encode()).hexdigest()[:12]
    cached = CACHE / f"speech-{key}.npz"
    if cached.exists():
        data = np.load(cached)
        if "starts" in data:
            return data["audio"], str(data["text"])
    rng = random.Random(seed)
    # espeak speaks about 2.6 words a second; ask for enough sentences, then cut at the length.
    texts = sentences(max(4, int(seconds / 3.2) + 4), seed)
    with ThreadPoolExecutor(max_workers=4) as pool:
        spoken = list(pool.map(speak, texts))
    pieces, used, total, starts = [], [], 0, []
    for text, audio in zip(texts, spoken):
        gap = np.zeros(int(rng.uniform(*pause) * RATE), dtype=np.float32)
        pieces += [gap, audio]
        used.append(text)
        starts.append((total + gap.size + _first_sound(audio)) / RATE)
        total += gap.size + audio.size
        if total >= seconds * RATE:
            break
    pieces.append(np.zeros(int(pause[0] * RATE), dtype=np.float32))
    audio = np.concatenate(pieces).astype(np.float32)
    text = " ".join(used)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, audio=audio, text=np.array(text), starts=np.array(starts))
    return audio, text


def sentence_starts(seconds: float, seed: int = 0, pause: tuple[float, float] = (0.4, 1.5)) -> list[float]:
    """Where each sentence of recording(seconds, seed, pause) begins to sound, in seconds."""
    recording(seconds, seed, pause)
    key = hashlib.sha1(f"{seconds}:{seed}:{pause}:{_TEMPLATES}:{_WORDS}".encode()).hexdigest()[:12]
    return [float(t) for t in np.load(CACHE / f"speech-{key}.npz")["starts"]]


def _first_sound(audio: np.ndarray, level: float = 0.01) -> int:
    loud = np.flatnonzero(np.abs(audio) > level)
    return int(loud[0]) if loud.size else 0


def write_wav(path: str | Path, audio: np.ndarray, rate: int = RATE) -> None:
    """16-bit PCM wav (half the size of float32; what the GPU machine reads)."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> np.ndarray:
    with wave.open(str(path)) as f:
        if f.getframerate() != RATE or f.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16 kHz mono, got {f.getframerate()} Hz x{f.getnchannels()}")
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after Whisper's English normaliser, with its British-to-American spelling map.

    The map matters here: the recordings say "harbour" and "neighbour" and English Whisper models
    write "harbor" and "neighbor"; without it each is an error (about 2 points on the 10-minute
    recording). whisper-normalizer (requirements-dev.txt) is OpenAI's normaliser with that map.
    """
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return jiwer.wer(norm(reference), norm(hypothesis) or "<empty>")
