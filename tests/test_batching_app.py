"""Concurrent gradio_client requests to a launched app share model calls; each gets its own answer."""

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from engine.registry import PipelineRegistry, load_pipeline
from engine.text import classify_texts
from engine.vision import classify_images, load_image
from tests.test_batching import CountingPipe
from ui.tabs import image, zero_shot

N = 8


def test_concurrent_clients_are_batched_and_answered_in_order(make_settings, serve, tiny_model, tmp_path):
    settings = make_settings(image_model=str(tiny_model("vit_classifier")), zero_shot_model=str(tiny_model("bert_nli")),
                             batch_wait_ms=300.0)
    pipes = {}
    registry = PipelineRegistry(settings,
                                loader=lambda key: pipes.setdefault(key.task, CountingPipe(load_pipeline(key))))
    with gr.Blocks() as demo:
        image.build(registry, settings)
        zero_shot.build(registry, settings)
    client = Client(serve(demo, settings), verbose=False)

    paths = []
    for i in range(N):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (32, 32), (i * 30, 255 - i * 30, (i * 70) % 256)).save(paths[-1])
    jobs = [client.submit(handle_file(str(p)), top_k=2, api_name="/classify_image") for p in paths]
    results = [job.result(timeout=60) for job in jobs]
    vit = pipes["image-classification"]
    for path, result in zip(paths, results):
        (want,) = classify_images(vit.pipe, [load_image(str(path))], 2)
        assert [r["label"] for r in result] == [p.label for p in want]
        assert [r["score"] for r in result] == pytest.approx([p.score for p in want], abs=1e-5)
    assert sum(vit.sizes) == N and len(vit.sizes) < N

    texts = [f"my {thing} broke today" for thing in ("phone", "tablet", "car", "house", "dog", "tree", "cat", "tv")]
    jobs = [client.submit(t, "urgent, not urgent, phone", api_name="/classify_text") for t in texts]
    results = [job.result(timeout=60) for job in jobs]
    nli = pipes["zero-shot-classification"]
    for text, result in zip(texts, results):
        (want,) = classify_texts(nli.pipe, [text], ("urgent", "not urgent", "phone"), False)
        assert result["labels"] == list(want.labels)
        assert result["scores"] == pytest.approx(list(want.scores), abs=1e-5)
    assert sum(nli.sizes) == N and len(nli.sizes) < N
