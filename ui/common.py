"""Small pieces every tab shares: turning engine errors into messages, standalone demos."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import anyio
import gradio as gr
import torch
from gradio.utils import NamedString
from gradio_client.utils import is_valid_file

from engine.devices import release_memory
from engine.errors import Cancelled, InputError, StudioError
from engine.registry import check_model_allowed
from engine.urls import NOT_ENABLED, URLFetcher
from ui.security import NOT_UPLOADED, is_uploaded, upload_folder

log = logging.getLogger("pipeline_studio")
Component = TypeVar("Component", bound=gr.components.Component)
OUT_OF_MEMORY = "The model ran out of memory on this input. Try a shorter or smaller input, or a smaller model."


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an event handler; anything that goes wrong reaches the browser as one clear line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (gr.Error, Cancelled):
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
                if not is_uploaded(str(payload.path), upload_folder()):  # the front door checks this too
                    raise gr.Error(NOT_UPLOADED, print_exception=False)
                return str(payload.path)
            return gradio_preprocess(payload)

        component.preprocess = preprocess
    elif isinstance(component, gr.File) and component.type == "filepath":

        def process_single_file(f):
            if not is_uploaded(str(f.path), upload_folder()):
                raise gr.Error(NOT_UPLOADED, print_exception=False)
            if component.file_types and not is_valid_file(f.path, component.file_types):
                raise gr.Error("Invalid file type. Please upload a file that is one of these formats: "
                               f"{component.file_types}", print_exception=False)
            return NamedString(f.path)

        component._process_single_file = process_single_file
    return component


def open_choices(dropdown: gr.Dropdown) -> gr.Dropdown:
    """Make a Dropdown that takes values beyond its choices (allow_custom_value) say so in the API docs.

    Gradio 6.31's Dropdown.api_info lists only the choices (`Literal[...]`), so view_api and MCP clients
    read a value that works (a page number, a Hub id) as invalid. Replaced on the instance, as above.
    """
    if dropdown.allow_custom_value:
        values = [value for _, value in dropdown.choices]
        info = {"anyOf": [{"type": "string", "enum": values}, {"type": "string"}]} if values else {"type": "string"}
        dropdown.api_info = lambda: info
    return dropdown


def url_box(fetcher: URLFetcher, elem_id: str, example: str, many: bool = False) -> gr.Textbox:
    """The URL field: shown only with --allow-urls (the API parameter exists either way and is refused when off)."""
    return gr.Textbox(label="...or the file's URLs, one per line" if many else "...or the file's URL",
                      placeholder=example, lines=3 if many else 1, max_lines=8 if many else 1,
                      visible=fetcher.enabled, elem_id=elem_id,
                      info="a public http(s) address of the file itself; the server downloads it")


@contextlib.contextmanager
def upload_or_url(path: str | None, url: str | None, fetcher: URLFetcher, cache: str,
                  keep: bool = False) -> Iterator[str | None]:
    """The upload's path, or the URL fetched into a folder of its own in Gradio's cache.

    The fetched file is named after the URL's last path segment, so the decoders, limits and messages
    are the upload's. It is deleted afterwards, unless keep and the block succeeded (then Gradio's
    cache expiry removes it, as it does uploads).
    """
    url = (url or "").strip()
    if not url:
        yield path
        return
    if not fetcher.enabled:
        raise InputError(NOT_ENABLED)
    if path:
        raise InputError("Give either a file or a URL, not both; clear one of them.")
    fetched = fetch_into(fetcher, url, cache)
    try:
        yield str(fetched)
    except BaseException:
        shutil.rmtree(fetched.parent, ignore_errors=True)
        raise
    if not keep:
        shutil.rmtree(fetched.parent, ignore_errors=True)


def fetch_into(fetcher: URLFetcher, url: str, cache: str) -> Path:
    """The file at url, alone in a new folder in cache; nothing is left behind when the fetch is refused."""
    if not fetcher.enabled:  # refused before a folder is made or anything is looked up
        raise InputError(NOT_ENABLED)
    folder = tempfile.mkdtemp(prefix="url-", dir=cache)
    try:
        return fetcher.download(url, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def standalone(build: Callable[..., Any], registry: Any, settings: Any, title: str, **tab_options: Any) -> gr.Blocks:
    """A Blocks holding one tab's components, so each tab module runs alone."""
    with gr.Blocks(title=title) as demo:
        build(registry, settings, **tab_options)
    return demo


