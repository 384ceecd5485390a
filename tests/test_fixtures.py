"""The tiny offline models in tests/fixtures/tiny_models.py load and run through
``transformers.pipeline`` and give outputs shaped like real checkpoints' outputs."""

from __future__ import annotations

import math
import os
import string

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from tests.fixtures import tiny_models as tm

SR = 16000
# Small greedy decode: keeps every Whisper call well under a second on 2 CPU cores.
FAST = {"max_new_tokens": 8, "num_beams": 1}


def make_pipe(task: str, path):
    return pipeline(task, model=str(path), device="cpu", dtype=torch.float32)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def assert_chunks(out: dict, extra_keys: set[str] = frozenset()) -> None:
    assert set(out) == {"text", "chunks"}
    assert isinstance(out["text"], str)
    assert isinstance(out["chunks"], list)
    for chunk in out["chunks"]:
        assert set(chunk) == {"text", "timestamp"} | set(extra_keys)
        assert isinstance(chunk["text"], str)
        start, end = chunk["timestamp"]  # a 2-tuple; Whisper may leave the last end as None
        assert isinstance(chunk["timestamp"], tuple)
        assert isinstance(start, float) and start >= 0
        assert end is None or isinstance(end, float)


# --------------------------------------------------------------------------- registry


def test_registry_matches_tasks():
    assert set(tm.BUILDERS) == set(tm.PIPELINE_TASKS)
    assert {"wav2vec2_ctc", "whisper", "vit_classifier", "bert_nli", "layoutlm_qa", "text_classifier", "gpt2"} <= set(
        tm.BUILDERS
    )


def test_cached_build_reuses_directory(tmp_path):
    first = tm.cached_build("text_classifier", tmp_path)
    assert first == tmp_path / "text_classifier"
    weights = first / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert tm.cached_build("text_classifier", tmp_path) == first
    assert weights.stat().st_mtime_ns == mtime  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == ["text_classifier"]  # no temp dirs left
    with pytest.raises(KeyError):
        tm.cached_build("nope", tmp_path)


@pytest.mark.parametrize("name", ["bert_nli", "vit_classifier", "whisper"])
def test_builds_are_deterministic(tmp_path, name):
    a = tm.BUILDERS[name](tmp_path / "a")
    b = tm.BUILDERS[name](tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


# --------------------------------------------------------------------------- wav2vec2


def test_wav2vec2_ctc(tmp_path):
    asr = make_pipe("automatic-speech-recognition", tm.build_tiny_wav2vec2_ctc(tmp_path / "w2v"))
    assert asr.type == "ctc"
    allowed = set(string.ascii_uppercase) | {"'", " "}

    out = asr({"raw": noise(2), "sampling_rate": SR})
    assert set(out) == {"text"} and out["text"] and set(out["text"]) <= allowed

    for level in ("char", "word"):
        out = asr(noise(2), return_timestamps=level)
        assert_chunks(out)
        assert out["chunks"]
        starts = [c["timestamp"][0] for c in out["chunks"]]
        assert starts == sorted(starts) and out["chunks"][-1]["timestamp"][1] <= 2.0 + 1e-6
        if level == "word":
            assert " ".join(c["text"] for c in out["chunks"]) == out["text"].strip()


# --------------------------------------------------------------------------- whisper


@pytest.fixture(scope="module")
def whisper_asr(tmp_path_factory):
    return make_pipe("automatic-speech-recognition", tm.build_tiny_whisper(tmp_path_factory.mktemp("whisper")))


def test_whisper_layout(whisper_asr):
    tok, gen = whisper_asr.tokenizer, whisper_asr.model.generation_config
    cfg = whisper_asr.model.config
    assert cfg.max_source_positions == 1500 and cfg.num_mel_bins == whisper_asr.feature_extractor.feature_size
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    notimestamps = tok.convert_tokens_to_ids("<|notimestamps|>")
    assert tok.all_special_ids[-1] == notimestamps == gen.no_timestamps_token_id
    assert tok.convert_tokens_to_ids("<|0.00|>") == notimestamps + 1
    assert tok.convert_tokens_to_ids("<|30.00|>") == notimestamps + 1501 == len(tok) - 1
    assert gen.decoder_start_token_id == tok.convert_tokens_to_ids("<|startoftranscript|>")
    assert gen.is_multilingual and gen.lang_to_id["<|fr|>"] == tok.convert_tokens_to_ids("<|fr|>")
    assert gen.alignment_heads
    tok.set_prefix_tokens(language="fr", task="translate")
    try:
        ids = tok("hi").input_ids
    finally:
        tok.set_prefix_tokens(language=None, task=None)
    assert tok.convert_ids_to_tokens(ids[:4]) == [
        "<|startoftranscript|>",
        "<|fr|>",
        "<|translate|>",
        "<|notimestamps|>",
    ]


def test_whisper_plain(whisper_asr):
    out = whisper_asr(noise(2), generate_kwargs=FAST)
    assert set(out) == {"text"} and isinstance(out["text"], str)
    assert out["text"].isascii()


def test_whisper_batch(whisper_asr):
    outs = whisper_asr([noise(2), noise(1, seed=1)], batch_size=2, generate_kwargs=FAST)
    assert len(outs) == 2 and all(set(o) == {"text"} for o in outs)


@pytest.mark.parametrize("return_timestamps", [True, "word"])
def test_whisper_timestamps(whisper_asr, return_timestamps):
    assert_chunks(whisper_asr(noise(2), return_timestamps=return_timestamps, generate_kwargs=FAST))


def test_whisper_language_and_task(whisper_asr):
    out = whisper_asr(noise(2), generate_kwargs={**FAST, "language": "fr", "task": "translate"})
    assert isinstance(out["text"], str)
    out = whisper_asr(
        noise(2), return_timestamps=True, return_language=True, generate_kwargs={**FAST, "language": "french"}
    )
    assert_chunks(out, extra_keys={"language"})
    assert all(c["language"] == "french" for c in out["chunks"])


def test_whisper_chunked_batched(whisper_asr):
    out = whisper_asr(noise(40), chunk_length_s=30, batch_size=2, generate_kwargs=FAST)
    assert set(out) == {"text"} and isinstance(out["text"], str)
    out = whisper_asr(noise(40), chunk_length_s=30, batch_size=2, return_timestamps=True, generate_kwargs=FAST)
    assert_chunks(out)


def test_whisper_sequential_long_form(whisper_asr):
    out = whisper_asr(noise(40), return_timestamps=True, generate_kwargs=FAST)
    assert_chunks(out)


def test_whisper_english_only(tmp_path):
    asr = make_pipe("automatic-speech-recognition", tm.build_tiny_whisper(tmp_path / "en", multilingual=False))
    gen, tok = asr.model.generation_config, asr.tokenizer
    assert not gen.is_multilingual
    assert not any(t in tok.get_vocab() for t in ("<|en|>", "<|fr|>"))
    assert tok.convert_tokens_to_ids("<|0.00|>") == tok.all_special_ids[-1] + 1
    assert_chunks(asr(noise(2), return_timestamps=True, generate_kwargs=FAST))
    assert_chunks(asr(noise(2), return_timestamps="word", generate_kwargs=FAST))
    with pytest.raises(ValueError, match="English-only"):
        asr(noise(1), generate_kwargs={**FAST, "language": "fr"})


# --------------------------------------------------------------------------- vision / text


def test_vit_classifier(tmp_path):
    clf = make_pipe("image-classification", tm.build_tiny_vit_classifier(tmp_path / "vit"))
    image = Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype("uint8"))
    out = clf(image, top_k=5)
    assert [set(o) for o in out] == [{"label", "score"}] * 5
    assert sorted(o["label"] for o in out) == sorted(["cat", "dog", "car", "tree", "house"])
    assert math.isclose(sum(o["score"] for o in out), 1.0, rel_tol=1e-4)
    assert len(clf(image.convert("L").convert("RGB"))) == 5  # default top_k is 5


