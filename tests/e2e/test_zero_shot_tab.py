"""Zero-shot tab: its API through gradio_client, and text typed into the page in Chromium."""

import csv

import pytest
from gradio_client import Client, handle_file

from engine.registry import PipelineRegistry
from engine.text import classify_texts
from ui.tabs import zero_shot

pytestmark = pytest.mark.e2e

LABELS = ("urgent", "not urgent", "phone", "tablet", "computer")


@pytest.fixture
def zs_app(make_settings, serve, tiny_model):
    settings = make_settings(zero_shot_model=str(tiny_model("bert_nli")))
    registry = PipelineRegistry(settings)
    url = serve(zero_shot.demo(registry, settings), settings)
    return url, registry


def expected(registry, texts, multi_label=False):
    return classify_texts(registry.get("zero-shot-classification"), texts, LABELS, multi_label)


def test_api_one_text_and_a_csv_of_texts(zs_app, tmp_path):
    url, registry = zs_app
    client = Client(url, verbose=False)
    result = client.predict(zero_shot.EXAMPLE_TEXT, "urgent, not urgent\nphone, tablet,computer, Phone",
                            api_name="/classify_text")
    (want,) = expected(registry, [zero_shot.EXAMPLE_TEXT])
    assert result["labels"] == list(want.labels)
    assert result["scores"] == pytest.approx(list(want.scores), abs=1e-5)

    upload = tmp_path / "tickets.csv"
    upload.write_text('id,text\n1,"my phone broke, please help"\n2,the tablet is fine\n', encoding="utf-8")
    table, download = client.predict("ignored when a file is given", handle_file(str(upload)), ", ".join(LABELS),
                                     True, api_name="/classify_texts")
    assert table["headers"] == ["text", "top label", "top score", *LABELS]
    want = expected(registry, ["my phone broke, please help", "the tablet is fine"], multi_label=True)
    assert [row[:2] for row in table["data"]] == [["my phone broke, please help", want[0].labels[0]],
                                                  ["the tablet is fine", want[1].labels[0]]]
    with open(download, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == table["headers"] and len(rows) == 3
    assert float(rows[2][3 + LABELS.index("phone")]) == pytest.approx(want[1].score_of("phone"), abs=1e-6)

    with pytest.raises(Exception, match="must contain exactly one"):
        client.predict("text", "a, b", False, "no placeholder", api_name="/classify_text")


def test_typed_text_and_labels_show_scores(zs_app, page):
    url, registry = zs_app
    (want,) = expected(registry, [zero_shot.EXAMPLE_TEXT])
    page.goto(url)
    page.locator("#zs-text textarea").wait_for(timeout=30_000)
    page.locator("#zs-text textarea").fill(zero_shot.EXAMPLE_TEXT)
    page.locator("#zs-labels textarea").fill("\n".join(LABELS))
    page.locator("#zs-run").click()
    heading = page.locator("#zs-label [data-testid='label-output-value']")
    heading.wait_for(timeout=30_000)
    assert heading.inner_text().strip() == want.labels[0]
    rows = page.locator("#zs-label .confidence-set")
    assert rows.count() == len(LABELS)
    shown = {rows.nth(i).locator(".text").first.inner_text().strip(): rows.nth(i).inner_text()
             for i in range(len(LABELS))}
    assert set(shown) == set(LABELS)
    for label, score in zip(want.labels, want.scores):
        assert f"{round(score * 100)}%" in shown[label]