# --- stopping a run ---------------------------------------------------------------------------
# Gradio cannot stop a thread. A Stop button (cancels=[...]) and gradio_client's job.cancel() both
# POST /cancel, which cancels the asyncio task awaiting the handler; a sync handler's thread runs
# on. A closed page only marks its jobs not alive. So a cancellable handler runs in a thread of its
# own, and a stop flag the engine reads is set when its task is cancelled or its page has gone.
WATCH_S = 0.25  # how often a running handler looks whether anyone still waits for it
STOP_WAIT_S = 10.0  # how long a cancelled run may take to stop before its worker is given back anyway
_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("studio_stop", default=None)
STOPPED = "Stopped."


def stop_check() -> Callable[[], bool]:
    """The running handler's "was I stopped?" callable, for the engine (never stopped outside one)."""
    stop = _STOP.get()
    return stop.is_set if stop is not None else (lambda: False)


def cancellable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make a sync handler stoppable: a Stop button, a cancelled API job or a closed page sets the
    flag stop_check() reads; the engine then raises Cancelled between batches or steps."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        stop, ended = threading.Event(), threading.Event()
        context = contextvars.copy_context()  # Gradio's progress, request and event id travel with it
        context.run(_STOP.set, stop)

        def call() -> Any:
            try:
                return context.run(fn, *args, **kwargs)
            finally:
                ended.set()

        worker = asyncio.ensure_future(anyio.to_thread.run_sync(call, abandon_on_cancel=True))
        try:
            while not (await asyncio.wait({worker}, timeout=WATCH_S))[0]:
                if not run_is_awaited():
                    stop.set()
            return worker.result()
        except asyncio.CancelledError:
            stop.set()
            worker.cancel()
            deadline = time.monotonic() + STOP_WAIT_S
            while not ended.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # the worker stays taken until the engine has stopped
            raise
        except Cancelled:
            raise gr.Error(STOPPED, print_exception=False) from None

    return run


def run_is_awaited() -> bool:
    """False once the page or API client that started this run has gone (Gradio marks its job not
    alive when the event stream closes). Gradio private API, pinned by tests/test_cancel.py."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return True
    for job in list(getattr(queue, "active_jobs", None) or ()):
        for event in job or ():
            if getattr(event, "_id", None) == event_id:
                return bool(getattr(event, "alive", True))
    return True


# --- progress -----------------------------------------------------------------------------------

def get_pipeline(registry: Any, task: str, model: str, progress: Any = None) -> Any:
    """registry.get(task, model), saying "Loading <model> (first use) ..." while a pipeline that is not
    loaded yet loads; with gr.Progress(track_tqdm=True) a Hub download's own bars show under it."""
    check_model_allowed(task, model, registry.settings)
    key = registry.key_for(task, model)
    if progress is None or registry.is_loaded(key):
        return registry.get(task, model)
    marker = object()  # the line stays above any download bars until the load is over
    progress.tqdm(None, desc=f"Loading {key.label} (first use) ...", unit="", _tqdm=marker)
    try:
        return registry.get(task, model)
    finally:
        progress.close(marker)


def time_left(done: float, total: float, elapsed: float) -> str | None:
    """"about 40 s left" from the rate so far; None until there is enough to go on."""
    if total <= 0 or done <= 0 or done >= total or elapsed < 1.0 or done / total < 0.02:
        return None
    left = elapsed * (total - done) / done
    if left < 60:
        return f"about {max(1, round(left))} s left"
    minutes, seconds = divmod(round(left), 60)
    return f"about {minutes} min {seconds:02d} s left"
