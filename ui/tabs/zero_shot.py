"""Zero-shot text tab: score one text or many against labels the user types."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from engine.batching import MicroBatcher, event_concurrency
from engine.registry import allowed_models, check_model_allowed
from engine.text import (DEFAULT_TEMPLATE, TEXT_FILE_TYPES, ZeroShotResult, check_text, classify_with,
                         parse_labels, parse_texts, read_texts, validate_template)
from ui.common import get_pipeline, hand_over_path, open_choices, standalone, user_errors
from ui.zerogpu import MANY_ITEMS_SECONDS, ONE_ITEM_SECONDS, gpu

TASK = "zero-shot-classification"
EXAMPLE_TEXT = "I have a problem with my iphone that needs to be resolved asap!!"
EXAMPLE_LABELS = "urgent, not urgent, phone, tablet, computer"
EXAMPLE_TEXTS = "\n".join([
    EXAMPLE_TEXT,
    "My tablet screen cracked when I dropped it, no rush though.",
    "The laptop will not boot since this morning and I have a deadline tonight.",
])


def as_json(result: ZeroShotResult) -> dict:
    return {"labels": list(result.labels), "scores": list(result.scores)}


def as_label(result: dict | None) -> dict[str, float] | None:
    return dict(zip(result["labels"], result["scores"])) if result else None


def results_table(texts: list[str], labels: tuple[str, ...], results: list[ZeroShotResult]) -> list[list]:
    """One row per text: the text, its best label and score, then every label's score in the user's order."""
    return [[text, r.labels[0], r.scores[0], *(r.score_of(label) for label in labels)]
            for text, r in zip(texts, results)]


def write_csv(headers: list[str], rows: list[list], folder: str | None = None) -> str:
    """The results as a CSV in a new folder under `folder` (Gradio's cache, which serves it from there)."""
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="zero-shot-", dir=folder)) / "zero_shot_results.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        writer.writerows(rows)
    return str(out)


