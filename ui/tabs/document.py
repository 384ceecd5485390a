"""document tab: filled in by its own issue."""

from __future__ import annotations

import gradio as gr

from ui.common import standalone


def build(registry, settings) -> None:
    gr.Markdown("This tab is not built yet.")


def demo(registry, settings) -> gr.Blocks:
    return standalone(build, registry, settings, "document")
