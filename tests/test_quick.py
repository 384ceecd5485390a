"""Quick-launch: each mapped task served from a tiny local model and called at /predict."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw, ImageFont

from engine.registry import PipelineRegistry
from engine.settings import Settings
from tests.conftest import needs_real_whisper, WHISPER_TINY_EN
from tests.fixtures.tiny_models import NLI_LABELS, SENTIMENT_LABELS, VIT_LABELS
from tests.quick_models import AUDIO_LABELS, DETECTION_LABELS, NER_LABELS, quick_model_fixture
from ui.quick import QUICK, QuickLaunchError, build_interface

quick_model = pytest.fixture(scope="session")(quick_model_fixture)


@pytest.fixture
def quick(make_settings, serve):
    """quick(task, model) -> (gradio Client of the launched Interface, the pipeline behind it)."""

    def launch(task, model, **settings):
        settings = make_settings(**settings)
        pipe = PipelineRegistry(settings).get(task, str(model))
        url = serve(build_interface(pipe, task, settings), settings)
        return Client(url, verbose=False), pipe

    return launch


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory):
    """2.5 s of 44.1 kHz stereo (the quick-launch must downmix and resample it itself)."""
    t = np.arange(int(44100 * 2.5)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path_factory.mktemp("audio") / "stereo.wav"
    sf.write(path, np.stack([tone, tone * 0.5], axis=1).astype("float32"), 44100)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray((np.random.RandomState(0).rand(48, 64, 3) * 255).astype("uint8")).save(path)
    return path


def _confidences(label_value):
    return {c["label"]: c["confidence"] for c in label_value["confidences"]}


def test_asr_whisper_gives_transcript_and_timestamped_segments(quick, tiny_model, stereo_wav):
    from engine.audio import decode_audio
    from engine.speech import TranscribeOptions, transcribe

    client, pipe = quick("automatic-speech-recognition", tiny_model("whisper_en"))
    text, table = client.predict(handle_file(stereo_wav), api_name="/predict")
    assert table["headers"] == ["start (s)", "end (s)", "text"]
    rows = table["data"]
    engine = transcribe(pipe, decode_audio(stereo_wav), TranscribeOptions())  # the Speech tab's own result
    assert rows and text == engine.text and [tuple(r) for r in rows] == [(s.start, s.end, s.text) for s in engine.segments]
    starts = [r[0] for r in rows]
    assert starts == sorted(starts) and all(0 <= r[0] <= r[1] <= 2.5 for r in rows)


def test_asr_ctc_gives_word_timestamps(quick, tiny_model, stereo_wav):
    client, _ = quick("automatic-speech-recognition", tiny_model("wav2vec2_ctc"))
    text, table = client.predict(handle_file(stereo_wav), api_name="/predict")
    rows = table["data"]
    assert " ".join(r[2] for r in rows).split() == text.split()
    assert all(0 <= r[0] < r[1] <= 2.5 for r in rows) and [r[0] for r in rows] == sorted(r[0] for r in rows)
    click = str(stereo_wav).replace(".wav", "-click.wav")
    sf.write(click, np.full(160, 0.3, np.float32), 16000)  # 0.01 s crashed wav2vec2's convolutions
    with pytest.raises(AppError, match=r"lasts only 0\.01 s, too short to transcribe; recordings of at least 0\.25 s"):
        client.predict(handle_file(click), api_name="/predict")
    assert client.predict(handle_file(stereo_wav), api_name="/predict")[0] == text  # and it keeps serving


@needs_real_whisper
@pytest.mark.real_model
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng absent")
def test_asr_real_whisper_words_and_times(quick, tmp_path):
    import subprocess

    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "The weather is good today. I like green apples."],
                   check=True)
    client, _ = quick("automatic-speech-recognition", WHISPER_TINY_EN)
    text, table = client.predict(handle_file(wav), api_name="/predict")
    assert "good today" in text.lower() and "apples" in text.lower()  # espeak is not a human voice
    duration = sf.info(wav).duration
    assert table["data"][0][0] < 1.0 and table["data"][-1][1] <= duration + 0.01


@needs_real_whisper
@pytest.mark.real_model
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng absent")
def test_asr_is_the_speech_tabs_engine_with_its_segments(quick, tmp_path):
    """Quick-launch transcribes as the Speech tab does: VAD-cut sentences, starts at the speech, no empty rows."""
    from engine.speech import TranscribeOptions, decode_audio, transcribe
    from tests.test_speech_synth import TALK_SENTENCES, talk_wav

    path, speech = talk_wav(tmp_path)
    client, pipe = quick("automatic-speech-recognition", WHISPER_TINY_EN)
    text, table = client.predict(handle_file(str(path)), api_name="/predict")
    rows = table["data"]
    # The same samples the server read (the 16-bit file, not the synthesiser's floats): 5 beams place a
    # word 20 ms apart on input that differs by rounding alone.
    engine = transcribe(pipe, decode_audio(str(path), 16000), TranscribeOptions())
    assert text == engine.text and [tuple(r) for r in rows] == [(s.start, s.end, s.text) for s in engine.segments]
    assert len(rows) == len(TALK_SENTENCES) and all(r[2].strip() and r[0] < r[1] for r in rows)
    for row, placed in zip(rows, speech.starts):
        assert row[0] == pytest.approx(placed, abs=0.3)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/predict"]
    assert [p["parameter_name"] for p in api["parameters"]] == ["audio"]


def test_audio_classification_shows_the_models_labels(quick, quick_model, stereo_wav):
    client, _ = quick("audio-classification", quick_model("audio_classifier"))
    result = client.predict(handle_file(stereo_wav), api_name="/predict")
    scores = _confidences(result)
    assert set(scores) == set(AUDIO_LABELS.values()) and result["label"] == max(scores, key=scores.get)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)


def test_image_classification_top_label_matches_the_pipeline(quick, tiny_model, photo):
    client, pipe = quick("image-classification", tiny_model("vit_classifier"))
    result = client.predict(handle_file(photo), api_name="/predict")
    assert set(_confidences(result)) == set(VIT_LABELS)
    assert result["label"] == pipe(Image.open(photo).convert("RGB"))[0]["label"]


def test_image_inputs_get_the_image_tabs_checks_and_messages(quick, tiny_model, photo, tmp_path):
    """Gradio's gr.Image(type="pil") decoded uploads itself: a text file said 'Could not preprocess input
    component ... UnidentifiedImageError' with a cache path, and a bomb was decoded before any check."""
    from tests.hostile_files import ico, png_bomb
    from tests.peak_memory import PeakMemory
    from tests.test_security import assert_for_people

    client, _ = quick("image-classification", tiny_model("vit_classifier"))
    (tmp_path / "notimage.png").write_text("not an image\n")
    (tmp_path / "bomb.ico").write_bytes(ico(png_bomb(12000, 12000, rgba=True)))
    for name, expected in (("notimage.png", "notimage.png is not an image Pillow can read; accepted: PNG, JPEG"),
                           ("bomb.ico", "12000x12000 = 144,000,000 pixel picture (its icon directory says 256x256); images up to 40,000,000")):
        with PeakMemory() as rss, pytest.raises(AppError) as err:
            client.predict(handle_file(str(tmp_path / name)), api_name="/predict")
        assert expected in str(err.value) and "preprocess" not in str(err.value)
        assert_for_people(str(err.value))
        assert rss.growth_mb < 100, (name, rss.growth_mb)
    assert client.predict(handle_file(photo), api_name="/predict")["label"] in VIT_LABELS


