"""build_app(settings, registry) -> gr.Blocks: one tab per modality plus the Models panel."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from engine import __version__
from engine.settings import Settings
from ui.security import Guard, upload_folder

# (tab label, module under ui.tabs, elem_id): the app is this table.
TABS = (
    ("Speech", "speech", "tab-speech"),
    ("Image", "image", "tab-image"),
    ("Zero-shot text", "zero_shot", "tab-zero-shot"),
    ("Document", "document", "tab-document"),
    ("Models", "models", "tab-models"),
)

TITLE = "pipeline-studio"


def build_app(settings: Settings, registry: Any, fetcher: Any = None) -> gr.Blocks:
    """The whole app; nothing loads until a tab asks for its model."""
    with gr.Blocks(title=TITLE, delete_cache=cache_expiry(settings)) as demo:
        gr.Markdown(f"# {TITLE}\nHugging Face `transformers` pipelines, one tab per modality.")
        with gr.Tabs():
            for label, module, elem_id in TABS:
                with gr.Tab(label, id=module, elem_id=elem_id):
                    importlib.import_module(f"ui.tabs.{module}").build(registry, settings, fetcher=fetcher)
        gr.Markdown(f"{TITLE} {__version__}", elem_id="studio-footer")
    return demo


def cache_expiry(settings: Settings) -> tuple[int, int] | None:
    """Gradio's delete_cache (how often, how old, both in seconds) from --cache-hours; None keeps every file."""
    if settings.cache_hours <= 0:
        return None
    seconds = max(1, round(settings.cache_hours * 3600))
    return seconds, seconds


def auth_pairs(settings: Settings) -> list[tuple[str, str]] | None:
    """--auth user:pass and --auth-file lines as Gradio's list of (user, password)."""
    lines = []
    if settings.auth:
        lines.append(settings.auth)
    if settings.auth_file:
        with open(settings.auth_file, encoding="utf-8") as fh:
            lines += [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    pairs = []
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SystemExit("auth entries must look like user:password")
        pairs.append((user, password))
    return pairs or None


def launch(demo: gr.Blocks, settings: Settings, block: bool = True, **extra: Any):
    """Queue and serve; say in one line why no share link came, and keep serving locally."""
    on_spaces = bool(os.environ.get("SPACE_ID"))
    share = settings.share and not on_spaces
    if settings.share and on_spaces:
        print("Share links are not used on Hugging Face Spaces; the Space's own URL is public.", flush=True)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency)
    app_kwargs = dict(extra.pop("app_kwargs", None) or {})
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", ()), Middleware(Guard, upload_folder=upload_folder,
                                                                                   blocks=demo)]
    quiet = extra.pop("quiet", False)
    extra.setdefault("mcp_server", settings.mcp)
    # show_error=False: a gr.Error (every message the handlers give) still reaches the visitor; Gradio's own
    # exception texts, which name server folders and Python objects, do not. Gradio's start-up lines speak
    # of launch() arguments, and offline its share attempt prints nine lines of frpc instructions: the
    # operator gets this app's own lines instead.
    with contextlib.redirect_stdout(io.StringIO()):
        result = demo.launch(server_name=settings.host, server_port=settings.port, share=share,
                             auth=auth_pairs(settings), max_file_size=f"{settings.max_file_mb:g}mb",
                             prevent_thread_lock=True, show_error=False, app_kwargs=app_kwargs, quiet=True,
                             **extra)
    if settings.mcp:
        from ui.mcp import narrow_tools

        narrow_tools(demo)
    if share and not demo.share_url:
        print(f"No public share link could be made (Gradio's share server is unreachable from here or "
              f"its tunnel client is missing); the app is serving locally at {demo.local_url}",
              file=sys.stderr, flush=True)
    elif not quiet:
        public = (f" and publicly at {demo.share_url} (anyone with the link; see docs/security.md)"
                  if demo.share_url else "; --share gives a public link")
        print(f"pipeline-studio is serving at {demo.local_url}{public}", flush=True)
    if block:
        demo.block_thread()
    return result
