"""Small pieces every tab shares: turning engine errors into messages, standalone demos."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

import gradio as gr
import torch
from gradio.utils import NamedString
from gradio_client.utils import is_valid_file

from engine.devices import release_memory
from engine.errors import StudioError

log = logging.getLogger("pipeline_studio")
Component = TypeVar("Component", bound=gr.components.Component)
OUT_OF_MEMORY = "The model ran out of memory on this input. Try a shorter or smaller input, or a smaller model."


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an event handler; anything that goes wrong reaches the browser as one clear line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except torch.OutOfMemoryError as exc:
            release_memory(exc)
            raise gr.Error(OUT_OF_MEMORY, print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - a stack trace must never reach the browser
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong while processing this input ({type(exc).__name__}). "
                           "The server logged the details; please try another input.",
                           print_exception=False) from None

    return wrapper


def hand_over_path(component: Component) -> Component:
    """Make a type="filepath" gr.Image or gr.File hand the uploaded file's path to the handler untouched.

    gr.Image opens every upload with Pillow before the handler runs, so a file that is not an image, or
    a decompression bomb, fails there with a message that names no cause; the engine reads the file
    within the limits and says what is wrong. Gradio 6.31's gr.File opens an empty temporary file in
    its cache on every call and never deletes it. The methods are replaced on the instance because
    Gradio writes a .pyi stub next to any module that subclasses a component.
    """
    if isinstance(component, gr.Image):
        gradio_preprocess = component.preprocess

        def preprocess(payload):
            if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
                return str(payload.path)
            return gradio_preprocess(payload)

        component.preprocess = preprocess
    elif isinstance(component, gr.File) and component.type == "filepath":

        def process_single_file(f):
            if component.file_types and not is_valid_file(f.path, component.file_types):
                raise gr.Error("Invalid file type. Please upload a file that is one of these formats: "
                               f"{component.file_types}", print_exception=False)
            return NamedString(f.path)

        component._process_single_file = process_single_file
    return component


def standalone(build: Callable[..., Any], registry: Any, settings: Any, title: str) -> gr.Blocks:
    """A Blocks holding one tab's components, so each tab module runs alone."""
    with gr.Blocks(title=title) as demo:
        build(registry, settings)
    return demo