def test_zero_shot_labels_have_the_tabs_length_limit(quick, tiny_model):
    client, _ = quick("zero-shot-classification", tiny_model("bert_nli"))
    with pytest.raises(AppError, match="characters; labels of at most 200 characters are accepted"):
        client.predict("text", ", ".join(["x" * 20_000] * 50), False, api_name="/predict")
    assert set(_confidences(client.predict("I love it", "good, bad", False, api_name="/predict"))) == {"good", "bad"}


def test_zero_shot_scores_exactly_the_labels_given(quick, tiny_model):
    client, _ = quick("zero-shot-classification", tiny_model("bert_nli"), max_labels=3)
    result = client.predict("I love the new phone", "technology, sports, technology , cooking", False,
                            api_name="/predict")
    scores = _confidences(result)
    assert set(scores) == {"technology", "sports", "cooking"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(AppError, match="4 candidate labels given; at most 3"):
        client.predict("text", "a, b, c, d", False, api_name="/predict")
    assert set(NLI_LABELS.values()).isdisjoint(scores)


def test_zero_shot_image_classification(quick, quick_model, photo):
    client, _ = quick("zero-shot-image-classification", quick_model("clip"))
    result = client.predict(handle_file(photo), "a cat, a dog, a car", api_name="/predict")
    assert set(_confidences(result)) == {"a cat", "a dog", "a car"}


def test_text_classification_labels_from_id2label_and_input_errors(quick, tiny_model):
    client, pipe = quick("text-classification", tiny_model("text_classifier"), max_text_chars=40)
    result = client.predict("what a great movie", api_name="/predict")
    assert set(_confidences(result)) == set(SENTIMENT_LABELS.values())
    assert result["label"] == pipe("what a great movie")[0]["label"]
    with pytest.raises(AppError, match="Enter some text"):
        client.predict("   ", api_name="/predict")
    with pytest.raises(AppError, match="at most 40 are accepted"):
        client.predict("x" * 41, api_name="/predict")


def test_token_classification_highlights_entities(quick, quick_model):
    client, pipe = quick("token-classification", quick_model("ner"))
    text = "hello world this is urgent"
    spans = client.predict(text, api_name="/predict")
    assert "".join(s["token"] for s in spans) == text
    shown = [(s["token"], s["class_or_confidence"]) for s in spans if s["class_or_confidence"]]
    expected = [(e["word"], e["entity_group"]) for e in pipe(text, aggregation_strategy="simple")]
    assert shown == expected and shown
    assert {label for _, label in shown} <= {v.split("-")[-1] for v in NER_LABELS.values()}


def test_fill_mask_offers_tokens_and_explains_a_missing_mask(quick, quick_model):
    client, pipe = quick("fill-mask", quick_model("fill_mask"))
    result = client.predict("the cat is <mask> .", api_name="/predict")  # the other spelling is accepted
    expected = [r["token_str"] for r in pipe("the cat is [MASK] .", top_k=5)]
    assert [c["label"] for c in result["confidences"]] == list(dict.fromkeys(expected))
    (example,) = QUICK["fill-mask"].examples(pipe, Settings())  # the example under the inputs works
    assert len(client.predict(*example, api_name="/predict")["confidences"]) == 5
    with pytest.raises(AppError, match=r"Put the mask token \[MASK\] exactly once"):
        client.predict("no mask here", api_name="/predict")


def test_feature_extraction_shape_and_preview(quick, quick_model):
    client, pipe = quick("feature-extraction", quick_model("bert_base"))
    result = client.predict("hello world", api_name="/predict")
    tokens = len(pipe.tokenizer("hello world")["input_ids"])
    assert result["shape"] == [1, tokens, 16]
    assert len(result["mean_pooled_preview"]) == 8 and len(result["first_tokens_preview"]) == min(tokens, 4)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr absent")
def test_document_qa_answers_with_a_word_of_the_document(quick, tiny_model, tmp_path):
    page = Image.new("RGB", (640, 200), "white")
    ImageDraw.Draw(page).text((20, 60), "INVOICE TOTAL 42 EUR", fill="black", font=ImageFont.load_default(size=48))
    page.save(tmp_path / "invoice.png")
    client, _ = quick("document-question-answering", tiny_model("layoutlm_qa"))
    result = client.predict(handle_file(tmp_path / "invoice.png"), "what is the total", api_name="/predict")
    assert result["label"] and set(result["label"].split()) <= {"INVOICE", "TOTAL", "42", "EUR"}
    with pytest.raises(AppError, match="Enter a question"):
        client.predict(handle_file(tmp_path / "invoice.png"), "", api_name="/predict")


def test_object_detection_draws_the_boxes_it_lists(quick, quick_model, photo):
    client, _ = quick("object-detection", quick_model("yolos"))
    annotated, table = client.predict(handle_file(photo), 0.0, api_name="/predict")
    assert table["headers"] == ["label", "score", "xmin", "ymin", "xmax", "ymax"]
    rows = table["data"]
    assert len(rows) == 4 and {r[0] for r in rows} <= set(DETECTION_LABELS.values())
    assert len({tuple(r[2:]) for r in rows}) == 4 and [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
    assert [a["label"] for a in annotated["annotations"]] == [f"{r[0]} {r[1]:.2f}" for r in rows]
    for drawn, (_, _, x0, y0, x1, y1) in zip(annotated["annotations"], rows):
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 48
        ys, xs = np.nonzero(np.asarray(Image.open(drawn["image"]).convert("L")))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)  # the outline drawn is the box
    _, confident = client.predict(handle_file(photo), 0.35, api_name="/predict")
    assert confident["data"] == [r for r in rows if r[1] > 0.35] and 0 < len(confident["data"]) < 4
    _, none = client.predict(handle_file(photo), 1.0, api_name="/predict")
    assert none["data"] == []


def test_image_text_to_text_caption(quick, quick_model, photo):
    client, pipe = quick("image-text-to-text", quick_model("blip"))
    caption = client.predict(handle_file(photo), "", 6, api_name="/predict")
    expected = pipe(images=Image.open(photo).convert("RGB"), text="", max_new_tokens=6)[0]["generated_text"]
    assert caption and caption == expected.strip()


def test_text_generation_continues_the_prompt_within_max_new_tokens(quick, tiny_model):
    client, pipe = quick("text-generation", tiny_model("gpt2"), max_new_tokens=8)
    text = client.predict("hello there", 8, api_name="/predict")
    assert text.startswith("hello there") and len(text) > len("hello there")
    added = len(pipe.tokenizer(text)["input_ids"]) - len(pipe.tokenizer("hello there")["input_ids"])
    assert 0 < added <= 8
    with pytest.raises(AppError):  # the slider's maximum is the operator's limit
        client.predict("hello", 9, api_name="/predict")


def test_unsupported_task_lists_the_supported_ones():
    class DepthPipe:
        task = "depth-estimation"

    with pytest.raises(QuickLaunchError) as err:
        build_interface(DepthPipe())
    message = str(err.value)
    assert "depth-estimation" in message and all(task in message for task in QUICK)


def test_text_generation_chat_model_answers_instead_of_continuing(quick, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    chat_model = shutil.copytree(tiny_model("gpt2"), tmp_path / "gpt2-chat")
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"
    tokenizer.save_pretrained(chat_model)
    config = json.loads((chat_model / "generation_config.json").read_text())
    (chat_model / "generation_config.json").write_text(json.dumps({**config, "do_sample": False}))  # comparable
    client, pipe = quick("text-generation", chat_model)
    reply = client.predict("hello there", 6, api_name="/predict")
    expected = pipe([{"role": "user", "content": "hello there"}], max_new_tokens=6, return_full_text=False)
    assert reply == expected[0]["generated_text"].strip() and not reply.startswith("<user>")
