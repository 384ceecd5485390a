"""Load a model too large for one GPU's share through the registry with --device-map auto.

Run on a GPU machine: python scripts/device_map_check.py [--gpus N] [--share-gib G] [--json OUT]
It builds a random-weight zero-shot (BERT-large-shaped, ~1.3 GB fp16) model from a config, caps
each GPU with max_memory so it cannot fit on one, loads it through PipelineRegistry, checks that
the split model answers like a one-device load, prints memory per device, unloads and checks the
GPUs were freed. With one GPU the cap pushes the rest to the CPU (accelerate's offload).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from engine.registry import PipelineRegistry  # noqa: E402
from engine.settings import Settings  # noqa: E402


def build_model(folder: Path, layers: int) -> int:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = "[PAD] [UNK] [CLS] [SEP] [MASK] this is urgent phone not a the call me now please".split()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16,
                        intermediate_size=4096, num_labels=3,
                        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
                        label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).half()
    model.save_pretrained(folder)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=torch.cuda.device_count())
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp()) / "big-nli"
    size = build_model(folder, args.layers)
    share = int(size * 0.6)  # no single GPU may hold the whole model
    caps = ",".join(f"{i}={share}" for i in range(args.gpus)) + ",cpu=64GiB"
    report: dict = {"model_bytes": size, "max_memory": caps, "gpus": args.gpus,
                    "device_names": [torch.cuda.get_device_name(i) for i in range(args.gpus)]}
    baseline_reg = PipelineRegistry(Settings(device="cuda:0", dtype="float16", zero_shot_model=str(folder)))
    text, labels = "this is urgent please call me now", ["urgent", "phone", "not urgent"]
    expected = baseline_reg.get("zero-shot-classification")(text, candidate_labels=labels)
    baseline_reg.unload_all()
    free_before = [torch.cuda.memory_allocated(i) for i in range(args.gpus)]
    reg = PipelineRegistry(Settings(device="cuda", dtype="float16", device_map="auto", max_memory=caps,
                                    zero_shot_model=str(folder)))
    t0 = time.perf_counter()
    pipe = reg.get("zero-shot-classification")
    report["load_seconds"] = round(time.perf_counter() - t0, 2)
    got = pipe(text, candidate_labels=labels)
    (row,) = reg.status()
    report["status"] = row
    report["hf_device_map_devices"] = sorted({str(v) for v in pipe.model.hf_device_map.values()})
    report["answer"] = {"labels": got["labels"], "scores": [round(s, 4) for s in got["scores"]]}
    report["same_answer_as_one_device"] = got["labels"] == expected["labels"] and all(
        abs(a - b) < 2e-2 for a, b in zip(got["scores"], expected["scores"]))
    report["allocated_mb_loaded"] = [round(torch.cuda.memory_allocated(i) / 2**20) for i in range(args.gpus)]
    del pipe
    reg.unload_all()
    report["allocated_mb_after_unload"] = [round(torch.cuda.memory_allocated(i) / 2**20) for i in range(args.gpus)]
    report["freed"] = all(torch.cuda.memory_allocated(i) <= free_before[i] + 2**20 for i in range(args.gpus))
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    assert report["same_answer_as_one_device"] and report["freed"], "device_map check failed"


if __name__ == "__main__":
    main()
