"""Where the word alignment's time goes on a GPU (bench/gpu_long_audio.py's model and audio): the decoder
alone, then with alignment, with each alignment stage timed. A profiling aid, not a recorded bench."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_long_audio import LARGE_V3, build_pipeline  # noqa: E402
from bench.speech_audio import RATE, read_wav  # noqa: E402


def main() -> None:
    import engine.whisper_align as wa
    import engine.whisper_batch as wb
    from engine.speech import speech_chunks

    assets = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".gpu")
    pipe = build_pipeline(assets, LARGE_V3, "cuda:0", torch.float16)
    clip = read_wav(assets / "speech.wav")
    n = 30 * 60 * RATE
    audio = np.tile(clip, -(-n // clip.size))[:n].copy()
    chunks = [c.audio(audio) for c in speech_chunks(audio, RATE)]
    gk = {"num_beams": 1, "min_new_tokens": 100, "max_new_tokens": 100}
    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn(*a, **k)
            torch.cuda.synchronize()
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            return out
        return wrapper

    wb._StaticDecoder.cross_weights = timed("cross_weights", wb._StaticDecoder.cross_weights)
    wa.alignment_matrix = timed("alignment_matrix", wa.alignment_matrix)
    wa.dtw_starts = timed("dtw_starts", wa.dtw_starts)
    wb._to_output = timed("to_output", wb._to_output)
    model = pipe.model
    with torch.inference_mode():
        feats = wb.log_mel(pipe.feature_extractor, chunks, model.device).to(model.dtype)
        enc = model.get_encoder()(feats).last_hidden_state
        plan = wb._Plan.build(model, False, gk)
        frames = [max(1, -(-len(c) // 160) // 2) for c in chunks]
        heads = wb.alignment_heads(model)
        for round_ in range(2):
            for align in (False, True):
                spent.clear()
                torch.cuda.synchronize()
                t = time.perf_counter()
                wb._greedy(model, enc, plan, wb.DecodeOptions(), align=(heads, frames, []) if align else None)
                torch.cuda.synchronize()
                print(f"round {round_} align {align}: {time.perf_counter() - t:.3f} s", {k: round(v, 3) for k, v in spent.items()},
                      flush=True)
    for round_ in range(2):
        spent.clear()
        torch.cuda.synchronize()
        t = time.perf_counter()
        wb.transcribe_chunks(pipe, chunks, batch_size=len(chunks), return_timestamps="word", generate_kwargs=gk)
        torch.cuda.synchronize()
        print(f"transcribe_chunks aligned, round {round_}: {time.perf_counter() - t:.3f} s",
              {k: round(v, 3) for k, v in spent.items()}, flush=True)


if __name__ == "__main__":
    main()
