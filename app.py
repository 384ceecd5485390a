"""pipeline-studio: parse flags -> Settings -> registry -> build_app -> launch."""

from __future__ import annotations

import importlib.util
import sys

from engine.cli import COMMANDS, build_parser, prepare_environment, settings_from_args

__all__ = ["build_parser", "main", "settings_from_args"]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["quick"]:
        from ui.quick import main as quick_main

        return quick_main(argv[1:])
    if argv[:1] == ["transcribe"]:
        from engine.transcribe_cli import main as transcribe_main

        raise SystemExit(transcribe_main(argv[1:]))
    if argv[:1] and not argv[0].startswith("-"):
        names = ", ".join(name for name, _ in COMMANDS)
        raise SystemExit(f"error: unknown command {argv[0]!r}; commands: {names} (python app.py --help)")
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
        if settings.preload:  # on ZeroGPU models must exist at start
            for task, model, seconds in registry.preload(warm=not zerogpu.on_zerogpu()):
                print(f"Loaded {model} for {task} in {seconds:.1f} s", flush=True)
    except (DeviceError, ModelLoadError) as exc:
        raise SystemExit(f"error: {exc}") from None
    launch(build_app(settings, registry), settings)


if __name__ == "__main__":
    main()
