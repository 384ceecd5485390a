"""Small pieces every tab shares: turning engine errors into messages, standalone demos."""

from __future__ import annotations

import functools
import logging
import traceback
from typing import Any, Callable, TypeVar

import gradio as gr
import torch
from gradio.utils import NamedString
from gradio_client.utils import is_valid_file

from engine.errors import StudioError
from engine.registry import ModelLoadError

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
        except torch.OutOfMemoryError as exc:
            release_frames(exc)
            message, free = OUT_OF_MEMORY, True
        except StudioError as exc:
            message, free = str(exc), isinstance(exc, ModelLoadError)
            if free:
                release_frames(exc)
        except Exception as exc:  # noqa: BLE001 - a stack trace must never reach the browser
            log.exception("unexpected error in %s", fn.__name__)
            message, free = (f"Something went wrong while processing this input ({type(exc).__name__}). "
                             "The server logged the details; please try another input."), False
        if free:
            # Only out here has the exception (and with it the failed call's frames and the tensors they
            # held) been let go, so only now can the memory be collected and the GPU cache emptied.
            _free_memory()
        raise gr.Error(message, print_exception=False)

    return wrapper


def release_frames(exc: BaseException) -> None:
    """Drop the locals of the finished frames behind an exception and its causes.

    A failed forward's activations stay referenced by its traceback for as long as anyone holds the
    exception (a batcher's future, a registry waiter), so emptying the GPU cache would free nothing.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def _free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
