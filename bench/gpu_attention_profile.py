"""How close the decoder's cross-attention comes to the GPU's memory bandwidth, per sdpa backend.

One decoding step of the fast Whisper path reads every chunk's cross-attention keys and values
once per layer: for a large-v3-shaped model and 62 chunks that is about 15 GB a step, which bounds
the step from below. This times one layer's cross-attention (query length 1, greedy; or one query
per beam) under each scaled_dot_product_attention backend torch offers, and reports the bytes
read per second.

    python bench/gpu_attention_profile.py [--rows 62] [--beams 1,5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=62)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return {}
    dev, dtype = "cuda", torch.float16
    b, h, t, d = args.rows, args.heads, args.frames, 64
    layers = 4  # distinct buffers, so no layer's keys are still in L2 from the one before
    kv = [(torch.randn(b, h, t, d, device=dev, dtype=dtype), torch.randn(b, h, t, d, device=dev, dtype=dtype))
          for _ in range(layers)]
    bytes_per_layer = 2 * b * h * t * d * 2
    rows = []
    for beams in [int(x) for x in args.beams.split(",")]:
        q = torch.randn(b, h, beams, d, device=dev, dtype=dtype)
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                        SDPBackend.MATH):
            try:
                with sdpa_kernel(backend):
                    for k, v in kv:
                        F.scaled_dot_product_attention(q, k, v)
                    torch.cuda.synchronize()
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    reps = 20
                    start.record()
                    for _ in range(reps):
                        for k, v in kv:
                            F.scaled_dot_product_attention(q, k, v)
                    end.record()
                    torch.cuda.synchronize()
                ms = start.elapsed_time(end) / (reps * layers)
                row = {"beams": beams, "backend": backend.name, "ms_per_layer": round(ms, 4),
                       "GB_per_s": round(bytes_per_layer / (ms / 1000) / 1e9, 1)}
            except RuntimeError as exc:
                row = {"beams": beams, "backend": backend.name, "error": str(exc).splitlines()[0][:200]}
            print(row, flush=True)
            rows.append(row)
    # As the decoder calls it: the query a transposed view of [rows, 1, heads, 64], the backends in the
    # priority order whisper_batch._capture sets, eagerly and replayed from a CUDA graph.
    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    q_view = torch.randn(b, 1, h, d, device=dev, dtype=dtype).transpose(1, 2)
    for name, q in (("decoder_view", q_view), ("contiguous", q_view.contiguous())):
        for label, backends, priority in (("priority", order, True), ("cudnn_only", [SDPBackend.CUDNN_ATTENTION], False),
                                          ("default", None, False)):
            def layer_pass():
                for k, v in kv:
                    F.scaled_dot_product_attention(q, k, v)
            try:
                ctx = sdpa_kernel(backends, set_priority=priority) if backends else torch.no_grad()
                with ctx:
                    layer_pass()
                    torch.cuda.synchronize()
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    for _ in range(20):
                        layer_pass()
                    end.record()
                    torch.cuda.synchronize()
                    eager = start.elapsed_time(end) / (20 * layers)
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        layer_pass()
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        layer_pass()
                graph.replay()
                torch.cuda.synchronize()
                start.record()
                for _ in range(20):
                    graph.replay()
                end.record()
                torch.cuda.synchronize()
                row = {"query": name, "backends": label, "eager_ms_per_layer": round(eager, 4),
                       "graph_ms_per_layer": round(start.elapsed_time(end) / (20 * layers), 4)}
            except RuntimeError as exc:
                row = {"query": name, "backends": label, "error": str(exc).splitlines()[0][:200]}
            print(row, flush=True)
            rows.append(row)
    result = {"what": f"one layer's cross-attention, {b} rows x {h} heads x {t} frames x {d}, fp16",
              "bytes_per_layer": bytes_per_layer, "rows": rows, "device": torch.cuda.get_device_name(0)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