def test_bert_nli_zero_shot(tmp_path):
    zs = make_pipe("zero-shot-classification", tm.build_tiny_bert_nli(tmp_path / "nli"))
    assert zs.model.config.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"}
    assert zs.model.config.label2id == {"contradiction": 0, "neutral": 1, "entailment": 2}
    assert "[UNK]" not in zs.tokenizer.tokenize("This example is urgent, call my phone!")
    labels = ["urgent", "phone", "not urgent"]

    out = zs("this example is urgent", candidate_labels=labels)
    assert set(out) == {"sequence", "labels", "scores"}
    assert sorted(out["labels"]) == sorted(labels)
    assert math.isclose(sum(out["scores"]), 1.0, rel_tol=1e-4)
    assert out["scores"] == sorted(out["scores"], reverse=True)

    multi = zs("this example is urgent", candidate_labels=labels, multi_label=True)
    assert sorted(multi["labels"]) == sorted(labels)
    assert all(0.0 <= s <= 1.0 for s in multi["scores"])

    batch = zs(["call me", "the weather is bad"], candidate_labels=["phone", "travel"], hypothesis_template="It is {}.")
    assert len(batch) == 2 and all(math.isclose(sum(b["scores"]), 1.0, rel_tol=1e-4) for b in batch)


def test_layoutlm_document_qa(tmp_path):
    dqa = make_pipe("document-question-answering", tm.build_tiny_layoutlm_qa(tmp_path / "layoutlm"))
    words = ["invoice", "number", "123", "total", "amount", "42", "due", "date", "tomorrow"]
    boxes = [[10 + 90 * (i % 3), 10 + 40 * (i // 3), 90 + 90 * (i % 3), 40 + 40 * (i // 3)] for i in range(len(words))]
    image = Image.new("RGB", (300, 150), "white")
    out = dqa(image=image, question="What is the total amount?", word_boxes=list(zip(words, boxes)), top_k=2)
    assert 1 <= len(out) <= 2
    for ans in out:
        assert set(ans) == {"answer", "score", "start", "end"}
        assert 0 <= ans["start"] <= ans["end"] < len(words)
        assert ans["answer"] == " ".join(words[ans["start"] : ans["end"] + 1])
        assert 0.0 <= ans["score"] <= 1.0


def test_text_classifier(tmp_path):
    clf = make_pipe("text-classification", tm.build_tiny_text_classifier(tmp_path / "sst"))
    (out,) = clf("i love this movie")
    assert set(out) == {"label", "score"} and out["label"] in {"NEGATIVE", "POSITIVE"}
    both = clf("bad food", top_k=None)
    assert {o["label"] for o in both} == {"NEGATIVE", "POSITIVE"}
    assert math.isclose(sum(o["score"] for o in both), 1.0, rel_tol=1e-4)


def test_gpt2_text_generation(tmp_path):
    gen = make_pipe("text-generation", tm.build_tiny_gpt2(tmp_path / "gpt2"))
    (out,) = gen("hello world", max_new_tokens=8, do_sample=False)
    assert set(out) == {"generated_text"}
    assert out["generated_text"].startswith("hello world") and out["generated_text"].isascii()
    outs = gen(["hello", "the big world"], max_new_tokens=4, batch_size=2, do_sample=True, num_return_sequences=2)
    assert [len(o) for o in outs] == [2, 2]