def build(registry, settings, fetcher=None) -> None:  # fetcher unused: texts are typed or uploaded
    batcher = MicroBatcher.from_settings(settings)
    models = allowed_models(TASK, settings)
    limit = event_concurrency(settings)

    def run(texts: list[str], labels: str, multi_label: bool, template: str, model: str, progress=None):
        labels = parse_labels(labels, settings.max_labels, settings.max_label_chars)
        template = validate_template(template, settings.max_label_chars)
        check_model_allowed(TASK, model, settings)
        pipe = get_pipeline(registry, TASK, model, progress)
        return labels, classify_with(batcher, pipe, texts, labels, multi_label, template,
                                     settings.max_pairs_per_forward)

    @gpu(duration=ONE_ITEM_SECONDS)
    @user_errors
    def classify_text(text: str, labels: str, multi_label: bool, template: str, model: str,
                      progress=gr.Progress(track_tqdm=True)) -> dict:
        """Score one text against candidate labels with an NLI model (zero-shot classification).

        Args:
            text: the text to classify.
            labels: the candidate labels, separated by commas or one per line, e.g. 'urgent, not urgent, phone'.
            multi_label: true to score each label on its own; false (default) for scores that share 1.
            template: the hypothesis, with {} where the label goes, e.g. 'This example is {}.'.
            model: the zero-shot model, one of those the server offers.

        Returns:
            result: {sequence, labels, scores}, labels best first.
        """
        text = check_text(text, settings.max_text_chars)
        _, (result,) = run([text], labels, multi_label, template, model, progress)
        return as_json(result)

    @gpu(duration=MANY_ITEMS_SECONDS)
    @user_errors
    def classify_texts(texts: str | None = None, file: str | None = None, labels: str | None = None,
                       multi_label: bool = False, template: str = DEFAULT_TEMPLATE, model: str | None = None,
                       progress=gr.Progress(track_tqdm=True)):
        """Score several texts against the same candidate labels; the results also come as a CSV file.

        Args:
            texts: the texts, one per line; ignored when a file is given.
            file: a .txt file (one text per line) or .csv file (a column named text, or the first column).
            labels: the candidate labels (required), separated by commas or one per line.
            multi_label: true to score each label on its own; false (default) for scores that share 1.
            template: the hypothesis, with {} where the label goes, e.g. 'This example is {}.'.
            model: the zero-shot model, one of those the server offers.

        Returns:
            results: a table of text, top label, top score and one score column per label.
            csv: the same table as a CSV file.
        """
        if file:
            items = read_texts(file, settings.max_texts, settings.max_text_chars)
        else:
            items = parse_texts(texts, settings.max_texts, settings.max_text_chars)
        parsed, results = run(items, labels, multi_label, template, model, progress)
        headers = ["text", "top label", "top score", *parsed]
        rows = results_table(items, parsed, results)
        shown = pd.DataFrame([[*row[:2], *(round(score, 4) for score in row[2:])] for row in rows], columns=headers)
        # Written inside Gradio's cache: anywhere else Gradio would copy it there and leave the original behind.
        return shown, write_csv(headers, rows, download.GRADIO_CACHE)

    gr.Markdown("Score a text against labels you choose, with an NLI model "
                "(`transformers` zero-shot-classification). Each label becomes a hypothesis through the "
                "template; with *several labels may be true* each label is scored on its own, otherwise "
                "the scores share 1.")
    with gr.Row():
        model = open_choices(gr.Dropdown(models, value=models[0], label="Model", elem_id="zs-model",
                                         allow_custom_value=settings.allow_any_model, scale=3))
        template = gr.Textbox(DEFAULT_TEMPLATE, label="Hypothesis template ({} is the label)",
                              elem_id="zs-template", scale=2)
        multi_label = gr.Checkbox(False, label="Several labels may be true", elem_id="zs-multi", scale=1)
    labels = gr.Textbox(label=f"Candidate labels (comma-separated or one per line, up to {settings.max_labels})",
                        placeholder=f"e.g. {EXAMPLE_LABELS}", lines=2, elem_id="zs-labels")
    with gr.Tabs():
        with gr.Tab("One text", elem_id="zs-one"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Text", lines=5, placeholder=f"e.g. {EXAMPLE_TEXT}", elem_id="zs-text")
                    run_one = gr.Button("Classify", variant="primary", elem_id="zs-run")
                    gr.Examples([[EXAMPLE_TEXT, EXAMPLE_LABELS, False, DEFAULT_TEMPLATE],
                                 [EXAMPLE_TEXT, EXAMPLE_LABELS, True, "This message is about {}."]],
                                inputs=[text, labels, multi_label, template], api_name="zero_shot_example",
                                example_labels=["Support ticket: one label",
                                                "Support ticket: several labels may be true"],
                                elem_id="zs-examples")
                with gr.Column():
                    label = gr.Label(num_top_classes=settings.max_labels, label="Scores", elem_id="zs-label")
                    with gr.Accordion("JSON (what the API returns)", open=False):
                        raw = gr.JSON(label="Result", elem_id="zs-json")
        with gr.Tab("Several texts", elem_id="zs-many"):
            with gr.Row():
                texts = gr.Textbox(label=f"Texts, one per line (up to {settings.max_texts})", lines=6,
                                   placeholder="e.g.\n" + EXAMPLE_TEXTS, elem_id="zs-texts")
                file = hand_over_path(gr.File(
                    file_types=list(TEXT_FILE_TYPES), type="filepath", elem_id="zs-file",
                    label="...or a .txt (one per line) or .csv (column 'text', else the first); "
                          "a file is used instead of the typed texts"))
            run_many = gr.Button("Classify all", variant="primary", elem_id="zs-run-many")
            gr.Examples([[EXAMPLE_TEXTS, EXAMPLE_LABELS]], inputs=[texts, labels], api_name="zero_shot_examples",
                        example_labels=["Three support tickets"], elem_id="zs-examples-many")
            table = gr.Dataframe(label="Results", interactive=False, wrap=True, elem_id="zs-table")
            download = gr.File(label="Results as CSV", interactive=False, elem_id="zs-download")

    run_one.click(classify_text, [text, labels, multi_label, template, model], raw, api_name="classify_text",
                  concurrency_limit=limit, concurrency_id="zero-shot").success(
        as_label, raw, label, api_name="zs_show_label", api_visibility="private", queue=False)
    run_many.click(classify_texts, [texts, file, labels, multi_label, template, model], [table, download],
                   api_name="classify_texts", concurrency_limit=limit, concurrency_id="zero-shot")


def demo(registry, settings) -> gr.Blocks:
    return standalone(build, registry, settings, "Zero-shot text classification")
