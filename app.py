"""pipeline-studio: parse flags -> Settings -> registry -> build_app -> launch."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from collections.abc import Mapping

from engine import __version__
from engine.settings import DEVICE_MAP_CHOICES, DTYPE_CHOICES, Settings


def add_settings_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """One flag per Settings field (or the named ones), help taken from the field."""
    choices = {"dtype": DTYPE_CHOICES, "device_map": DEVICE_MAP_CHOICES}
    for f in dataclasses.fields(Settings):
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        env = f"STUDIO_{f.name.upper()}"
        help_text = f"{f.metadata.get('help', '')} (env {env}; default {f.default!r})"
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=None, choices=choices.get(f.name),
                                metavar=f.name.upper() if f.name not in choices else None, help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    return Settings.from_env(space_env(os.environ), **{k: v for k, v in vars(args).items()
                                                        if k in names and v is not None})


def space_env(env: Mapping[str, str]) -> dict[str, str]:
    """On Hugging Face Spaces, serve where the Space's proxy looks (Gradio's variables) unless told otherwise."""
    if not env.get("SPACE_ID"):
        return dict(env)
    return {"STUDIO_HOST": env.get("GRADIO_SERVER_NAME", "0.0.0.0"),
            "STUDIO_PORT": env.get("GRADIO_SERVER_PORT", "7860"), **env}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="pipeline-studio: Hugging Face transformers pipelines as a web app. "
                    "Every flag can also be set with its STUDIO_* environment variable.")
    parser.add_argument("--version", action="version", version=f"pipeline-studio {__version__}")
    add_settings_arguments(parser)
    return parser


def prepare_environment(settings: Settings) -> None:
    """Process-wide switches that libraries read once, set before they are imported."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if settings.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["quick"]:
        from ui.quick import main as quick_main

        return quick_main(argv[1:])
    try:
        settings = settings_from_args(build_parser().parse_args(argv))
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    prepare_environment(settings)
    from ui import zerogpu

    settings = zerogpu.prepare(settings)  # before torch touches CUDA
    if settings.mcp and importlib.util.find_spec("mcp") is None:
        raise SystemExit("error: --mcp needs the mcp package: pip install mcp (requirements.txt pins it)")
    from engine.devices import DeviceError
    from engine.registry import ModelLoadError, PipelineRegistry
    from ui.app import build_app, launch

    try:
        registry = PipelineRegistry(settings)
        if settings.preload:
            preload(registry)
    except (DeviceError, ModelLoadError) as exc:
        raise SystemExit(f"error: {exc}") from None
    launch(build_app(settings, registry), settings)


def preload(registry) -> None:
    """--preload: each tab's default model, loaded before serving (on ZeroGPU models must exist at start)."""
    from engine.registry import TASKS

    for task in TASKS:
        started = time.perf_counter()
        registry.get(task)
        print(f"Loaded {registry.default_model(task)} for {task} in {time.perf_counter() - started:.1f} s",
              flush=True)


if __name__ == "__main__":
    main()
