"""The API as gradio_client's view_api shows it: clean names, `model` everywhere, integer counts, documented.

Gradio builds the API page and the MCP tool descriptions from the handlers' signatures and docstrings, so
the names and every parameter's description are part of the public interface.
"""

from __future__ import annotations

import pytest
from gradio.utils import get_function_description
from gradio_client import Client

from engine.registry import PipelineRegistry
from ui.app import build_app

PARAMETERS = {
    "/transcribe": ["audio", "model", "timestamps", "mode", "language", "task", "batch_size", "beams", "url",
                    "line_chars", "lines", "cue_words", "word_cues", "prompt"],
    "/transcribe_many": ["files", "model", "timestamps", "language", "task", "batch_size", "beams", "prompt"],
    "/classify_image": ["image", "model", "top_k", "url"],
    "/classify_images": ["images", "model", "top_k", "urls"],
    "/classify_text": ["text", "labels", "multi_label", "template", "model"],
    "/classify_texts": ["texts", "file", "labels", "multi_label", "template", "model"],
    "/answer_document": ["document", "question", "page", "model", "lang", "top_k", "url"],
    "/models_status": [],
}  # unloading is for the operator: not in the public API (tests/test_security.py)
INTEGERS = {("/transcribe", "batch_size"), ("/transcribe", "beams"), ("/transcribe", "line_chars"),
            ("/transcribe", "lines"), ("/transcribe", "cue_words"), ("/transcribe_many", "batch_size"),
            ("/transcribe_many", "beams"), ("/classify_image", "top_k"),
            ("/classify_images", "top_k"), ("/answer_document", "top_k")}
REQUIRED = {"/classify_text": {"text", "labels"}, "/answer_document": {"question"}}
RETURNS = {
    "/transcribe": ["Transcript", "Segments", "Downloads"],
    "/transcribe_many": ["Results", "Downloads", "All subtitles (.zip)"],
    "/classify_image": ["Predictions"],
    "/answer_document": ["Answers"],
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.conftest import free_port, serving
    from engine.settings import Settings

    settings = Settings.from_env(env={}, device="cpu", port=free_port())  # nothing loads: only the API is read
    demo = build_app(settings, PipelineRegistry(settings))
    with serving(demo, settings) as url:
        yield demo, Client(url, verbose=False).view_api(return_format="dict", print_info=False)


def test_endpoints_and_parameter_names(app):
    _, api = app
    named = api["named_endpoints"]
    assert sorted(named) == sorted(PARAMETERS)
    assert api["unnamed_endpoints"] == {}
    for endpoint, names in PARAMETERS.items():
        assert [p["parameter_name"] for p in named[endpoint]["parameters"]] == names, endpoint
        assert not any(n.endswith("_") or n == "model_name" for n in names)


def test_counts_are_integers_and_open_values_are_strings(app):
    _, api = app
    for endpoint, info in api["named_endpoints"].items():
        for p in info["parameters"]:
            kind = p["python_type"]["type"]
            assert (kind == "int") == ((endpoint, p["parameter_name"]) in INTEGERS), (endpoint, p["parameter_name"], kind)
    page = next(p for p in api["named_endpoints"]["/answer_document"]["parameters"] if p["parameter_name"] == "page")
    assert page["python_type"]["type"] == "Literal['All pages'] | str" and page["parameter_default"] == "All pages"


def test_only_what_must_be_given_is_required(app):
    _, api = app
    for endpoint, info in api["named_endpoints"].items():
        required = {p["parameter_name"] for p in info["parameters"] if not p["parameter_has_default"]}
        assert required == REQUIRED.get(endpoint, set()), endpoint


def test_every_endpoint_is_described_with_its_arguments_and_returns(app):
    demo, api = app
    for endpoint, info in api["named_endpoints"].items():
        assert info["description"].strip(), endpoint
    for fn in demo.fns.values():
        if f"/{fn.api_name}" not in PARAMETERS:
            continue
        _, params, returns = get_function_description(fn.fn)
        documented = {k: v for k, v in params.items() if k != "progress"}
        assert sorted(documented) == sorted(PARAMETERS[f"/{fn.api_name}"]), fn.api_name
        assert all(documented.values()), (fn.api_name, [k for k, v in documented.items() if not v])
        assert returns, fn.api_name


def test_return_names(app):
    _, api = app
    for endpoint, labels in RETURNS.items():
        assert [r["label"] for r in api["named_endpoints"][endpoint]["returns"]] == labels
