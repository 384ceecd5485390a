"""Image tab: its API through gradio_client, and an image dropped onto the page in Chromium."""

import base64
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from engine.registry import PipelineRegistry
from engine.vision import classify_images, load_image
from ui.tabs import image as image_tab

pytestmark = pytest.mark.e2e

HOUSE, CAR = (str(image_tab.ASSETS / f"image_example_{name}.png") for name in ("house", "car"))


@pytest.fixture
def image_app(make_settings, serve, tiny_model):
    settings = make_settings(image_model=str(tiny_model("vit_classifier")))
    registry = PipelineRegistry(settings)
    url = serve(image_tab.demo(registry, settings), settings)
    return url, registry


def expected(registry, path, top_k):
    return classify_images(registry.get("image-classification"), [load_image(path)], top_k)[0]


def test_api_returns_label_score_dicts_and_a_table_for_several(image_app, tmp_path):
    url, registry = image_app
    client = Client(url, verbose=False)
    result = client.predict(handle_file(CAR), api_name="/classify_image")
    assert [r["label"] for r in result] == [p.label for p in expected(registry, CAR, 5)]
    assert set(result[0]) == {"label", "score"} and result[0]["score"] >= result[-1]["score"]
    assert len(client.predict(handle_file(CAR), top_k=2, api_name="/classify_image")) == 2

    broken = tmp_path / "broken.png"
    broken.write_bytes(Path(HOUSE).read_bytes()[:100])
    gallery, table = client.predict([handle_file(CAR), handle_file(HOUSE), handle_file(str(broken))], top_k=3,
                                    api_name="/classify_images")
    assert [c["caption"].split(":")[0] for c in gallery] == [Path(CAR).name, Path(HOUSE).name]
    car_row, house_row, broken_row = table["data"]
    assert car_row[:2] == [Path(CAR).name, expected(registry, CAR, 1)[0].label]
    assert house_row[1] == expected(registry, HOUSE, 1)[0].label and house_row[3].count(",") == 2
    assert broken_row[1] == "(not classified)" and "damaged or truncated" in broken_row[3]

    with pytest.raises(Exception, match="No image given"):
        client.predict(None, api_name="/classify_image")


def test_dropped_image_shows_its_top_label(image_app, page):
    url, registry = image_app
    top = expected(registry, HOUSE, 1)[0].label
    page.goto(url)
    target = page.locator("#image-input button.upload-container")
    target.wait_for(timeout=30_000)
    data = base64.b64encode(Path(HOUSE).read_bytes()).decode()
    target.evaluate("""(el, data) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "house.png", {type: "image/png"}));
        for (const type of ["dragenter", "dragover", "drop"]) {
            el.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }
    }""", data)
    page.locator("#image-input img").wait_for(timeout=15_000)
    page.locator("#image-run").click()
    heading = page.locator("#image-label [data-testid='label-output-value']")
    heading.wait_for(timeout=30_000)
    assert heading.inner_text().strip() == top
    assert page.locator("#image-label .confidence-set").count() == 5  # top_k bars
