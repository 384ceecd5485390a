"""Tiny random models for the quick-launch tests, built locally (nothing is downloaded).

Complements tests/fixtures/tiny_models.py (owned elsewhere) with the tasks only quick-launch
maps: token classification, fill-mask, feature extraction, object detection (YOLOS: a ViT
backbone, so no timm), zero-shot image classification (CLIP), audio classification and
image-text-to-text (BLIP). ``cached_build(name, root)`` builds once into ``root / name``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from tests.fixtures.tiny_models import _bert_tokenizer, _byte_level_vocab, _tiny_bert_config

NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
DETECTION_LABELS = {0: "cat", 1: "dog", 2: "car"}
AUDIO_LABELS = {0: "speech", 1: "music", 2: "noise"}
_DONE = ".quick_model_complete"


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def _save(model, out: Path, *processors) -> Path:
    model.eval()
    model.save_pretrained(out)
    for p in processors:
        p.save_pretrained(out)
    return out


def _vit_processor(cls_name: str, **kw):
    import transformers

    cls = getattr(transformers, cls_name + "Pil", None) or getattr(transformers, cls_name)
    return cls(**kw)


def build_ner(out: Path) -> Path:
    from transformers import BertForTokenClassification

    _seed()
    tok = _bert_tokenizer()
    return _save(BertForTokenClassification(_tiny_bert_config(len(tok), NER_LABELS)), out, tok)


def build_fill_mask(out: Path) -> Path:
    from transformers import BertForMaskedLM

    _seed()
    tok = _bert_tokenizer()
    return _save(BertForMaskedLM(_tiny_bert_config(len(tok), {0: "LABEL_0"})), out, tok)


def build_bert_base(out: Path) -> Path:
    from transformers import BertModel

    _seed()
    tok = _bert_tokenizer()
    return _save(BertModel(_tiny_bert_config(len(tok), {0: "LABEL_0"})), out, tok)


def build_yolos(out: Path) -> Path:
    """YolosForObjectDetection on 32x32 images, 4 detection tokens, 3 readable labels."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection

    _seed()
    config = YolosConfig(image_size=[32, 32], patch_size=8, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, num_detection_tokens=4, initializer_range=0.2,
                         id2label=DETECTION_LABELS, label2id={v: k for k, v in DETECTION_LABELS.items()})
    processor = _vit_processor("YolosImageProcessor", size={"shortest_edge": 32, "longest_edge": 32})
    model = YolosForObjectDetection(config)
    with torch.no_grad():  # YOLOS starts its detection tokens equal: random ones give distinct boxes
        model.vit.embeddings.detection_tokens.normal_(0.0, 1.0)
    return _save(model, out, processor)


def build_clip(out: Path) -> Path:
    """CLIPModel with a byte-level BPE CLIPTokenizer, 32x32 images."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    _seed()
    vocab, merges = _byte_level_vocab()
    for sym in list(vocab):
        vocab.setdefault(sym + "</w>", len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=32)
    text = dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32, eos_token_id=vocab["<|endoftext|>"],
                bos_token_id=vocab["<|startoftext|>"], pad_token_id=vocab["<|endoftext|>"])
    vision = dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    image_processor = _vit_processor("CLIPImageProcessor", size={"shortest_edge": 32},
                                     crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(CLIPModel(config), out, processor)


def build_audio_classifier(out: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    _seed()
    config = Wav2Vec2Config(vocab_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, classifier_proj_size=16, mask_time_prob=0.0,
                            id2label=AUDIO_LABELS, label2id={v: k for k, v in AUDIO_LABELS.items()})
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=False)
    return _save(Wav2Vec2ForSequenceClassification(config), out, extractor)


def build_blip(out: Path) -> Path:
    """BlipForConditionalGeneration (image-text-to-text captioning) with a WordPiece tokenizer."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor, GenerationConfig

    _seed()
    tok = _bert_tokenizer(model_max_length=64)
    tok.bos_token = "[CLS]"  # BLIP starts captions from the BOS id
    text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64, encoder_hidden_size=16,
                bos_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
    image_processor = _vit_processor("BlipImageProcessor", size={"height": 32, "width": 32})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tok)
    model = BlipForConditionalGeneration(config)
    model.generation_config = GenerationConfig(max_new_tokens=8, bos_token_id=tok.cls_token_id,
                                               eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    return _save(model, out, processor)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "ner": build_ner,
    "fill_mask": build_fill_mask,
    "bert_base": build_bert_base,
    "yolos": build_yolos,
    "clip": build_clip,
    "audio_classifier": build_audio_classifier,
    "blip": build_blip,
}


def cached_build(name: str, root: Path) -> Path:
    """Build BUILDERS[name] into root/name once; an interrupted build is never reused."""
    target = Path(root) / name
    if (target / _DONE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        BUILDERS[name](tmp)
        (tmp / _DONE).write_text("ok\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def quick_model_fixture(tmp_path_factory):
    """quick_model(name) -> folder; shared by every module that imports the fixture."""
    root = tmp_path_factory.getbasetemp() / "quick-models"
    return lambda name: cached_build(name, root)
