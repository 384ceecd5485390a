"""engine.text: label and template rules, reading many texts, zero-shot results from one forward."""

import re

import pytest
import torch

from engine.errors import InputError
from engine.text import classify_texts, parse_labels, parse_texts, read_texts, validate_template

SEED_TEXT = "I have a problem with my iphone that needs to be resolved asap!!"
SEED_LABELS = ("urgent", "not urgent", "phone", "tablet", "computer")


@pytest.fixture(scope="module")
def nli(tiny_model):
    from transformers import pipeline

    return pipeline("zero-shot-classification", model=str(tiny_model("bert_nli")), device="cpu",
                    dtype=torch.float32)


def test_labels_comma_or_line_separated_trimmed_deduplicated_in_order():
    assert parse_labels("urgent, not urgent,phone", 50) == ("urgent", "not urgent", "phone")
    assert parse_labels("  urgent \n\nnot   urgent\n phone, ,Phone\nurgent\n", 50) == ("urgent", "not urgent", "phone")
    assert parse_labels(",".join(f"l{i}" for i in range(50)), 50)[-1] == "l49"
    with pytest.raises(InputError, match="No candidate labels given; type at least one"):
        parse_labels(" , \n ,", 50)
    with pytest.raises(InputError, match="51 candidate labels given; at most 50 are accepted"):
        parse_labels("\n".join(f"l{i}" for i in range(51)), 50)


@pytest.mark.parametrize("template", ["This example is {}.", "  Topic: {}  ", "{} {{in braces}}"])
def test_templates_with_one_placeholder_pass(template):
    assert validate_template(template) == template.strip()


@pytest.mark.parametrize("template, message", [
    ("This example is about phones.", "exactly one {} where the label goes (found no {})"),
    ("", "found no {}"),
    ("{} or {}", "found 2 of them"),
    ("This is {label}.", "found no {}"),
    ("{} and {0}", "no braces other than the one {}"),
])
def test_templates_without_exactly_one_placeholder_are_refused(template, message):
    with pytest.raises(InputError, match=re.escape(message)):
        validate_template(template)


def test_many_texts_from_lines_txt_and_csv(tmp_path):
    assert parse_texts("first\n\n  second  \n", 10, 100) == ["first", "second"]
    (tmp_path / "a.txt").write_text("one\ntwo\n\nthree\n", encoding="utf-8")
    assert read_texts(tmp_path / "a.txt", 10, 100) == ["one", "two", "three"]
    (tmp_path / "named.csv").write_text('id,Text,stars\n1,"My phone broke, help",3\n2,hello,5\n', encoding="utf-8-sig")
    assert read_texts(tmp_path / "named.csv", 10, 100) == ["My phone broke, help", "hello"]
    (tmp_path / "first.csv").write_text("review,stars\ngreat,5\n,3\nawful,1\n", encoding="utf-8")
    assert read_texts(tmp_path / "first.csv", 10, 100) == ["great", "awful"]
    with pytest.raises(InputError, match="3 texts given; at most 2"):
        read_texts(tmp_path / "a.txt", 2, 100)
    with pytest.raises(InputError, match="Text 2 has 6 characters; at most 5"):
        parse_texts("short\nlonger", 10, 5)
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_texts(tmp_path / "latin.txt", 10, 100)
    with pytest.raises(InputError, match="only .csv and .txt files are accepted"):
        read_texts(tmp_path / "doc.pdf", 10, 100)
    (tmp_path / "header.csv").write_text("text\n", encoding="utf-8")
    with pytest.raises(InputError, match="no rows under its header"):
        read_texts(tmp_path / "header.csv", 10, 100)


def test_zero_shot_scores_every_label_for_every_text_in_one_forward(nli):
    forwards = []
    hook = nli.model.register_forward_hook(lambda module, args, out: forwards.append(1))
    texts = [SEED_TEXT, "my tablet screen is broken"]
    try:
        single = classify_texts(nli, texts, SEED_LABELS, multi_label=False)
        assert len(forwards) == 1  # 2 texts x 5 labels as one batch
        multi = classify_texts(nli, texts, SEED_LABELS, multi_label=True, template="This is about {}.")
    finally:
        hook.remove()
    for result in single + multi:
        assert sorted(result.labels) == sorted(SEED_LABELS)
        assert list(result.scores) == sorted(result.scores, reverse=True)
    for result in single:
        assert sum(result.scores) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 < s < 1.0 for s in multi[0].scores) and sum(multi[0].scores) != pytest.approx(1.0, abs=1e-3)
    # batched (padded) results equal the pipeline's own answer for each text alone
    alone = nli(texts[1], candidate_labels=list(SEED_LABELS))
    assert list(single[1].labels) == alone["labels"]
    assert list(single[1].scores) == pytest.approx(alone["scores"], abs=1e-5)
    assert classify_texts(nli, [SEED_TEXT], ["urgent"], multi_label=False)[0].labels == ("urgent",)


def test_pairs_per_forward_splits_the_forward_passes_not_the_answer(nli):
    forwards = []
    hook = nli.model.register_forward_hook(lambda module, args, out: forwards.append(args))
    try:
        split = classify_texts(nli, [SEED_TEXT, "my tablet"], SEED_LABELS, False, pairs_per_forward=4)
    finally:
        hook.remove()
    assert len(forwards) == 3  # 10 pairs in passes of 4, 4 and 2
    whole = classify_texts(nli, [SEED_TEXT, "my tablet"], SEED_LABELS, False)
    for a, b in zip(split, whole):
        assert a.labels == b.labels and a.scores == pytest.approx(b.scores, abs=1e-5)
