"""Small pieces every tab shares: turning engine errors into messages, standalone demos."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import gradio as gr
import torch

from engine.errors import StudioError

log = logging.getLogger("pipeline_studio")


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
        except torch.OutOfMemoryError:
            _free_memory()
            raise gr.Error("The model ran out of memory on this input. Try a shorter or smaller input, "
                           "or a smaller model.", print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - a stack trace must never reach the browser
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong while processing this input ({type(exc).__name__}). "
                           "The server logged the details; please try another input.",
                           print_exception=False) from None

    return wrapper


def _free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def standalone(build: Callable[..., Any], registry: Any, settings: Any, title: str) -> gr.Blocks:
    """A Blocks holding one tab's components, so each tab module runs alone."""
    with gr.Blocks(title=title) as demo:
        build(registry, settings)
    return demo
