"""Flags -> Settings, for app.py and every subcommand: one flag per Settings field, env vars beneath."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping

from engine import __version__
from engine.settings import DEVICE_MAP_CHOICES, DTYPE_CHOICES, Settings

# Subcommands of app.py, each with its own --help: (name, one line).
COMMANDS = (
    ("quick", "serve any transformers pipeline as a web demo with a /predict API"),
    ("transcribe", "transcribe audio files to subtitles (srt, vtt, txt, json) with no server"),
)


def add_settings_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """One flag per Settings field (or the named ones), help taken from the field."""
    choices = {"dtype": DTYPE_CHOICES, "device_map": DEVICE_MAP_CHOICES}
    for f in dataclasses.fields(Settings):
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        env = f"STUDIO_{f.name.upper()}"
        shown = "unset" if f.name == "admin_token" or f.default is None else repr(f.default)
        help_text = f"{f.metadata.get('help', '')} (env {env}; default {shown})"
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=None, choices=choices.get(f.name),
                                metavar=f.name.upper() if f.name not in choices else None, help=help_text)


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags over STUDIO_* variables (Spaces' server variables folded in)."""
    names = {f.name for f in dataclasses.fields(Settings)}
    return Settings.from_env(space_env(os.environ if env is None else env),
                             **{k: v for k, v in vars(args).items() if k in names and v is not None})


def space_env(env: Mapping[str, str]) -> dict[str, str]:
    """On Hugging Face Spaces, serve where the Space's proxy looks (Gradio's variables) unless told otherwise."""
    if not env.get("SPACE_ID"):
        return dict(env)
    return {"STUDIO_HOST": env.get("GRADIO_SERVER_NAME", "0.0.0.0"),
            "STUDIO_PORT": env.get("GRADIO_SERVER_PORT", "7860"), **env}


def build_parser() -> argparse.ArgumentParser:
    """The app's own flags; the subcommands are listed at the end of --help."""
    commands = "\n".join(f"  {name:<10} {line} (python app.py {name} --help)" for name, line in COMMANDS)
    parser = argparse.ArgumentParser(
        prog="app.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="python app.py [flags]  |  python app.py COMMAND [flags]",
        description="pipeline-studio: Hugging Face transformers pipelines as a web app. "
                    "Every flag can also be set with its STUDIO_* environment variable.",
        epilog=f"commands:\n{commands}")
    parser.add_argument("--version", action="version", version=f"pipeline-studio {__version__}")
    add_settings_arguments(parser)
    return parser


def prepare_environment(settings: Settings) -> None:
    """Process-wide switches that libraries read once, set before they are imported."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if settings.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
