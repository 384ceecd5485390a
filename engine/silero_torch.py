"""silero-vad's 16 kHz network in torch, for a GPU: every frame's convolutions at once, then one LSTM pass.

The weights are those of the package's TorchScript model (`silero_vad.load_silero_vad()`, its `_model`: the
16 kHz network). Its layers, per 32 ms frame (512 samples after 64 of the frame before): a learnt STFT, four
convolutions down to 128 features, an LSTM cell carried from frame to frame, and a sigmoid. Only the LSTM
runs along time. Here the convolutions of every frame run as one batch, and long audio is cut into parts
that the LSTM runs side by side, each part first reading the `warm` frames before it to settle its state,
as engine.audio.SileroVad's threads do on a CPU (with the same parts, the same probabilities). On an H200
the VAD of 30 minutes takes 0.04 s this way, where the ONNX model on 16 CPU threads takes 0.35 s
(bench/README.md section 4); tests/test_silero_torch.py pins the probabilities to the ONNX model's.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

FRAME = 512  # samples per frame at 16 kHz
CONTEXT = 64  # samples of the frame before that each frame also reads
HOP = 128  # the learnt STFT's hop (its filters are 256 samples long)
FEATURE_BLOCK = 1 << 15  # frames whose convolutions run at once (about 100 MB of float32 on the way)


# The TorchScript model's parameter names (silero-vad 6.2) -> the names used here.
WEIGHTS = {
    "stft.forward_basis_buffer": "stft", "decoder.decoder.2.weight": "out.weight", "decoder.decoder.2.bias": "out.bias",
    **{f"encoder.{i}.reparam_conv.{p}": f"conv{i}.{p}" for i in range(4) for p in ("weight", "bias")},
    **{f"decoder.rnn.{p}": f"lstm.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
}
STRIDES = (1, 2, 2, 1)  # the four convolutions' (kernel 3, padding 1)


def silero_weights() -> dict[str, torch.Tensor]:
    """The 16 kHz network's weights from silero-vad's TorchScript model, under WEIGHTS' names."""
    from silero_vad import load_silero_vad

    state = load_silero_vad()._model.state_dict()
    missing = sorted(set(WEIGHTS) - set(state))
    if missing:
        raise RuntimeError(f"this silero-vad's model has no {', '.join(missing)}: the torch VAD cannot load it")
    return {ours: state[theirs].detach().float().clone() for theirs, ours in WEIGHTS.items()}


class SileroTorch:
    """The network on one device (float32; TF32 off, so the probabilities are the CPU model's within rounding)."""

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.w = {k: v.to(self.device) for k, v in silero_weights().items()}
        self.lstm = torch.nn.LSTM(128, 128, batch_first=True).to(self.device)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(self.w[f"lstm.{name}"])
        self.lstm.eval()
        self._lock = threading.Lock()  # flatten_parameters and cuDNN's RNN workspace are per module

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [n, CONTEXT + FRAME] -> [n, 128], the input the LSTM reads for each frame."""
        w = self.w
        x = F.pad(frames[:, None], (0, CONTEXT), mode="reflect")
        x = F.conv1d(x, w["stft"], stride=HOP)
        half = x.shape[1] // 2
        x = (x[:, :half] ** 2 + x[:, half:] ** 2).sqrt()
        for i, stride in enumerate(STRIDES):
            x = F.relu(F.conv1d(x, w[f"conv{i}.weight"], w[f"conv{i}.bias"], stride=stride, padding=1))
        return x[..., 0]

    def probabilities(self, audio16: np.ndarray, parts: int = 1, warm: int = 64) -> np.ndarray:
        """Per-frame speech probabilities of 16 kHz audio (the last frame zero-padded), as the ONNX sequence
        model gives them; with parts > 1, the frames are split into that many runs of the LSTM, each warmed on
        the `warm` frames before it."""
        n = -(-audio16.shape[0] // FRAME)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            audio = torch.from_numpy(np.ascontiguousarray(audio16, dtype=np.float32)).to(self.device)
            audio = F.pad(audio, (CONTEXT, n * FRAME - audio.shape[0]))  # the first frame reads 64 zeros
            frames = audio.unfold(0, CONTEXT + FRAME, FRAME)
            feats = torch.cat([self.features(frames[i:i + FEATURE_BLOCK]) for i in range(0, n, FEATURE_BLOCK)])
            parts = max(1, min(int(parts), n))
            bounds = np.linspace(0, n, parts + 1).astype(int)
            lead = np.minimum(bounds[:-1], warm)  # frames each part reads before its own
            length = int((bounds[1:] - bounds[:-1] + lead).max())
            first = torch.as_tensor(bounds[:-1] - lead, device=self.device)
            index = (first[:, None] + torch.arange(length, device=self.device)).clamp(max=n - 1)
            inputs = feats[index]
            # Each part starts as a run of its own would: its first frame reads zeros, not the frame before.
            opening = frames[first].clone()
            opening[:, :CONTEXT] = 0
            inputs[:, 0] = self.features(opening)
            with self._lock:
                hidden, _ = self.lstm(inputs)  # [parts, length, 128]; a part's tail past n is never read
            w = self.w
            probs = torch.sigmoid(F.linear(F.relu(hidden), w["out.weight"][:, :, 0], w["out.bias"]))
            probs = probs[..., 0].cpu().numpy()
        return np.concatenate([probs[p, lead[p]: lead[p] + bounds[p + 1] - bounds[p]] for p in range(parts)])
